"""The coded stream of `model.update`: the device file as a sequence of sections, each
coded with the model that fits its bytes (docs/ota-format.md, "Stream").

One function, `run`, is both the encoder and the (reference) decoder: given a `plan`
(`Section`s and the file's bytes) and an `OTAEncoder` it codes them; given an
`OTADecoder` and no plan it decodes. Either way it rebuilds the file, so the encoder
checks its own output as it goes. The C decoder follows the same steps.

Section kinds:

- `RAW`: flatbuffer structure (and anything else), LZ77 over a window of the last
  2^window_log2 bytes; literals coded with two byte trees, one for the high byte of each
  32-bit field (the flatbuffer is a stream of them), one for the rest (`_lz`).
- `INT8`: an int8 weight buffer in taps × width × height blocks (`I`, `W`, `H`: a conv
  kernel [O, H, W, I], a depthwise kernel [1, H, W, C]; a dense one is `I` = length, W = H
  = 1), coded in one of four modes the encoder picks by trial (`_choose_mode`). The
  predictor: each value from its left, upper and upper-left neighbours in the same
  kernel (a + b − c, as lossless image coders do: EPR's Fourier-coded kernels are smooth
  over the taps), or none (ordinary int8 weights are nearly independent, and the planar
  residual of independent values has 3× their variance). The residual coder: a signed
  number in 4 contexts (first tap, one neighbour, flat and non-flat neighbourhood; right
  for EPR's peaky residuals), or the residual's zigzag byte down the lane-3 literal tree
  (the C decoder has no RAM for one more), adapting ever more slowly (`tree_shift`;
  order 0, it learns any distribution, as xz's literal coder does: right for ordinary,
  near-Gaussian weights).
- `INT32`: little-endian int32 values (biases), each a signed number.
- `SAME` (an update relative to a base file only): the base's bytes at the same offsets,
  copied (two exports of one architecture share most of their flatbuffer structure).
- `FLOAT`: float32 or float16 values (the section's `width`, 4 or 2 bytes): LZ77 as raw
  sections (the taps of a Fourier-coded kernel repeat) with match distances in whole
  values, plus one decision per value boundary for a zero value (EPR kernels are half
  zeros); the sign-and-exponent byte of each value coded with the high-byte tree, the
  two low mantissa bytes of a float32 as direct bits (near random: a tree only learns
  noise and disturbs the shared one).

An update relative to a base file (`base` given to `run`) differs in two places only: a
"same as base?" decision before each section's kind (a 1: a `SAME` section), and two more
int8 modes, `BASE` and `BASE | BYTE_TREE`, whose prediction is the base's value at the
same offset (0 past its end). Without a base the stream is the plain one, bit for bit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from objectives.ota_coder import (
    ERR_CORRUPT,
    Coder,
    CodingError,
    NumberModel,
    OTAEncoder,
    SignedModel,
    byte_tree,
    number,
    probs,
    signed,
)

RAW, INT8, INT32, FLOAT, SAME = 0, 1, 2, 3, 4
KIND_NAMES = {RAW: "raw", INT8: "int8", INT32: "int32", FLOAT: "float", SAME: "same"}
MIN_MATCH, MIN_REP = 3, 2
#: The token of a zero value in a float section.
ZERO_VALUE = (0, -1)
#: Largest section: 2^24 − 1 bytes (the length is a number of at most 24 classes).
LENGTH_CLASSES = 24
MATCH_CLASSES = 16
#: The longest match or repeat a token codes: a repeat's length − 2 and a match's − 3 are
#: numbers of `MATCH_CLASSES` classes, at most 2^(MATCH_CLASSES + 1) − 2.
MAX_MATCH = MIN_REP + (1 << (MATCH_CLASSES + 1)) - 2
#: An int8 section's mode, flags: no prediction; residuals down the byte tree; (in an
#: update relative to a base) the base's value at the same offset as the prediction.
NO_PREDICTION, BYTE_TREE, BASE = 1, 2, 4
INT8_MODES = 4
#: The modes of an update relative to a base: the plain ones and the base-predicted ones.
RELATIVE_MODES = (0, 1, 2, 3, BASE, BASE | BYTE_TREE)
#: The encoder picks a section's mode by coding its first values (at most this many)
#: in each mode.
TRIAL_VALUES = 8192


@dataclass(frozen=True)
class Section:
    """One section of the plan: its `kind`, byte `length` and, for `INT8`, its geometry
    (`taps`, `width`, `height`; for `FLOAT`, `width` is the value's bytes, 2 or 4) and
    `mode` (`NO_PREDICTION` | `BYTE_TREE` flags; None: the encoder picks it by trial);
    for `RAW` and `FLOAT`, the LZ77 tokens the encoder chose."""

    kind: int
    length: int
    taps: int = 1
    width: int = 1
    height: int = 1
    tokens: list[tuple[int, int]] = field(default_factory=list)
    mode: int | None = None


class Models:
    """Every adaptive probability of the stream, at ½ when the stream starts."""

    def __init__(self) -> None:
        self.kind = probs(4)
        self.same = probs(1)
        self.length = NumberModel(LENGTH_CLASSES)
        self.param = self.length  # section parameters share the lengths' model
        self.is_match = probs(16)
        self.is_rep = probs(1)
        self.is_zero = probs(2)
        self.trees = [probs(256), probs(256)]
        self.match_length = NumberModel(MATCH_CLASSES)
        self.rep_length = NumberModel(MATCH_CLASSES)
        self.distance = NumberModel(MATCH_CLASSES)
        self.weights = SignedModel(4, 7)
        self.int32 = SignedModel(1, 31)


def _corrupt(message: str) -> CodingError:
    return CodingError(message, ERR_CORRUPT)


def run(c: Coder, *, length: int, window: int, plan: list[Section] | None = None,
        data: bytes | None = None, base: bytes | None = None) -> bytearray:
    """Codes (`plan` and `data` given) or decodes (neither) a device file of `length`
    bytes whose matches reach back at most `window` bytes; returns the file rebuilt.
    `base`: the file the update is relative to (None: a plain update)."""
    out = bytearray()
    m = Models()
    rep = [1]
    index = 0
    while len(out) < length:
        section = plan[index] if plan is not None else None
        index += 1
        kind = _kind(c, m, None if section is None else section.kind, relative=base is not None)
        n = number(c, m.length, None if section is None else section.length - 1) + 1
        if n > length - len(out):
            raise _corrupt(f"a section of {n} bytes passes the end of the device file")
        tokens = None if section is None else section.tokens
        if kind == SAME:
            assert base is not None
            if len(out) + n > len(base):
                raise _corrupt(f"a section of {n} bytes the same as the base's passes its end")
            out += base[len(out):len(out) + n]
        elif kind == RAW:
            _lz(c, m, out, n, window=window, rep=rep, tokens=tokens, value_bytes=0)
        elif kind == INT8:
            _int8(c, m, out, n, window=window, section=section, data=data, base=base)
        elif kind == INT32:
            _words(c, m, out, n, data=data)
        else:
            width = number(c, m.param, None if section is None else section.width - 1) + 1
            if width not in (2, 4) or n % width:
                raise _corrupt(f"a float section of {n} bytes of {width}-byte values")
            _lz(c, m, out, n, window=window, rep=rep, tokens=tokens, value_bytes=width)
    return out


def _kind(c: Coder, m: Models, value: int | None, *, relative: bool) -> int:
    """A section's kind: in a relative update "same as base?" first, then the 2-bit tree."""
    if relative and c.bit(m.same, 0, None if value is None else int(value == SAME)):
        return SAME
    high = c.bit(m.kind, 1, None if value is None else value >> 1)
    low = c.bit(m.kind, 2 + high, None if value is None else value & 1)
    return (high << 1) | low


def _lz(c: Coder, m: Models, out: bytearray, n: int, *, window: int, rep: list[int],
        tokens: list[tuple[int, int]] | None, value_bytes: int) -> None:
    """LZ77 tokens until `n` bytes are out: a literal (`(0, byte)`), a repeat of the last
    distance (`(-length, 0)`), or a match (`(length, distance)`). A byte's lane is its
    file offset mod 4 in a raw section, its place in the value in a float section (the
    value's last byte, sign and exponent, is lane 3); literals in lane 3 (the high byte of
    a 32-bit field, mostly 0 or 0xff, or a float's exponent) have a byte tree of their
    own (int8 sections in the byte-tree mode use it too), the other lanes share one.
    Whether a match comes is coded by lane, section kind and whether the token before
    was a match. Float sections differ (module docstring): a zero-value decision at each
    value boundary (`ZERO_VALUE`), distances in whole values, the low mantissa bytes as
    direct bits."""
    base = len(out)
    end = base + n
    t = 0
    after_match = 0
    after_zero = 0
    while len(out) < end:
        token = tokens[t] if tokens is not None else None
        t += 1
        if value_bytes:
            offset = (len(out) - base) & (value_bytes - 1)
            if offset == 0 and c.bit(m.is_zero, after_zero,
                                     None if token is None else int(token == ZERO_VALUE)):
                out += bytes(value_bytes)
                after_zero, after_match = 1, 0
                continue
            after_zero = 0
            lane = 4 - value_bytes + offset
            ctx = 4 + lane
        else:
            lane = len(out) & 3
            ctx = lane
        ctx += 8 * after_match
        if not c.bit(m.is_match, ctx, None if token is None else int(token[0] != 0)):
            value = None if token is None else token[1]
            out.append(c.direct(8, value) if value_bytes and lane < 2
                       else byte_tree(c, m.trees[lane == 3], value))
            after_match = 0
            continue
        after_match = 1
        if c.bit(m.is_rep, 0, None if token is None else int(token[0] < 0)):
            size = number(c, m.rep_length, None if token is None else -token[0] - MIN_REP)
            size += MIN_REP
            distance = rep[0]
        else:
            unit = value_bytes or 1
            distance = unit * (number(c, m.distance,
                                      None if token is None else token[1] // unit - 1) + 1)
            size = number(c, m.match_length, None if token is None else token[0] - MIN_MATCH)
            size += MIN_MATCH
        if distance > len(out) or distance > window or size > end - len(out):
            raise _corrupt(f"a match (distance {distance}, length {size}) reaches outside "
                           "the window or the section")
        rep[0] = distance
        start = len(out) - distance
        for j in range(size):
            out.append(out[start + j])


def _int8(c: Coder, m: Models, out: bytearray, n: int, *, window: int,
          section: Section | None, data: bytes | None, base: bytes | None) -> None:
    """An int8 weight buffer: its geometry, its mode (`RELATIVE_MODES` with a base), then
    its values."""
    params = (None, None, None) if section is None else (
        section.taps - 1, section.width - 1, section.height - 1)
    taps, width, height = (number(c, m.param, p) + 1 for p in params)
    if width * height > 1 and taps * (width + 1) > window:
        raise _corrupt(f"an int8 section's kernel ({taps} taps × {width}) does not fit "
                       "the window")
    geometry = (taps, width, height)
    mode = None if section is None else section.mode
    if mode is None and data is not None:
        assert isinstance(c, OTAEncoder)
        mode = _choose_mode(c, m, out, n, geometry=geometry, data=data, base=base)
    mode = number(c, m.param, mode)
    if mode >= INT8_MODES and (base is None or mode not in RELATIVE_MODES):
        raise _corrupt(f"an int8 section in mode {mode}")
    _int8_values(c, m, out, n, geometry=geometry, mode=mode, data=data, base=base)


def _choose_mode(c: OTAEncoder, m: Models, out: bytearray, n: int, *,
                 geometry: tuple[int, int, int], data: bytes, base: bytes | None) -> int:
    """The mode that codes the section's first `TRIAL_VALUES` values in the fewest bits,
    each mode tried from the coder's and models' state now, which are then restored (a
    kernel without neighbours, W = H = 1, has no prediction to choose; the base-predicted
    modes are tried when there is a base)."""
    modes = [0, BYTE_TREE]
    if geometry[1] * geometry[2] > 1:
        modes += [NO_PREDICTION, NO_PREDICTION | BYTE_TREE]
    if base is not None:
        modes += [BASE, BASE | BYTE_TREE]
    mark, models, produced = c.mark(), copy.deepcopy(m.__dict__), len(out)
    start = c.bits()
    costs = []
    for mode in modes:
        _int8_values(c, m, out, min(n, TRIAL_VALUES), geometry=geometry, mode=mode,
                     data=data, base=base)
        costs.append(c.bits() - start)
        c.rewind(mark)
        del out[produced:]
        m.__dict__.update(copy.deepcopy(models))
    return modes[costs.index(min(costs))]


def _int8_values(c: Coder, m: Models, out: bytearray, n: int, *,
                 geometry: tuple[int, int, int], mode: int, data: bytes | None,
                 base: bytes | None = None) -> None:
    """`n` values of an int8 section from its start, coded in `mode` (module docstring,
    docs/ota-format.md "int8 residuals")."""
    taps, width, height = geometry
    from_base = bool(mode & BASE)
    predict = not mode & (NO_PREDICTION | BASE)
    tree = m.trees[1] if mode & BYTE_TREE else None
    row = taps * width
    i = x = y = 0
    for t in range(n):
        j = len(out)
        predicted = ctx = 0
        if from_base:  # (no base: a test's invalid stream, which decoders refuse)
            predicted = _s8(base[j]) if base is not None and j < len(base) else 0
        elif predict and x and y:
            a, b, d = _s8(out[j - taps]), _s8(out[j - row]), _s8(out[j - row - taps])
            predicted = min(127, max(-128, a + b - d))
            ctx = 2 if a == d and b == d else 3
        elif predict and (x or y):
            predicted, ctx = _s8(out[j - (taps if x else row)]), 1
        value = None
        if data is not None:
            value = ((_s8(data[j]) - predicted + 128) & 0xFF) - 128
        if tree is not None:
            z = byte_tree(c, tree, None if value is None else (value << 1) ^ (value >> 7),
                          tree_shift(t))
            residual = (z >> 1) ^ -(z & 1)
        else:
            residual = signed(c, m.weights, ctx, value)
            if not -128 <= residual <= 127:
                raise _corrupt(f"an int8 residual of {residual}")
        out.append((predicted + residual) & 0xFF)
        i += 1
        if i == taps:
            i = 0
            x += 1
            if x == width:
                x = 0
                y += 1
                if y == height:
                    y = 0


def tree_shift(t: int) -> int:
    """How slowly the byte tree adapts at value `t` of an int8 section: fast at first,
    to leave the raw literals' statistics (or the last section's), then slower, to learn
    the distribution closely (measured on plain int8 files: within 0.1% of the best
    fixed rate, 1.6% below the streams' usual 1/16)."""
    return 4 if t < 128 else 5 if t < 2048 else 6


def _s8(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _words(c: Coder, m: Models, out: bytearray, n: int, *, data: bytes | None) -> None:
    """Little-endian int32 values, each a signed number."""
    if n % 4:
        raise _corrupt(f"an int32 section of {n} bytes, not a multiple of 4")
    for _ in range(n // 4):
        j = len(out)
        value = None if data is None else int.from_bytes(data[j:j + 4], "little",
                                                          signed=True)
        decoded = signed(c, m.int32, 0, value)
        if not -(1 << 31) <= decoded < (1 << 31):
            raise _corrupt(f"an int32 value of {decoded}")
        out += decoded.to_bytes(4, "little", signed=True)
