"""Byte accounting: the one definition every study and report uses (DESIGN §2).

Three figures per trial:

- `payload_bytes`: the parameters only, as stored by the quantization mode. For `epr`,
  the range-coded bit strings plus their side information (the float16 log step sizes);
  for TFLite modes, the parameter tensors' buffers in the flatbuffer, compressed
  losslessly with zlib level 9. This is the figure the compression papers report and the
  default objective.
- `artifact_bytes`: the exported file(s) as written.
- `artifact_gzip_bytes`: gzip -9 of those file(s), the TF Model Optimization convention.

`SIZE_DEFINITION` names this definition; each trial records it next to its figures so a
later change of definition can never be mixed up with old numbers.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from objectives.flatbuffer import ParsedFlatbuffer

SIZE_DEFINITION = "size-v1"

#: The byte figure a study minimizes, by `run --size-objective` (DESIGN §2), and the name
#: of the trial attribute (and Optuna metric) that holds it. `flash` is the deployable
#: `.tflite` file a device runs (for `epr` trials, the float32 TFLite file of the decoded
#: model): see `objectives.device`.


#: Bytes a TFLite mode stores per parameter value, before zlib (float32 and float16 as
#: such; dynamic-range and int8 quantize weights to one byte).
VALUE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "dynamic": 1, "int8": 1}


def estimated_tflite_payload(params: int, *, quantization: str) -> float:
    """The payload a TFLite mode's flatbuffer would have, before converting it: the values
    at the mode's width (zlib and per-channel scales left out). Cheap enough to judge a
    trial by mid-training (`optimizer.engine.halving`); never a reported figure."""
    return float(params * VALUE_BYTES[quantization])


@dataclass(frozen=True)
class ByteFigures:
    """The three byte figures of one artifact, and the definition that produced them."""

    payload_bytes: int
    artifact_bytes: int
    artifact_gzip_bytes: int
    definition: str = SIZE_DEFINITION

    def as_dict(self) -> dict[str, int | str]:
        """Flat mapping for trial user attributes and reports (`size_definition` key)."""
        data = asdict(self)
        data["size_definition"] = data.pop("definition")
        return data


def zlib_size(data: bytes) -> int:
    """Length of `data` compressed with zlib at level 9."""
    return len(zlib.compress(data, 9))


def gzip_size(data: bytes) -> int:
    """Length of `data` compressed with gzip at level 9 (mtime fixed for reproducibility)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def epr_payload_bytes(*, strings: Iterable[bytes], side_info_bytes: int) -> int:
    """EPR payload: the range-coded strings' lengths plus the side information's bytes."""
    return sum(len(s) for s in strings) + int(side_info_bytes)


def artifact_figures(paths: Iterable[Path], *, payload_bytes: int) -> ByteFigures:
    """`ByteFigures` for artifact file(s) on disk, given the mode's payload figure."""
    blobs = [Path(p).read_bytes() for p in paths]
    return ByteFigures(
        payload_bytes=int(payload_bytes),
        artifact_bytes=sum(len(b) for b in blobs),
        artifact_gzip_bytes=sum(gzip_size(b) for b in blobs),
    )


#: Flatbuffer tensor types that hold parameters whenever the tensor is a constant.
_PARAMETER_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "INT8", "UINT8", "INT4")


def tflite_parameter_blobs(flatbuffer: bytes | ParsedFlatbuffer) -> list[bytes]:
    """The stored bytes of a TFLite flatbuffer's parameter tensors, in tensor order.

    A tensor is a *parameter* when it is a constant — its buffer holds data — and either

    - its type is a weight type (float32, float16, float64, int8, uint8, int4): conv and
      dense kernels and float biases in every mode, int8 kernels in `dynamic` and `int8`
      mode; or
    - it is an integer constant that carries quantization scales: the int32 biases of a
      full-integer model (scale = input scale × weight scale).

    Not parameters, so not counted: integer constants without quantization (reshape
    shapes, paddings, resize sizes), and every non-constant tensor (inputs, activations,
    the float32 tensors that float16 weights are dequantized into at load time).

    Quantization parameters of a counted tensor are counted after its data, in the width
    the schema stores them: each scale as float32 (4 bytes) and each zero point as int64
    (8 bytes); one pair per tensor, or one per output channel for per-channel int8 conv
    kernels. They are side information, like EPR's step sizes, and a few hundred bytes at
    most for the models searched here. Activation tensors' quantization parameters are
    not counted. A buffer shared by several tensors is counted once. All subgraphs are
    scanned.

    The flatbuffer is read with the maintained `tflite` package (`objectives.flatbuffer`),
    imported lazily; TensorFlow is not imported. A file already parsed is not read again.
    """
    from tflite.TensorType import TensorType

    from objectives.flatbuffer import constant_tensors, parse, quantization

    parameter_types = {getattr(TensorType, name) for name in _PARAMETER_TYPES}
    blobs: list[bytes] = []
    counted: set[int] = set()
    for constant in constant_tensors(parse(flatbuffer).model):
        quant = quantization(constant.tensor)
        if constant.buffer in counted or (
            constant.tensor.Type() not in parameter_types and quant is None
        ):
            continue
        counted.add(constant.buffer)
        blobs.append(constant.data)
        if quant is not None:
            scales, zero_points = quant
            blobs.append(scales.astype("<f4").tobytes())
            blobs.append(zero_points.astype("<i8").tobytes())
    return blobs


def tflite_payload_bytes(flatbuffer: bytes | ParsedFlatbuffer) -> int:
    """TFLite payload (DESIGN §2): the parameter tensors' stored bytes, concatenated in
    tensor order, compressed losslessly with zlib level 9.

    What counts as a parameter is defined by `tflite_parameter_blobs`: constant weight and
    bias tensors as the mode stores them (float32, float16, int8, int32 biases), plus the
    scales and zero points of the quantized ones. Flatbuffer structure, operators, tensor
    metadata, names and signatures are not counted; they are in `artifact_bytes`.
    The flatbuffer is read with the `tflite` package, imported lazily when this is called;
    TensorFlow is not imported.
    """
    return zlib_size(b"".join(tflite_parameter_blobs(flatbuffer)))
