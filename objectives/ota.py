"""`model.update`: the bytes a device receives to rebuild its TFLite file bit for bit.

`encode_update(device_file)` is a pure function, bytes to bytes, that a search trial or
`export --ota` calls; `ota_bytes` is its length, the figure a model card names.
`decode_update` is the reference decoder the tests check the C decoder
(`objectives/c/ota/model_update.c`, what a microcontroller runs) against. The format is
docs/ota-format.md:

    header (48 bytes, little-endian): b"MUPD" | u8 version | u8 window_log2 |
    u16 work buffer bytes | u32 device file length | u32 coded stream length |
    32 bytes SHA-256 of the device file
    [version 4, an update relative to a base file: u32 base length | 32 bytes SHA-256
    of the base]
    coded stream: one range-coded stream of sections (`objectives.ota_stream`)

An update relative to a base (`encode_update(new, base=old)`: the device file a device
already holds, an earlier export of the same architecture) also copies runs of the base's
bytes at the same offsets and predicts int8 weights by the base's; a device refuses it
unless it holds that very base (length and SHA-256). A plain update is version 3, as it
was before relative updates existed.

The sections follow the flatbuffer (`objectives.flatbuffer`): each int8, int32 and float32
weight buffer is a section of its own kind, coded with a model of its statistics; the rest
of the file (tables, names, quantization parameters) is LZ77-coded. The encoder reads the
flatbuffer only to choose sections; the decoder knows nothing of TFLite, so any file is
coded correctly (a file that does not parse is one raw section).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from definitions.errors import CheckFailed
from objectives.ota_coder import (
    ERR_CORRUPT,
    ERR_TRUNCATED,
    CodingError,
    OTADecoder,
    OTAEncoder,
)
from objectives.ota_stream import (
    FLOAT,
    INT8,
    INT32,
    KIND_NAMES,
    LENGTH_CLASSES,
    MAX_MATCH,
    MIN_MATCH,
    MIN_REP,
    RAW,
    SAME,
    ZERO_VALUE,
    Section,
    run,
)

MAGIC = b"MUPD"
#: A plain update's version; an update relative to a base file is `RELATIVE_VERSION`.
FORMAT_VERSION = 3
RELATIVE_VERSION = 4
HEADER = struct.Struct("<4sBBHII32s")
HEADER_BYTES = HEADER.size
#: What follows the header in a relative update: the base's length and SHA-256.
BASE_HEADER = struct.Struct("<I32s")
RELATIVE_HEADER_BYTES = HEADER_BYTES + BASE_HEADER.size
#: Runs of at least this many bytes equal to the base's at the same offsets are copied
#: (a `SAME` section) rather than coded.
MIN_SAME = 16
#: The LZ77 window and output chunk: 2^10 bytes of history, written out whole as it fills.
DEFAULT_WINDOW_LOG2 = 10
WINDOW_LOG2_RANGE = (8, 15)
#: The decoder's state besides the window (`sizeof(mu_state)` less the window, on any
#: platform: model_update.c refuses to compile otherwise, tests/objectives/test_ota.py
#: measures it on x86-64 and a 32-bit target), in bytes.
STATE_BYTES = 2048
ERR_BAD_HEADER, ERR_VERSION, ERR_CHECKSUM, ERR_BASE = -1, -2, -5, -8
MAX_SECTION = (1 << LENGTH_CLASSES) - 1
#: Weight buffers shorter than this stay in the raw sections around them.
MIN_TYPED = 32
C_SOURCES = Path(__file__).parent / "c" / "ota"
DECODER_FILES = ("model_update.c", "model_update.h", "ota_decode.c")
UPDATE_FILE = "model.update"


class UpdateError(CheckFailed):
    """An update the decoder refuses; `code` is the C decoder's error code for it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Header:
    """The bytes before the coded stream: 48, or 84 in an update relative to a base
    (`base_length` > 0)."""

    window_log2: int
    work_bytes: int
    device_length: int
    stream_length: int
    sha256: bytes
    base_length: int = 0
    base_sha256: bytes = bytes(32)

    @property
    def relative(self) -> bool:
        return self.base_length > 0

    @property
    def size(self) -> int:
        return RELATIVE_HEADER_BYTES if self.relative else HEADER_BYTES

    def pack(self) -> bytes:
        version = RELATIVE_VERSION if self.relative else FORMAT_VERSION
        head = HEADER.pack(MAGIC, version, self.window_log2, self.work_bytes,
                           self.device_length, self.stream_length, self.sha256)
        if not self.relative:
            return head
        return head + BASE_HEADER.pack(self.base_length, self.base_sha256)


