"""Entropy Penalized Reparameterization (EPR) of plain Keras CNNs.

Implements Oktay, Ballé, Singh and Shrivastava, "Scalable Model Compression by Entropy
Penalized Reparameterization", ICLR 2020 (seed 004, the TensorFlow Compression tutorial),
for the models `objectives.build` makes. This is the only module of the project that
imports `tensorflow_compression` (DESIGN §3); nothing imports it at CLI `--help` time.

The pipeline, one keyword-only call per step::

    compressible = make_compressible(model, epr_lambda=10.0)   # same graph, EPR layers
    compressible.compile(...); compressible.fit(...)           # penalty is in the loss
    compressed = compress(compressible)                        # weights are bit strings
    payload_bytes(compressed); estimated_bits(compressible)
    save(compressed, "model.epr"); plain = load("model.epr")   # plain Keras model

**Reparameterization.** Every supported weight tensor is stored as a *latent* θ and a
learned log step size s; the weight the layer uses is `round(θ / e^s) · e^s`, rounded with
a straight-through gradient (`tfc.round_st`), so training sees exactly the quantization
that coding will apply (paper §3.1). Convolution kernels (Conv2D, square or n×1 / 1×n, and
DepthwiseConv2D) are reparameterized in the Fourier domain (paper §3.2): the latent is
the kernel's real DFT over its two spatial axes, an orthonormal real basis of n1·n2
coefficients per kernel (the 1-D real DFT — constant, cos/sin pairs, Nyquist — applied
separably to each axis; exactly n1·n2 real numbers, none of the redundant imaginary parts
of `rfft2d`), with one learned log step per spatial frequency, shared by all I×O kernels.
The seed's tutorial does the same with `rfft2d`; a small constant matrix product replaces
the FFT ops, which are slow on CPU for 5×5 transforms, and inverts exactly (transpose).
Dense kernels and all biases have one log step per tensor, as in the seed.

**Log steps are float16.** They are side information stored at half precision (seed 004);
the layers round them to float16 in the forward pass too (straight-through), so the
compressible model, the compressed model and the decoded plain model use bit-identical
quantization grids.

**BatchNormalization.** γ and β are trained parameters and are coded like a bias: a latent
with one learned per-tensor log step, penalized. The moving mean and variance are
statistics, not trained by the gradient, so the penalty cannot shape them; they are stored
as float16 side information (2 bytes each, counted in the payload), and the compressible
layer uses their float16 values at inference so that all three models agree. Nothing is
folded, so the decoded model is an ordinary BN model that can be trained further.

**Penalty.** `tfc.PowerLawEntropyModel.penalty` of the quantized latents
`round_st(θ / e^s)`, summed over all latents, in nats, weighted by `epr_lambda / P` where P
is the original model's parameter count (the seed's normalization, so one λ means the same
across widths). The penalty matches the code that `compress` uses:
`PowerLawEntropyModel.compress`, a run-length Elias-gamma code (zeros as run lengths, a
sign bit, the gamma code of the magnitude), one bit string per tensor. Unlike the seed,
which penalizes the continuous θ / e^s, the penalty is taken at the symbols actually coded
(straight-through gradient, like the weights): with the continuous penalty every latent
that already rounds to zero — Adam keeps it jittering just off zero — still pulls its
tensor's log step up at full strength, and on full Fashion-MNIST (10 epochs) every λ ≥ 2
ran the steps away until all weights rounded to zero (10% accuracy, BENCHMARKS.md). At the
symbols, zeros cost nothing, exert no pull, and the penalty predicts the coded length
within a factor of 2. `PENALIZE_SYMBOLS = False` restores the seed's variant.
The training loss is task loss + weighted penalty; the `loss` Keras reports during
`fit`/`evaluate` is the task loss alone.

**Layers.** Dense, Conv2D (channels_last, groups=1, any strides, valid/same padding,
dilation) and DepthwiseConv2D and BatchNormalization (axis -1, no renorm / virtual batches)
become EPR layers initialized from the original weights; weightless layers (pooling,
flatten, activation, Add, padding, resizing, …) pass through; nested functional models
(e.g. a MobileNetV2 backbone) are converted recursively. Any other layer that holds
weights (SeparableConv2D, LayerNormalization, PReLU, a registered custom layer, …) is kept
as it is, trained without penalty, and its weights are stored uncompressed (`raw` coding:
float32) in the file and counted in the payload, 4 bytes per value, never left out of the
bytes. A model whose architecture the file cannot hold safely — a `Lambda` layer (its
Python bytecode would run on every decode) or a class Keras cannot rebuild from JSON — is
refused before it trains (`storable_json`: `EPRError`, the trial fails alone).
Weight regularizers and constraints of the original layers are dropped (the entropy
penalty replaces them).

**File format** (`save` / `load`): one file, written atomically::

    b"EPRK" | uint8 version (=1) | uint32 little-endian header length N | N bytes:
    zlib-compressed UTF-8 JSON header | data section

The header holds `architecture` (the plain model's Keras JSON, no weights) and `layers`:
for every coded layer its `path` (layer names from the root, through nested models) and
its weights in Keras order, each with `name`, `shape`, `coding` (`fourier`, `scalar`,
`float16` or `raw`), the `[offset, length]` in the data section of its bit string and of
its float16 little-endian log steps (or the float16 values of `float16` weights, or the
float32 little-endian values of `raw` ones).
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from definitions.errors import one_line
from objectives.errors import TrialFailure
from objectives.files import write_atomically
from objectives.model_code import code_layers, named_layers
from objectives.size import epr_payload_bytes

__all__ = [
    "EPRError",
    "compress",
    "decompress",
    "estimated_bits",
    "load",
    "make_compressible",
    "payload_bytes",
    "save",
]

#: Initial log step size of every latent (seed 004): steps start at e^-4 ≈ 0.018.
INITIAL_LOG_STEP = -4.0
#: `PowerLawEntropyModel`'s α: the penalty is log((|x| + α) / α) nats per coefficient.
PENALTY_ALPHA = 1e-2
#: Penalize round_st(θ / step) (True) or the seed's continuous θ / step (False); see above.
PENALIZE_SYMBOLS = True
FORMAT_MAGIC = b"EPRK"
#: Version 2 names each weight's side information `side` (version 1 called it `half`,
#: although a raw weight's is float32); `load` reads both.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_SIDE_KEY = {1: "half", 2: "side"}
_HEAD = struct.Struct("<4sBI")

FOURIER, SCALAR, FLOAT16, RAW = "fourier", "scalar", "float16", "raw"


class EPRError(TrialFailure):
    """A model or file EPR cannot handle (unsupported layer, bad file); the message says why."""

    kind = "epr_failed"


# ---------------------------------------------------------------------------------------
# Coding specs and the real Fourier basis
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """How one plain weight tensor is coded.

    `fourier`: a conv kernel (n1, n2, I, O) whose latent has the same shape in the
    frequency domain, one log step per frequency (n1, n2). `scalar`: latent = weight, one
    log step. `float16`: not coded; stored as float16 side information (BN statistics).
    """

    name: str
    shape: tuple[int, ...]
    coding: str

    @property
    def log_step_shape(self) -> tuple[int, ...]:
        return self.shape[:2] if self.coding == FOURIER else ()

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "coding": self.coding}


def _real_dft_1d(n: int) -> np.ndarray:
    """Orthonormal real DFT matrix (n × n); row k is the k-th basis function.

    Rows, by rising frequency: the constant, then √2·cos and √2·sin of each frequency
    1 ≤ k < n/2, then the alternating Nyquist row when n is even (all scaled by 1/√n).
    """
    t = np.arange(n)
    rows = [np.full(n, 1.0 / math.sqrt(n))]
    for k in range(1, (n + 1) // 2):
        rows.append(math.sqrt(2.0 / n) * np.cos(2 * math.pi * k * t / n))
        rows.append(math.sqrt(2.0 / n) * np.sin(2 * math.pi * k * t / n))
    if n % 2 == 0:
        rows.append((-1.0) ** t / math.sqrt(n))
    return np.stack(rows)


@functools.lru_cache(maxsize=64)
def _fourier_matrix(n1: int, n2: int) -> np.ndarray:
    """Orthonormal 2-D real DFT over (n1, n2) as a matrix acting on flattened kernels."""
    return np.kron(_real_dft_1d(n1), _real_dft_1d(n2))


def _is_identity_transform(spec: _Spec) -> bool:
    return spec.coding != FOURIER or spec.shape[0] * spec.shape[1] == 1


def _to_latent(weight: np.ndarray, spec: _Spec) -> np.ndarray:
    """The latent θ of a plain weight (numpy, float64 arithmetic, float32 result)."""
    weight = np.asarray(weight, dtype=np.float64)
    if _is_identity_transform(spec):
        return weight.astype(np.float32)
    n1, n2 = spec.shape[:2]
    flat = weight.reshape(n1 * n2, -1)
    return (_fourier_matrix(n1, n2) @ flat).reshape(spec.shape).astype(np.float32)


def _from_latent(values: tf.Tensor, spec: _Spec) -> tf.Tensor:
    """The plain weight from dequantized latent values (inverse transform, in TF)."""
    if _is_identity_transform(spec):
        return values
    n1, n2 = spec.shape[:2]
    inverse = tf.constant(_fourier_matrix(n1, n2).T, dtype=tf.float32)
    flat = tf.matmul(inverse, tf.reshape(values, (n1 * n2, -1)))
    return tf.reshape(flat, spec.shape)


def _log_step_from(latent: np.ndarray, spec: _Spec) -> np.ndarray | float:
    """log(rms / 2) of a latent: per spatial frequency (over I×O) for `fourier`, per tensor
    for `scalar`; `INITIAL_LOG_STEP` where the latent is all zero."""
    axes = tuple(range(2, latent.ndim)) if spec.coding == FOURIER else None
    rms = np.sqrt(np.mean(np.square(latent.astype(np.float64)), axis=axes))
    steps = np.where(rms > 0, np.log(np.maximum(rms, 1e-30) / 2.0), INITIAL_LOG_STEP)
    return steps.astype(np.float32) if spec.coding == FOURIER else float(steps)


@tf.custom_gradient
def _float16_st(x: tf.Tensor) -> tuple[tf.Tensor, Any]:
    """Rounds to the nearest float16 value, with an identity (straight-through) gradient."""
    return tf.cast(tf.cast(x, tf.float16), tf.float32), lambda dy: dy


def _step(log_step16: tf.Tensor, spec: _Spec) -> tf.Tensor:
    """Step size e^s (s already float16-valued), shaped to broadcast against the latent."""
    step = tf.exp(log_step16)
    if spec.coding == FOURIER:
        step = tf.reshape(step, (*spec.shape[:2], 1, 1))
    return step


def _dequantize(symbols: tf.Tensor, log_step16: tf.Tensor, spec: _Spec) -> tf.Tensor:
    """Plain weight from integer-valued symbols: the one decoding path all models share."""
    return _from_latent(symbols * _step(log_step16, spec), spec)


def _entropy_model(rank: int) -> tfc.PowerLawEntropyModel:
    return tfc.PowerLawEntropyModel(coding_rank=rank, alpha=PENALTY_ALPHA)


# ---------------------------------------------------------------------------------------
# Forward computations of the supported layers (plain Keras semantics, given weights)
# ---------------------------------------------------------------------------------------


def _dense(config: dict, w: dict[str, tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    kernel = w["kernel"]
    if x.shape.rank == 2:
        y = tf.matmul(x, kernel)
    else:
        y = tf.tensordot(x, kernel, [[x.shape.rank - 1], [0]])
    if "bias" in w:
        y = tf.nn.bias_add(y, w["bias"])
    return tf.keras.activations.get(config["activation"])(y)


def _conv2d(config: dict, w: dict[str, tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    y = tf.nn.convolution(
        x, w["kernel"], strides=list(config["strides"]), padding=config["padding"].upper(),
        dilations=list(config["dilation_rate"]), data_format="NHWC",
    )
    if "bias" in w:
        y = tf.nn.bias_add(y, w["bias"])
    return tf.keras.activations.get(config["activation"])(y)


def _depthwise2d(config: dict, w: dict[str, tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    y = tf.nn.depthwise_conv2d(
        x, w["depthwise_kernel"], strides=(1, *config["strides"], 1),
        padding=config["padding"].upper(), dilations=list(config["dilation_rate"]),
    )
    if "bias" in w:
        y = tf.nn.bias_add(y, w["bias"])
    return tf.keras.activations.get(config["activation"])(y)


def _batch_norm(config: dict, w: dict[str, tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    return tf.nn.batch_normalization(
        x, w["moving_mean"], w["moving_variance"], w.get("beta"), w.get("gamma"),
        config["epsilon"],
    )


_FORWARD = {
    "Dense": _dense,
    "Conv2D": _conv2d,
    "DepthwiseConv2D": _depthwise2d,
    "BatchNormalization": _batch_norm,
}
_FOURIER_WEIGHTS = {("Conv2D", "kernel"), ("DepthwiseConv2D", "depthwise_kernel")}
_FLOAT16_WEIGHTS = {("BatchNormalization", "moving_mean"),
                    ("BatchNormalization", "moving_variance")}


def _plain_class(layer: tf.keras.layers.Layer) -> str | None:
    """The supported plain class `layer` is exactly an instance of (subclasses excluded)."""
    for name in _FORWARD:
        if type(layer) is getattr(tf.keras.layers, name):
            return name
    return None


def _weight_name(variable: tf.Variable) -> str:
    return variable.name.rsplit("/", 1)[-1].split(":")[0]


def _check_supported(layer: tf.keras.layers.Layer, kind: str) -> None:
    config = layer.get_config()
    where = f"layer {layer.name!r} ({kind})"
    if kind in ("Conv2D", "DepthwiseConv2D"):
        if config.get("data_format", "channels_last") != "channels_last":
            raise EPRError(f"{where}: only data_format='channels_last' is supported")
        if config.get("groups", 1) != 1:
            raise EPRError(f"{where}: grouped convolutions (groups > 1) are not supported")
        if config["padding"] not in ("valid", "same"):
            raise EPRError(f"{where}: padding {config['padding']!r} is not supported")
    if kind == "BatchNormalization":
        axis = config["axis"]
        axes = list(axis) if isinstance(axis, list | tuple) else [axis]
        rank = len(_input_shape(layer))
        if [a % rank for a in axes] != [rank - 1]:
            raise EPRError(f"{where}: only axis=-1 (channels last) is supported, got {axis!r}")
        for option in ("renorm", "virtual_batch_size", "adjustment"):
            if config.get(option):
                raise EPRError(f"{where}: option {option!r} is not supported")
    if layer.dtype != "float32":
        raise EPRError(f"{where}: only float32 layers are supported, got {layer.dtype}")


def _input_shape(layer: tf.keras.layers.Layer) -> tuple:
    try:
        return tuple(layer.input_shape)
    except AttributeError:  # a layer used more than once has no single input shape
        return tuple(layer.get_input_shape_at(0))


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------


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
        specs: tuple[_Spec, ...],
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
        _check_supported(layer, kind)
        specs, initial = [], {}
        for variable in layer.weights:
            name = _weight_name(variable)
            if (kind, name) in _FOURIER_WEIGHTS:
                coding = FOURIER
            elif (kind, name) in _FLOAT16_WEIGHTS:
                coding = FLOAT16
            else:
                coding = SCALAR
            spec = _Spec(name, tuple(int(d) for d in variable.shape), coding)
            specs.append(spec)
            value = variable.numpy()
            initial[name] = value if coding == FLOAT16 else _to_latent(value, spec)
            if steps_from_weights and coding != FLOAT16:
                initial[f"{name}/log_step"] = _log_step_from(initial[name], spec)
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

    def scaled_latents(self) -> Iterator[tuple[_Spec, tf.Tensor, tf.Tensor]]:
        """(spec, θ / step, float16-valued log step) for each coded weight."""
        for spec in self.specs:
            if spec.coding == FLOAT16:
                continue
            log_step16 = _float16_st(self.log_steps[spec.name])
            yield spec, self.latents[spec.name] / _step(log_step16, spec), log_step16

    def penalty(self) -> tf.Tensor:
        """Power-law penalty of the quantized latents / steps, in nats (un-normalized)."""
        total = tf.constant(0.0)
        for spec, scaled, _ in self.scaled_latents():
            values = tfc.round_st(scaled) if PENALIZE_SYMBOLS else scaled
            total += _entropy_model(len(spec.shape)).penalty(values)
        return total

    def quantized_weights(self) -> dict[str, tf.Tensor]:
        """The weights the layer computes with: rounded latents (straight-through)."""
        weights = {}
        for spec, scaled, log_step16 in self.scaled_latents():
            weights[spec.name] = _dequantize(tfc.round_st(scaled), log_step16, spec)
        for name, variable in self.statistics.items():
            weights[name] = _float16_st(variable)
        return weights

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        weights = self.quantized_weights()
        if self.plain_class == "BatchNormalization" and training and self.trainable:
            # As in Keras, a frozen BN layer always normalizes with its moving statistics.
            return self._batch_norm_train(inputs, weights)
        return _FORWARD[self.plain_class](self.plain_config, weights, inputs)

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
        specs: tuple[_Spec, ...],
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
            string = _entropy_model(len(spec.shape)).compress(tf.round(scaled))
            strings[spec.name] = string.numpy()
            side[spec.name] = log_step16.numpy()
        return cls(
            plain_class=layer.plain_class, plain_config=layer.plain_config, specs=layer.specs,
            strings=strings, side=side,
        )

    def decoded_weights(self) -> dict[str, tf.Tensor]:
        """The plain weights, decoded from the bit strings (`_decoded`) at the first use,
        outside any graph being traced (`tf.init_scope`), and kept."""
        if self._decoded_values is None:
            with tf.init_scope():
                self._decoded_values = tuple(
                    _decoded(spec, self.strings.get(spec.name), self.side[spec.name])
                    for spec in self.specs)
        return dict(zip((spec.name for spec in self.specs), self._decoded_values,
                        strict=True))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return _FORWARD[self.plain_class](self.plain_config, self.decoded_weights(), inputs)

    def coded(self) -> list[tuple[_Spec, bytes | None, np.ndarray]]:
        """(spec, bit string or None, side information: float16 log steps or the float16
        values themselves) per plain weight."""
        return [
            (spec, None if spec.coding == FLOAT16 else self.strings[spec.name].numpy(),
             self.side[spec.name].numpy())
            for spec in self.specs
        ]

    def get_config(self) -> dict:
        raise NotImplementedError("EPR layers are not serialized; use objectives.epr.save")


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


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
        return [layer for _, layer in _walk(self) if isinstance(layer, CompressibleLayer)]

    def penalty(self) -> tf.Tensor:
        """Un-normalized penalty of all latents, in nats."""
        return tf.add_n([layer.penalty() for layer in self.epr_layers()] or [tf.constant(0.0)])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
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
                 else _raw_coded(layer))
                for path, layer in _walk(self)
                if isinstance(layer, CompressedLayer) or _is_raw(layer)]


def _walk(model: tf.keras.Model, prefix: tuple[str, ...] = ()
          ) -> Iterator[tuple[tuple[str, ...], tf.keras.layers.Layer]]:
    """(path of names, layer) for every layer, descending into nested models."""
    for layer in model.layers:
        path = (*prefix, layer.name)
        if isinstance(layer, tf.keras.Model):
            yield from _walk(layer, path)
        else:
            yield path, layer


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


def storable_json(model: tf.keras.Model) -> str:
    """`model`'s architecture as the Keras JSON an `.epr` file stores, checked to be one
    `load` can rebuild without running code: `EPRError` (the trial fails, the study goes
    on) for a layer holding Python code (a `Lambda`: its bytecode would travel in the file
    and run whenever it is decoded; the TFLite modes convert the graph instead) and for a
    layer class Keras cannot rebuild from its JSON (a custom or unregistered layer), both
    found before the candidate trains."""
    try:
        plain_json = model.to_json()
    except (NotImplementedError, TypeError, ValueError) as error:
        raise EPRError(one_line(f"EPR cannot store model {model.name!r}: its architecture "
                                f"has no JSON config: {type(error).__name__}: {error}")) from None
    code = code_layers(json.loads(plain_json), modules=False)
    if code:
        raise EPRError(f"EPR cannot store model {model.name!r}: {named_layers(code)} "
                       f"hold{'s' if len(code) == 1 else ''} Python code, which the .epr "
                       "file would have to carry and run when decoded; candidates without EPR "
                       "(epr_lambda 0) convert it to TFLite instead")
    custom = [(layer.name, type(layer).__name__) for _, layer in _walk(model)
              if not type(layer).__module__.startswith(("keras.", "tensorflow."))]
    if custom:  # Keras' own layers always rebuild; a custom one only when registered
        try:
            tf.keras.models.model_from_json(plain_json)
        except (TypeError, ValueError) as error:
            raise EPRError(one_line(
                f"EPR cannot store model {model.name!r}: Keras cannot rebuild "
                f"{named_layers(custom)} from the JSON the .epr file holds; register a "
                "custom layer with keras.saving.register_keras_serializable, or search "
                f"without EPR (epr_lambda 0): {type(error).__name__}: {error}")) from None
    return plain_json


def _is_raw(layer: tf.keras.layers.Layer) -> bool:
    """A layer EPR keeps as it is: it holds weights but is not an EPR layer."""
    return bool(layer.weights) and not isinstance(layer, CompressibleLayer | CompressedLayer)


def _raw_coded(layer: tf.keras.layers.Layer) -> list[tuple[_Spec, None, np.ndarray]]:
    """(spec, None, float32 values) of each weight of a kept layer, in Keras order."""
    return [
        (_Spec(_weight_name(v), tuple(int(d) for d in v.shape), RAW),
         None, v.numpy().astype(np.float32))
        for v in layer.weights
    ]


def _graph_of(model: tf.keras.Model) -> tf.keras.Model:
    """A plain functional view of `model`'s graph (cloning our subclasses needs one)."""
    if isinstance(model, tf.keras.Sequential) or type(model) is tf.keras.Model:
        return model
    return tf.keras.Model(model.inputs, model.outputs, name=model.name)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


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
        kind = _plain_class(layer)
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
            total += float(_entropy_model(len(spec.shape)).penalty(values).numpy())
    return total / math.log(2.0)


