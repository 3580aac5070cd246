"""Turns a family's layer specs and a `Candidate` into a plain Keras model.

The width multiplier scales every conv's filters and every hidden dense layer's units
(MobileNet's α; seeds 000/001); the output layer keeps the class count. A conv named in
`candidate.factorize` is built as an n×1 conv followed by a 1×n conv with the same m
filters (seed 002): the first takes the vertical stride, the second the horizontal one,
and both use the layer's padding, so the output shape equals the n×n layer's. Both get
the layer's activation, as in the seed's notebook. The model outputs logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.candidate import Candidate, InvalidCandidateError
from search_spaces.families import ConvSpec, DenseSpec, Family, FlattenSpec, PoolSpec, scaled

if TYPE_CHECKING:
    from tensorflow import keras


def factorized_names(name: str, n: int) -> tuple[str, str]:
    """Keras layer names of the n×1 and 1×n halves of conv layer `name`."""
    return f"{name}_{n}x1", f"{name}_1x{n}"


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
    """A fresh, untrained Keras model of `family` shaped by `candidate`."""
    import tensorflow as tf

    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    check_factorize(family, candidate.factorize)
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = inputs
    height, width_px = input_shape[:2]
    if min(height, width_px) < family.min_input_size:
        side = family.min_input_size
        x = tf.keras.layers.Resizing(max(height, side), max(width_px, side), name="resize")(x)
    if family.application is not None:
        return _build_application(family, candidate, inputs, x, num_classes)
    for spec in family.layers:
        x = _apply(spec, x, candidate, num_classes)
    return tf.keras.Model(inputs, x, name=f"{family.name}")


def _apply(spec, x, candidate: Candidate, num_classes: int):
    from tensorflow.keras import layers

    if isinstance(spec, ConvSpec):
        m = scaled(spec.filters, candidate.width)
        n = spec.kernel
        if spec.name in candidate.factorize:
            first, second = factorized_names(spec.name, n)
            x = layers.Conv2D(
                m, (n, 1), strides=(spec.strides, 1), padding=spec.padding,
                activation=spec.activation, name=first,
            )(x)
            return layers.Conv2D(
                m, (1, n), strides=(1, spec.strides), padding=spec.padding,
                activation=spec.activation, name=second,
            )(x)
        return layers.Conv2D(
            m, n, strides=spec.strides, padding=spec.padding,
            activation=spec.activation, name=spec.name,
        )(x)
    if isinstance(spec, PoolSpec):
        return layers.MaxPooling2D(spec.size, name=spec.name)(x)
    if isinstance(spec, FlattenSpec):
        return layers.Flatten(name=spec.name)(x)
    if isinstance(spec, DenseSpec):
        units = num_classes if spec.units is None else scaled(spec.units, candidate.width)
        return layers.Dense(units, activation=spec.activation, name=spec.name)(x)
    raise TypeError(f"unknown layer spec {spec!r}")


def _build_application(family: Family, candidate: Candidate, inputs, x, num_classes: int):
    import tensorflow as tf

    constructor = getattr(tf.keras.applications, family.application)
    backbone = constructor(
        input_shape=tuple(int(d) for d in x.shape[1:]),
        alpha=candidate.width,
        include_top=False,
        weights=None,
        pooling="avg",
    )
    features = backbone(x)
    outputs = tf.keras.layers.Dense(num_classes, name="output")(features)
    return tf.keras.Model(inputs, outputs, name=family.name)
