"""The entropy coder of `model.update` (`objectives.ota`), written once for both directions.

A binary adaptive range coder (LZMA's: 32-bit range, carry-propagating encoder) codes
every decision of the stream's grammar; `OTAEncoder` and `OTADecoder` share the grammar
functions below, which take an optional value: encoding passes it and gets it back,
decoding passes nothing and gets the decoded one. The C decoder
(`objectives/c/ota/model_update.c`) implements the same grammar; docs/ota-format.md is
the specification both follow.

Probabilities are 12-bit (`PROB_ONE` = 4096), start at ½ and move 1/16 of the way to each
coded bit (`ADAPT_SHIFT`): fast enough to learn a tensor of a few hundred weights. A
decision may adapt more slowly (a larger `shift`): an int8 section's byte tree does, to
learn the distribution of many nearly independent values closely.
"""

from __future__ import annotations

import math

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
ADAPT_SHIFT = 4
TOP = 1 << 24
MASK32 = 0xFFFFFFFF


class CodingError(ValueError):
    """The coded stream is corrupt or truncated: `code` is the C decoder's error code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


#: Error codes, as `model_update.h` numbers them.
ERR_TRUNCATED, ERR_CORRUPT = -3, -4


def probs(n: int) -> list[int]:
    """`n` adaptive probabilities (of a 0 bit), each at ½."""
    return [PROB_ONE // 2] * n


class OTAEncoder:
    """Range encoder: decisions in, `finish()` gives the bytes."""

    def __init__(self) -> None:
        self.low = 0
        self.range = MASK32
        self.cache = 0
        self.cache_size = 1
        self.out = bytearray()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low > MASK32:
            carry = self.low >> 32
            byte = self.cache
            while True:
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low << 8) & MASK32

    def bit(self, p: list[int], i: int, value: int | None = None,
            shift: int = ADAPT_SHIFT) -> int:
        """Codes `value` (0 or 1) with probability `p[i]`, which then moves 2^−`shift`
        of the way towards it."""
        assert value is not None
        bound = (self.range >> PROB_BITS) * p[i]
        if value:
            self.low += bound
            self.range -= bound
            p[i] -= p[i] >> shift
        else:
            self.range = bound
            p[i] += (PROB_ONE - p[i]) >> shift
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self._shift_low()
        return value

    def direct(self, nbits: int, value: int | None = None) -> int:
        """Codes the `nbits` low bits of `value` at probability ½ each, high bit first."""
        assert value is not None
        for j in range(nbits - 1, -1, -1):
            self.range >>= 1
            if (value >> j) & 1:
                self.low += self.range
            while self.range < TOP:
                self.range = (self.range << 8) & MASK32
                self._shift_low()
        return value

    def mark(self) -> tuple[int, int, int, int, int]:
        """The coder's state, to `rewind` to after a trial encoding."""
        return self.low, self.range, self.cache, self.cache_size, len(self.out)

    def rewind(self, mark: tuple[int, int, int, int, int]) -> None:
        """Back to the state `mark` gave: what was coded since is forgotten."""
        self.low, self.range, self.cache, self.cache_size, size = mark
        del self.out[size:]

    def bits(self) -> float:
        """Bits coded so far, to a fraction of a bit (the bytes out and pending, less
        what the range still holds): trial encodings compare their differences."""
        return 8.0 * (len(self.out) + self.cache_size + 4) - math.log2(self.range)

    def finish(self) -> bytes:
        """The coded bytes (five flush steps, as LZMA's encoder)."""
        for _ in range(5):
            self._shift_low()
        return bytes(self.out)


