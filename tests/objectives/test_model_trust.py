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

    def function(module, name):
        return {"module": module, "class_name": "function", "config": name,
                "registered_name": None}

    config = layer("Functional", "outer", layers=[
        layer("Conv2D", "plain", activation="relu"),
        layer("TimeDistributed", "wrapper", layer=layer("Lambda", "wrapped")),
        layer("Dense", "act", activation={"class_name": "__lambda__",
                                          "config": {"value": ["4wEA", None, None]}}),
        layer("MyCell", "cell", function=["4wEA", None, None], function_type="lambda"),
        {"module": "evil_helpers", "class_name": "Scale", "config": {"name": "scaled"}},
        layer("Functional", "inner", layers=[layer("Lambda", "nested")]),
        layer("TFOpLambda", "op", function="nn.relu"),  # a TF op by name: no code
        layer("Dense", "evaluated", activation=function("builtins", "eval")),
        layer("Dense", "called", activation={"module": "builtins", "class_name": "exec",
                                             "config": "print(1)"}),
        layer("Dense", "tf", activation=function("tensorflow.io", "write_file")),
        {"module": "keras.layers", "class_name": "Dense", "config": {"name": "own"}},
        {"module": "tf_keras.src.engine.functional", "class_name": "Functional",
         "config": {"name": "tf_keras_own"}},
        layer("Dense", "keras_named", activation=function("builtins", "softmax")),
        {"module": "mypkg.layers", "class_name": "Scale", "registered_name": "mypkg>Scale",
         "config": {"name": "registered"}},
    ])
    assert code_layers(config) == [
        ("wrapped", "Lambda"), ("act", "Dense"), ("cell", "MyCell"),
        ("scaled", "Scale from module evil_helpers"), ("nested", "Lambda"),
        ("evaluated", "function eval from module builtins"),
        ("called", "exec from module builtins"),
        ("tf", "function write_file from module tensorflow.io"),
        ("registered", "Scale from module mypkg.layers"),
    ]
    assert ("registered", "Scale from module mypkg.layers") not in code_layers(
        config, registered={"mypkg>Scale"})  # Keras finds it in its registry by that name
    assert ("scaled", "Scale from module evil_helpers") not in code_layers(config,
                                                                           modules=False)
    deep: dict = layer("Lambda", "deepest")
    for _ in range(100_000):  # deeper than Python's recursion limit
        deep = {"class_name": "Wrapper", "config": {"layer": deep}}
    assert code_layers(deep) == [("deepest", "Lambda")]


# --- objects from modules outside Keras, `builtins` included (issue 31) ------------------


def _payload(marker) -> str:
    """Python that writes `marker`, as a hostile config would pass it to `eval`."""
    return f"__import__('os').system('touch {marker}')"


#: Hostile activations naming Python's `eval`: as a function, and as a class whose
#: config is the payload.
EVAL_ENTRIES = {
    "function": lambda marker: {"module": "builtins", "class_name": "function",
                                "config": "eval", "registered_name": None},
    "class": lambda marker: {"module": "builtins", "class_name": "eval",
                             "config": _payload(marker), "registered_name": None},
}


@pytest.fixture(scope="module")
def plain_files(tmp_path_factory):
    """A tiny model (Dense 'out' on 4 inputs), compiled with Keras functions (tf.keras
    names its loss and metric `builtins` functions), saved by this Keras as `.keras`, `.h5`
    and a SavedModel folder."""
    folder = tmp_path_factory.mktemp("plain")
    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="out")(inputs))
    model.compile(loss=tf.keras.losses.sparse_categorical_crossentropy,
                  metrics=[tf.keras.metrics.sparse_categorical_accuracy])
    model.save(folder / "plain.keras")
    model.save(folder / "plain.h5")
    model.save(folder / "plain_savedmodel", save_format="tf")
    return folder


def with_activation(source, target, entry) -> None:
    """`source` (a `.keras` zip or an `.h5` file) written to `target` with the stored
    config of layer 'out' given `entry` as its activation: the file hand-edited, as a
    hostile file would be."""
    import json

    def edited(raw) -> str:
        config = json.loads(raw)
        (out,) = [layer for layer in config["config"]["layers"]
                  if layer["config"]["name"] == "out"]
        out["config"]["activation"] = entry
        return json.dumps(config)

    if source.suffix == ".keras":
        with zipfile.ZipFile(source) as plain, zipfile.ZipFile(target, "w") as hostile:
            for name in plain.namelist():
                data = plain.read(name)
                hostile.writestr(name, edited(data) if name == "config.json" else data)
    else:
        import h5py

        shutil.copy(source, target)
        with h5py.File(target, "r+") as handle:
            handle.attrs["model_config"] = edited(handle.attrs["model_config"])