def work_bytes(window_log2: int) -> int:
    """The work buffer the decoder needs for a window of 2^`window_log2` bytes."""
    return STATE_BYTES + (1 << window_log2)


def encode_update(device_file: bytes, *, base: bytes | None = None,
                  window_log2: int = DEFAULT_WINDOW_LOG2, verify: bool = False) -> bytes:
    """The update that rebuilds `device_file` (any bytes; a TFLite flatbuffer is coded by
    its sections); with `base` (the device file a device holds), an update relative to
    it, which only a device holding that base decodes. `verify` decodes it again with the
    reference decoder (the encoder rebuilds the file as it codes and checks that anyway)."""
    data = bytes(device_file)
    if not WINDOW_LOG2_RANGE[0] <= window_log2 <= WINDOW_LOG2_RANGE[1]:
        raise ValueError(f"window_log2 must be in {WINDOW_LOG2_RANGE}, not {window_log2}")
    if not data:
        raise ValueError("cannot make an update of an empty device file")
    if base is not None and not base:
        raise ValueError("cannot make an update relative to an empty base file")
    base = None if base is None else bytes(base)
    window = 1 << window_log2
    plan = plan_sections(data, window=window, base=base)
    encoder = OTAEncoder()
    rebuilt = run(encoder, length=len(data), window=window, plan=plan, data=data, base=base)
    if rebuilt != data:
        raise AssertionError("the update's encoder did not rebuild the device file")
    stream = encoder.finish()
    header = Header(window_log2=window_log2, work_bytes=work_bytes(window_log2),
                    device_length=len(data), stream_length=len(stream),
                    sha256=hashlib.sha256(data).digest(),
                    base_length=0 if base is None else len(base),
                    base_sha256=bytes(32) if base is None else hashlib.sha256(base).digest())
    update = header.pack() + stream
    if verify and decode_update(update, base=base) != data:
        raise AssertionError("the update does not decode to the device file")
    return update


def ota_bytes(device_file: bytes) -> int:
    """The bytes a device receives for `device_file`: `len(encode_update(...))`."""
    return len(encode_update(device_file))


def read_header(update: bytes) -> Header:
    """The header of `update`, checked as the C decoder checks it (`UpdateError`)."""
    if len(update) < HEADER_BYTES:
        raise UpdateError(f"the update has {len(update)} bytes, fewer than its "
                          f"{HEADER_BYTES}-byte header", ERR_TRUNCATED)
    magic, version, window_log2, work, length, stream, digest = HEADER.unpack_from(update)
    if magic != MAGIC:
        raise UpdateError(f"not a model update (magic {magic!r}, not {MAGIC!r})",
                          ERR_BAD_HEADER)
    if version not in (FORMAT_VERSION, RELATIVE_VERSION):
        raise UpdateError(f"format version {version}; this decoder reads versions "
                          f"{FORMAT_VERSION} and {RELATIVE_VERSION}", ERR_VERSION)
    base_length, base_digest = 0, bytes(32)
    if version == RELATIVE_VERSION:
        if len(update) < RELATIVE_HEADER_BYTES:
            raise UpdateError(f"the update has {len(update)} bytes, fewer than its "
                              f"{RELATIVE_HEADER_BYTES}-byte header", ERR_TRUNCATED)
        base_length, base_digest = BASE_HEADER.unpack_from(update, HEADER_BYTES)
    low, high = WINDOW_LOG2_RANGE
    if (not low <= window_log2 <= high or work != work_bytes(window_log2) or length == 0
            or stream < 5 or (version == RELATIVE_VERSION and base_length == 0)):
        raise UpdateError("the header's window, work buffer or length is invalid",
                          ERR_BAD_HEADER)
    return Header(window_log2=window_log2, work_bytes=work, device_length=length,
                  stream_length=stream, sha256=digest, base_length=base_length,
                  base_sha256=base_digest)


