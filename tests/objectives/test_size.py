"""Byte accounting: one definition, gzip/zlib figures, EPR payload arithmetic, and the TFLite
payload: exactly the parameter tensors' stored bytes, zlib -9 compressed.

The TFLite tests use untrained tiny models (conv 4@3x3 → flatten → dense → dense 10 on 8×8×1
inputs): what is counted does not depend on training, and conversion takes ~0.5 s each.
The flatbuffer is parsed with the `tflite` package; TensorFlow's private generated schema,
which the parser first used, serves as the oracle its blobs must equal byte for byte.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import zlib

import numpy as np
import pytest

from objectives import size
from tests.conftest import ROOT


def test_artifact_figures_read_the_files(tmp_path):
    data = bytes(range(256)) * 40
    (tmp_path / "a.bin").write_bytes(data)
    (tmp_path / "b.bin").write_bytes(b"x" * 1000)
    figures = size.artifact_figures([tmp_path / "a.bin", tmp_path / "b.bin"], payload_bytes=77)
    assert figures.payload_bytes == 77
    assert figures.artifact_bytes == len(data) + 1000
    assert figures.artifact_gzip_bytes == (
        len(gzip.compress(data, 9, mtime=0)) + len(gzip.compress(b"x" * 1000, 9, mtime=0))
    )
    assert figures.as_dict()["size_definition"] == size.SIZE_DEFINITION


def test_epr_payload_is_strings_plus_side_info():
    assert size.epr_payload_bytes(strings=[b"abc", b"", b"defgh"], side_info_bytes=6) == 14


def test_zlib_size_is_level_nine():
    data = b"abcabcabd" * 100
    assert size.zlib_size(data) == len(zlib.compress(data, 9))


def _model(*, hidden: int = 64, zeros: bool = False):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = tf.keras.layers.Flatten()(x)  # a RESHAPE with an int32 shape constant: not a parameter
    x = tf.keras.layers.Dense(hidden, activation="relu")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x))
    rng = np.random.default_rng(1)
    # Non-zero biases: the converter drops an all-zero dense bias (the op's bias is optional),
    # which would make the exact counts below depend on initialization.
    model.set_weights([np.zeros_like(w) if zeros else
                       w if w.ndim > 1 else rng.normal(0, 0.1, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def _convert(model, mode: str) -> bytes:
    from objectives import tflite

    rng = np.random.default_rng(0)
    return tflite.convert(model, quantization=mode,
                          representative_x=rng.random((32, 8, 8, 1), dtype=np.float32))


@pytest.fixture(scope="module")
def model():
    return _model()


def _param_counts(model) -> tuple[int, int]:
    """(kernel elements, bias elements) of the model."""
    kernels = sum(w.size for w in model.get_weights() if w.ndim > 1)
    return kernels, model.count_params() - kernels


def test_float32_blobs_are_exactly_the_parameters_in_four_bytes(model):
    blobs = size.tflite_parameter_blobs(_convert(model, "float32"))
    assert sum(len(b) for b in blobs) == 4 * model.count_params()
    assert len(blobs) == len(model.get_weights())


def test_float32_payload_is_zlib_of_the_raw_weights(model):
    raw = b"".join(w.astype("<f4").tobytes() for w in model.get_weights())
    payload = size.tflite_payload_bytes(_convert(model, "float32"))
    # Same bytes, another order (the flatbuffer sorts tensors its own way): within 1%.
    assert abs(payload - size.zlib_size(raw)) <= 0.01 * size.zlib_size(raw)


def test_float16_blobs_are_the_parameters_in_two_bytes(model):
    blobs = size.tflite_parameter_blobs(_convert(model, "float16"))
    assert sum(len(b) for b in blobs) == 2 * model.count_params()


def test_dynamic_blobs_count_int8_kernels_with_their_scale(model):
    # Only kernels of >= 1,024 elements are quantized (the 144×64 dense); the rest stay float32.
    blobs = size.tflite_parameter_blobs(_convert(model, "dynamic"))
    big = 144 * 64
    expected = big + 4 + 8 + 4 * (model.count_params() - big)  # + one scale, one zero point
    assert sum(len(b) for b in blobs) == expected


def test_int8_blobs_count_int8_kernels_int32_biases_and_quantization(model):
    blobs = size.tflite_parameter_blobs(_convert(model, "int8"))
    kernels, biases = _param_counts(model)
    # Per-channel scales (4 B) and zero points (8 B): 4 channels for the conv kernel and its
    # bias, one pair for each dense kernel and bias.
    quantization = 12 * (4 + 4 + 1 + 1 + 1 + 1)
    assert sum(len(b) for b in blobs) == kernels + 4 * biases + quantization


def test_a_bigger_dense_layer_gives_a_bigger_payload():
    small, big = (size.tflite_payload_bytes(_convert(_model(hidden=h), "float32"))
                  for h in (16, 64))
    assert big > 3 * small


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_payload_is_compressed_not_raw(mode):
    zeros = _model(zeros=True)
    flatbuffer = _convert(zeros, mode)
    raw = sum(len(b) for b in size.tflite_parameter_blobs(flatbuffer))
    assert raw >= zeros.count_params()
    assert size.tflite_payload_bytes(flatbuffer) < 0.05 * raw


def test_payload_ignores_everything_but_parameters(model):
    flatbuffer = _convert(model, "float32")
    payload = size.tflite_payload_bytes(flatbuffer)
    assert payload == size.zlib_size(b"".join(size.tflite_parameter_blobs(flatbuffer)))
    assert payload < len(flatbuffer)


def test_importing_size_does_not_import_tensorflow():
    code = "import sys, objectives.size; assert 'tensorflow' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- the `tflite`-package parser -----------------------------------------------------------


@pytest.fixture(scope="module")
def flatbuffers(model) -> dict[str, bytes]:
    from objectives import tflite

    return {mode: _convert(model, mode) for mode in tflite.TFLITE_MODES}


def _schema_parameter_blobs(flatbuffer: bytes) -> list[bytes]:
    """`tflite_parameter_blobs` as first written, on TensorFlow's private generated schema:
    the oracle that the `tflite`-package parser must reproduce byte for byte."""
    schema = pytest.importorskip("tensorflow.lite.python.schema_py_generated")
    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    parameter_types = {getattr(schema.TensorType, name) for name in size._PARAMETER_TYPES
                       if hasattr(schema.TensorType, name)}
    blobs: list[bytes] = []
    counted: set[int] = set()
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            buffer = model.buffers[tensor.buffer]
            if tensor.buffer in counted or buffer.data is None or len(buffer.data) == 0:
                continue
            quant = tensor.quantization
            scales = None if quant is None or quant.scale is None else quant.scale
            if tensor.type not in parameter_types and scales is None:
                continue
            counted.add(tensor.buffer)
            blobs.append(np.asarray(buffer.data, dtype=np.uint8).tobytes())
            if scales is not None:
                blobs.append(np.asarray(scales, dtype="<f4").tobytes())
                zero_points = quant.zeroPoint if quant.zeroPoint is not None else []
                blobs.append(np.asarray(zero_points, dtype="<i8").tobytes())
    return blobs


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8"])
def test_blobs_are_byte_for_byte_those_of_tensorflows_schema(mode, flatbuffers):
    flatbuffer = flatbuffers[mode]
    blobs = size.tflite_parameter_blobs(flatbuffer)
    assert blobs == _schema_parameter_blobs(flatbuffer)
    assert all(type(b) is bytes for b in blobs)


def test_constant_tensors_are_the_weights_and_the_reshape_shape(model, flatbuffers):
    from objectives.flatbuffer import constant_tensors, quantization, read_model

    constants = list(constant_tensors(read_model(flatbuffers["float32"])))
    # The flatten's int32 shape (2 × int32) is a constant too, though not a parameter.
    assert sorted(len(c.data) for c in constants) == sorted(
        [8] + [4 * w.size for w in model.get_weights()]
    )
    assert len({c.buffer for c in constants}) == len(constants)
    # The converter gives float tensors a quantization table without scales: none.
    assert all(quantization(c.tensor) is None for c in constants)


def test_quantization_pairs_scales_with_zero_points(flatbuffers):
    from objectives.flatbuffer import constant_tensors, quantization, read_model

    quantized = [quantization(c.tensor)
                 for c in constant_tensors(read_model(flatbuffers["int8"]))]
    assert sum(q is None for q in quantized) == 1  # the reshape shape
    # Per-channel for the conv kernel and bias (4 channels), per-tensor for the dense ones.
    assert sorted(len(q[0]) for q in quantized if q is not None) == [1, 1, 1, 1, 4, 4]
    for scales, zero_points in filter(None, quantized):
        assert scales.dtype == np.float32 and zero_points.dtype == np.int64
        assert len(zero_points) == len(scales) and np.all(scales > 0)


def test_parameter_blobs_need_no_tensorflow(tmp_path, flatbuffers):
    path = tmp_path / "int8.tflite"
    path.write_bytes(flatbuffers["int8"])
    code = ("import pathlib, sys; from objectives import size; "
            f"print(size.tflite_payload_bytes(pathlib.Path({str(path)!r}).read_bytes())); "
            "assert 'tensorflow' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == size.tflite_payload_bytes(flatbuffers["int8"])
