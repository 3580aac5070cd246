"""EPR's arithmetic: the coding of one weight tensor, its latent and its quantization grid.

Oktay, Ballé, Singh and Shrivastava, "Scalable Model Compression by Entropy Penalized
Reparameterization", ICLR 2020 (seed 004, the TensorFlow Compression tutorial); the layers
that use this are `objectives.epr_layers`, the public face `objectives.epr`. This is the
only module of the project that imports `tensorflow_compression` (DESIGN §3); nothing
imports it at CLI `--help` time.

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
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

#: Initial log step size of every latent (seed 004): steps start at e^-4 ≈ 0.018.
INITIAL_LOG_STEP = -4.0
#: `PowerLawEntropyModel`'s α: the penalty is log((|x| + α) / α) nats per coefficient.
PENALTY_ALPHA = 1e-2
#: Penalize round_st(θ / step) (True) or the seed's continuous θ / step (False); see above.
PENALIZE_SYMBOLS = True

#: How a weight is coded: a Fourier-domain latent, a latent equal to the weight, float16
#: side information alone (BN statistics), or float32 values (a layer EPR keeps as it is).
FOURIER, SCALAR, FLOAT16, RAW = "fourier", "scalar", "float16", "raw"


@dataclass(frozen=True)
class Spec:
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


def _is_identity_transform(spec: Spec) -> bool:
    return spec.coding != FOURIER or spec.shape[0] * spec.shape[1] == 1


def to_latent(weight: np.ndarray, spec: Spec) -> np.ndarray:
    """The latent θ of a plain weight (numpy, float64 arithmetic, float32 result)."""
    weight = np.asarray(weight, dtype=np.float64)
    if _is_identity_transform(spec):
        return weight.astype(np.float32)
    n1, n2 = spec.shape[:2]
    flat = weight.reshape(n1 * n2, -1)
    return (_fourier_matrix(n1, n2) @ flat).reshape(spec.shape).astype(np.float32)


def _from_latent(values: tf.Tensor, spec: Spec) -> tf.Tensor:
    """The plain weight from dequantized latent values (inverse transform, in TF)."""
    if _is_identity_transform(spec):
        return values
    n1, n2 = spec.shape[:2]
    inverse = tf.constant(_fourier_matrix(n1, n2).T, dtype=tf.float32)
    flat = tf.matmul(inverse, tf.reshape(values, (n1 * n2, -1)))
    return tf.reshape(flat, spec.shape)


def log_step_from(latent: np.ndarray, spec: Spec) -> np.ndarray | float:
    """log(rms / 2) of a latent: per spatial frequency (over I×O) for `fourier`, per tensor
    for `scalar`; `INITIAL_LOG_STEP` where the latent is all zero."""
    axes = tuple(range(2, latent.ndim)) if spec.coding == FOURIER else None
    rms = np.sqrt(np.mean(np.square(latent.astype(np.float64)), axis=axes))
    steps = np.where(rms > 0, np.log(np.maximum(rms, 1e-30) / 2.0), INITIAL_LOG_STEP)
    return steps.astype(np.float32) if spec.coding == FOURIER else float(steps)


@tf.custom_gradient
def float16_st(x: tf.Tensor) -> tuple[tf.Tensor, Any]:
    """Rounds to the nearest float16 value, with an identity (straight-through) gradient."""
    return tf.cast(tf.cast(x, tf.float16), tf.float32), lambda dy: dy


def step_size(log_step16: tf.Tensor, spec: Spec) -> tf.Tensor:
    """Step size e^s (s already float16-valued), shaped to broadcast against the latent."""
    step = tf.exp(log_step16)
    if spec.coding == FOURIER:
        step = tf.reshape(step, (*spec.shape[:2], 1, 1))
    return step


def dequantize(symbols: tf.Tensor, log_step16: tf.Tensor, spec: Spec) -> tf.Tensor:
    """Plain weight from integer-valued symbols: the one decoding path all models share."""
    return _from_latent(symbols * step_size(log_step16, spec), spec)


def quantized(scaled: tf.Tensor, log_step16: tf.Tensor, spec: Spec) -> tf.Tensor:
    """The weight a compressible layer computes with: its scaled latent θ / step rounded
    (straight-through gradient, `tfc.round_st`) and dequantized."""
    return dequantize(tfc.round_st(scaled), log_step16, spec)


def entropy_model(rank: int) -> tfc.PowerLawEntropyModel:
    """The power-law entropy model whose penalty is trained and whose code is written."""
    return tfc.PowerLawEntropyModel(coding_rank=rank, alpha=PENALTY_ALPHA)


def latent_penalty(scaled: tf.Tensor, spec: Spec) -> tf.Tensor:
    """The training penalty of one scaled latent θ / step, in nats (un-normalized): at the
    rounded symbols (straight-through), or at θ / step itself without `PENALIZE_SYMBOLS`."""
    values = tfc.round_st(scaled) if PENALIZE_SYMBOLS else scaled
    return entropy_model(len(spec.shape)).penalty(values)


def decoded(spec: Spec, string: Any, side: Any) -> tf.Tensor:
    """One plain weight from its coded form, the one decoding of EPR (a compressed layer's
    call and `objectives.epr_file.load` both use it): a float16 or raw weight is its side
    information itself; a coded one is its range-decoded symbols times the steps the side
    information holds (`dequantize`)."""
    side32 = tf.cast(side, tf.float32)
    if spec.coding in (FLOAT16, RAW):
        return side32
    symbols = entropy_model(len(spec.shape)).decompress(tf.convert_to_tensor(string),
                                                        spec.shape)
    return dequantize(tf.reshape(symbols, spec.shape), side32, spec)