def decompress(compressed: CompressedModel) -> tf.keras.Model:
    """A plain Keras model (standard layers only) holding the decoded weights (those its
    layers decoded already, not decoded again)."""
    return _assemble(compressed.plain_json, [
        (path, [w.numpy() for w in layer.decoded_weights().values()]
         if isinstance(layer, CompressedLayer) else [v for _, _, v in _raw_coded(layer)])
        for path, layer in _walk(compressed)
        if isinstance(layer, CompressedLayer) or _is_raw(layer)])


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
    _refuse_code(path, header.get("architecture"))
    data = blob[start:]

    def get(span: list[int]) -> bytes:
        return data[span[0]:span[0] + span[1]]

    layers = []
    for entry in header["layers"]:
        coded = []
        for w in entry["weights"]:
            spec = _Spec(w["name"], tuple(w["shape"]), w["coding"])
            side = np.frombuffer(get(w[_SIDE_KEY[version]]), dtype=_side_dtype(spec)).reshape(
                spec.shape if spec.coding in (FLOAT16, RAW) else spec.log_step_shape)
            coded.append((spec, None if w["string"] is None else get(w["string"]), side))
        layers.append((tuple(entry["path"]), [_decoded(spec, string, side).numpy()
                                              for spec, string, side in coded]))
    return _assemble(header["architecture"], layers)


