"""The chosen model goes back as a `.keras` file today's Keras opens: Keras 3's format, or
Keras 2's that tf_keras 2.16+ opens; each predicts what the model predicted."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from objectives.keras_files import TRANSLATED, KerasFileError, file_format
from objectives.keras_writer import keras3_settings, save
from objectives.parent import load_model_file
from tests.conftest import keras_today_run

SOURCES = ("keras3-zoo.keras", "keras3-residual.h5", "tf_keras-sequential.keras",
           "tf_keras-digits.h5")


@pytest.fixture(scope="module")
def written(keras_today, tmp_path_factory):
    """Each source translated and written back in both formats: `{(source, format): (file,
    inputs npz)}`."""
    out = tmp_path_factory.mktemp("written")
    files = {}
    for source in SOURCES:
        model = load_model_file(keras_today / source)
        inputs = keras_today / f"{source.split('.')[0]}.npz"
        for keras_format in (2, 3):
            target = out / f"{keras_format}-{source.split('.')[0]}.keras"
            save(model, target, keras_format=keras_format)
            files[(source, keras_format)] = (target, inputs)
    return files


@pytest.mark.parametrize(("keras_format", "reader"), [(3, "keras3"), (2, "tf_keras")])
def test_todays_keras_opens_the_written_file_with_equal_predictions(written, keras_format,
                                                                    reader):
    pairs = [str(path) for source in SOURCES for path in written[(source, keras_format)]]
    checks = json.loads(keras_today_run("--check", reader, *pairs))
    assert len(checks) == len(SOURCES)
    for check in checks:
        assert check["max_abs_diff"] < 1e-5


@pytest.mark.parametrize("keras_format", [2, 3])
def test_the_written_file_reads_back_here_with_equal_predictions(written, keras_format):
    for source in SOURCES:
        path, inputs = written[(source, keras_format)]
        data = np.load(inputs)
        predicted = load_model_file(path).predict(data["x"], verbose=0)
        assert np.abs(predicted - data["y"]).max() < 1e-5


def test_a_keras3_file_records_the_keras_3_it_is_written_for(written):
    path, _ = written[(SOURCES[0], 3)]
    fmt = file_format(path)
    assert fmt.keras_major == 3 and fmt.keras_version == keras3_settings()[0]
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["class_name"] == "Functional"
    first = config["config"]["layers"][1]["inbound_nodes"][0]
    assert first["args"][0]["class_name"] == "__keras_tensor__"


def test_a_layer_keras_3_has_no_translation_for_is_refused_in_one_line(tmp_path):
    inputs = tf.keras.Input((4,))
    noisy = tf.keras.layers.GaussianNoise(0.1, name="noise")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(noisy))
    with pytest.raises(KerasFileError, match=r"'noise' \(GaussianNoise\).*--keras-format 2"):
        save(model, tmp_path / "m.keras", keras_format=3)
    assert not (tmp_path / "m.keras").exists()
    save(model, tmp_path / "m.keras", keras_format=2)  # Keras 2 keeps every layer
    assert load_model_file(tmp_path / "m.keras").get_layer("noise") is not None


def test_the_settings_table_is_todays_keras_3s(tmp_path):
    table = json.loads(keras_today_run("--settings", *sorted(TRANSLATED)))
    version, settings = keras3_settings()
    assert table["keras_version"] == version
    assert {kind: frozenset(keys) for kind, keys in table["settings"].items()} == settings
