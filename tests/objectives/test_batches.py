"""Images kept as uint8 train and evaluate as their float32 values did (issue 31): the same
batches in the same order, bit-identical weights, predictions and accuracies, and never
more than a batch made float32 at a time."""

from __future__ import annotations

import numpy as np
import pytest

from objectives import batches, tflite
from objectives.train import accuracy, compile_model, train
from studies.datasets import as_float

N, BATCH = 200, 32  # 6 full batches and a partial one of 8


def _images(n=N):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    return x, (x[:, :4].mean(axis=(1, 2, 3)) > 127).astype(np.int64) + 2 * (x[:, 4:].mean(
        axis=(1, 2, 3)) > 127)


def _model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)), tf.keras.layers.Conv2D(4, 3, activation="relu"),
        tf.keras.layers.Flatten(), tf.keras.layers.Dropout(0.3), tf.keras.layers.Dense(4),
    ])


def test_training_on_uint8_images_gives_the_weights_keras_fit_gives_on_their_float32_values():
    import tensorflow as tf

    x, y = _images()
    mine = _model()
    record = train(mine, x=x, y=y, x_val=x[:50], y_val=y[:50], epochs=3, batch_size=BATCH,
                   accuracy_floor=0.0, seed=7)
    before = _model()  # what `train` did before issue 31: `fit` on the float32 array
    tf.keras.utils.set_random_seed(7)
    compile_model(before)
    history = before.fit(as_float(x), y, batch_size=BATCH, epochs=3, shuffle=True, verbose=0)
    assert record.losses == tuple(history.history["loss"])
    for got, expected in zip(mine.get_weights(), before.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    unshuffled = _model()  # the order matters: without Keras' shuffle the weights differ
    tf.keras.utils.set_random_seed(7)
    compile_model(unshuffled)
    unshuffled.fit(as_float(x), y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    assert not np.array_equal(unshuffled.get_weights()[-1], mine.get_weights()[-1])


def test_predictions_and_accuracy_on_uint8_images_equal_keras_on_their_float32_values():
    x, y = _images(1100)  # two full batches of 512 and a partial one
    model = _model()
    expected = model.predict(as_float(x), batch_size=512, verbose=0)
    got = batches.predict(model, x, batch_size=512)
    assert got.dtype == expected.dtype and got.shape == (1100, 4)
    np.testing.assert_array_equal(got, expected)
    assert accuracy(model, x, y) == float(np.mean(np.argmax(expected, axis=-1) == y))


def test_training_and_evaluation_make_at_most_one_batch_float32_at_a_time(monkeypatch):
    rows = []

    def recorded(x):
        rows.append(len(x))
        return as_float(x)

    monkeypatch.setattr(batches, "as_float", recorded)
    x, y = _images()
    x_val, y_val = _images(1100)
    train(_model(), x=x, y=y, x_val=x_val, y_val=y_val, epochs=2, batch_size=BATCH,
          accuracy_floor=0.0, seed=0)
    # training batches of 32 (the last of each epoch 8), the floor check's of 512 (then 76)
    assert set(rows) == {BATCH, N % BATCH, 512, 1100 % 512} and sum(rows) == 2 * N + 1100


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_a_tflite_file_calibrates_and_evaluates_on_uint8_as_on_float32(mode):
    x, y = _images()
    model = _model()
    flatbuffer = tflite.convert(model, quantization=mode, representative_x=x)
    assert flatbuffer == tflite.convert(model, quantization=mode,
                                        representative_x=as_float(x))
    np.testing.assert_array_equal(tflite.predict(flatbuffer, x, batch_size=64),
                                  tflite.predict(flatbuffer, as_float(x), batch_size=64))
    assert tflite.evaluate(flatbuffer, x, y) == tflite.evaluate(flatbuffer, as_float(x), y)