def _refuse_code(path: str | os.PathLike, architecture: Any) -> None:
    """An `.epr` file holds a Keras architecture and weights, never code: `save` refuses
    Lambda layers (`storable_json`). One whose architecture names bytecode (a Lambda, a
    serialized lambda) was not made by this tool or was altered, and loading it would run
    that code, so it is refused in one line (`objectives.model_code.code_layers`)."""
    from objectives.model_code import StoredCodeRefused, code_layers, named_layers

    try:
        config = json.loads(architecture)
    except (TypeError, ValueError) as error:
        raise EPRError(f"{path}: corrupt architecture: {error}") from None
    found = code_layers(config, modules=False)
    if found:
        raise StoredCodeRefused(one_line(
            f"{Path(path).name} names Python code in {named_layers(found)}, which this "
            "tool never stores in an .epr file; it was altered or made elsewhere, and "
            "loading it would run that code: not loaded"))


def _assemble(plain_json: str, layers: list[tuple[tuple[str, ...], list[np.ndarray]]]
              ) -> tf.keras.Model:
    """Plain model from its JSON, with the decoded weights of each layer (by its path of
    names, in Keras' order) set."""
    try:
        model = tf.keras.models.model_from_json(plain_json)
    except (TypeError, ValueError) as error:  # a layer Keras cannot (safely) rebuild
        if "safe_mode" in str(error):  # Keras refuses a Lambda's bytecode: it is not run
            raise EPRError("the .epr architecture holds Python code (a Lambda layer), "
                           "which is not run") from None
        raise EPRError(one_line(f"the .epr architecture cannot be rebuilt: "
                                f"{type(error).__name__}: {error}")) from None
    for path, weights in layers:
        target: Any = model
        for name in path:
            target = target.get_layer(name)
        target.set_weights(weights)
    return model


def _side_dtype(spec: _Spec) -> str:
    """How a weight's side information is stored: float32 for a raw weight (a layer EPR
    does not wrap), float16 otherwise (log steps, or a float16-coded weight's values)."""
    return "<f4" if spec.coding == RAW else "<f2"


def _decoded(spec: _Spec, string: Any, side: Any) -> tf.Tensor:
    """One plain weight from its coded form, the one decoding of the module (a compressed
    layer's call and `load` both use it): a float16 or raw weight is its side information
    itself; a coded one is its range-decoded symbols times the steps the side information
    holds (`_dequantize`)."""
    side32 = tf.cast(side, tf.float32)
    if spec.coding in (FLOAT16, RAW):
        return side32
    symbols = _entropy_model(len(spec.shape)).decompress(tf.convert_to_tensor(string),
                                                         spec.shape)
    return _dequantize(tf.reshape(symbols, spec.shape), side32, spec)
