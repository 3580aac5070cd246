"""EPR: round trips agree, the penalty shrinks the code, the file format and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
epr = pytest.importorskip("objectives.epr")
epr_layers = pytest.importorskip("objectives.epr_layers")
maths = pytest.importorskip("objectives.epr_maths")

LOSS = "sparse_categorical_crossentropy"


def _rng_data(n: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) * 10).astype(np.int64) % 10  # learnable labels
    return x, y


def _mixed_model() -> tf.keras.Model:
    """Every supported kind: square conv, factorized n×1 / 1×n, depthwise, BN, dense."""
    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inputs = tf.keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.Conv2D(4, (3, 1), strides=(2, 1), activation="relu", name="conv_3x1")(x)
    x = layers.Conv2D(4, (1, 3), strides=(1, 2), padding="same", name="conv_1x3")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = layers.BatchNormalization(momentum=0.5, name="bn")(x)  # statistics move
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, name="output")(x)
    return tf.keras.Model(inputs, outputs, name="mixed")


def _tiny_model() -> tf.keras.Model:
    """conv 4@3x3 → flatten → dense 10 on 8×8×1."""
    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)),
        tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, name="output"),
    ], name="tiny")


def _train(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, *, epochs: int = 2,
           learning_rate: float = 1e-2) -> None:
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)


def _coded_bits(compressed) -> int:
    return 8 * sum(len(s) for _, coded in compressed.coded_layers()
                   for _, s, _ in coded if s is not None)


@pytest.fixture(scope="module")
def trained_mixed():
    x, y = _rng_data()
    compressible = epr.make_compressible(_mixed_model(), epr_lambda=2.0)
    _train(compressible, x, y)
    return compressible, epr.compress(compressible), x


def test_fourier_basis_is_orthonormal_and_inverts_exactly():
    for n1, n2 in [(1, 1), (3, 1), (1, 3), (2, 3), (4, 4), (5, 5)]:
        f = maths._fourier_matrix(n1, n2)
        np.testing.assert_allclose(f @ f.T, np.eye(n1 * n2), atol=1e-12)
        spec = maths.Spec("kernel", (n1, n2, 2, 3), maths.FOURIER)
        kernel = np.random.default_rng(1).normal(size=spec.shape).astype(np.float32)
        back = maths._from_latent(tf.constant(maths.to_latent(kernel, spec)), spec).numpy()
        np.testing.assert_allclose(back, kernel, atol=1e-5)


def test_fourier_latent_has_one_coefficient_per_kernel_tap_and_a_step_per_frequency():
    compressible = epr.make_compressible(_mixed_model(), epr_lambda=1.0)
    layer = {lay.name: lay for lay in compressible.epr_layers()}["conv_3x1"]
    assert tuple(layer.latents["kernel"].shape) == (3, 1, 4, 4)
    assert tuple(layer.log_steps["kernel"].shape) == (3, 1)
    assert tuple(layer.log_steps["bias"].shape) == ()


def test_compressible_starts_from_the_original_weights():
    model = _mixed_model()
    x, _ = _rng_data(32)
    compressible = epr.make_compressible(model, epr_lambda=1.0)
    assert compressible.count_params() > model.count_params()  # + log steps
    # Initial steps e^-4 ≈ 0.018 quantize the weights: close, not equal, to the original.
    np.testing.assert_allclose(compressible(x), model(x), atol=0.05)


def test_round_trip_predictions_agree(trained_mixed, tmp_path):
    compressible, compressed, x = trained_mixed
    reference = compressible.predict(x, verbose=0)
    path = tmp_path / "mixed.epr"
    epr.save(compressed, path)
    decoded = {
        "compressed": compressed.predict(x, verbose=0),
        "decompressed": epr.decompress(compressed).predict(x, verbose=0),
        "loaded": epr.load(path).predict(x, verbose=0),
    }
    for name, logits in decoded.items():
        np.testing.assert_array_equal(logits.argmax(1), reference.argmax(1), err_msg=name)
        np.testing.assert_allclose(logits, reference, rtol=1e-6, atol=1e-6, err_msg=name)


def test_each_coded_weight_is_range_decoded_once_however_often_it_is_used(
        trained_mixed, monkeypatch):
    """A compressed layer decodes its bit strings once, eagerly, and keeps the weights:
    building the compressed model, predicting twice and decompressing decode nothing
    again (the range decoder traced into each graph was most of `compress`'s time)."""
    compressible, _, x = trained_mixed
    decodings = []
    real = epr_layers.decoded
    monkeypatch.setattr(epr_layers, "decoded",
                        lambda spec, string, side: decodings.append(spec.name) or real(
                            spec, string, side))
    compressed = epr.compress(compressible)
    compressed.predict(x[:8], verbose=0)
    compressed.predict(x[:8], verbose=0)
    plain = epr.decompress(compressed)
    coded = [spec.name for _, weights in compressed.coded_layers() for spec, _, _ in weights
             if spec.coding != maths.RAW]  # a kept layer's raw weights are not decoded
    assert sorted(decodings) == sorted(coded)  # each once
    np.testing.assert_allclose(plain.predict(x, verbose=0),
                               compressible.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_decompressed_model_is_plain_keras_that_converts_and_trains(trained_mixed):
    compressible, compressed, x = trained_mixed
    plain = epr.decompress(compressed)
    kinds = {type(layer).__name__ for layer in plain.layers}
    assert {"Conv2D", "DepthwiseConv2D", "BatchNormalization", "Dense"} <= kinds
    for layer in plain.layers:
        assert type(layer).__module__.startswith("keras."), type(layer)
    assert plain.count_params() == _mixed_model().count_params()
    # The weights really are quantized: each conv kernel's Fourier coefficients lie on the
    # learned per-frequency grid.
    layer = {lay.name: lay for lay in compressible.epr_layers()}["conv"]
    spec = layer.specs[0]
    step = np.exp(layer.log_steps["kernel"].numpy().astype(np.float16).astype(np.float64))
    latent = maths.to_latent(plain.get_layer("conv").get_weights()[0], spec)
    symbols = latent / step[:, :, None, None]
    np.testing.assert_allclose(symbols, np.round(symbols), atol=1e-3)
    _train(plain, x, np.zeros(len(x), np.int64), epochs=1)
    tflite = tf.lite.TFLiteConverter.from_keras_model(plain).convert()
    assert len(tflite) > 0


def test_payload_bytes_is_strings_plus_float16_side_info(trained_mixed):
    _, compressed, _ = trained_mixed
    strings, halves = 0, 0
    for _, coded in compressed.coded_layers():
        for _spec, string, half in coded:
            assert half.dtype == np.float16
            strings += 0 if string is None else len(string)
            halves += half.size
    # 5 layers: conv, conv_3x1, conv_1x3, depthwise (kernel per-frequency + bias), BN (γ, β
    # steps + moving mean and variance of 4 channels), dense (2 scalar steps).
    assert halves == (9 + 1) + (3 + 1) + (3 + 1) + (9 + 1) + (1 + 1 + 4 + 4) + 2
    assert epr.payload_bytes(compressed) == strings + 2 * halves


def test_save_writes_one_file_atomically_and_load_rejects_other_files(trained_mixed, tmp_path):
    _, compressed, _ = trained_mixed
    path = tmp_path / "model.epr"
    epr.save(compressed, path)
    epr.save(compressed, path)  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["model.epr"]
    assert path.read_bytes()[:4] == b"EPRK"
    assert path.stat().st_size > epr.payload_bytes(compressed)
    bad = tmp_path / "bad.epr"
    bad.write_bytes(b"not an epr file at all")
    with pytest.raises(epr.EPRError, match="not an EPR file"):
        epr.load(bad)


def _edited(path, out, *, edit, version: int | None = None):
    """Writes to `out` the .epr file at `path` with its JSON header changed by `edit`
    (and, where given, another format `version`); returns the version read from `path`."""
    import json
    import struct
    import zlib

    blob = path.read_bytes()
    head = struct.Struct("<4sBI")
    magic, stored, size = head.unpack_from(blob)
    header = json.loads(zlib.decompress(blob[head.size:head.size + size]))
    edit(header)
    packed = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 9)
    out.write_bytes(head.pack(magic, stored if version is None else version, len(packed))
                    + packed + blob[head.size + size:])
    return stored


def test_a_version_1_file_still_loads(trained_mixed, tmp_path):
    """Version 2 renamed each weight's `half` field `side`; a version-1 file (the same
    bytes under the old name and version) decodes to the same model."""
    compressible, compressed, x = trained_mixed
    path = tmp_path / "v2.epr"
    epr.save(compressed, path)

    def to_version_1(header):
        for layer in header["layers"]:
            for weight in layer["weights"]:
                weight["half"] = weight.pop("side")

    v1 = tmp_path / "v1.epr"
    assert _edited(path, v1, edit=to_version_1, version=1) == 2
    np.testing.assert_allclose(epr.load(v1).predict(x, verbose=0),
                               compressible.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_an_altered_file_naming_python_code_is_refused_unloaded(trained_mixed, tmp_path):
    """A file from someone else is data: an .epr whose architecture was edited to hold a
    Lambda (bytecode Keras would run on load) is refused before anything is built."""
    import json

    from objectives.model_code import StoredCodeRefused

    _, compressed, _ = trained_mixed
    path = tmp_path / "good.epr"
    epr.save(compressed, path)

    def add_lambda(header):
        architecture = json.loads(header["architecture"])
        architecture["config"]["layers"][1] = {"class_name": "Lambda", "config": {
            "name": "evil", "function": ["4wEAAAA=", None, None], "function_type": "lambda"}}
        header["architecture"] = json.dumps(architecture)

    altered = tmp_path / "altered.epr"
    _edited(path, altered, edit=add_lambda)
    with pytest.raises(StoredCodeRefused, match=r"'evil' \(Lambda\).*not loaded"):
        epr.load(altered)
    epr.load(path)  # the file as saved loads


def _header_edit(edit):
    """A tampering that rewrites the JSON header (`_edited`) with `edit`."""
    def tamper(path, out):
        _edited(path, out, edit=edit)
    return tamper


def _bytes_edit(edit):
    """A tampering that rewrites the file's bytes with `edit(blob, header_size)`."""
    def tamper(path, out):
        blob = path.read_bytes()
        out.write_bytes(edit(bytearray(blob), int.from_bytes(blob[5:9], "little")))
    return tamper


def _flipped(blob: bytearray, at: int) -> bytes:
    blob[at] ^= 0xFF
    return bytes(blob)


def _conv_entry(header) -> dict:
    return next(layer for layer in header["layers"] if layer["path"] == ["conv"])


def _conv_kernel(header) -> dict:
    return _conv_entry(header)["weights"][0]


def _zeroed_conv_string(blob: bytearray, size: int) -> bytes:
    import json
    import zlib

    header = json.loads(zlib.decompress(bytes(blob[9:9 + size])))
    offset, length = _conv_kernel(header)["string"]
    blob[9 + size + offset:9 + size + offset + length] = bytes(length)
    return bytes(blob)


#: (how the file is altered, what the refusal says): the bytes cut or flipped, the header
#: edited to name another layer or an impossible shape.
TAMPERINGS = {
    "data_section_cut": (_bytes_edit(lambda b, n: bytes(b[:-40])), "truncated"),
    "header_cut": (_bytes_edit(lambda b, n: bytes(b[:9 + n // 2])), "truncated"),
    "header_byte_flipped": (_bytes_edit(lambda b, n: _flipped(b, 9 + n // 2)),
                            "corrupt header"),
    "magic_flipped": (_bytes_edit(lambda b, n: _flipped(b, 0)), "not an EPR file"),
    "header_length_changed": (_bytes_edit(lambda b, n: _flipped(b, 5)), "header"),
    "layer_path_renamed": (_header_edit(lambda h: _conv_entry(h).update(
        path=["no_such_layer"])), "layer 'no_such_layer', which the architecture"),
    "layer_renamed_in_architecture": (_header_edit(lambda h: h.update(
        architecture=h["architecture"].replace('"conv"', '"renamed"'))),
        "layer 'conv', which the architecture"),
    "weight_shape_impossible": (_header_edit(lambda h: _conv_kernel(h).update(
        shape=[3, 3, 1, 4_000_000_000])), "the file's weights have shapes"),
    "weight_shape_not_sizes": (_header_edit(lambda h: _conv_kernel(h).update(
        shape=[3, -3, 1, 4])), "not a list of sizes"),
    "layer_dropped": (_header_edit(lambda h: h["layers"].remove(_conv_entry(h))),
                      "holds no weights for layer 'conv'"),
    "bit_string_zeroed": (_bytes_edit(_zeroed_conv_string), "does not decode"),
}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_a_tampered_file_is_one_eprerror_line_naming_it(trained_mixed, tmp_path, how):
    """A file `save` did not write as it is fails `load` with `EPRError` in one line naming
    the file and what is wrong, never another exception's traceback (issue 31)."""
    _, compressed, _ = trained_mixed
    path = tmp_path / "good.epr"
    epr.save(compressed, path)
    tamper, says = TAMPERINGS[how]
    altered = tmp_path / "altered.epr"
    tamper(path, altered)
    assert altered.read_bytes() != path.read_bytes()
    with pytest.raises(epr.EPRError) as refused:
        epr.load(altered)
    message = str(refused.value)
    assert message.startswith(f"{altered}: ") and says in message, message
    assert "\n" not in message and len(message) <= 400, message


def test_payload_falls_as_epr_lambda_rises():
    x, y = _rng_data(256)
    sizes = {}
    for lam in (0.1, 200.0):
        compressible = epr.make_compressible(_tiny_model(), epr_lambda=lam)
        _train(compressible, x, y, epochs=3)
        sizes[lam] = epr.payload_bytes(epr.compress(compressible))
    assert sizes[200.0] < 0.5 * sizes[0.1], sizes


def test_estimated_bits_predicts_the_coded_length_within_a_factor_of_two(trained_mixed):
    compressible, compressed, _ = trained_mixed
    coded = _coded_bits(compressed)
    ratio = epr.estimated_bits(compressible) / coded
    assert 0.5 <= ratio <= 2.0, ratio
    # The seed's continuous penalty overestimates.
    assert epr.estimated_bits(compressible, rounded=False) >= epr.estimated_bits(compressible)


def test_penalty_is_part_of_the_training_loss():
    x, y = _rng_data(32)
    compressible = epr.make_compressible(_tiny_model(), epr_lambda=50.0)
    compressible.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits = compressible(x)
    task = float(tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    total = float(compressible.compute_loss(x, tf.constant(y), logits))
    expected_penalty = 50.0 / _tiny_model().count_params() * float(compressible.penalty())
    assert expected_penalty > 0.1
    assert total == pytest.approx(task + expected_penalty, rel=1e-5)
    assert compressible.penalty_weight * math.log(2) * epr.estimated_bits(
        compressible) == pytest.approx(expected_penalty, rel=1e-5)


def test_nested_model_with_residual_add_round_trips():
    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inner_in = tf.keras.Input((8, 8, 4))
    h = layers.Conv2D(8, 1, use_bias=False, name="expand")(inner_in)
    h = layers.BatchNormalization(name="expand_bn")(h)
    h = layers.ReLU(6.0)(h)
    h = layers.ZeroPadding2D(1)(h)
    h = layers.DepthwiseConv2D(3, use_bias=False, name="dw")(h)
    h = layers.Conv2D(4, 1, use_bias=False, name="project")(h)
    inner = tf.keras.Model(inner_in, layers.Add()([inner_in, h]), name="block")
    inputs = tf.keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = inner(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, layers.Dense(10, name="output")(x), name="outer")
    x_data, _ = _rng_data(16)
    compressible = epr.make_compressible(model, epr_lambda=1.0)
    assert len(compressible.epr_layers()) == 6
    compressed = epr.compress(compressible)
    np.testing.assert_allclose(
        epr.decompress(compressed).predict(x_data, verbose=0),
        compressible.predict(x_data, verbose=0), atol=1e-5,
    )


def test_sequential_model_is_supported():
    compressible = epr.make_compressible(_tiny_model(), epr_lambda=1.0)
    x, _ = _rng_data(8)
    np.testing.assert_allclose(
        epr.decompress(epr.compress(compressible))(x), compressible(x), atol=1e-5
    )


def _with(layer) -> tf.keras.Model:
    inputs = tf.keras.Input((8, 8, 2))
    return tf.keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize("layer", [
    lambda: tf.keras.layers.LayerNormalization(name="kept"),
    lambda: tf.keras.layers.Conv2DTranspose(2, 3, name="kept"),
    lambda: tf.keras.layers.Conv2D(2, 3, groups=2, name="kept"),
    lambda: tf.keras.layers.BatchNormalization(axis=1, name="kept"),
    lambda: tf.keras.layers.SeparableConv2D(3, 3, name="kept"),
], ids=["layer_norm", "conv_transpose", "grouped_conv", "bn_axis_1", "separable"])
def test_layers_epr_cannot_wrap_are_stored_raw_and_counted(layer, tmp_path):
    inputs = tf.keras.Input((8, 8, 2))
    kept = layer()
    x = kept(inputs)
    x = tf.keras.layers.Conv2D(4, 3, name="coded")(x)
    outputs = tf.keras.layers.Dense(3, name="head")(tf.keras.layers.Flatten()(x))
    model = tf.keras.Model(inputs, outputs)
    original = [w.copy() for w in kept.get_weights()]
    compressible = epr.make_compressible(model, epr_lambda=1.0)
    assert not isinstance(compressible.get_layer("kept"), epr_layers.CompressibleLayer)
    compressed = epr.compress(compressible)
    coded = dict((path[-1], values) for path, values in compressed.coded_layers())
    raw = coded["kept"]
    assert [spec.coding for spec, _, _ in raw] == ["raw"] * len(original)
    for (_, string, values), weight in zip(raw, original, strict=True):
        assert string is None
        np.testing.assert_array_equal(values, weight)  # the trained values, not fresh ones
    strings = sum(len(s) for _, c in coded.items() for _, s, _ in c if s is not None)
    halves = sum(v.size for name, c in coded.items() if name != "kept" for _, _, v in c)
    raw_values = sum(w.size for w in original)
    assert epr.payload_bytes(compressed) == strings + 2 * halves + 4 * raw_values
    path = tmp_path / "m.epr"
    epr.save(compressed, path)
    loaded = epr.load(path)
    for weight, back in zip(original, loaded.get_layer("kept").get_weights(), strict=True):
        np.testing.assert_array_equal(back, weight)
    x = np.random.default_rng(0).random((4, 8, 8, 2), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), compressed.predict(x, verbose=0),
                               atol=1e-5)


def test_unsupported_models_and_arguments_raise():
    class Subclassed(tf.keras.Model):
        def call(self, inputs):
            return inputs

    model = Subclassed()
    model(np.zeros((1, 2), np.float32))
    with pytest.raises(epr.EPRError):
        epr.make_compressible(model, epr_lambda=1.0)
    with pytest.raises(ValueError, match="epr_lambda"):
        epr.make_compressible(_tiny_model(), epr_lambda=-1.0)
    with pytest.raises(epr.EPRError, match="make_compressible"):
        epr.compress(_tiny_model())


@pytest.mark.slow
def test_mobilenet_v2_family_round_trips():
    from objectives.build import build_model
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES

    model = build_model(family=FAMILIES["mobilenet_v2"], candidate=Candidate(width=0.35),
                        input_shape=(8, 8, 1), num_classes=10, seed=0)
    x, y = _rng_data(64)
    compressible = epr.make_compressible(model, epr_lambda=5.0)
    _train(compressible, x, y, epochs=1)
    compressed = epr.compress(compressible)
    reference = compressible.predict(x, verbose=0)
    plain = epr.decompress(compressed)
    assert plain.count_params() == model.count_params()
    np.testing.assert_allclose(plain.predict(x, verbose=0), reference, rtol=1e-4, atol=1e-4)
    assert epr.payload_bytes(compressed) < 4 * model.count_params()


def test_inherited_weights_start_on_a_grid_scaled_to_them():
    """Trained weights 10× larger than the seed's scale get steps 10× larger: the same
    relative grid, so the inherited model starts as accurate as its parent."""
    tf.keras.utils.set_random_seed(0)  # its own weights, whatever ran before it
    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(4, 3, name="conv")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="head")(
        tf.keras.layers.Flatten()(x)))
    small = [w * 0.1 for w in model.get_weights()]
    model.set_weights([w * 10 for w in small])
    big = epr.make_compressible(model, epr_lambda=1.0, steps_from_weights=True)
    model.set_weights(small)
    little = epr.make_compressible(model, epr_lambda=1.0, steps_from_weights=True)
    fixed = epr.make_compressible(model, epr_lambda=1.0)
    for name in ("conv", "head"):
        big_steps = big.get_layer(name).log_steps["kernel"].numpy()
        little_steps = little.get_layer(name).log_steps["kernel"].numpy()
        np.testing.assert_allclose(big_steps - little_steps, np.log(10.0), atol=1e-5)
        assert np.all(fixed.get_layer(name).log_steps["kernel"].numpy() == maths.INITIAL_LOG_STEP)
        # a bias that is all zero keeps the seed's initial step
        assert float(big.get_layer(name).log_steps["bias"].numpy()) == maths.INITIAL_LOG_STEP
    x = np.random.default_rng(0).random((16, 6, 6, 2), dtype=np.float32)
    model.set_weights([w * 10 for w in small])
    reference = model.predict(x, verbose=0)
    error = np.abs(big.predict(x, verbose=0) - reference).max() / np.abs(reference).max()
    assert error < 0.3