class OTADecoder:
    """Range decoder over `data`; reading past its end is `ERR_TRUNCATED`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        if len(data) < 5:
            raise CodingError("the coded stream is shorter than 5 bytes", ERR_TRUNCATED)
        if data[0] != 0:
            raise CodingError("the coded stream does not start with a zero byte", ERR_CORRUPT)
        self.code = int.from_bytes(data[1:5], "big")
        self.range = MASK32
        self.pos = 5

    def _next(self) -> int:
        if self.pos >= len(self.data):
            raise CodingError("the update ends before the device file is complete",
                              ERR_TRUNCATED)
        byte = self.data[self.pos]
        self.pos += 1
        return byte

    def bit(self, p: list[int], i: int, value: int | None = None,
            shift: int = ADAPT_SHIFT) -> int:
        bound = (self.range >> PROB_BITS) * p[i]
        if self.code < bound:
            self.range = bound
            p[i] += (PROB_ONE - p[i]) >> shift
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            p[i] -= p[i] >> shift
            bit = 1
        while self.range < TOP:
            self.range = (self.range << 8) & MASK32
            self.code = ((self.code << 8) | self._next()) & MASK32
        return bit

    def direct(self, nbits: int, value: int | None = None) -> int:
        result = 0
        for _ in range(nbits):
            self.range >>= 1
            bit = 1 if self.code >= self.range else 0
            if bit:
                self.code -= self.range
            result = (result << 1) | bit
            while self.range < TOP:
                self.range = (self.range << 8) & MASK32
                self.code = ((self.code << 8) | self._next()) & MASK32
        return result


Coder = OTAEncoder | OTADecoder


class NumberModel:
    """An adaptive Elias-gamma code for integers 0 … 2^`max_class` − 1: the class k (bit
    length of n + 1, less one) in unary with one probability per position, then the bit
    below the leading one adaptive per class, the remaining k − 1 bits at ½."""

    def __init__(self, max_class: int) -> None:
        self.max_class = max_class
        self.unary = probs(max_class)
        self.top = probs(max_class + 1)


def number(c: Coder, m: NumberModel, value: int | None = None) -> int:
    """Codes the unsigned `value` with `m` (`NumberModel`); a class above the model's
    maximum is `ERR_CORRUPT`."""
    k = None if value is None else (value + 1).bit_length() - 1
    if k is not None and k > m.max_class:
        raise ValueError(f"{value} is too large for a {m.max_class}-class number")
    cls = 0
    while cls < m.max_class and c.bit(m.unary, cls, None if k is None else int(cls < k)):
        cls += 1
    if cls == 0:
        return 0
    rest = None if value is None else value + 1 - (1 << cls)
    top = c.bit(m.top, cls, None if rest is None else (rest >> (cls - 1)) & 1)
    low = c.direct(cls - 1, None if rest is None else rest & ((1 << (cls - 1)) - 1))
    return (1 << cls) - 1 + (top << (cls - 1)) + low


class SignedModel:
    """A signed integer: is it zero, its sign, its magnitude − 1 (`NumberModel`), each
    with its own probabilities in each of `contexts` contexts."""

    def __init__(self, contexts: int, max_class: int) -> None:
        self.zero = probs(contexts)
        self.sign = probs(contexts)
        self.magnitude = [NumberModel(max_class) for _ in range(contexts)]


def signed(c: Coder, m: SignedModel, ctx: int, value: int | None = None) -> int:
    """Codes the signed `value` in context `ctx` of `m`."""
    if not c.bit(m.zero, ctx, None if value is None else int(value != 0)):
        return 0
    negative = c.bit(m.sign, ctx, None if value is None else int(value < 0))
    magnitude = number(c, m.magnitude[ctx], None if value is None else abs(value) - 1) + 1
    return -magnitude if negative else magnitude


def byte_tree(c: Coder, p: list[int], value: int | None = None,
              shift: int = ADAPT_SHIFT) -> int:
    """Codes one byte, MSB first, with a 256-entry binary tree of probabilities `p`
    (index 1–255) adapting by 2^−`shift`."""
    node = 1
    bit = c.bit
    for j in range(7, -1, -1):
        node = (node << 1) | bit(p, node, None if value is None else (value >> j) & 1,
                                 shift)
    return node & 0xFF
