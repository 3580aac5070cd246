"""TFLite quantization modes (seed 003): convert a Keras model, run and score the flatbuffer.

Modes (post-training quantization with `tf.lite.TFLiteConverter`):

- `float32`: no optimization; the reference flatbuffer.
- `float16`: weights stored as float16 (`target_spec.supported_types = [tf.float16]`).
- `dynamic`: dynamic-range quantization, int8 weights and float activations.
- `int8`: full integer quantization, calibrated on a representative dataset drawn from
  the training split; builtin int8 ops only; optionally int8 input and output tensors.

A trial's accuracy is the flatbuffer's, measured by the TFLite interpreter itself,
batched: the input tensor is resized to the batch instead of feeding one image at a time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from objectives.errors import TrialFailure

if TYPE_CHECKING:
    from tensorflow import keras

TFLITE_MODES: tuple[str, ...] = ("float32", "float16", "dynamic", "int8")


class ConversionError(TrialFailure):
    """The converter could not produce a flatbuffer for this model and mode."""


def convert(
    model: keras.Model,
    *,
    quantization: str,
    representative_x: np.ndarray | None = None,
    int8_io: bool = False,
    representative_samples: int = 200,
) -> bytes:
    """The model as a TFLite flatbuffer in `quantization` mode; `ConversionError` if not."""
    import tensorflow as tf

    if quantization not in TFLITE_MODES:
        raise ConversionError(
            f"unknown TFLite mode {quantization!r}; choose one of {', '.join(TFLITE_MODES)}"
        )
    if quantization == "int8" and (representative_x is None or len(representative_x) == 0):
        raise ConversionError("int8 quantization needs representative data")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        samples = np.asarray(representative_x[:representative_samples], dtype=np.float32)

        def representative():
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        return bytes(converter.convert())
    except Exception as error:  # the converter raises many types (ConverterError, ValueError…)
        message = str(error).strip().splitlines()
        raise ConversionError(
            f"TFLite {quantization} conversion failed: {type(error).__name__}: "
            f"{message[0] if message else ''}"
        ) from error


def _interpreter(flatbuffer: bytes):
    import tensorflow as tf

    return tf.lite.Interpreter(model_content=flatbuffer, num_threads=os.cpu_count() or 1)


def predict(flatbuffer: bytes, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Float outputs (N, classes) of the flatbuffer on `x`, run in batches."""
    interpreter = _interpreter(flatbuffer)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    outputs: list[np.ndarray] = []
    allocated = None
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start : start + batch_size], dtype=np.float32)
        if allocated != len(batch):
            interpreter.resize_tensor_input(inp["index"], [len(batch), *batch.shape[1:]])
            interpreter.allocate_tensors()
            allocated = len(batch)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            batch = np.clip(np.round(batch / scale + zero), info.min, info.max)
            batch = batch.astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        result = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            result = (result.astype(np.float32) - zero) * scale
        outputs.append(np.array(result, dtype=np.float32))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def evaluate(flatbuffer: bytes, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1024) -> float:
    """Top-1 accuracy of the flatbuffer on (x, y)."""
    return float(np.mean(np.argmax(predict(flatbuffer, x, batch_size=batch_size), -1) == y))


def io_types(flatbuffer: bytes) -> tuple[np.dtype, np.dtype]:
    """The dtypes of the model's input and output tensors."""
    interpreter = _interpreter(flatbuffer)
    return (interpreter.get_input_details()[0]["dtype"],
            interpreter.get_output_details()[0]["dtype"])


def save(flatbuffer: bytes, path: str | os.PathLike) -> None:
    """Writes the flatbuffer atomically: a temp file in the same folder, then a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(flatbuffer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
