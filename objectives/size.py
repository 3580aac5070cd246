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

import numpy as np

SIZE_DEFINITION = "size-v1"


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


#: TFLite operators whose constant operands are model parameters. Input 1 is the
#: weights and input 2 the bias (int32 in full-integer models).
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def tflite_parameter_blobs(flatbuffer: bytes) -> list[bytes]:
    """The stored bytes of a flatbuffer's parameter tensors, each buffer once.

    A parameter tensor is a constant (its buffer holds data) that is either of a weight
    type (float32, float16, int8, uint8), or an int32 bias operand of a conv or fully
    connected op. Shape and index constants (other int32/int64 constants) are not
    parameters. For quantized tensors, the per-tensor or per-channel scales and zero
    points are counted with the data, as EPR's step sizes are.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    weight_types = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16,
                    schema.TensorType.INT8, schema.TensorType.UINT8}
    blobs: list[bytes] = []
    seen: set[int] = set()
    for graph in model.subgraphs or []:
        bias_operands: set[int] = set()
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = builtin.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if name in _WEIGHT_OPS and op.inputs is not None and len(op.inputs) > 2:
                bias_operands.add(int(op.inputs[2]))
        for index, tensor in enumerate(graph.tensors or []):
            buffer = model.buffers[tensor.buffer]
            if buffer.data is None or len(buffer.data) == 0 or tensor.buffer in seen:
                continue
            if tensor.type not in weight_types and index not in bias_operands:
                continue
            seen.add(tensor.buffer)
            blobs.append(bytes(np.asarray(buffer.data, dtype=np.uint8)))
            quant = tensor.quantization
            if quant is not None and quant.scale is not None:
                blobs.append(np.asarray(quant.scale, dtype=np.float32).tobytes())
                blobs.append(np.asarray(quant.zeroPoint, dtype=np.int64).tobytes())
    return blobs


def tflite_payload_bytes(flatbuffer: bytes) -> int:
    """TFLite payload: the parameter tensors' bytes, concatenated, compressed by zlib -9."""
    return zlib_size(b"".join(tflite_parameter_blobs(flatbuffer)))
