"""An `int8` trial's artifact is integer end to end: the pipeline converts it with int8
input and output, and the accuracy `tflite.evaluate` reports is the one a device gets by
quantizing its input with the input tensor's scale and zero point, invoking, and taking
the argmax of the raw int8 output.

One real trial of the pipeline (`evaluate_candidate`): `tiny_cnn` at width 0.5 on 8×8
digits, 3 epochs, about 10 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from objectives import micro, tflite
from objectives.pipeline import evaluate_candidate
from search_spaces import Candidate
from studies.base import Budget
from studies.datasets import load_dataset
from studies.references import ParentSource


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def int8_trial(digits, tmp_path_factory):
    """The pipeline's result and artifact bytes for an int8 candidate."""
    result = evaluate_candidate(
        candidate=Candidate(width=0.5, quantization="int8"),
        parent=ParentSource(kind="family", target="tiny_cnn"),
        splits=digits, budget=Budget(epochs=3, batch_size=32, n_trials=1),
        accuracy_floor=0.0, usable_accuracy=0.0,
        artifact_dir=tmp_path_factory.mktemp("artifacts"), trial_number=0, seed=0,
    )
    return result, Path(result.artifact_path).read_bytes()


def _manual_accuracy(flatbuffer: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """What a device does: q = round(x / scale) + zero_point (clipped), one image at a
    time in the builtin interpreter, argmax of the int8 output."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    correct = 0
    for image, label in zip(x, y, strict=True):
        q = np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)
    return correct / len(y)


def test_the_pipelines_int8_artifact_takes_and_gives_int8(int8_trial):
    _, flatbuffer = int8_trial
    assert tflite.io_types(flatbuffer) == (np.dtype(np.int8), np.dtype(np.int8))
    names = [op["builtin"] for op in micro.operators(flatbuffer)]
    # int8 I/O: no float boundary left to convert at either end
    assert "QUANTIZE" not in names and "DEQUANTIZE" not in names
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(names)


def test_its_accuracy_is_what_quantize_invoke_argmax_gives(int8_trial, digits):
    result, flatbuffer = int8_trial
    assert result.accuracy > 0.5  # a trained model, so agreement is not agreement on noise
    evaluated = tflite.evaluate(flatbuffer, digits.x_val, digits.y_val)
    assert evaluated == result.accuracy
    manual = _manual_accuracy(flatbuffer, digits.x_val, digits.y_val)
    assert abs(manual - evaluated) <= 1 / len(digits.y_val) + 1e-12


def test_io_quantization_names_what_the_interpreter_uses(int8_trial):
    import tensorflow as tf

    _, flatbuffer = int8_trial
    io = tflite.io_quantization(flatbuffer)
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    for side, detail in (("input", interpreter.get_input_details()[0]),
                         ("output", interpreter.get_output_details()[0])):
        scale, zero_point = detail["quantization"]
        assert io[side] == {"shape": [int(d) for d in detail["shape"]], "dtype": "int8",
                            "scale": pytest.approx(scale, rel=1e-7), "zero_point": zero_point}
        assert io[side]["scale"] > 0 and -128 <= io[side]["zero_point"] <= 127
    assert io["input"]["shape"] == [1, 8, 8, 1] and io["output"]["shape"] == [1, 10]


def test_io_quantization_of_a_float_model_has_no_scale(digits):
    import tensorflow as tf

    inputs = tf.keras.Input((8, 8, 1))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(tf.keras.layers.Flatten()(inputs)))
    io = tflite.io_quantization(tflite.convert(model, quantization="float32"))
    assert io["input"] == {"shape": [1, 8, 8, 1], "dtype": "float32", "scale": None,
                           "zero_point": None}
    assert io["output"]["dtype"] == "float32" and io["output"]["scale"] is None