def decode_update(update: bytes, base: bytes | None = None) -> bytes:
    """The device file `update` rebuilds (from `base`, the file a device holds, for an
    update relative to one; ignored for a plain update); `UpdateError` (with the C
    decoder's code) for an update that is truncated, corrupt, whose result fails its
    SHA-256, or relative to another base than `base` (`ERR_BASE`)."""
    header = read_header(update)
    if header.relative:
        _check_base(header, base)
    stream = update[header.size:]
    if len(stream) < header.stream_length:
        raise UpdateError(f"the update is truncated: {len(stream)} of "
                          f"{header.stream_length} coded bytes", ERR_TRUNCATED)
    if len(stream) > header.stream_length:
        raise UpdateError("the update has bytes after its coded stream", ERR_CORRUPT)
    try:
        decoder = OTADecoder(stream)
        data = run(decoder, length=header.device_length, window=1 << header.window_log2,
                   base=bytes(base) if header.relative and base is not None else None)
    except CodingError as error:
        raise UpdateError(str(error), error.code) from None
    if decoder.pos != len(stream):
        raise UpdateError("the coded stream ends before the update does", ERR_CORRUPT)
    if hashlib.sha256(data).digest() != header.sha256:
        raise UpdateError("the decoded file's SHA-256 is not the header's", ERR_CHECKSUM)
    return bytes(data)


def _check_base(header: Header, base: bytes | None) -> None:
    """`base` is the file `header` names (length and SHA-256); `UpdateError` otherwise."""
    if base is None:
        raise UpdateError("the update is relative to a base file, and none was given",
                          ERR_BASE)
    if len(base) != header.base_length or hashlib.sha256(base).digest() != header.base_sha256:
        raise UpdateError(f"the update is relative to another base file ({header.base_length:,} "
                          f"bytes, SHA-256 {header.base_sha256.hex()[:16]}…)", ERR_BASE)


def plan_sections(data: bytes, *, window: int, base: bytes | None = None) -> list[Section]:
    """The sections `data` is coded in: its weight buffers (`weight_spans`) each in a
    section of its kind, raw sections between them with their LZ77 tokens; with a `base`,
    a weight buffer equal to the base's at its offset is not one, and runs of bytes equal
    to the base's are `SAME` sections."""
    sections: list[Section] = []
    position = 0
    rep = [1]
    for start, end, kind, geometry in weight_spans(data, window=window):
        if base is not None and data[start:end] == base[start:end]:
            continue
        sections += _raw_sections(data, position, start, window=window, rep=rep, base=base)
        tokens = (lz77_tokens(data, start, end, window=window, rep=rep,
                              value_bytes=geometry[1]) if kind == FLOAT else [])
        sections.append(Section(kind=kind, length=end - start, taps=geometry[0],
                                width=geometry[1], height=geometry[2], tokens=tokens))
        position = end
    sections += _raw_sections(data, position, len(data), window=window, rep=rep, base=base)
    return sections


def describe(update: bytes) -> dict[str, object]:
    """What an update holds, for a model card: its bytes, window and work buffer."""
    header = read_header(update)
    return {"ota_bytes": len(update), "device_bytes": header.device_length,
            "window_bytes": 1 << header.window_log2, "work_buffer_bytes": header.work_bytes,
            "format_version": RELATIVE_VERSION if header.relative else FORMAT_VERSION}


def section_summary(data: bytes, *, window_log2: int = DEFAULT_WINDOW_LOG2
                    ) -> dict[str, int]:
    """Bytes of `data` by section kind (`raw`, `int8`, …), for reports and tests."""
    totals = dict.fromkeys(KIND_NAMES.values(), 0)
    for section in plan_sections(data, window=1 << window_log2):
        totals[KIND_NAMES[section.kind]] += section.length
    return totals


