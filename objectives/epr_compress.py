"""The EPR steps on a whole model: make it compressible, compress it, decode it, and count
its code (`payload_bytes`) or estimate it while it trains (`estimated_bits`).

Each step clones the model's graph, replacing layers: Dense, Conv2D, DepthwiseConv2D and
BatchNormalization (`objectives.epr_forward`) become EPR layers initialized from the
original weights (`objectives.epr_layers`); weightless layers (pooling, flatten,
activation, Add, padding, resizing, …) pass through; nested functional models (e.g. a
MobileNetV2 backbone) are converted recursively; any other layer holding weights is kept
as it is (stored raw). Weight regularizers and constraints of the original layers are
dropped (the entropy penalty replaces them).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from definitions.errors import one_line
from objectives.epr_architecture import assemble, storable_json, walk
from objectives.epr_forward import plain_class
from objectives.epr_layers import (
    CompressedLayer,
    CompressedModel,
    CompressibleLayer,
    CompressibleModel,
    is_raw,
    raw_coded,
)
from objectives.epr_maths import RAW, entropy_model
from objectives.errors import EPRError
from objectives.size import epr_payload_bytes


def _clone(model: tf.keras.Model, convert: Any) -> tf.keras.Model:
    """Clones the graph of `model`, replacing layers by `convert(layer)`, recursively."""

    kept: dict[str, tf.keras.layers.Layer] = {}

    def clone_function(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
        if isinstance(layer, tf.keras.Model):
            return _clone(layer, convert)
        replaced = convert(layer)
        if replaced is not None:
            return replaced
        if layer.weights:
            kept[layer.name] = layer
        return layer.__class__.from_config(layer.get_config())

    try:
        clone = tf.keras.models.clone_model(model, clone_function=clone_function)
    except ValueError as error:
        raise EPRError(one_line(f"cannot clone model {model.name!r}: {error}")) from error
    for name, original in kept.items():  # a kept layer keeps its weights, not fresh ones
        clone.get_layer(name).set_weights(original.get_weights())
    return clone


def _graph_of(model: tf.keras.Model) -> tf.keras.Model:
    """A plain functional view of `model`'s graph (cloning our subclasses needs one)."""
    if isinstance(model, tf.keras.Sequential) or type(model) is tf.keras.Model:
        return model
    return tf.keras.Model(model.inputs, model.outputs, name=model.name)


def make_compressible(
    model: tf.keras.Model, *, epr_lambda: float, steps_from_weights: bool = False
) -> CompressibleModel:
    """A compressible copy of built plain `model`, trained with the EPR penalty.

    Dense, Conv2D, DepthwiseConv2D and BatchNormalization layers become EPR layers holding
    latents (Fourier-domain for conv kernels) and learned float16 log steps, initialized
    from `model`'s weights (`steps_from_weights`: log steps from the weights' scale, for
    weights inherited from a trained parent; see `CompressibleLayer.from_plain`); other
    layers are kept as they are (their weights stored raw). The penalty weight is
    `epr_lambda / model.count_params()` (seed 004). Raises `EPRError` for a model that
    cannot be cloned (subclassed, unbuilt) or stored (`storable_json`: a Lambda layer, a
    layer without a config, a class Keras cannot rebuild from it).
    """
    if not epr_lambda >= 0:
        raise ValueError(f"epr_lambda must be >= 0, got {epr_lambda!r}")
    if not model.built or not getattr(model, "inputs", None):
        raise EPRError(f"model {model.name!r} must be built with known inputs")
    plain_json = storable_json(model)

    def convert(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer | None:
        kind = plain_class(layer)
        if kind is not None:
            try:
                return CompressibleLayer.from_plain(layer, kind,
                                                    steps_from_weights=steps_from_weights)
            except EPRError:  # an option EPR layers do not implement (groups, axis, …)
                return None
        return None  # weightless, or kept as it is and stored raw

    clone = _clone(model, convert)
    return CompressibleModel(
        clone.inputs, clone.outputs,
        penalty_weight=float(epr_lambda) / max(1, model.count_params()),
        plain_json=plain_json, name=model.name,
    )


def compress(model: CompressibleModel) -> CompressedModel:
    """The compressed model: every latent as a bit string, log steps as float16.

    It predicts like `model` (identical quantized weights; decoding happens per call).
    """
    if not isinstance(model, CompressibleModel):
        raise EPRError("compress expects a model made by make_compressible")

    def convert(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer | None:
        if isinstance(layer, CompressibleLayer):
            return CompressedLayer.from_compressible(layer)
        return None

    clone = _clone(_graph_of(model), convert)
    return CompressedModel(
        clone.inputs, clone.outputs, plain_json=model.plain_json, name=model.name
    )


def payload_bytes(compressed: CompressedModel) -> int:
    """DESIGN §2 payload: bit-string lengths plus side-information bytes (float16 values)."""
    strings, side = [], 0
    for _, coded in compressed.coded_layers():
        for spec, string, values in coded:
            if string is not None:
                strings.append(string)
            side += values.size * (4 if spec.coding == RAW else 2)
    return epr_payload_bytes(strings=strings, side_info_bytes=side)


def estimated_bits(compressible: CompressibleModel, *, rounded: bool = True) -> float:
    """The penalty's estimate of the coded length, in bits: Σ penalty (nats) / ln 2.

    Un-normalized (no λ, no parameter count). With `rounded` (the default) this is the
    training penalty itself, evaluated at the symbols that `compress` codes,
    round(θ / step): the power-law penalty is the code-length model that the run-length
    gamma code is matched to, and on LeNet5-Caffe it predicts the real string lengths
    within a factor of 2 (measured estimate / coded from 0.5 for very sparse to 1.6 for
    dense symbols, BENCHMARKS.md). `rounded=False` evaluates it at the continuous latents
    (the seed's penalty); that overestimates, badly once most latents sit just off zero
    (ratio 1.6 to ~100).
    """
    total = 0.0
    for layer in compressible.epr_layers():
        for spec, scaled, _ in layer.scaled_latents():
            values = tf.round(scaled) if rounded else scaled
            total += float(entropy_model(len(spec.shape)).penalty(values).numpy())
    return total / math.log(2.0)


def decompress(compressed: CompressedModel) -> tf.keras.Model:
    """A plain Keras model (standard layers only) holding the decoded weights (those its
    layers decoded already, not decoded again)."""
    return assemble(compressed.plain_json, [
        (path, [w.numpy() for w in layer.decoded_weights().values()]
         if isinstance(layer, CompressedLayer) else [v for _, _, v in raw_coded(layer)])
        for path, layer in walk(compressed)
        if isinstance(layer, CompressedLayer) or is_raw(layer)])
