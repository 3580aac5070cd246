"""TFLite modes: conversions keep the model's predictions, shrink its parameters as each mode
promises, run batched in the interpreter, and fail with a readable `ConversionError`.

One tiny model (conv 8@3x3 → flatten → dense 128 → dense 10, 38,346 parameters) trained for
3 epochs on scikit-learn's 8×8 digits serves every test; its dense kernels are large enough
(≥ 1,024 elements) for dynamic-range quantization to quantize them.

Payload ratios measured on this model over seeds 0–2 (TF 2.14.1): float16/float32 0.495–0.496,
dynamic/float32 0.252–0.254, int8/float32 0.249–0.252. zlib makes them approximate (trained
float32 weights barely compress, int8 ones a little), so the tests allow ±10% of the nominal
½ and ¼ — a mode that stored float32 (ratio 1) or float16 (½) where int8 was promised fails.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from objectives import size, tflite
from objectives.errors import TrialFailure

MODES = tflite.TFLITE_MODES


@pytest.fixture(scope="module")
def digits():
    from studies.datasets import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(128, activation="relu")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(3e-3),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(digits.x_train, digits.y_train, epochs=3, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def keras_logits(trained, digits):
    return trained.predict(digits.x_test, verbose=0)


@pytest.fixture(scope="module")
def flatbuffers(trained, digits) -> dict[str, bytes]:
    return {
        mode: tflite.convert(trained, quantization=mode, representative_x=digits.x_train)
        for mode in MODES
    }


@pytest.fixture(scope="module")
def int8_io_flatbuffer(trained, digits) -> bytes:
    return tflite.convert(
        trained, quantization="int8", representative_x=digits.x_train, int8_io=True
    )


def test_modes_are_the_four_tflite_modes():
    assert MODES == ("float32", "float16", "dynamic", "int8")


def test_float32_flatbuffer_predicts_what_keras_predicts(flatbuffers, digits, keras_logits):
    logits = tflite.predict(flatbuffers["float32"], digits.x_test)
    assert logits.shape == keras_logits.shape and logits.dtype == np.float32
    agreement = np.mean(np.argmax(logits, 1) == np.argmax(keras_logits, 1))
    assert agreement >= 0.99
    np.testing.assert_allclose(logits, keras_logits, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_keeps_the_trained_accuracy(mode, flatbuffers, digits, keras_logits):
    keras_accuracy = np.mean(np.argmax(keras_logits, 1) == digits.y_test)
    assert keras_accuracy > 0.8  # the model learned something, so the comparison means something
    accuracy = tflite.evaluate(flatbuffers[mode], digits.x_test, digits.y_test)
    assert abs(accuracy - keras_accuracy) <= 0.03


def test_float16_payload_is_about_half_of_float32(flatbuffers):
    ratio = size.tflite_payload_bytes(flatbuffers["float16"]) / size.tflite_payload_bytes(
        flatbuffers["float32"]
    )
    assert 0.45 <= ratio <= 0.55


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_int8_weight_modes_payload_is_about_a_quarter_of_float32(mode, flatbuffers):
    ratio = size.tflite_payload_bytes(flatbuffers[mode]) / size.tflite_payload_bytes(
        flatbuffers["float32"]
    )
    assert 0.225 <= ratio <= 0.275


def test_int8_without_int8_io_keeps_float_input_and_output(flatbuffers):
    assert tflite.io_types(flatbuffers["int8"]) == (np.dtype(np.float32), np.dtype(np.float32))


def test_int8_io_model_has_int8_tensors_and_predict_feeds_and_returns_floats(
    int8_io_flatbuffer, flatbuffers, digits, keras_logits
):
    assert tflite.io_types(int8_io_flatbuffer) == (np.dtype(np.int8), np.dtype(np.int8))
    logits = tflite.predict(int8_io_flatbuffer, digits.x_test)
    assert logits.dtype == np.float32 and logits.shape == keras_logits.shape
    # Dequantized int8 logits are close to the float-I/O int8 model's, which quantizes and
    # dequantizes with the same scales inside the graph.
    float_io = tflite.predict(flatbuffers["int8"], digits.x_test)
    assert np.mean(np.argmax(logits, 1) == np.argmax(float_io, 1)) >= 0.97
    assert np.mean(np.argmax(logits, 1) == np.argmax(keras_logits, 1)) >= 0.95
    scale = np.ptp(keras_logits)
    assert np.max(np.abs(logits - keras_logits)) <= 0.1 * scale


class _CountingInterpreter:
    """Wraps a real interpreter and counts `allocate_tensors` and `invoke` calls."""

    def __init__(self, real):
        self.real, self.allocations, self.invocations, self.batch_sizes = real, 0, 0, []

    def allocate_tensors(self):
        self.allocations += 1
        return self.real.allocate_tensors()

    def invoke(self):
        self.invocations += 1
        self.batch_sizes.append(int(self.real.get_input_details()[0]["shape"][0]))
        return self.real.invoke()

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_predict_runs_whole_batches_and_allocates_once_per_batch_size(
    flatbuffers, digits, monkeypatch
):
    made = []
    real_factory = tflite.make_interpreter

    def counting(flatbuffer, **kwargs):
        made.append(_CountingInterpreter(real_factory(flatbuffer, **kwargs)))
        return made[-1]

    monkeypatch.setattr(tflite, "make_interpreter", counting)
    x = digits.x_train[:250]
    batched = tflite.predict(flatbuffers["float32"], x, batch_size=100)
    (interpreter,) = made
    assert interpreter.batch_sizes == [100, 100, 50]
    assert interpreter.allocations == 2
    one_batch = tflite.predict(flatbuffers["float32"], x, batch_size=1024)
    assert made[-1].batch_sizes == [250]
    np.testing.assert_allclose(batched, one_batch, atol=1e-5)


def test_predict_of_nothing_is_an_empty_array_of_the_output_width(flatbuffers, digits):
    out = tflite.predict(flatbuffers["float32"], digits.x_test[:0])
    assert out.shape == (0, 10)


def test_evaluate_is_the_accuracy_of_the_argmax(flatbuffers, digits):
    logits = tflite.predict(flatbuffers["dynamic"], digits.x_test)
    expected = float(np.mean(np.argmax(logits, 1) == digits.y_test))
    assert tflite.evaluate(flatbuffers["dynamic"], digits.x_test, digits.y_test) == expected
    wrong = (digits.y_test + 1) % 10
    assert tflite.evaluate(flatbuffers["dynamic"], digits.x_test, wrong) < 0.2
    with pytest.raises(ValueError, match="labels"):
        tflite.evaluate(flatbuffers["dynamic"], digits.x_test, digits.y_test[:-1])


def test_unknown_mode_is_a_conversion_error_naming_the_modes(trained):
    with pytest.raises(ConversionError := tflite.ConversionError, match="float16"):
        tflite.convert(trained, quantization="int4")
    assert issubclass(ConversionError, TrialFailure)


@pytest.mark.parametrize("data", [None, np.zeros((0, 8, 8, 1), np.float32)])
def test_int8_without_representative_data_is_a_conversion_error(trained, data):
    with pytest.raises(tflite.ConversionError, match="representative"):
        tflite.convert(trained, quantization="int8", representative_x=data)


def test_int8_io_outside_int8_mode_is_a_usage_error(trained):
    with pytest.raises(ValueError, match="int8_io"):
        tflite.convert(trained, quantization="dynamic", int8_io=True)


def test_converter_failure_is_wrapped_with_a_one_line_reason():
    import tensorflow as tf

    # SVD has no TFLite builtin kernel; without Select TF ops the converter must refuse.
    inputs = tf.keras.Input((4, 4))
    outputs = tf.keras.layers.Lambda(lambda m: tf.linalg.svd(m, compute_uv=False))(inputs)
    model = tf.keras.Model(inputs, outputs)
    with pytest.raises(tflite.ConversionError) as caught:
        tflite.convert(model, quantization="float32")
    reason = str(caught.value)
    assert reason.startswith("TFLite float32 conversion failed: ")
    assert "\n" not in reason and len(reason) <= 450
    assert "Svd" in reason
    assert caught.value.__cause__ is not None


def _keras_path(model, *, quantization: str, representative_x) -> bytes:
    """The file of `tf.lite.TFLiteConverter.from_keras_model`, the path `convert` avoids."""
    import tensorflow as tf

    samples = tflite._draw(representative_x, 200) if quantization == "int8" else None
    return tflite._converted(tf.lite.TFLiteConverter.from_keras_model(model),
                             quantization=quantization, samples=samples, int8_io=False)


def _operators_and_signatures(flatbuffer: bytes):
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    operators = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
                 for op in model.subgraphs[0].operators]
    return operators, tf.lite.Interpreter(model_content=flatbuffer).get_signature_list()


@pytest.mark.parametrize("mode", MODES)
def test_a_conversion_is_keras_own_file_op_for_op_with_its_serving_signature(
        mode, trained, digits, flatbuffers):
    """`convert` freezes the model's inference function instead of saving and reloading a
    SavedModel; the file it gives runs the same operators on the same weights (the same
    outputs), the same payload, and the same `serving_default` signature."""
    ours = tflite._frozen_conversion(
        trained, quantization=mode, int8_io=False,
        samples=tflite._draw(digits.x_train, 200) if mode == "int8" else None)
    assert ours is not None and ours == flatbuffers[mode]  # the path `convert` takes
    keras_own = _keras_path(trained, quantization=mode, representative_x=digits.x_train)
    assert _operators_and_signatures(ours) == _operators_and_signatures(keras_own)
    assert size.tflite_payload_bytes(ours) == size.tflite_payload_bytes(keras_own)
    x = digits.x_test[:64]
    assert np.array_equal(tflite.predict(ours, x), tflite.predict(keras_own, x))
    signature = _operators_and_signatures(ours)[1]["serving_default"]
    assert signature["inputs"] == list(trained.input_names)
    assert signature["outputs"] == list(trained.output_names)


def test_a_two_input_model_keeps_its_inputs_in_order_under_their_names():
    import tensorflow as tf

    a, b = tf.keras.Input((3,), name="left"), tf.keras.Input((5,), name="right")
    out = tf.keras.layers.Dense(2, name="scores")(
        tf.keras.layers.Concatenate()([a, tf.keras.layers.Dense(3)(b)]))
    model = tf.keras.Model([a, b], out)
    flatbuffer = tflite.convert(model, quantization="float32")
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    runner = interpreter.get_signature_runner("serving_default")
    x = {"left": np.ones((1, 3), np.float32), "right": np.full((1, 5), 0.5, np.float32)}
    got = runner(**x)["scores"]
    assert np.allclose(got, model.predict([x["left"], x["right"]], verbose=0), atol=1e-5)


def test_a_recurrent_model_converts_by_keras_own_path():
    import tensorflow as tf

    inputs = tf.keras.Input((6, 4), batch_size=2)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(tf.keras.layers.LSTM(5)(inputs)))
    ours = tflite.convert(model, quantization="float32")
    operators, _ = _operators_and_signatures(ours)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in operators  # the fused kernel, found as before
    x = np.random.default_rng(0).random((2, 6, 4), dtype=np.float32)
    assert np.allclose(tflite.predict(ours, x), model.predict(x, verbose=0), atol=1e-5)


def test_representative_draw_is_reproducible_and_spread_over_the_array():
    x = np.arange(1000, dtype=np.float32).reshape(1000, 1, 1, 1)
    drawn = tflite._draw(x, 200)
    assert drawn.shape == (200, 1, 1, 1) and drawn.dtype == np.float32
    np.testing.assert_array_equal(drawn, tflite._draw(x, 200))
    assert drawn.max() > 900  # not just the first 200 rows
    assert len(np.unique(drawn)) == 200
    np.testing.assert_array_equal(tflite._draw(x[:50], 200), x[:50])


def test_save_writes_atomically_and_replaces(tmp_path, flatbuffers):
    path = tmp_path / "sub" / "model.tflite"
    tflite.save(b"old", path)
    tflite.save(flatbuffers["int8"], path)
    assert path.read_bytes() == flatbuffers["int8"]
    assert sorted(os.listdir(path.parent)) == ["model.tflite"]


def test_save_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    tflite.save(b"old", path)

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(tflite.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        tflite.save(b"new", path)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_saved_artifact_evaluates_like_the_bytes(tmp_path, flatbuffers, digits):
    path = tmp_path / "m.tflite"
    tflite.save(flatbuffers["float16"], path)
    assert tflite.evaluate(path.read_bytes(), digits.x_test, digits.y_test) == tflite.evaluate(
        flatbuffers["float16"], digits.x_test, digits.y_test
    )


def test_only_int8_models_are_full_integer(flatbuffers, int8_io_flatbuffer):
    # Decides which kernels score the model: builtin ones for int8, XNNPACK otherwise.
    assert {mode: tflite._is_full_integer(fb) for mode, fb in flatbuffers.items()} == {
        "float32": False, "float16": False, "dynamic": False, "int8": True
    }
    assert tflite._is_full_integer(int8_io_flatbuffer)
