"""The input shape a saved model declares (`objectives.model_input`), read from its config
as data: what an image folder is resized and converted to for it."""

from __future__ import annotations

import json
import zipfile

import pytest

from objectives.model_input import declared_input_shape, input_shape_of


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Keras 2.14 models saved in each format: {name: path}."""
    import tensorflow as tf

    layers = tf.keras.layers
    folder = tmp_path_factory.mktemp("saved")
    given = tf.keras.Sequential([layers.Conv2D(2, 3, input_shape=(28, 28, 1)),
                                 layers.Flatten(), layers.Dense(3)])
    built = tf.keras.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(3)])
    built.build((None, 20, 21, 3))
    inputs = tf.keras.Input((None, None, 3))
    any_size = tf.keras.Model(inputs, layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3)(inputs)))
    paths = {}
    for name, model, suffix in (("given.h5", given, ".h5"), ("built.keras", built, ".keras"),
                                ("any.keras", any_size, ".keras"), ("saved", given, "")):
        paths[name] = folder / name
        model.save(paths[name])
        assert suffix in paths[name].name
    return paths


@pytest.mark.parametrize(("name", "shape"), [
    ("given.h5", (28, 28, 1)),  # a Sequential given input_shape, HDF5
    ("built.keras", (20, 21, 3)),  # a Sequential built with a shape, .keras
    ("any.keras", (None, None, 3)),  # a functional model of any size
    ("saved", (28, 28, 1)),  # a SavedModel folder's metadata
])
def test_a_saved_models_input_shape_is_read_from_its_config(saved, name, shape):
    assert declared_input_shape(saved[name]) == shape


def test_keras_3_configs_name_the_shape_batch_shape_and_one_input_flat(tmp_path):
    functional = {"module": "keras", "class_name": "Functional", "config": {
        "layers": [{"module": "keras.layers", "class_name": "InputLayer", "name": "image",
                    "config": {"batch_shape": [None, 32, 30, 3], "name": "image"}},
                   {"class_name": "Conv2D", "config": {"name": "c"}}],
        "input_layers": ["image", 0, 0]}}
    path = tmp_path / "k3.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(functional))
    assert declared_input_shape(path) == (32, 30, 3)
    sequential = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Conv2D", "config": {"name": "c"}}]},
        "build_config": {"input_shape": [None, 16, 16, 1]}}
    assert input_shape_of(sequential) == (16, 16, 1)


@pytest.mark.parametrize("config", [
    {"class_name": "Functional", "config": {"layers": [], "input_layers": [["a", 0, 0],
                                                                           ["b", 0, 0]]}},
    {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 10]}}]}},
    {"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense"}]}},
    ["not", "a", "config"],
])
def test_a_model_that_declares_no_single_image_input_gives_none(config):
    assert input_shape_of(config) is None


def test_a_file_that_is_no_model_gives_none(tmp_path):
    (tmp_path / "notes.keras").write_text("not a model")
    assert declared_input_shape(tmp_path / "notes.keras") is None
    assert declared_input_shape(tmp_path / "absent.h5") is None
