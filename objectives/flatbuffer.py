"""Reading a TFLite flatbuffer with the maintained `tflite` package (the TFLite schema as Python).

The one place for what the objectives read from a converted model besides running it: the
model's root table (`read_model`), its constant tensors with their stored bytes
(`constant_tensors`), and a tensor's quantization vectors (`quantization`), so that no
module parses flatbuffers with the private generated schema inside TensorFlow, which
may change or go away in any release.

A trial reads its file once (`parse`) and hands the `ParsedFlatbuffer` to every reader
(payload, accuracy, RAM, latency): each accepts it wherever it accepts the bytes.

The `tflite` package follows the flatbuffers Python conventions: a vector field `X` is read
with `X(j)` and `XLength()`, a scalar one as a numpy view with `XAsNumpy()` — which returns
the int 0, not an empty array, when the vector is absent — and `XIsNone()` tells an absent
vector from an empty one. The helpers here hide that. `tflite` is imported lazily, when a
flatbuffer is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ConstantTensor:
    """A tensor whose buffer holds data, and those data as stored in the flatbuffer.

    `subgraph` and `index` locate the tensor (`index` within its subgraph); `tensor` is its
    `tflite.Tensor` accessor; `buffer` the index of its buffer in the model's buffers
    (several tensors may share one); `data` the buffer's bytes.
    """

    subgraph: int
    index: int
    tensor: Any
    buffer: int
    data: bytes


@dataclass(frozen=True)
class ParsedFlatbuffer:
    """A TFLite flatbuffer read once: its bytes (`data`) and its root `tflite.Model` table
    (`model`, `read_model`), so the readers of one file do not each parse it again."""

    data: bytes
    model: Any


def parse(flatbuffer: bytes | ParsedFlatbuffer) -> ParsedFlatbuffer:
    """`flatbuffer` read (`read_model`) once; one already parsed is returned as it is, so a
    function that takes either passes the parsed file on to the next."""
    if isinstance(flatbuffer, ParsedFlatbuffer):
        return flatbuffer
    data = bytes(flatbuffer)
    return ParsedFlatbuffer(data=data, model=read_model(data))


def read_model(flatbuffer: bytes) -> Any:
    """The flatbuffer's root `tflite.Model` table: an accessor over the bytes, no copy."""
    from tflite.Model import Model

    return Model.GetRootAs(flatbuffer, 0)


def constant_tensors(model: Any) -> Iterator[ConstantTensor]:
    """The constant tensors of every subgraph of `model` (a `read_model` table), in subgraph
    then tensor order.

    A tensor is constant when its buffer's `data` vector is non-empty. Every such tensor is
    yielded, also when its buffer is shared with an earlier one. Buffers stored after the
    flatbuffer (`offset`/`size`, which the converter uses only for models above 2 GiB) are
    not read, so their tensors are not yielded. Raises `ValueError` for a tensor whose
    buffer index is out of range (a corrupt flatbuffer).
    """
    n_buffers = model.BuffersLength()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            index = tensor.Buffer()
            if not 0 <= index < n_buffers:
                raise ValueError(
                    f"tensor {t} of subgraph {g} refers to buffer {index}; "
                    f"the model has {n_buffers}"
                )
            buffer = model.Buffers(index)
            if buffer.DataLength() == 0:
                continue
            yield ConstantTensor(subgraph=g, index=t, tensor=tensor, buffer=index,
                                 data=buffer.DataAsNumpy().tobytes())


def quantization(tensor: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """A `tflite.Tensor`'s quantization scales (float32) and zero points (int64), as stored.

    None when the tensor has no quantization table or its table has no scale vector; a
    present but empty scale vector gives an empty array. An absent zero-point vector gives
    an empty array as well.
    """
    params = tensor.Quantization()
    if params is None or params.ScaleIsNone():
        return None
    scales = np.asarray(params.ScaleAsNumpy(), dtype=np.float32).reshape(-1)
    if params.ZeroPointIsNone():
        zero_points = np.zeros(0, dtype=np.int64)
    else:
        zero_points = np.asarray(params.ZeroPointAsNumpy(), dtype=np.int64).reshape(-1)
    return scales, zero_points
