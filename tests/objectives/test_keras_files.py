"""Models saved by today's Keras (Keras 3, tf_keras 2.21) are read as data and translated
into this tool's Keras with every weight: they predict what their writer predicted."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from objectives.keras_files import KerasFileError, file_format
from objectives.model_code import StoredCodeRefused
from objectives.parent import load_model_file

WRITERS = ("keras3", "tf_keras")
ARCHITECTURES = ("residual", "zoo", "sequential", "digits")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("writer", WRITERS)
def test_translated_model_predicts_what_its_writer_predicted(keras_today, writer,
                                                             architecture, suffix):
    path = keras_today / f"{writer}-{architecture}{suffix}"
    expected = np.load(keras_today / f"{writer}-{architecture}.npz")
    model = load_model_file(path)
    predicted = model.predict(expected["x"], verbose=0)
    assert predicted.shape == expected["y"].shape
    assert np.abs(predicted - expected["y"]).max() < 1e-5


def test_every_weight_is_carried_over(keras_today):
    model = load_model_file(keras_today / "keras3-zoo.keras")
    # conv ×5 and dense ×2 (kernel, bias), PReLU's alpha, the nested block's conv and BN
    assert len(model.get_weights()) == 5 * 2 + 2 * 2 + 1 + 2 + 4
    block = model.get_layer("block")
    assert [layer.__class__.__name__ for layer in block.layers] == [
        "Conv2D", "BatchNormalization", "SpatialDropout2D"]


def test_file_format_names_the_writer_and_container(keras_today):
    versions = json.loads((keras_today / "versions.json").read_text())
    keras3 = file_format(keras_today / "keras3-residual.keras")
    assert (keras3.container, keras3.keras_version) == ("keras", versions["keras3"])
    assert keras3.translated and keras3.keras_major == 3
    legacy = file_format(keras_today / "tf_keras-residual.h5")
    assert (legacy.container, legacy.keras_version) == ("h5", versions["tf_keras"])
    assert legacy.translated and legacy.keras_major == 2


def test_a_layer_without_translation_is_one_line_naming_it_its_class_and_version(
        keras_today):
    with pytest.raises(KerasFileError) as error:
        load_model_file(keras_today / "keras3-untranslated.keras")
    message = str(error.value)
    assert "\n" not in message and len(message) < 300
    assert "'random_flip' (RandomFlip)" in message
    assert "Keras 3.15" in message


def test_a_serving_savedmodel_says_to_save_a_keras_file(keras_today):
    with pytest.raises(KerasFileError, match=r'holds TensorFlow ops.*model\.save\("m\.keras"\)'):
        load_model_file(keras_today / "keras3-exported")


def test_keras3_lambda_is_refused_and_not_translated_even_when_trusted(keras_today):
    path = keras_today / "keras3-lambda.keras"
    with pytest.raises(StoredCodeRefused, match=r"'lambda' \(Lambda\)"):
        load_model_file(path)
    with pytest.raises(KerasFileError, match=r"'lambda' \(Lambda\) has no translation"):
        load_model_file(path, trust_code=True)


def _rewritten(source, target, edit):
    """`source` (a `.keras` zip) copied to `target` with its config edited by `edit`."""
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return target


def test_a_node_naming_a_call_the_model_lacks_is_refused_not_a_hang(keras_today, tmp_path):
    def edit(config):
        node = config["config"]["layers"][1]["inbound_nodes"][0]["args"][0]
        node["config"]["keras_history"][1] = 5

    path = _rewritten(keras_today / "keras3-residual.keras", tmp_path / "m.keras", edit)
    with pytest.raises(KerasFileError, match="takes call 5 of 'input_layer"):
        load_model_file(path)


def test_a_keras3_setting_keras2_lacks_is_refused_unless_neutral(keras_today, tmp_path):
    def neutral(config):
        config["config"]["layers"][1]["config"]["lora_rank"] = None

    def meaningful(config):
        config["config"]["layers"][1]["config"]["lora_rank"] = 4

    model = load_model_file(_rewritten(keras_today / "keras3-residual.keras",
                                       tmp_path / "a.keras", neutral))
    assert model.count_params() > 0
    with pytest.raises(KerasFileError, match=r"sets lora_rank=4, which Keras 2\.14 lacks"):
        load_model_file(_rewritten(keras_today / "keras3-residual.keras",
                                   tmp_path / "b.keras", meaningful))


def test_weights_of_another_shape_are_refused(keras_today, tmp_path):
    source = keras_today / "keras3-residual.h5"
    target = shutil.copy(source, tmp_path / "m.h5")
    import h5py

    with h5py.File(target, "r+") as handle:
        group = handle["model_weights/dense/dense"]
        del group["bias"]
        group["bias"] = np.zeros(3, "float32")
    with pytest.raises(KerasFileError, match=r"'dense' \(Dense\) needs weights of shapes"):
        load_model_file(target)


def test_a_config_of_another_form_than_keras_writes_is_one_line(keras_today, tmp_path):
    def edit(config):
        config["config"]["layers"][2] = ["not", "a", "layer"]

    path = _rewritten(keras_today / "keras3-residual.keras", tmp_path / "m.keras", edit)
    with pytest.raises(KerasFileError, match="could not be read as a model") as error:
        load_model_file(path)
    assert "\n" not in str(error.value)
