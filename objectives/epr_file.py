"""The `.epr` file: a compressed model's architecture, bit strings and side information in
one file (`save`), read back as a plain, decoded Keras model (`load`).

Format, written atomically::

    b"EPRK" | uint8 version (FORMAT_VERSION) | uint32 little-endian header length N | N bytes:
    zlib-compressed UTF-8 JSON header | data section

The header holds `architecture` (the plain model's Keras JSON, no weights) and `layers`:
for every coded layer its `path` (layer names from the root, through nested models) and
its weights in Keras order, each with `name`, `shape`, `coding` (`fourier`, `scalar`,
`float16` or `raw`), the `[offset, length]` in the data section of its bit string and of
its side information (`side`): its float16 little-endian log steps, or the float16 values
of `float16` weights, or the float32 little-endian values of `raw` ones. A file whose
architecture names code is refused, not loaded (`objectives.epr_architecture`).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from definitions.errors import one_line
from objectives.epr_architecture import layer_at, rebuild, refuse_code, weighted_paths
from objectives.epr_layers import CompressedModel
from objectives.epr_maths import FLOAT16, FOURIER, RAW, SCALAR, Spec, decoded
from objectives.errors import EPRError
from objectives.files import write_atomically

FORMAT_MAGIC = b"EPRK"
#: Version 2 names each weight's side information `side` (version 1 called it `half`,
#: although a raw weight's is float32); `load` reads both.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_SIDE_KEY = {1: "half", 2: "side"}
_HEAD = struct.Struct("<4sBI")
#: How a weight may be coded (`objectives.epr_maths`).
CODINGS = (FOURIER, SCALAR, FLOAT16, RAW)


def save(compressed: CompressedModel, path: str | os.PathLike) -> None:
    """Writes architecture + bit strings + side information to ONE file, atomically
    (`objectives.files.write_atomically`)."""
    data = bytearray()
    entries = []

    def put(blob: bytes) -> list[int]:
        offset = len(data)
        data.extend(blob)
        return [offset, len(blob)]

    for layer_path, coded in compressed.coded_layers():
        weights = []
        for spec, string, side in coded:
            entry = spec.as_json()
            entry["string"] = None if string is None else put(string)
            entry[_SIDE_KEY[FORMAT_VERSION]] = put(
                np.asarray(side, dtype=_side_dtype(spec)).tobytes())
            weights.append(entry)
        entries.append({"path": list(layer_path), "weights": weights})
    header = zlib.compress(json.dumps(
        {"architecture": compressed.plain_json, "layers": entries}, separators=(",", ":")
    ).encode("utf-8"), 9)
    blob = _HEAD.pack(FORMAT_MAGIC, FORMAT_VERSION, len(header)) + header + bytes(data)
    write_atomically(path, blob)


def load(path: str | os.PathLike) -> tf.keras.Model:
    """`load("model.epr")` → a plain, decoded Keras model ready for `predict`.

    A file `save` did not write as it is — truncated, its bytes altered, a layer path or a
    weight's shape edited, another format — is refused with an `EPRError` of one line
    naming the file and what is wrong, before any weight of an impossible shape is
    decoded; one whose architecture names code, with `StoredCodeRefused`."""
    blob = Path(path).read_bytes()
    try:
        header, version, data = _container(blob)
        refuse_code(path, header.get("architecture"))
        model = rebuild(header["architecture"])
        done: set[tuple[str, ...]] = set()
        for entry in header["layers"]:
            done.add(_set_layer(model, entry, side_key=_SIDE_KEY[version], data=data))
    except EPRError as error:
        raise EPRError(one_line(f"{path}: {error}")) from None
    missing = sorted("/".join(p) for p in weighted_paths(model) - done)
    if missing:
        raise EPRError(one_line(f"{path}: holds no weights for layer "
                                f"{', '.join(map(repr, missing))}"))
    return model


def _container(blob: bytes) -> tuple[dict[str, Any], int, bytes]:
    """The file's JSON header (checked to hold an architecture and a list of layers), its
    format version and its data section."""
    if len(blob) < _HEAD.size:
        raise EPRError("too short to be an EPR file")
    magic, version, size = _HEAD.unpack_from(blob)
    if magic != FORMAT_MAGIC or version not in READABLE_VERSIONS:
        raise EPRError(f"not an EPR file of version {' or '.join(map(str, READABLE_VERSIONS))}")
    start = _HEAD.size + size
    if start > len(blob):
        raise EPRError(f"truncated: its header is {size} bytes, {len(blob) - _HEAD.size} "
                       "follow the prefix")
    unpacker = zlib.decompressobj()
    try:
        header = json.loads(unpacker.decompress(blob[_HEAD.size:start]))
    except (zlib.error, ValueError) as error:
        raise EPRError(f"corrupt header: {error}") from None
    if not unpacker.eof or unpacker.unused_data:  # the length field was altered
        raise EPRError(f"corrupt header: its compressed JSON is not {size} bytes long")
    if not (isinstance(header, dict) and isinstance(header.get("architecture"), str)
            and isinstance(header.get("layers"), list)):
        raise EPRError("corrupt header: no architecture and list of layers")
    return header, version, blob[start:]


def _set_layer(model: tf.keras.Model, entry: Any, *, side_key: str, data: bytes
               ) -> tuple[str, ...]:
    """Decodes one header entry's weights into its layer of `model`; returns its path.
    The path must name a layer and the weights' count and shapes must be the layer's
    before anything is decoded (an edited shape could ask for any amount of memory)."""
    if not (isinstance(entry, dict) and _is_list_of(entry.get("path"), str)
            and isinstance(entry.get("weights"), list)):
        raise EPRError("corrupt header: a layer entry without a path and weights")
    path = tuple(entry["path"])
    layer = layer_at(model, path)
    specs = [_spec(w) for w in entry["weights"]]
    wanted = [tuple(int(d) for d in w.shape) for w in layer.weights]
    if [spec.shape for spec in specs] != wanted:
        raise EPRError(one_line(
            f"layer {'/'.join(path)!r}: the file's weights have shapes "
            f"{[list(spec.shape) for spec in specs]}, the layer's are "
            f"{[list(shape) for shape in wanted]}", limit=300))
    layer.set_weights([_decoded(spec, w, path=path, side_key=side_key, data=data)
                       for spec, w in zip(specs, entry["weights"], strict=True)])
    return path


def _spec(w: Any) -> Spec:
    """A weight entry's name, shape and coding, checked to be ones `save` writes."""
    if not isinstance(w, dict):
        raise EPRError("corrupt header: a weight entry is not an object")
    name, coding = w.get("name"), w.get("coding")
    shape: Any = w.get("shape")
    if not (_is_list_of(shape, int) and all(d >= 0 for d in shape)):
        raise EPRError(one_line(f"weight {name!r} has shape {shape!r}, not a list of sizes",
                                limit=200))
    if coding not in CODINGS or (coding == FOURIER and len(shape) != 4):
        raise EPRError(one_line(f"weight {name!r} of shape {shape} has coding {coding!r}, "
                                "which this format does not have", limit=200))
    return Spec(str(name), tuple(shape), coding)


