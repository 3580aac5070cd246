"""Turns a family's layer specs and a `Candidate` into a plain Keras model.

Only the parent is built from the specs: the family at width 1, unfactorized. A candidate
is that parent rewritten by `objectives.rewrite` — the one implementation of width and
factorization, the same that rewrites a user's model — so what `inspect` shows is what the
search trains. The width multiplier scales every conv's filters and every hidden dense
layer's units (MobileNet's α; seeds 000/001); the output layer keeps the class count. A
conv named in `candidate.factorize` becomes an n×1 conv followed by a 1×n conv with the
same m filters (seed 002), both with the layer's activation as in the seed's notebook
(`rewrite.transform(activation_between=True)`). A Keras application family (one nested
model the rewriter cannot open) is built at α = width by Keras itself. The model outputs
logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.candidate import Candidate, InvalidCandidateError
from search_spaces.families import ConvSpec, DenseSpec, Family, FlattenSpec, PoolSpec

if TYPE_CHECKING:
    from tensorflow import keras


def check_factorize(family: Family, factorize: tuple[str, ...]) -> None:
    """Raises `InvalidCandidateError` for a layer that does not exist or is not n×n, n>1."""
    if factorize and family.application is not None:
        raise InvalidCandidateError(
            f"family {family.name!r} is built by Keras and has no factorizable layers"
        )
    convs = {s.name: s for s in family.layers if isinstance(s, ConvSpec)}
    for name in factorize:
        spec = convs.get(name)
        if spec is None:
            choices = [n for n, s in convs.items() if s.kernel > 1]
            raise InvalidCandidateError(
                f"family {family.name!r} has no conv layer {name!r} to factorize; "
                f"choose from {', '.join(choices) or 'none'}"
            )
        if spec.kernel <= 1:
            raise InvalidCandidateError(
                f"layer {name!r} is a {spec.kernel}x{spec.kernel} conv; only n×n with n > 1 "
                "can be factorized"
            )


def build_model(
    *,
    family: Family,
    candidate: Candidate,
    input_shape: tuple[int, int, int],
    num_classes: int,
    seed: int | None = None,
) -> keras.Model:
    """A fresh, untrained Keras model of `family` shaped by `candidate`: the family's
    parent (`build_parent`), rewritten to the candidate's width and factorization."""
    check_factorize(family, candidate.factorize)
    if family.application is not None:
        return build_parent(family, input_shape=input_shape, num_classes=num_classes,
                            seed=seed, alpha=candidate.width)
    parent = build_parent(family, input_shape=input_shape, num_classes=num_classes, seed=seed)
    if candidate.width == 1.0 and not candidate.factorize:
        return parent
    from objectives import rewrite

    return rewrite.transform(rewrite.analyze(parent, trained=False), width=candidate.width,
                             factorize=candidate.factorize, inherit=False, seed=seed,
                             activation_between=True)


def build_parent(family: Family, *, input_shape: tuple[int, int, int], num_classes: int,
                 seed: int | None = None, alpha: float = 1.0) -> keras.Model:
    """The family as its specs say, at width 1 and unfactorized: what a search rewrites.
    `alpha` is a Keras application's own width multiplier (spec families take 1 only)."""
    import tensorflow as tf

    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = inputs
    height, width_px = input_shape[:2]
    if min(height, width_px) < family.min_input_size:
        side = family.min_input_size
        x = tf.keras.layers.Resizing(max(height, side), max(width_px, side), name="resize")(x)
    if family.application is not None:
        return _build_application(family, alpha, inputs, x, num_classes)
    if alpha != 1.0:
        raise ValueError(f"family {family.name!r} is built at width 1 and rewritten; "
                         f"alpha {alpha} is for Keras applications")
    for spec in family.layers:
        x = _apply(spec, x, num_classes)
    return tf.keras.Model(inputs, x, name=f"{family.name}")


def _apply(spec, x, num_classes: int):
    from tensorflow.keras import layers

    if isinstance(spec, ConvSpec):
        return layers.Conv2D(
            spec.filters, spec.kernel, strides=spec.strides, padding=spec.padding,
            activation=spec.activation, name=spec.name,
        )(x)
    if isinstance(spec, PoolSpec):
        return layers.MaxPooling2D(spec.size, name=spec.name)(x)
    if isinstance(spec, FlattenSpec):
        return layers.Flatten(name=spec.name)(x)
    if isinstance(spec, DenseSpec):
        units = num_classes if spec.units is None else spec.units
        return layers.Dense(units, activation=spec.activation, name=spec.name)(x)
    raise TypeError(f"unknown layer spec {spec!r}")


def _build_application(family: Family, alpha: float, inputs, x, num_classes: int):
    import tensorflow as tf

    constructor = getattr(tf.keras.applications, family.application)
    backbone = constructor(
        input_shape=tuple(int(d) for d in x.shape[1:]),
        alpha=alpha,
        include_top=False,
        weights=None,
        pooling="avg",
    )
    features = backbone(x)
    outputs = tf.keras.layers.Dense(num_classes, name="output")(features)
    return tf.keras.Model(inputs, outputs, name=family.name)