def weight_spans(data: bytes, *, window: int
                 ) -> list[tuple[int, int, int, tuple[int, int, int]]]:
    """(start, end, kind, (taps, width, height)) of each weight buffer of the flatbuffer
    `data` worth a section of its own, in file order; none when `data` does not parse."""
    from tflite.TensorType import TensorType

    from objectives.flatbuffer import constant_tensors, parse

    kinds = {TensorType.INT8: (INT8, 1), TensorType.INT32: (INT32, 4),
             TensorType.FLOAT32: (FLOAT, 4), TensorType.FLOAT16: (FLOAT, 2)}
    try:
        model = parse(data).model
        constants = list(constant_tensors(model))
    except Exception:  # any file is coded: one that does not parse is one raw section
        return []
    spans: dict[int, tuple[int, int, int, tuple[int, int, int]]] = {}
    for constant in constants:
        kind, value_bytes = kinds.get(constant.tensor.Type(), (None, 0))
        size = len(constant.data)
        if kind is None or constant.buffer in spans or not MIN_TYPED <= size <= MAX_SECTION:
            continue
        start = _buffer_offset(model, constant.buffer)
        if start is None or data[start:start + size] != constant.data:
            continue
        if size % value_bytes:
            continue
        shape = [int(d) for d in constant.tensor.ShapeAsNumpy()] if (
            constant.tensor.ShapeLength()) else [size]
        geometry = (_geometry(shape, size, window) if kind == INT8
                    else (1, value_bytes, 1))
        spans[constant.buffer] = (start, start + size, kind, geometry)
    ordered = sorted(spans.values())
    return [span for k, span in enumerate(ordered)
            if k == 0 or span[0] >= ordered[k - 1][1]]


def _geometry(shape: list[int], size: int, window: int) -> tuple[int, int, int]:
    """(taps, width, height) of an int8 kernel: [O, H, W, I] or [1, H, W, C] has H × W
    taps of I values; anything else, or a kernel whose neighbours lie beyond the window,
    is one block of `size` values (no prediction)."""
    if len(shape) == 4 and shape[1] * shape[2] > 1:
        height, width, taps = shape[1], shape[2], shape[3]
        if taps * (width + 1) <= window and max(taps, width, height) < (1 << 16):
            return taps, width, height
    return min(size, (1 << 16) - 1), 1, 1


def _buffer_offset(model: object, index: int) -> int | None:
    """Where buffer `index`'s data vector starts in the file (flatbuffers' accessor)."""
    buffer = model.Buffers(index)  # type: ignore[attr-defined]
    table = buffer._tab
    offset = table.Offset(4)
    return table.Vector(offset) if offset else None


def _raw_sections(data: bytes, start: int, end: int, *, window: int, rep: list[int],
                  base: bytes | None = None) -> list[Section]:
    """`data[start:end]` as raw sections of at most `MAX_SECTION` bytes with LZ77 tokens
    (matches may reach back into earlier sections, within the window); `rep` holds the
    last match distance, which the stream carries from one raw section to the next. With
    a `base`, its runs equal to the base's (`_same_runs`) are `SAME` sections."""
    sections: list[Section] = []
    if base is not None:
        for same_start, same_end in _same_runs(data, base, start, end):
            sections += _raw_sections(data, start, same_start, window=window, rep=rep)
            sections += [Section(kind=SAME, length=min(MAX_SECTION, same_end - p))
                         for p in range(same_start, same_end, MAX_SECTION)]
            start = same_end
    while start < end:
        stop = min(end, start + MAX_SECTION)
        sections.append(Section(kind=RAW, length=stop - start,
                                tokens=lz77_tokens(data, start, stop, window=window,
                                                   rep=rep)))
        start = stop
    return sections


