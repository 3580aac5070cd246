"""A saved model runs no code on load unless the run trusts it (issue 23), and a candidate
EPR cannot store fails alone.

The hostile model's `Lambda` writes a marker file whenever it runs: its function is a real
`lambda` (compiled from source with the marker's path as a constant, so it needs no
globals when Keras rebuilds it from its marshalled bytecode). Building the model runs it
once; the marker is removed after saving, so a marker found after a load means the load
ran the stored code.
"""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from definitions.errors import ONE_LINE_CHARS, UsageError
from objectives.model_code import StoredCodeRefused, code_layers, refusal
from objectives.parent import load_model_file

FORMATS = ("h5", "h5 renamed .keras", "keras zip", "savedmodel folder")


def marker_lambda(marker):
    """A real lambda (serialized as bytecode) that writes `marker` and passes its input."""
    return eval(f"lambda t: (open({str(marker)!r}, 'w').write('ran'), t)[1]")


def marker_model(marker) -> tf.keras.Model:
    """8x8x1 -> 10 logits, with a Lambda layer `evil` that writes `marker` when it runs."""
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = tf.keras.layers.Lambda(marker_lambda(marker), name="evil")(x)
    x = tf.keras.layers.Flatten(name="flat")(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(10, name="out")(x), name="marked")


def save_marker_model(folder, *, fmt: str, model: tf.keras.Model | None = None):
    """The marker model saved in `fmt` (one of FORMATS) under `folder`; returns (path,
    marker), the marker removed."""
    marker = folder / "marker"
    model = model or marker_model(marker)
    if fmt == "savedmodel folder":
        path = folder / "evil_savedmodel"
        model.save(path, save_format="tf")
    elif fmt == "keras zip":
        path = folder / "evil.keras"
        model.save(path)
    else:
        path = folder / "evil.h5"
        model.save(path)
        if fmt == "h5 renamed .keras":
            path = shutil.copy(path, folder / "evil_h5.keras")
    marker.unlink(missing_ok=True)
    return path, marker


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each format's file of one marker model (its marker is `<folder>/marker`)."""
    folder = tmp_path_factory.mktemp("evil")
    model = marker_model(folder / "marker")
    return {fmt: save_marker_model(folder, fmt=fmt, model=model) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_saved_lambda_is_refused_before_its_code_runs(saved, fmt):
    from pathlib import Path

    path, marker = saved[fmt]
    marker.unlink(missing_ok=True)
    with pytest.raises(StoredCodeRefused) as refused:
        load_model_file(path)
    message = str(refused.value)
    assert isinstance(refused.value, UsageError)  # one line on stderr, exit 2
    assert message.startswith(f"{Path(path).name} holds Python code in layer 'evil' (Lambda)")
    assert "--trust-model-code" in message and message.endswith("without Lambda layers")
    assert "\n" not in message and "…" not in message and "safe_mode" not in message
    assert not marker.exists(), "the Lambda's code ran while the file was checked"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_trusted_lambda_is_loaded_and_its_code_runs(saved, fmt):
    path, marker = saved[fmt]
    marker.unlink(missing_ok=True)
    model = load_model_file(path, trust_code=True)
    assert [layer.name for layer in model.layers][-3:] == ["evil", "flat", "out"]
    assert marker.exists()  # the test above would see a load that runs the code


def test_pickled_npz_weights_in_a_keras_zip_are_refused_before_they_unpickle(tmp_path):
    """Keras reads a `.keras` zip's `model.weights.npz` (when it has no .h5 weights) with
    numpy's allow_pickle, whatever safe_mode says: an object in it runs on load."""
    inputs = tf.keras.Input((4,))
    tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="d")(inputs)).save(tmp_path / "p.keras")
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').write('ran')",)

    weights = np.empty(1, dtype=object)
    weights[0] = Payload()
    store = io.BytesIO()
    np.savez(store, **{"_layer_checkpoint_dependencies/dense": weights})
    with zipfile.ZipFile(tmp_path / "p.keras") as plain, \
            zipfile.ZipFile(tmp_path / "pickled.keras", "w") as hostile:
        for name in plain.namelist():
            if name != "model.weights.h5":
                hostile.writestr(name, plain.read(name))
        hostile.writestr("model.weights.npz", store.getvalue())
    with pytest.raises(StoredCodeRefused, match=r"^pickled.keras stores its weights as "
                       r"pickled Python objects \(model.weights.npz\).*--trust-model-code"):
        load_model_file(tmp_path / "pickled.keras")
    assert not marker.exists()


