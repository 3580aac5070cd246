"""Feeding Keras images batch by batch, each batch made float32 as it is taken.

A split's images stay in memory as they were read, uint8 for 8-bit pixels
(`studies.datasets`), shared by the forked workers with the driver. Handing Keras the
array would copy all of it into a tensor in each worker (and float32 images would have
been 4 bytes a pixel), so training and prediction read it here instead: one batch of rows
at a time, through `as_float` (uint8 / 255 in float32, floats unchanged).

`training_batches` is the pipeline Keras' `fit` builds for arrays (its
`TensorLikeDataAdapter`: per epoch a permutation of the row indices by
`tf.random.shuffle`, cut into batches, the last one partial) with only the gather replaced,
so the same seed gives the same batches in the same order and, the values being
bit-identical, the same weights as `fit` on the float32 array. `predict` runs
`model.predict` on consecutive batches the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from studies.datasets import as_float

if TYPE_CHECKING:
    import tensorflow as tf
    from tensorflow import keras


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one epoch of `n` examples, the last one partial."""
    return math.ceil(n / batch_size)


def _rows(x: np.ndarray, y: np.ndarray | None) -> Any:
    """A function of a batch's row indices returning its images as float32 (and its
    targets), for `tf.numpy_function`: indexes the arrays in place, copying the batch only."""
    if y is None:
        return lambda rows: as_float(x[rows])
    return lambda rows: (as_float(x[rows]), y[rows])


def _batches_of(indices: tf.data.Dataset, x: np.ndarray, y: np.ndarray | None
                ) -> tf.data.Dataset:
    """`indices` (batches of row indices) mapped to their rows of `x` (and `y`)."""
    import tensorflow as tf

    take = _rows(x, y)

    def grab(rows: tf.Tensor) -> Any:
        if y is None:
            images = tf.numpy_function(take, [rows], tf.float32, stateful=False)
            images.set_shape((None, *x.shape[1:]))
            return images
        images, targets = tf.numpy_function(take, [rows], (tf.float32, tf.as_dtype(y.dtype)),
                                            stateful=False)
        images.set_shape((None, *x.shape[1:]))
        targets.set_shape((None, *y.shape[1:]))
        return images, targets

    return indices.map(grab, num_parallel_calls=tf.data.AUTOTUNE)


def training_batches(x: np.ndarray, y: np.ndarray, *, batch_size: int, epochs: int,
                     shuffle: bool = True) -> tf.data.Dataset:
    """`epochs` epochs of (float32 images, targets) batches of (`x`, `y`), reshuffled each
    epoch, in the order Keras' `fit(x, y, batch_size=..., shuffle=...)` draws them (see the
    module docstring); give `fit` `steps_per_epoch(len(x), batch_size)` with it."""
    import tensorflow as tf

    n = len(x)
    full, partial = divmod(n, batch_size)

    def permutation(_: tf.Tensor) -> tf.Tensor:  # as Keras: a new range, then shuffled
        indices = tf.range(n, dtype=tf.int64)
        if shuffle:
            indices = tf.random.shuffle(indices)
        return indices

    def in_batches(indices: tf.Tensor) -> tf.data.Dataset:
        whole = full * batch_size
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(tf.slice(indices, [0], [whole]), [full, batch_size]))
        if partial:
            batches = batches.concatenate(
                tf.data.Dataset.from_tensors(tf.slice(indices, [whole], [partial])))
        return batches

    indices = tf.data.Dataset.range(1).repeat(epochs).map(permutation).prefetch(1)
    dataset = _batches_of(indices.flat_map(in_batches), x, y)
    options = tf.data.Options()  # Keras' options for arrays
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_external_state_policy = (
        tf.data.experimental.ExternalStatePolicy.IGNORE)
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def predict(model: keras.Model, x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """`model.predict` on `x` in consecutive batches of `batch_size`, each made float32 as
    it is taken: the outputs `model.predict(as_float(x), batch_size=...)` gives, without a
    float32 copy (or a tensor) of all of `x`."""
    import tensorflow as tf

    starts = tf.data.Dataset.range(0, len(x), batch_size)
    indices = starts.map(lambda start: tf.range(start, tf.minimum(start + batch_size, len(x))))
    return model.predict(_batches_of(indices, x, None).prefetch(tf.data.AUTOTUNE), verbose=0)
