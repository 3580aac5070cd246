"""The Keras layers and models of EPR: a compressible layer (latents and learned float16
log steps, trained with the entropy penalty), a compressed one (bit strings and side
information), and the functional models made of them.

A compressible layer stands for one plain layer `objectives.epr_forward` supports and
computes what it computes (`FORWARD`) from the quantized weights (`objectives.epr_maths`);
a compressed layer decodes its bit strings through the same dequantization, so the
compressible model, the compressed model and the decoded plain model agree bit for bit.

**BatchNormalization.** γ and β are trained parameters and are coded like a bias: a latent
with one learned per-tensor log step, penalized. The moving mean and variance are
statistics, not trained by the gradient, so the penalty cannot shape them; they are stored
as float16 side information (2 bytes each, counted in the payload), and the compressible
layer uses their float16 values at inference so that all three models agree. Nothing is
folded, so the decoded model is an ordinary BN model that can be trained further.

**Kept layers.** Any other layer that holds weights (SeparableConv2D, LayerNormalization,
PReLU, a registered custom layer, …) is kept as it is, trained without penalty, and its
weights are stored uncompressed (`raw` coding: float32, `raw_coded`), 4 bytes per value,
never left out of the bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from objectives.epr_architecture import walk
from objectives.epr_forward import FORWARD, check_supported, weight_coding, weight_name
from objectives.epr_maths import (
    FLOAT16,
    INITIAL_LOG_STEP,
    RAW,
    Spec,
    decoded,
    entropy_model,
    float16_st,
    latent_penalty,
    log_step_from,
    quantized,
    step_size,
    to_latent,
)


class CompressibleLayer(tf.keras.layers.Layer):
    """EPR version of one supported plain layer: latents + learned float16 log steps.

    Holds, for each weight of the plain layer (in Keras order), either a trainable latent
    and log step (`fourier` / `scalar` coding) or a float variable kept at float16
    precision (`float16`: BN moving statistics, updated by batch statistics in training).
    """

    def __init__(
        self,
        *,
        plain_class: str,
        plain_config: dict,
        specs: tuple[Spec, ...],
        initial: dict[str, np.ndarray],
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name=plain_config["name"], trainable=plain_config.get("trainable", True), **kwargs
        )
        self.plain_class = plain_class
        self.plain_config = plain_config
        self.specs = specs
        self._initial = initial

    @classmethod
    def from_plain(
        cls, layer: tf.keras.layers.Layer, kind: str, *, steps_from_weights: bool = False
    ) -> CompressibleLayer:
        """A compressible copy of built plain `layer`, initialized from its weights.

        With `steps_from_weights` (weights inherited from a trained parent) each log step
        starts at log(rms / 2) of its latent (per spatial frequency for Fourier latents),
        so trained weights of any scale start on a grid about as fine, relative to their
        spread, as the seed's e^-4 is for freshly initialized LeNet weights; an all-zero
        latent keeps `INITIAL_LOG_STEP`."""
        check_supported(layer, kind)
        specs, initial = [], {}
        for variable in layer.weights:
            name = weight_name(variable)
            coding = weight_coding(kind, name)
            spec = Spec(name, tuple(int(d) for d in variable.shape), coding)
            specs.append(spec)
            value = variable.numpy()
            initial[name] = value if coding == FLOAT16 else to_latent(value, spec)
            if steps_from_weights and coding != FLOAT16:
                initial[f"{name}/log_step"] = log_step_from(initial[name], spec)
        return cls(
            plain_class=kind, plain_config=layer.get_config(), specs=tuple(specs),
            initial=initial,
        )

    def build(self, input_shape: Any) -> None:
        self.latents: dict[str, tf.Variable] = {}
        self.log_steps: dict[str, tf.Variable] = {}
        self.statistics: dict[str, tf.Variable] = {}
        for spec in self.specs:
            value = self._initial[spec.name]
            if spec.coding == FLOAT16:
                self.statistics[spec.name] = self.add_weight(
                    name=spec.name, shape=spec.shape, trainable=False,
                    initializer=tf.keras.initializers.Constant(value),
                )
                continue
            self.latents[spec.name] = self.add_weight(
                name=f"{spec.name}_latent", shape=spec.shape,
                initializer=tf.keras.initializers.Constant(value),
            )
            self.log_steps[spec.name] = self.add_weight(
                name=f"{spec.name}_log_step", shape=spec.log_step_shape,
                initializer=tf.keras.initializers.Constant(
                    self._initial.get(f"{spec.name}/log_step", INITIAL_LOG_STEP)),
            )
        self._initial = {}
        super().build(input_shape)

    def scaled_latents(self) -> Iterator[tuple[Spec, tf.Tensor, tf.Tensor]]:
        """(spec, θ / step, float16-valued log step) for each coded weight."""
        for spec in self.specs:
            if spec.coding == FLOAT16:
                continue
            log_step16 = float16_st(self.log_steps[spec.name])
            yield spec, self.latents[spec.name] / step_size(log_step16, spec), log_step16

    def penalty(self) -> tf.Tensor:
        """Power-law penalty of the quantized latents / steps, in nats (un-normalized)."""
        total = tf.constant(0.0)
        for spec, scaled, _ in self.scaled_latents():
            total += latent_penalty(scaled, spec)
        return total

    def quantized_weights(self) -> dict[str, tf.Tensor]:
        """The weights the layer computes with: rounded latents (straight-through)."""
        weights = {}
        for spec, scaled, log_step16 in self.scaled_latents():
            weights[spec.name] = quantized(scaled, log_step16, spec)
        for name, variable in self.statistics.items():
            weights[name] = float16_st(variable)
        return weights

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        weights = self.quantized_weights()
        if self.plain_class == "BatchNormalization" and training and self.trainable:
            # As in Keras, a frozen BN layer always normalizes with its moving statistics.
            return self._batch_norm_train(inputs, weights)
        return FORWARD[self.plain_class](self.plain_config, weights, inputs)

    def _batch_norm_train(self, x: tf.Tensor, w: dict[str, tf.Tensor]) -> tf.Tensor:
        """BN with batch statistics; moving statistics updated as Keras does."""
        axes = list(range(x.shape.rank - 1))
        mean, variance = tf.nn.moments(x, axes)
        momentum = self.plain_config["momentum"]
        for name, batch_value in (("moving_mean", mean), ("moving_variance", variance)):
            moving = self.statistics[name]
            moving.assign(moving * momentum + tf.stop_gradient(batch_value) * (1.0 - momentum))
        return tf.nn.batch_normalization(
            x, mean, variance, w.get("beta"), w.get("gamma"), self.plain_config["epsilon"]
        )

    def get_config(self) -> dict:
        raise NotImplementedError("EPR layers are not serialized; use objectives.epr.save")


class CompressedLayer(tf.keras.layers.Layer):
    """A layer whose weights are bit strings plus float16 side information.

    Its weights are decoded from the bit strings through the same dequantization as the
    compressible layer, so it predicts exactly like the model it was compressed from.
    They are decoded once, eagerly, at the first call: tracing the range decoder into
    every graph that calls the layer (the functional clone `compress` builds is one) cost
    more than the rest of `compress` together.
    """

    def __init__(
        self,
        *,
        plain_class: str,
        plain_config: dict,
        specs: tuple[Spec, ...],
        strings: dict[str, bytes],
        side: dict[str, np.ndarray],
        **kwargs: Any,
    ) -> None:
        super().__init__(name=plain_config["name"], trainable=False, **kwargs)
        self.plain_class = plain_class
        self.plain_config = plain_config
        self.specs = specs
        self.strings = {k: tf.Variable(v, dtype=tf.string, trainable=False, name=f"{k}_string")
                        for k, v in strings.items()}
        self.side = {k: tf.Variable(v.astype(np.float16), trainable=False, name=f"{k}_f16")
                     for k, v in side.items()}
        self._decoded_values: tuple[tf.Tensor, ...] | None = None

    @classmethod
    def from_compressible(cls, layer: CompressibleLayer) -> CompressedLayer:
        """Codes every latent of `layer` (PowerLawEntropyModel.compress, one string each)."""
        strings, side = {}, {}
        scaled_by_name = {spec.name: (scaled, log16) for spec, scaled, log16
                          in layer.scaled_latents()}
        for spec in layer.specs:
            if spec.coding == FLOAT16:
                side[spec.name] = layer.statistics[spec.name].numpy()
                continue
            scaled, log_step16 = scaled_by_name[spec.name]
            string = entropy_model(len(spec.shape)).compress(tf.round(scaled))
            strings[spec.name] = string.numpy()
            side[spec.name] = log_step16.numpy()
        return cls(
            plain_class=layer.plain_class, plain_config=layer.plain_config, specs=layer.specs,
            strings=strings, side=side,
        )

    def decoded_weights(self) -> dict[str, tf.Tensor]:
        """The plain weights, decoded from the bit strings (`decoded`) at the first use,
        outside any graph being traced (`tf.init_scope`), and kept."""
        if self._decoded_values is None:
            with tf.init_scope():
                self._decoded_values = tuple(
                    decoded(spec, self.strings.get(spec.name), self.side[spec.name])
                    for spec in self.specs)
        return dict(zip((spec.name for spec in self.specs), self._decoded_values,
                        strict=True))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return FORWARD[self.plain_class](self.plain_config, self.decoded_weights(), inputs)

    def coded(self) -> list[tuple[Spec, bytes | None, np.ndarray]]:
        """(spec, bit string or None, side information: float16 log steps or the float16
        values themselves) per plain weight."""
        return [
            (spec, None if spec.coding == FLOAT16 else self.strings[spec.name].numpy(),
             self.side[spec.name].numpy())
            for spec in self.specs
        ]

    def get_config(self) -> dict:
        raise NotImplementedError("EPR layers are not serialized; use objectives.epr.save")


class CompressibleModel(tf.keras.Model):
    """Functional model of EPR layers whose training loss includes the entropy penalty.

    `compute_loss` adds `penalty_weight · Σ penalty` (nats) to the compiled loss, so plain
    `compile` / `fit` / `evaluate` train it; the whole penalty is one sum inside the one
    traced train step, next to the forward pass that already computes the quantized
    weights once per step.
    """

    def __init__(
        self, inputs: Any, outputs: Any, *, penalty_weight: float, plain_json: str,
        name: str | None = None,
    ) -> None:
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self.penalty_weight = float(penalty_weight)
        self.plain_json = plain_json

    def epr_layers(self) -> list[CompressibleLayer]:
        return [layer for _, layer in walk(self) if isinstance(layer, CompressibleLayer)]

    def penalty(self) -> tf.Tensor:
        """Un-normalized penalty of all latents, in nats."""
        return tf.add_n([layer.penalty() for layer in self.epr_layers()] or [tf.constant(0.0)])

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: tf.Tensor | None = None,
                     sample_weight: tf.Tensor | None = None) -> tf.Tensor:
        loss = super().compute_loss(x, y, y_pred, sample_weight)
        if self.penalty_weight:
            loss += self.penalty_weight * self.penalty()
        return loss


class CompressedModel(tf.keras.Model):
    """Functional model of `CompressedLayer`s plus the plain architecture to decode into."""

    def __init__(self, inputs: Any, outputs: Any, *, plain_json: str, name: str | None = None):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self.plain_json = plain_json

    def coded_layers(self) -> list[tuple[tuple[str, ...], Any]]:
        """(path, coded weights) of every layer holding weights: the entropy-coded EPR
        layers and the kept layers, whose weights are stored raw."""
        return [(path, layer.coded() if isinstance(layer, CompressedLayer)
                 else raw_coded(layer))
                for path, layer in walk(self)
                if isinstance(layer, CompressedLayer) or is_raw(layer)]


def is_raw(layer: tf.keras.layers.Layer) -> bool:
    """A layer EPR keeps as it is: it holds weights but is not an EPR layer."""
    return bool(layer.weights) and not isinstance(layer, CompressibleLayer | CompressedLayer)


def raw_coded(layer: tf.keras.layers.Layer) -> list[tuple[Spec, None, np.ndarray]]:
    """(spec, None, float32 values) of each weight of a kept layer, in Keras order."""
    return [
        (Spec(weight_name(v), tuple(int(d) for d in v.shape), RAW),
         None, v.numpy().astype(np.float32))
        for v in layer.weights
    ]