def test_code_is_found_wherever_a_config_holds_it():
    def layer(cls, name, **config):
        return {"class_name": cls, "config": {"name": name, **config}}

    config = layer("Functional", "outer", layers=[
        layer("Conv2D", "plain", activation="relu"),
        layer("TimeDistributed", "wrapper", layer=layer("Lambda", "wrapped")),
        layer("Dense", "act", activation={"class_name": "__lambda__",
                                          "config": {"value": ["4wEA", None, None]}}),
        layer("MyCell", "cell", function=["4wEA", None, None], function_type="lambda"),
        {"module": "evil_helpers", "class_name": "Scale", "config": {"name": "scaled"}},
        layer("Functional", "inner", layers=[layer("Lambda", "nested")]),
        layer("TFOpLambda", "op", function="nn.relu"),  # a TF op by name: no code
    ])
    assert code_layers(config) == [
        ("wrapped", "Lambda"), ("act", "Dense"), ("cell", "MyCell"),
        ("scaled", "Scale from module evil_helpers"), ("nested", "Lambda"),
    ]
    assert ("scaled", "Scale from module evil_helpers") not in code_layers(config,
                                                                           modules=False)
    deep: dict = layer("Lambda", "deepest")
    for _ in range(100_000):  # deeper than Python's recursion limit
        deep = {"class_name": "Wrapper", "config": {"layer": deep}}
    assert code_layers(deep) == [("deepest", "Lambda")]


def test_a_refusal_stays_one_short_line_whatever_the_names(tmp_path):
    hostile = "x" * 10_000 + "\n\x1b[31mred"
    message = refusal(tmp_path / "m.h5", [(hostile, "Lambda")] * 1
                      + [(f"l{i}", "Lambda") for i in range(50)])
    assert "\n" not in message and "\x1b" not in message
    assert len(message) < ONE_LINE_CHARS
    assert "and 47 more" in message and message.endswith("without Lambda layers")


# --- candidates EPR cannot store fail alone ----------------------------------------------


def _with(layer: tf.keras.layers.Layer) -> tf.keras.Model:
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = tf.keras.layers.Flatten()(layer(x))
    return tf.keras.Model(inputs, tf.keras.layers.Dense(10, name="out")(x))


def test_epr_refuses_a_lambda_before_training_as_a_trial_failure():
    from objectives.epr import EPRError, make_compressible

    model = _with(tf.keras.layers.Lambda(lambda t: t * 2.0, name="double"))
    with pytest.raises(EPRError, match=r"^EPR cannot store model .*: layer 'double' "
                       r"\(Lambda\) holds Python code") as refused:
        make_compressible(model, epr_lambda=1.0)
    assert refused.value.kind == "epr_failed"
    assert "\n" not in str(refused.value) and "safe_mode" not in str(refused.value)


def test_epr_refuses_a_custom_layer_keras_cannot_rebuild_as_a_trial_failure():
    from objectives.epr import EPRError, make_compressible

    class Scale(tf.keras.layers.Layer):  # local: no module Keras could find it in
        def build(self, shape):
            self.w = self.add_weight(name="w", shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

    with pytest.raises(EPRError, match=r"Keras cannot rebuild layer 'scale' \(Scale\)"):
        make_compressible(_with(Scale(name="scale")), epr_lambda=1.0)
