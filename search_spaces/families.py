"""Base model families as declarative layer specs (no TensorFlow here).

A family is a list of layer specs; `objectives.build` turns it into a Keras model for a
`Candidate`. Keeping the specs as plain data lets the search space (and the factorization
rule) reason about layer shapes without building anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from definitions.errors import UsageError


@dataclass(frozen=True)
class ConvSpec:
    """A 2-D convolution with `filters` kernels of `kernel`×`kernel` (seed 002's m and n)."""

    name: str
    filters: int
    kernel: int
    strides: int = 1
    padding: str = "valid"
    activation: str = "relu"


@dataclass(frozen=True)
class PoolSpec:
    """Max pooling with a square window and the same stride."""

    name: str
    size: int = 2


@dataclass(frozen=True)
class FlattenSpec:
    """Flattens the feature map into the embedding that enters the classifier head."""

    name: str = "flatten"


@dataclass(frozen=True)
class DenseSpec:
    """A dense layer; `units=None` marks the output layer, which gets the class count."""

    name: str
    units: int | None
    activation: str | None = "relu"


LayerSpec = ConvSpec | PoolSpec | FlattenSpec | DenseSpec


@dataclass(frozen=True)
class Family:
    """A base CNN family.

    Attributes:
        name: the key in `FAMILIES`.
        description: one line for `studies` and `inspect`.
        layers: the layer specs, input to output; empty for `application` families.
        application: name of a `tf.keras.applications` constructor built with `alpha=width`
            and `weights=None` instead of `layers` (seeds 000/001 use MobileNetV2).
        min_input_size: inputs smaller than this (height or width) are resized up to it.
    """

    name: str
    description: str
    layers: tuple[LayerSpec, ...] = ()
    application: str | None = None
    min_input_size: int = 1


def scaled(units: int, width: float) -> int:
    """Channels after the width multiplier: `units·width`, rounded half up, at least 1."""
    return max(1, math.floor(units * width + 0.5))


FAMILIES: dict[str, Family] = {
    "lenet5_caffe": Family(
        name="lenet5_caffe",
        description="LeNet5-Caffe of the compression papers: conv 20@5x5, conv 50@5x5, "
        "dense 500, dense 10 (431,080 parameters on 28x28x1)",
        layers=(
            ConvSpec("conv_1", 20, 5),
            PoolSpec("pool_1"),
            ConvSpec("conv_2", 50, 5),
            PoolSpec("pool_2"),
            FlattenSpec(),
            DenseSpec("dense_1", 500),
            DenseSpec("output", None, None),
        ),
    ),
    "seed_cnn": Family(
        name="seed_cnn",
        description="the CNN of seed 002: conv 32@3x3, conv 64@3x3, conv 64@3x3, dense 64, "
        "dense 10 (93,322 parameters on 28x28x1)",
        layers=(
            ConvSpec("conv_1", 32, 3),
            PoolSpec("pool_1"),
            ConvSpec("conv_2", 64, 3),
            PoolSpec("pool_2"),
            ConvSpec("conv_3", 64, 3),
            FlattenSpec(),
            DenseSpec("dense_1", 64),
            DenseSpec("output", None, None),
        ),
    ),
    "tiny_cnn": Family(
        name="tiny_cnn",
        description="a small same-padded CNN for 8x8 images: conv 16@3x3, conv 32@3x3, "
        "conv 32@3x3, dense 32, dense 10 (seed 002's shape, scaled down)",
        layers=(
            ConvSpec("conv_1", 16, 3, padding="same"),
            PoolSpec("pool_1"),
            ConvSpec("conv_2", 32, 3, padding="same"),
            PoolSpec("pool_2"),
            ConvSpec("conv_3", 32, 3, padding="same"),
            FlattenSpec(),
            DenseSpec("dense_1", 32),
            DenseSpec("output", None, None),
        ),
    ),
    "mobilenet_v2": Family(
        name="mobilenet_v2",
        description="Keras' MobileNetV2 (alpha = width, weights=None); inputs under 32x32 "
        "are resized to 32x32",
        application="MobileNetV2",
        min_input_size=32,
    ),
}


class UnknownFamilyError(UsageError, KeyError):
    """A family name that is not in `FAMILIES`."""

    def __str__(self) -> str:
        return f"unknown model family {self.args[0]!r}; choose one of {', '.join(FAMILIES)}"


def get_family(name: str) -> Family:
    """The family called `name`, or `UnknownFamilyError` naming the valid choices."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(name) from None
