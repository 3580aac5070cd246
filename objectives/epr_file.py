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
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from objectives.epr_architecture import assemble, refuse_code
from objectives.epr_layers import CompressedModel
from objectives.epr_maths import FLOAT16, RAW, Spec, decoded
from objectives.errors import EPRError
from objectives.files import write_atomically

FORMAT_MAGIC = b"EPRK"
#: Version 2 names each weight's side information `side` (version 1 called it `half`,
#: although a raw weight's is float32); `load` reads both.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_SIDE_KEY = {1: "half", 2: "side"}
_HEAD = struct.Struct("<4sBI")


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
    """`load("model.epr")` → a plain, decoded Keras model ready for `predict`."""
    blob = Path(path).read_bytes()
    if len(blob) < _HEAD.size:
        raise EPRError(f"{path}: too short to be an EPR file")
    magic, version, size = _HEAD.unpack_from(blob)
    if magic != FORMAT_MAGIC or version not in READABLE_VERSIONS:
        raise EPRError(f"{path}: not an EPR file of version "
                       f"{' or '.join(map(str, READABLE_VERSIONS))}")
    start = _HEAD.size + size
    try:
        header = json.loads(zlib.decompress(blob[_HEAD.size:start]))
    except (zlib.error, ValueError) as error:
        raise EPRError(f"{path}: corrupt header: {error}") from error
    refuse_code(path, header.get("architecture"))
    data = blob[start:]

    def get(span: list[int]) -> bytes:
        return data[span[0]:span[0] + span[1]]

    layers = []
    for entry in header["layers"]:
        coded = []
        for w in entry["weights"]:
            spec = Spec(w["name"], tuple(w["shape"]), w["coding"])
            side = np.frombuffer(get(w[_SIDE_KEY[version]]), dtype=_side_dtype(spec)).reshape(
                spec.shape if spec.coding in (FLOAT16, RAW) else spec.log_step_shape)
            coded.append((spec, None if w["string"] is None else get(w["string"]), side))
        layers.append((tuple(entry["path"]), [decoded(spec, string, side).numpy()
                                              for spec, string, side in coded]))
    return assemble(header["architecture"], layers)


def _side_dtype(spec: Spec) -> str:
    """How a weight's side information is stored: float32 for a raw weight (a layer EPR
    does not wrap), float16 otherwise (log steps, or a float16-coded weight's values)."""
    return "<f4" if spec.coding == RAW else "<f2"
