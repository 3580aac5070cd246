"""The factorization rule of seed 002: when is n×1 then 1×n cheaper than n×n?

A conv layer with m filters of n×n over c input channels has

    P0 = m(n²c + 1)                (weights n·n·c·m, biases m)

parameters; replaced by an n×1 layer and a 1×n layer of m filters each it has

    P1 = m(nc + nm + 2)            (n·c·m + n·m·m weights, 2m biases).

P1 < P0 exactly when n² c + 1 > nc + nm + 2, i.e. n > 1 + m/c + 1/(cn); dropping the
small last term gives the rule of thumb n > 1 + m/c. The search offers a layer in
`guided` mode when the exact inequality holds at the candidate's width; `unguided`
offers every conv with n > 1, so the benefit of the rule can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from definitions.vocabulary import FACTORIZE_MODES
from search_spaces.families import ConvSpec, Family, scaled


def square_params(*, n: int, m: int, c: int) -> int:
    """P0: parameters of m filters of n×n over c channels, with biases."""
    return m * (n * n * c + 1)


def factorized_params(*, n: int, m: int, c: int) -> int:
    """P1: parameters of n×1 (c → m) followed by 1×n (m → m), with biases."""
    return m * (n * c + n * m + 2)


def is_offered(*, n: int, m: int, c: int, mode: str) -> bool:
    """Whether the search offers an n×n conv of m filters over c channels for factorizing:
    in `guided` mode where n×1 + 1×n has fewer parameters (P1 < P0, the exact test), in
    `unguided` mode every n > 1 conv. The one decision, for the built-in families' rule
    table (`offered_layers`) and for any Keras graph (`objectives.rewrite`)."""
    if mode not in FACTORIZE_MODES:
        raise ValueError(f"unknown factorize mode {mode!r}; choose one of {FACTORIZE_MODES}")
    return n > 1 and (mode == "unguided"
                      or factorized_params(n=n, m=m, c=c) < square_params(n=n, m=m, c=c))


def rule_of_thumb(*, n: int, m: int, c: int) -> bool:
    """Seed 002's approximate rule: replacing pays when n > 1 + m/c."""
    return n > 1 + m / c


@dataclass(frozen=True)
class ConvVerdict:
    """One row of the rule table: a conv layer's shape and whether factorizing pays."""

    name: str
    n: int
    m: int
    c: int
    p0: int
    p1: int

    @property
    def rule(self) -> bool:
        """The rule of thumb n > 1 + m/c."""
        return rule_of_thumb(n=self.n, m=self.m, c=self.c)

    @property
    def pays(self) -> bool:
        """The exact test P1 < P0."""
        return self.p1 < self.p0


def conv_table(
    family: Family, *, input_shape: tuple[int, int, int], width: float
) -> list[ConvVerdict]:
    """The n > 1 conv layers of a spec family at `width`, with their P0, P1 and verdicts.

    Families built by Keras applications have no spec layers and give an empty table
    (their depthwise convs are not factorized; `inspect` reads their built model instead).
    """
    channels = input_shape[-1]
    rows: list[ConvVerdict] = []
    for spec in family.layers:
        if isinstance(spec, ConvSpec):
            m = scaled(spec.filters, width)
            if spec.kernel > 1:
                rows.append(
                    ConvVerdict(
                        name=spec.name,
                        n=spec.kernel,
                        m=m,
                        c=channels,
                        p0=square_params(n=spec.kernel, m=m, c=channels),
                        p1=factorized_params(n=spec.kernel, m=m, c=channels),
                    )
                )
            channels = m
    return rows


def offered_layers(
    family: Family, *, input_shape: tuple[int, int, int], width: float, mode: str
) -> tuple[str, ...]:
    """Names of the layers the search may factorize: those that pay (`guided`) or all
    (`is_offered`)."""
    table = conv_table(family, input_shape=input_shape, width=width)
    return tuple(row.name for row in table if is_offered(n=row.n, m=row.m, c=row.c, mode=mode))
