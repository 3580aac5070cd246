"""The input shape a saved model declares, read from its config as data.

An image folder is read at the size and with the channels of the parent model, as
`image_dataset_from_directory(image_size=..., color_mode=...)` is called for a model. The
data are loaded before the parent is (the parent is checked against them), so the shape
is read the way `objectives.model_code` reads a config, without deserializing anything:
the model's single input layer (`InputLayer`'s `batch_input_shape`, Keras 2, or
`batch_shape`, Keras 3), else what the model was built with (`build_input_shape`,
`build_config`). Sequential and functional models, `.keras`, HDF5 and SavedModel folders
(whose metadata needs TensorFlow's protobufs: read it where TensorFlow may be imported).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from definitions.errors import UsageError
from objectives.model_code import stored_configs

#: (height, width, channels), each None where the model takes any.
ImageShape = tuple[int | None, int | None, int | None]

_SHAPE_KEYS = ("batch_input_shape", "batch_shape")


def declared_input_shape(path: Path) -> ImageShape | None:
    """(H, W, C) of the image input the model at `path` declares, a dimension None where
    it takes any; None when the file does not say (no readable config, several inputs, an
    input that is not an image batch): the parent's own checks then speak for it."""
    try:
        configs = stored_configs(Path(path))
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, UsageError):
        return None
    return input_shape_of(configs[0]) if configs else None


def input_shape_of(config: Any) -> ImageShape | None:
    """(H, W, C) of a Keras model config's single rank-4 input (see `declared_input_shape`)."""
    if not isinstance(config, dict):
        return None
    inner = config.get("config")
    inner = inner if isinstance(inner, dict) else {}
    layers = inner.get("layers")
    layers = layers if isinstance(layers, list) else []
    shape: Any = None
    names = _input_names(inner.get("input_layers"))
    if names is not None:  # functional: the named InputLayer
        if len(names) != 1:
            return None
        found = [layer for layer in layers if isinstance(layer, dict)
                 and (layer.get("name") == names[0]
                      or _config(layer).get("name") == names[0])]
        shape = _layer_shape(found[0]) if found else None
    elif layers and isinstance(layers[0], dict):  # sequential: its first layer
        first = layers[0]
        shape = _layer_shape(first)
        if shape is None and isinstance(_config(first).get("layers"), list):
            return input_shape_of(first)  # a nested model first
    if shape is None:  # a model built with a shape rather than given an Input
        build = config.get("build_config")
        shape = (inner.get("build_input_shape") or config.get("build_input_shape")
                 or (build.get("input_shape") if isinstance(build, dict) else None))
    return _image_shape(shape)


def _config(layer: dict[str, Any]) -> dict[str, Any]:
    inner = layer.get("config")
    return inner if isinstance(inner, dict) else {}


def _input_names(value: Any) -> list[str] | None:
    """The input layers' names of a functional config's `input_layers` (Keras 2 writes a
    list of `[name, node, tensor]`, Keras 3 a single one flat); None when absent."""
    if not isinstance(value, list):
        return None
    if value and isinstance(value[0], str):
        return [value[0]]
    return [item[0] for item in value if isinstance(item, list) and item
            and isinstance(item[0], str)]


def _layer_shape(layer: dict[str, Any]) -> Any:
    inner = _config(layer)
    for key in _SHAPE_KEYS:
        if inner.get(key) is not None:
            return inner[key]
    return None


def _image_shape(shape: Any) -> ImageShape | None:
    """(H, W, C) of a batch shape `[None, H, W, C]` (a SavedModel's wrapped tuple too)."""
    if isinstance(shape, dict):  # SavedModel metadata: {"class_name": "__tuple__", "items": …}
        shape = shape.get("items")
    if not isinstance(shape, list) or len(shape) != 4:
        return None
    dims = []
    for dim in shape[1:]:
        if dim is None:
            dims.append(None)
        elif isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
            dims.append(dim)
        else:
            return None
    return (dims[0], dims[1], dims[2])