def _same_runs(data: bytes, base: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each run of at least `MIN_SAME` bytes of `data[start:end]` equal to
    `base`'s at the same offsets, in order."""
    import numpy as np

    stop = min(end, len(base))
    if stop - start < MIN_SAME:
        return []
    equal = (np.frombuffer(data, np.uint8, stop - start, start)
             == np.frombuffer(base, np.uint8, stop - start, start))
    edges = np.flatnonzero(np.diff(np.concatenate(([0], equal.view(np.int8), [0]))))
    return [(start + int(a), start + int(b)) for a, b in zip(edges[0::2], edges[1::2],
                                                              strict=True)
            if b - a >= MIN_SAME]


def lz77_tokens(data: bytes, start: int, end: int, *, window: int, rep: list[int],
                value_bytes: int = 0, chain: int = 48) -> list[tuple[int, int]]:
    """Greedy LZ77 with one step of lazy matching over `data[start:end]`: literals
    `(0, byte)`, repeats of the last distance `(-length, 0)`, matches `(length, distance)`
    (distance ≤ `window`, within `data[:end]`) and, in a float section of `value_bytes`
    values, zero values `ZERO_VALUE` (new match distances there are multiples of
    `value_bytes`). `rep[0]`, the last distance, is read and updated."""
    heads: dict[bytes, list[int]] = {}
    for p in range(max(0, start - window), start):
        heads.setdefault(data[p:p + 3], []).append(p)
    tokens: list[tuple[int, int]] = []
    zero = bytes(value_bytes)
    p = start
    while p < end:
        best = _best_match(data, p, end, heads, window=window, chain=chain, rep=rep[0],
                           align=value_bytes)
        if (value_bytes and (p - start) % value_bytes == 0
                and data[p:p + value_bytes] == zero and best[0] < 4 * value_bytes):
            tokens.append(ZERO_VALUE)
            size = value_bytes
        else:
            size = _lz_token(data, p, end, heads, best, tokens, window=window, chain=chain,
                             rep=rep, align=value_bytes)
        for q in range(p, p + size):
            heads.setdefault(data[q:q + 3], []).append(q)
        p += size
    return tokens


def _lz_token(data: bytes, p: int, end: int, heads: dict[bytes, list[int]],
              best: tuple[int, int], tokens: list[tuple[int, int]], *, window: int,
              chain: int, rep: list[int], align: int) -> int:
    """Appends the literal or match `best` (or a literal when a match one byte later is
    longer) to `tokens`; returns the bytes it covers."""
    if best[0] and p + 1 < end:
        later = _best_match(data, p + 1, end, heads, window=window, chain=chain,
                            rep=rep[0], align=align)
        if later[0] > best[0] + 1:
            best = (0, 0)
    size, distance = best
    if size == 0:
        tokens.append((0, data[p]))
        return 1
    if distance == rep[0]:
        tokens.append((-size, 0))
    else:
        tokens.append((size, distance))
        rep[0] = distance
    return size


def _best_match(data: bytes, p: int, end: int, heads: dict[bytes, list[int]], *,
                window: int, chain: int, rep: int, align: int = 0) -> tuple[int, int]:
    """(length, distance) of the longest match at `p` worth coding, or (0, 0); with
    `align`, a new distance must be a multiple of it (a float section's)."""
    best = (0, 0)
    if rep <= p:
        size = _match_length(data, p - rep, p, end)
        if size >= MIN_REP:
            best = (size, rep)
    for q in reversed(heads.get(data[p:p + 3], [])[-chain:]):
        distance = p - q
        if distance > window:
            break
        if align and distance % align:
            continue
        size = _match_length(data, q, p, end)
        if size >= MIN_MATCH and size > best[0] + (1 if best[1] == rep else 0):
            best = (size, distance)
    return best


def _match_length(data: bytes, q: int, p: int, end: int) -> int:
    """How many bytes from `p` (before `end`) repeat those from `q`, at most `MAX_MATCH`
    (a longer run of equal bytes is several matches: a dead layer's zeros run for
    hundreds of kilobytes)."""
    size = 0
    limit = min(end - p, MAX_MATCH)
    while size < limit and data[q + size] == data[p + size]:
        size += 1
    return size


def write_decoder_sources(out: Path) -> list[str]:
    """Copies the C decoder and host program into `out`; returns their names."""
    from objectives.files import write_atomically

    for name in DECODER_FILES:
        write_atomically(Path(out) / name, (C_SOURCES / name).read_bytes())
    return list(DECODER_FILES)


__all__ = ["ERR_BASE", "ERR_CORRUPT", "ERR_TRUNCATED", "Header", "UpdateError", "decode_update",
           "encode_update", "ota_bytes", "plan_sections", "read_header"]
