"""The plain Keras layers EPR wraps: which they are, how each computes given its weights,
how each weight is coded, and the options EPR refuses.

Dense, Conv2D (channels_last, groups=1, any strides, valid/same padding, dilation),
DepthwiseConv2D and BatchNormalization (axis -1, no renorm / virtual batches), exactly
those classes (subclasses excluded). A compressible or compressed layer
(`objectives.epr_layers`) computes what its plain layer computes, from the weights it
quantized or decoded (`FORWARD`).
"""

from __future__ import annotations

import tensorflow as tf

from objectives.epr_maths import FLOAT16, FOURIER, SCALAR
from objectives.errors import EPRError


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


#: The forward computation of each supported plain class: (config, weights, input) → output.
FORWARD = {
    "Dense": _dense,
    "Conv2D": _conv2d,
    "DepthwiseConv2D": _depthwise2d,
    "BatchNormalization": _batch_norm,
}
_FOURIER_WEIGHTS = {("Conv2D", "kernel"), ("DepthwiseConv2D", "depthwise_kernel")}
_FLOAT16_WEIGHTS = {("BatchNormalization", "moving_mean"),
                    ("BatchNormalization", "moving_variance")}


def plain_class(layer: tf.keras.layers.Layer) -> str | None:
    """The supported plain class `layer` is exactly an instance of (subclasses excluded)."""
    for name in FORWARD:
        if type(layer) is getattr(tf.keras.layers, name):
            return name
    return None


def weight_name(variable: tf.Variable) -> str:
    """A layer variable's own name (`kernel`, `bias`, …), without its scope and index."""
    return variable.name.rsplit("/", 1)[-1].split(":")[0]


def weight_coding(kind: str, name: str) -> str:
    """How weight `name` of a supported `kind` of layer is coded: conv kernels in the
    Fourier domain, BN moving statistics as float16 side information, the rest scalar."""
    if (kind, name) in _FOURIER_WEIGHTS:
        return FOURIER
    if (kind, name) in _FLOAT16_WEIGHTS:
        return FLOAT16
    return SCALAR


def check_supported(layer: tf.keras.layers.Layer, kind: str) -> None:
    """Raises `EPRError` for an option of `layer` (a `kind` EPR wraps) that the EPR layers
    do not implement (channels first, groups, BN over another axis, a float16 layer)."""
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
    """The layer's input shape (that of its first call when it is called more than once)."""
    try:
        return tuple(layer.input_shape)
    except AttributeError:  # a layer used more than once has no single input shape
        return tuple(layer.get_input_shape_at(0))