def _decoded(spec: Spec, w: dict[str, Any], *, path: tuple[str, ...], side_key: str,
             data: bytes) -> np.ndarray:
    """One weight decoded from its spans of the data section: `EPRError` when they lie
    outside it, the side information is not the size its shape needs, or the bit
    string does not decode."""
    where = f"layer {'/'.join(path)!r} weight {spec.name!r}"
    dtype = np.dtype(_side_dtype(spec))
    side_shape = spec.shape if spec.coding in (FLOAT16, RAW) else spec.log_step_shape
    side = _span(w.get(side_key), data, what=f"the side information of {where}")
    if len(side) != dtype.itemsize * math.prod(side_shape):
        raise EPRError(f"{where}: {len(side)} bytes of side information, its shape needs "
                       f"{dtype.itemsize * math.prod(side_shape)}")
    string = None
    if spec.coding not in (FLOAT16, RAW):
        string = _span(w.get("string"), data, what=f"the bit string of {where}")
    try:
        return decoded(spec, string, np.frombuffer(side, dtype).reshape(side_shape)).numpy()
    except tf.errors.OpError as error:
        said = re.sub(r"\{\{.*?\}\}|\[Op:.*?\]", "", error.message.splitlines()[-1])
        raise EPRError(one_line(f"{where}: its bit string does not decode "
                                f"({said.strip() or type(error).__name__})", limit=300)
                       ) from None


def _span(span: Any, data: bytes, *, what: str) -> bytes:
    """The bytes `[offset, length]` of the data section: `EPRError` when it is no such
    pair or reaches past the end (a truncated file)."""
    if not (_is_list_of(span, int) and len(span) == 2 and min(span) >= 0):
        raise EPRError(one_line(f"corrupt header: {what} is at {span!r}", limit=200))
    offset, length = span
    if offset + length > len(data):
        raise EPRError(f"truncated: {what} ends at byte {offset + length} of a data section "
                       f"of {len(data)} bytes")
    return data[offset:offset + length]


def _is_list_of(value: Any, kind: type) -> bool:
    """Whether `value` is a JSON list of `kind` (a bool is no int here)."""
    return isinstance(value, list) and all(
        isinstance(item, kind) and not isinstance(item, bool) for item in value)


def _side_dtype(spec: Spec) -> str:
    """How a weight's side information is stored: float32 for a raw weight (a layer EPR
    does not wrap), float16 otherwise (log steps, or a float16-coded weight's values)."""
    return "<f4" if spec.coding == RAW else "<f2"
