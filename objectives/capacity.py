"""Capacity metrics of a built model (seeds 000 and 001) and its per-layer rule table.

- Feature compression ratio (seed 000): input dimensions / dimensions of the embedding
  that enters the classifier head. MobileNetV2 at 224×224×3 → 1280 gives 117.6.
- Memory-equivalent capacity (MEC) of the classifier head, in bits (seed 001, after
  Friedland's engineering rules): a neuron's output carries at most one bit; a neuron's
  capacity is its parameter count in bits; neurons in parallel add; and a layer's
  capacity is capped by the bits the previous layer outputs. So a dense layer of i inputs
  and o outputs with bias has o·(i+1) bits, capped by the previous dense layer's o.

The classifier head is the trailing run of Dense layers; the embedding is its input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search_spaces.rule import factorized_params, rule_of_thumb, square_params

if TYPE_CHECKING:
    from tensorflow import keras


def flat_layers(model: keras.Model) -> list:
    """The model's layers with nested models (e.g. a Keras application backbone) expanded."""
    import tensorflow as tf

    out = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            out.extend(flat_layers(layer))
        else:
            out.append(layer)
    return out


def _head(model: keras.Model) -> list:
    import tensorflow as tf

    layers = [
        la for la in flat_layers(model) if not isinstance(la, tf.keras.layers.InputLayer)
    ]
    head: list = []
    for layer in reversed(layers):
        if isinstance(layer, tf.keras.layers.Dense):
            head.append(layer)
        elif isinstance(layer, tf.keras.layers.Dropout | tf.keras.layers.Activation
                        | tf.keras.layers.Softmax):
            continue
        else:
            break
    if not head:
        raise ValueError(f"model {model.name!r} has no dense classifier head")
    return list(reversed(head))


def embedding_dims(model: keras.Model) -> int:
    """Dimensions of the embedding entering the classifier head."""
    return int(_head(model)[0].kernel.shape[0])


def feature_compression_ratio(model: keras.Model) -> float:
    """Input dimensions / embedding dimensions (seed 000)."""
    input_dims = math.prod(int(d) for d in model.input_shape[1:])
    return input_dims / embedding_dims(model)


def macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference (batch 1): the figure a device user budgets
    compute on, known from the architecture alone (unlike host latency, which says
    nothing of a microcontroller). Counted for the layers that dominate a CNN's work:
    `Conv2D` (H'·W'·kh·kw·c/groups·m, Howard et al. 2017's cost model, seed 000),
    `DepthwiseConv2D` (H'·W'·kh·kw·c·multiplier), `SeparableConv2D` (its depthwise and
    pointwise parts) and `Dense` (inputs · units per position); pooling, activations,
    BatchNorm (folded into the conv by the converter) and additions are left out."""
    import tensorflow as tf

    layers = tf.keras.layers
    total = 0
    for layer in flat_layers(model):
        if not isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D
                          | layers.SeparableConv2D | layers.Dense):
            continue
        out = layer.output_shape
        positions = math.prod(int(d) for d in out[1:-1]) if len(out) > 2 else 1
        if isinstance(layer, layers.Dense):
            inputs, units = (int(d) for d in layer.kernel.shape)
            total += positions * inputs * units
            continue
        if isinstance(layer, layers.SeparableConv2D | layers.DepthwiseConv2D):
            kh, kw, c, multiplier = (int(d) for d in layer.depthwise_kernel.shape)
            total += positions * kh * kw * c * multiplier
            if isinstance(layer, layers.SeparableConv2D):
                total += positions * c * multiplier * int(out[-1])
            continue
        kh, kw, c_per_group, m = (int(d) for d in layer.kernel.shape)
        total += positions * kh * kw * c_per_group * m
    return total


def summary(model: keras.Model) -> dict[str, int | float | None]:
    """`head_mec_bits`, `feature_compression_ratio` and `embedding_dims`, each None for a
    model without a dense classifier head (e.g. a fully convolutional one)."""
    try:
        return {
            "head_mec_bits": head_mec_bits(model),
            "feature_compression_ratio": feature_compression_ratio(model),
            "embedding_dims": embedding_dims(model),
        }
    except ValueError:
        return dict.fromkeys(("head_mec_bits", "feature_compression_ratio", "embedding_dims"))


def head_mec_bits(model: keras.Model) -> int:
    """MEC of the classifier head in bits by the four rules of seed 001."""
    total = 0
    previous_outputs: int | None = None
    for layer in _head(model):
        inputs, outputs = (int(d) for d in layer.kernel.shape)
        bits = outputs * (inputs + (1 if layer.use_bias else 0))
        if previous_outputs is not None:
            bits = min(bits, previous_outputs)
        total += bits
        previous_outputs = outputs
    return total


@dataclass(frozen=True)
class LayerRow:
    """One parameterized layer as `inspect` shows it."""

    name: str
    kind: str
    n: int | None
    m: int | None
    c: int | None
    params: int
    p0: int | None = None
    p1: int | None = None
    factorized: bool = False

    @property
    def m_over_c(self) -> float | None:
        return None if not (self.m and self.c) else self.m / self.c

    @property
    def rule(self) -> bool | None:
        """n > 1 + m/c, for n×n convs with n > 1 (and factorized pairs)."""
        if self.p0 is None:
            return None
        return rule_of_thumb(n=self.n, m=self.m, c=self.c)

    @property
    def pays(self) -> bool | None:
        """P1 < P0, exactly."""
        return None if self.p0 is None else self.p1 < self.p0


def layer_rows(model: keras.Model) -> list[LayerRow]:
    """Per-layer table: type, n, m, c, parameters, P0/P1 and whether factorized.

    An n×1 conv named `<layer>_nx1` followed by `<layer>_1xn` is shown as one factorized
    row named `<layer>` whose parameters are the pair's.
    """
    import tensorflow as tf

    rows: list[LayerRow] = []
    layers = [la for la in flat_layers(model) if la.count_params() > 0]
    i = 0
    while i < len(layers):
        layer = layers[i]
        params = layer.count_params()
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            kh, _ = layer.kernel_size
            c = int(layer.depthwise_kernel.shape[2])
            rows.append(LayerRow(layer.name, "DepthwiseConv2D", kh, c, c, params))
        elif isinstance(layer, tf.keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            c, m = (int(d) for d in layer.kernel.shape[2:])
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if kw == 1 and kh > 1 and layer.name.endswith(f"_{kh}x1") and nxt is not None:
                n = kh
                rows.append(
                    LayerRow(
                        layer.name[: -len(f"_{n}x1")], "Conv2D", n, m, c,
                        params + nxt.count_params(),
                        square_params(n=n, m=m, c=c), factorized_params(n=n, m=m, c=c),
                        factorized=True,
                    )
                )
                i += 2
                continue
            if kh == kw and kh > 1:
                rows.append(
                    LayerRow(
                        layer.name, "Conv2D", kh, m, c, params,
                        square_params(n=kh, m=m, c=c), factorized_params(n=kh, m=m, c=c),
                    )
                )
            else:
                rows.append(LayerRow(layer.name, "Conv2D", kh, m, c, params))
        elif isinstance(layer, tf.keras.layers.Dense):
            c, m = (int(d) for d in layer.kernel.shape)
            rows.append(LayerRow(layer.name, "Dense", None, m, c, params))
        else:
            rows.append(LayerRow(layer.name, type(layer).__name__, None, None, None, params))
        i += 1
    return rows
