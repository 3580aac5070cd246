"""TFLite quantization modes (seed 003): convert a Keras model, then run and score the flatbuffer.

Four post-training modes of `tf.lite.TFLiteConverter` (the fifth quantization mode of the
search space, `epr`, lives in `objectives.epr`):

- `float32`: no optimization; the reference flatbuffer, 4 bytes per parameter.
- `float16`: float constants stored as float16 (`target_spec.supported_types =
  [tf.float16]`); the interpreter dequantizes them to float32 when it loads the model.
- `dynamic`: dynamic-range quantization (`Optimize.DEFAULT`, no representative data):
  int8 weights with float scales, float activations. The converter only quantizes weight
  tensors of at least 1,024 elements; smaller ones (biases, a first 5×5×1×20 conv) stay
  float32, so small models shrink by less than 4×.
- `int8`: full integer quantization, calibrated on a representative dataset drawn from the
  training data; builtin int8 ops only (a model with an op that has no int8 kernel fails
  to convert rather than silently keeping float ops); with `int8_io=True` the input and
  output tensors are int8 as well, otherwise they stay float32 with (de)quantize ops.

A trial's accuracy is the flatbuffer's own, measured by the TFLite interpreter (DESIGN §1),
batched: the input tensor is resized to a whole batch instead of feeding one image at a
time, which would make evaluation one to two orders of magnitude slower than Keras.

Every converter failure surfaces as `ConversionError`, a `TrialFailure`: the study marks
the trial FAIL with the reason and goes on (DESIGN §7.5). Misuse of the API (a bad
argument combination) raises `ValueError`, because it is a bug, not an infeasible candidate.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import numpy as np

from definitions.errors import one_line
from definitions.vocabulary import TFLITE_MODES
from objectives.errors import TrialFailure
from studies.datasets import as_float

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import tensorflow as tf
    from tensorflow import keras

    from objectives.flatbuffer import ParsedFlatbuffer


#: Seed of the draw of representative examples from `representative_x`, fixed so that a
#: trial's int8 calibration (hence its accuracy) is reproducible.
REPRESENTATIVE_SEED = 0


class ConversionError(TrialFailure):
    """The converter could not turn this model into a flatbuffer in the requested mode."""

    kind = "conversion_failed"


def convert(
    model: keras.Model,
    *,
    quantization: str,
    representative_x: np.ndarray | None = None,
    int8_io: bool = False,
    representative_samples: int = 200,
) -> bytes:
    """The Keras model as a TFLite flatbuffer in `quantization` mode (one of `TFLITE_MODES`).

    `representative_x` (images shaped like the model's input, uint8 or float: `as_float`)
    is used by `int8` only: `representative_samples` examples are drawn from it without
    replacement (all of them when it is smaller) with a fixed seed and fed one at a time
    to the calibrator. A drawn subset rather than the first rows, so that a class-sorted
    array still calibrates on every class. `int8_io` makes the int8 model's input and
    output tensors int8.

    Raises `ConversionError` for an unknown mode, `int8` without representative data, or
    any failure of the converter; `ValueError` for `int8_io` outside `int8` mode or a
    non-positive `representative_samples`.
    """
    if quantization not in TFLITE_MODES:
        raise ConversionError(
            f"unknown TFLite quantization mode {quantization!r}; "
            f"choose one of {', '.join(TFLITE_MODES)}"
        )
    if int8_io and quantization != "int8":
        raise ValueError(f"int8_io=True needs quantization='int8', not {quantization!r}")
    if representative_samples < 1:
        raise ValueError(f"representative_samples must be positive, not {representative_samples}")
    samples = None
    if quantization == "int8":
        if representative_x is None or len(representative_x) == 0:
            raise ConversionError(
                "int8 quantization needs representative data (representative_x) to calibrate "
                "activation ranges; none was given"
            )
        samples = _draw(np.asarray(representative_x), representative_samples)

    try:
        flatbuffer = _frozen_conversion(model, quantization=quantization, samples=samples,
                                        int8_io=int8_io)
    except Exception:  # whatever the fast path cannot do, Keras' own path is asked
        flatbuffer = None
    if flatbuffer is None:
        import tensorflow as tf

        try:
            flatbuffer = _converted(tf.lite.TFLiteConverter.from_keras_model(model),
                                    quantization=quantization, samples=samples,
                                    int8_io=int8_io)
        except Exception as error:  # the converter raises many unrelated types
            raise ConversionError(
                f"TFLite {quantization} conversion failed: {_reason(error)}"
            ) from error
    if not flatbuffer:
        raise ConversionError(f"TFLite {quantization} conversion produced an empty flatbuffer")
    return bytes(flatbuffer)


def _frozen_conversion(model: keras.Model, *, quantization: str,
                       samples: np.ndarray | None, int8_io: bool) -> bytes | None:
    """The flatbuffer of `model` from its inference function with the variables frozen
    into constants, or None for a model this path does not take.

    Why: TF 2.14's `from_keras_model` saves the model as a SavedModel and loads it back
    on every conversion, 0.29 s of the 0.33 s a small CNN takes; the frozen concrete
    function gives the same operators, tensors and weights (the same outputs, bit for bit,
    in every mode) in 0.04 s. What the SavedModel path adds, the `serving_default`
    signature keyed by the model's input and output names, is written back into the file
    (`_with_serving_signature`), so a phone's signature runner sees the same file.
    Models with recurrent layers keep Keras' path: their fused kernels are found from
    SavedModel attributes."""
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    input_names = list(getattr(model, "input_names", None) or ())
    output_names = list(getattr(model, "output_names", None) or ())
    if not inputs or len(input_names) != len(inputs) or not output_names or any(
            isinstance(layer, tf.keras.layers.RNN) for layer in model.submodules):
        return None
    specs = [tf.TensorSpec(t.shape, t.dtype) for t in inputs]

    def serve(*x: tf.Tensor) -> tf.Tensor:
        return model(x[0] if len(x) == 1 else list(x), training=False)

    function = tf.function(serve).get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.experimental_lower_to_saved_model = False
    flatbuffer = _converted(converter, quantization=quantization, samples=samples,
                            int8_io=int8_io)
    return _with_serving_signature(flatbuffer, inputs=input_names, outputs=output_names)


def _with_serving_signature(flatbuffer: bytes, *, inputs: list[str],
                            outputs: list[str]) -> bytes | None:
    """`flatbuffer` with one `serving_default` signature mapping `inputs` and `outputs`
    (names, in the order of the main subgraph's input and output tensors) to them, as
    Keras' SavedModel path writes it; None when the counts do not match."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    if len(graph.inputs) != len(inputs) or len(graph.outputs) != len(outputs):
        return None

    def entries(names: list[str], tensors: Iterable[int]) -> list:
        rows = []
        for name, index in zip(names, tensors, strict=True):
            row = schema.TensorMapT()
            row.name, row.tensorIndex = name, int(index)
            rows.append(row)
        return rows

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs = entries(inputs, graph.inputs)
    signature.outputs = entries(outputs, graph.outputs)
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _converted(converter, *, quantization: str, samples: np.ndarray | None,
               int8_io: bool) -> bytes:
    """`converter` set for `quantization` (seed 003), converted."""
    import tensorflow as tf

    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_dataset(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # TF 2.14 warns on every int8 conversion from Keras although calibration ran.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def _draw(x: np.ndarray, n: int) -> np.ndarray:
    """`n` rows of `x` (all of them if it has fewer), as float32 (`as_float`: uint8 / 255),
    in their original order."""
    if len(x) > n:
        rows = np.sort(np.random.default_rng(REPRESENTATIVE_SEED).choice(len(x), n, replace=False))
        x = x[rows]
    return np.ascontiguousarray(as_float(x))


def _representative_dataset(samples: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's `representative_dataset`: a callable yielding one-example batches."""

    def generate() -> Iterator[list[np.ndarray]]:
        for i in range(len(samples)):
            yield [samples[i : i + 1]]

    return generate


def _reason(error: Exception) -> str:
    """A one-line, bounded reason from a converter exception.

    Converter errors are multi-line MLIR diagnostics; the line that says `error:` is the
    informative one, else the first non-empty line.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    chosen = next((line for line in lines if "error:" in line), lines[0] if lines else "")
    text = f"{type(error).__name__}: {chosen}" if chosen else type(error).__name__
    return one_line(text)


def _is_full_integer(flatbuffer: bytes | ParsedFlatbuffer) -> bool:
    """Whether some operator of the model outputs an int8 tensor (an `int8`-mode model).

    Dynamic-range and float16 models hold int8/float16 constants but compute in float,
    so none of their operators outputs int8.
    """
    from tflite.TensorType import TensorType

    from objectives.flatbuffer import parse

    model = parse(flatbuffer).model
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            for k in range(op.OutputsLength()):
                index = op.Outputs(k)
                if index >= 0 and graph.Tensors(index).Type() == TensorType.INT8:
                    return True
    return False


def make_interpreter(flatbuffer: bytes | ParsedFlatbuffer, *, num_threads: int = 1
                     ) -> tf.lite.Interpreter:
    """A `tf.lite.Interpreter` for the flatbuffer (its bytes, or the file already parsed).

    Float, float16 and dynamic-range models run with the default XNNPACK delegate;
    full-integer models with the builtin kernels alone, which measured 1.7× faster than
    TF 2.14's XNNPACK on an int8 LeNet5-Caffe (0.43 s against 0.74 s for 6,000 images).
    """
    import tensorflow as tf

    from objectives.flatbuffer import parse

    parsed = parse(flatbuffer)
    resolver = tf.lite.experimental.OpResolverType
    kind = (resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES if _is_full_integer(parsed)
            else resolver.AUTO)
    return tf.lite.Interpreter(
        model_content=parsed.data, num_threads=num_threads, experimental_op_resolver_type=kind
    )


def predict(
    flatbuffer: bytes | ParsedFlatbuffer, x: np.ndarray, *, batch_size: int = 1024,
    num_threads: int = 1,
) -> np.ndarray:
    """Float outputs, shape (N, classes), of the flatbuffer's interpreter on inputs `x`.

    Runs in batches of `batch_size`: the input tensor is resized to the batch and tensors
    are (re)allocated only when the batch size changes (at most twice: full batches, then
    the remainder). Inputs are quantized with the input tensor's scale and zero point when
    it is an integer tensor (`int8_io`), and integer outputs are dequantized with theirs,
    so callers always pass images as kept in memory (uint8 or float, made float32 per
    batch by `as_float`) and get floats.

    `num_threads` defaults to 1: on 2 shared cores, 2 interpreter threads measured 1.3× to
    2.5× slower than one (TFLite's thread pools spin-wait, and suffer when another process
    holds a core), while study workers already run in parallel. Raise it on a dedicated
    many-core machine.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be positive, not {num_threads}")
    interpreter = make_interpreter(flatbuffer, num_threads=num_threads)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"expected a model with one input and one output, got {len(inputs)} and {len(outputs)}"
        )
    inp, out = inputs[0], outputs[0]
    x = np.asarray(x)
    if len(x) == 0:
        return np.zeros((0, *out["shape"][1:]), dtype=np.float32)
    results: list[np.ndarray] = []
    allocated_for = None
    for start in range(0, len(x), batch_size):
        batch = as_float(x[start : start + batch_size])
        if allocated_for != len(batch):
            interpreter.resize_tensor_input(inp["index"], [len(batch), *batch.shape[1:]])
            interpreter.allocate_tensors()
            allocated_for = len(batch)
        interpreter.set_tensor(inp["index"], _quantize(batch, inp))
        interpreter.invoke()
        results.append(_dequantize(interpreter.get_tensor(out["index"]), out))
    return np.concatenate(results)


def _quantize(batch: np.ndarray, detail: dict) -> np.ndarray:
    """The batch in the input tensor's dtype: q = round(x / scale) + zero_point, clipped."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.asarray(batch, dtype=dtype)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        raise ValueError(f"integer input tensor of type {dtype} has no quantization scale")
    info = np.iinfo(dtype)
    q = np.round(np.asarray(batch, dtype=np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Output values as float32: (q - zero_point) · scale for an integer tensor."""
    if np.dtype(detail["dtype"]).kind == "f":
        return np.asarray(values, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def evaluate(
    flatbuffer: bytes | ParsedFlatbuffer, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1024,
    num_threads: int = 1,
) -> float:
    """Top-1 accuracy of the flatbuffer on (x, y): argmax of `predict` against labels `y`."""
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    if len(y) == 0:
        raise ValueError("cannot evaluate on zero examples")
    logits = predict(flatbuffer, x, batch_size=batch_size, num_threads=num_threads)
    predictions = np.argmax(logits, axis=-1)
    return float(np.mean(predictions == y))


def io_types(flatbuffer: bytes) -> tuple[np.dtype, np.dtype]:
    """The dtypes of the flatbuffer's input and output tensors (int8 with `int8_io`)."""
    interpreter = make_interpreter(flatbuffer)
    return (
        np.dtype(interpreter.get_input_details()[0]["dtype"]),
        np.dtype(interpreter.get_output_details()[0]["dtype"]),
    )


def io_quantization(flatbuffer: bytes) -> dict[str, dict[str, object]]:
    """How a device feeds the model and reads its answer: {"input": ..., "output": ...},
    each {"shape", "dtype", "scale", "zero_point"} of the main subgraph's one input or
    output tensor, JSON-ready (a list of ints, a dtype name such as "int8" or "float32",
    a float and an int; scale and zero point None for an unquantized tensor).

    An integer input takes q = round(x / scale) + zero_point, clipped to its type; an
    integer output means (q - zero_point) · scale, as `predict` does. Read from the
    flatbuffer with the `tflite` package (no interpreter, no TensorFlow). `ValueError` for
    a model with other than one input and one output.
    """
    from tflite.TensorType import TensorType

    from objectives.flatbuffer import read_model

    type_names = {value: name.lower() for name, value in vars(TensorType).items()
                  if not name.startswith("_")}
    graph = read_model(bytes(flatbuffer)).Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise ValueError(f"expected a model with one input and one output, got "
                         f"{graph.InputsLength()} and {graph.OutputsLength()}")
    return {
        "input": _tensor_io(graph.Tensors(graph.Inputs(0)), type_names),
        "output": _tensor_io(graph.Tensors(graph.Outputs(0)), type_names),
    }


def _tensor_io(tensor, type_names: dict[int, str]) -> dict[str, object]:
    """One tensor's shape, dtype name, and its scale and zero point (None when it has none;
    lists for the rare tensor quantized per channel)."""
    from objectives.flatbuffer import quantization

    scales, zero_points = quantization(tensor) or (np.zeros(0), np.zeros(0))
    scale: object = None
    zero_point: object = None
    if len(scales) == 1:
        scale = float(scales[0])
        zero_point = int(zero_points[0]) if len(zero_points) else 0
    elif len(scales) > 1:
        scale = [float(s) for s in scales]
        zero_point = [int(z) for z in zero_points]
    return {
        "shape": [int(tensor.Shape(k)) for k in range(tensor.ShapeLength())],
        "dtype": type_names.get(tensor.Type(), str(tensor.Type())),
        "scale": scale,
        "zero_point": zero_point,
    }


def convert_for_device(model: keras.Model, *, quantization: str,
                       representative_x: np.ndarray | None = None) -> bytes:
    """The file a device runs in `quantization` mode: `convert`, and a full-integer file
    takes and gives int8 (`int8_io`), since a microcontroller feeds int8. The one place
    that choice is made for the search's artifacts, its untrained footprints, `inspect`
    and `export`'s device file."""
    return convert(model, quantization=quantization, representative_x=representative_x,
                   int8_io=quantization == "int8")


def save(flatbuffer: bytes, path: str | os.PathLike) -> None:
    """Writes the flatbuffer to `path` atomically (`objectives.files.write_atomically`), so
    a killed trial never leaves a truncated artifact under the name."""
    from objectives.files import write_atomically

    write_atomically(path, flatbuffer)