@pytest.mark.parametrize("form", EVAL_ENTRIES)
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_file_naming_builtins_eval_is_refused_before_keras_reads_it(
        plain_files, tmp_path, monkeypatch, suffix, form):
    marker = tmp_path / "marker"
    hostile = tmp_path / f"evil{suffix}"
    with_activation(plain_files / f"plain{suffix}", hostile, EVAL_ENTRIES[form](marker))

    def keras_reads(*args, **kwargs):
        raise AssertionError("the file reached Keras")

    monkeypatch.setattr(tf.keras.models, "load_model", keras_reads)
    with pytest.raises(StoredCodeRefused) as refused:
        load_model_file(hostile)
    what = "function eval" if form == "function" else "eval"
    assert str(refused.value).startswith(
        f"evil{suffix} holds Python code in layer 'out' ({what} from module builtins); "
        "it would run when loaded. Pass --trust-model-code")
    assert str(refused.value).endswith("without Lambda layers and objects from modules "
                                       "outside Keras")
    assert "\n" not in str(refused.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["plain.keras", "plain.h5", "plain_savedmodel"])
def test_a_compiled_model_of_this_keras_loads_untrusted(plain_files, name):
    """tf.keras writes a compiled model's loss and metrics as `builtins` functions named
    by their Keras names: Keras' own, which the guard lets through."""
    model = load_model_file(plain_files / name)
    assert [layer.name for layer in model.layers][-1] == "out"


def test_models_written_by_todays_keras_pass_the_check(keras_today):
    """Keras 3 and tf_keras write `keras.*` and `tf_keras.*` modules: every file of
    theirs but the one holding a Lambda passes the guard."""
    from objectives.model_code import check_stored_code

    paths = sorted(path for path in keras_today.iterdir()
                   if path.suffix in (".keras", ".h5") and "lambda" not in path.name)
    assert len(paths) >= 10
    for path in paths:
        check_stored_code(path, trusted=False)


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


def test_epr_refuses_an_object_from_pythons_builtins_before_training_as_a_trial_failure():
    from objectives.epr import EPRError, make_compressible

    with pytest.raises(EPRError, match=r"^EPR cannot store model .*: layer 'absolute' "
                       r"\(builtin_function_or_method from module builtins\) names an "
                       r"object from a module outside Keras") as refused:
        make_compressible(_with(tf.keras.layers.Activation(abs, name="absolute")),
                          epr_lambda=1.0)
    assert "\n" not in str(refused.value)


def _epr_with_activation(folder, entry):
    """A real `.epr` file of a small model (`plain.epr`), and the same file whose stored
    architecture gives layer 'out' `entry` as its activation (`altered.epr`)."""
    import json
    import struct
    import zlib

    from objectives import epr

    plain, altered = folder / "plain.epr", folder / "altered.epr"
    model = _with(tf.keras.layers.ReLU(name="relu"))
    epr.save(epr.compress(epr.make_compressible(model, epr_lambda=1.0)), plain)
    blob = plain.read_bytes()
    head = struct.Struct("<4sBI")
    magic, version, size = head.unpack_from(blob)
    header = json.loads(zlib.decompress(blob[head.size:head.size + size]))
    architecture = json.loads(header["architecture"])
    (out,) = [layer for layer in architecture["config"]["layers"]
              if layer["config"]["name"] == "out"]
    out["config"]["activation"] = entry
    header["architecture"] = json.dumps(architecture)
    packed = zlib.compress(json.dumps(header).encode(), 9)
    altered.write_bytes(head.pack(magic, version, len(packed)) + packed
                        + blob[head.size + size:])
    return plain, altered


@pytest.mark.parametrize("module", ["builtins", "marker_module_for_epr"])
def test_an_epr_architecture_naming_a_module_outside_keras_is_refused_unread(
        tmp_path, monkeypatch, module):
    """`marker_module_for_epr` is importable here and writes the marker when imported;
    `builtins.eval` would evaluate whatever it is given. Neither reaches Keras."""
    import sys

    from objectives import epr

    marker = tmp_path / "marker"
    (tmp_path / "marker_module_for_epr.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n\ndef act(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "marker_module_for_epr", raising=False)
    name = "eval" if module == "builtins" else "act"
    plain, altered = _epr_with_activation(tmp_path, {
        "module": module, "class_name": "function", "config": name,
        "registered_name": None})

    def keras_reads(*args, **kwargs):
        raise AssertionError("the architecture reached Keras")

    epr.load(plain)  # the file as saved loads
    monkeypatch.setattr(tf.keras.models, "model_from_json", keras_reads)
    with pytest.raises(StoredCodeRefused) as refused:
        epr.load(altered)
    assert str(refused.value).startswith(
        f"altered.epr names Python code in layer 'out' (function {name} from module "
        f"{module}), which this tool never stores in an .epr file")
    assert str(refused.value).endswith("not loaded") and "\n" not in str(refused.value)
    assert not marker.exists()


def test_an_epr_of_a_registered_custom_layer_loads_where_it_is_registered(tmp_path):
    """A custom layer's module is outside Keras, but Keras rebuilds a registered one from
    its registry by name: the file is written and read back."""
    from objectives import epr

    @tf.keras.saving.register_keras_serializable(package="test_model_trust")
    class Doubled(tf.keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    path = tmp_path / "custom.epr"
    model = _with(Doubled(name="doubled"))
    epr.save(epr.compress(epr.make_compressible(model, epr_lambda=1.0)), path)
    assert type(epr.load(path).get_layer("doubled")).__name__ == "Doubled"
