"""The chosen model back in the user's Keras: a `.keras` file for Keras 3 or for Keras 2.

Keras 3 cannot open the `.keras` file Keras 2.14 writes (its config names Keras 2 modules,
its nodes and `InputLayer` are Keras 2's), so for Keras 3 the file is written here, as
Keras 3's own saving writes it (`keras/src/saving/saving_lib.py`):

- `config.json`: the model's config with each layer's settings as Keras 3's class takes
  them (`keras3_settings.json`: the settings each translated layer's constructor takes in
  the Keras 3 version named there, generated from that Keras by
  `tests/keras_today/write_models.py --settings`), nodes as `{"args", "kwargs"}` of
  `__keras_tensor__` references;
- `model.weights.h5`: each layer's variables under `layers/<class in snake case>[_k]/vars`,
  numbered per container in the order of the model's layers, as Keras 3 addresses them;
- `metadata.json`: the Keras version the settings are those of.

The layers written are those `objectives.keras_files` translates the other way
(`TRANSLATED`), whose meaning is the same in both; any other is refused in one line
(`KerasFileError`). Keras 2 (`keras_format=2`) is Keras 2.14's own `model.save`, which
tf_keras and TensorFlow ≤ 2.15 open.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objectives.files import write_atomically
from objectives.keras_files import (
    ACTIVATIONS,
    MODELS,
    NEUTRAL,
    OBJECT_KINDS,
    RENAMED,
    TRANSLATED,
    KerasFileError,
    snake_case,
)

if TYPE_CHECKING:
    from tensorflow import keras

#: The Keras formats `export` writes: 3 (Keras 3's) and 2 (Keras 2.14's own).
KERAS_FORMATS = (2, 3)
#: The settings renamed from Keras 2.14 to Keras 3 (the other way round from reading).
RENAMED_FOR_3 = {kind: {new: old for old, new in names.items()}
                 for kind, names in RENAMED.items()}
#: The Keras 3 modules of nested objects, by the setting's suffix.
OBJECT_MODULES = (("_initializer", "keras.initializers"),
                  ("_regularizer", "keras.regularizers"),
                  ("_constraint", "keras.constraints"))


@cache
def keras3_settings() -> tuple[str, dict[str, frozenset[str]]]:
    """The Keras 3 version and, per layer class, the settings its constructor takes."""
    data = json.loads(Path(__file__).with_name("keras3_settings.json").read_text())
    return data["keras_version"], {kind: frozenset(keys)
                                   for kind, keys in data["settings"].items()}


def written_version(keras_format: int) -> str:
    """The Keras version a file of `keras_format` is written as: the Keras 3 of the
    settings table, or this Keras 2.14."""
    if keras_format == 3:
        return keras3_settings()[0]
    from importlib.metadata import version

    return version("keras")


def save(model: keras.Model, path: Path, *, keras_format: int) -> None:
    """Writes `model` to `path` (atomically) as a `.keras` file of `keras_format`."""
    if keras_format not in KERAS_FORMATS:
        raise ValueError(f"keras_format must be one of {KERAS_FORMATS}, not {keras_format}")
    path = Path(path)
    if keras_format == 2:
        write_atomically(path, _keras2_file(model, path))
        return
    config = json.dumps(keras3_config(model))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({
            "keras_version": keras3_settings()[0],
            "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}))
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", _weights_h5(model))
    write_atomically(path, buffer.getvalue())


def _keras2_file(model: keras.Model, path: Path) -> bytes:
    """Keras 2.14's own `.keras` of `model`, its weights store also readable by tf_keras
    2.16+, which looks for each model's layers under `layers/` where Keras 2.14 wrote
    `_layer_checkpoint_dependencies/`: a hard link of each such group (no copy)."""
    import h5py

    partial = path.with_name(f".partial-{path.name}")
    try:
        model.save(partial)
        with zipfile.ZipFile(partial) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
    finally:
        partial.unlink(missing_ok=True)
    store = io.BytesIO(files["model.weights.h5"])
    with h5py.File(store, "r+") as handle:
        groups: list[Any] = []
        handle.visititems(lambda name, obj: groups.append(obj) if name.endswith(
            "_layer_checkpoint_dependencies") else None)
        for group in groups:
            group.parent["layers"] = group
    files["model.weights.h5"] = store.getvalue()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def keras3_config(model: keras.Model) -> dict[str, Any]:
    """`model`'s config as Keras 3 writes one (`{"module", "class_name", "config", …}`)."""
    import tensorflow as tf

    config = model.get_config()
    sequential = isinstance(model, tf.keras.Sequential)
    layers = [_entry(layer, entry, model=model, functional=not sequential)
              for layer, entry in zip(_config_layers(model), config["layers"], strict=True)]
    if sequential:
        inner = {"name": model.name, "trainable": model.trainable, "dtype": "float32",
                 "layers": layers}
        if config.get("build_input_shape") is not None:
            inner["build_input_shape"] = config["build_input_shape"]
        return {"module": "keras", "class_name": "Sequential", "config": inner,
                "registered_name": None}
    inner = {"name": model.name, "trainable": model.trainable, "layers": layers,
             "input_layers": _endpoints(config["input_layers"]),
             "output_layers": _endpoints(config["output_layers"])}
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": inner, "registered_name": "Functional",
            "build_config": {"input_shape": None}, "compile_config": None}


def _config_layers(model: keras.Model) -> list[Any]:
    """The layers in the order of `get_config()["layers"]`; None for a Sequential's
    InputLayer, which its config lists and `layers` leaves out (it has no weights)."""
    import tensorflow as tf

    layers: list[Any] = list(model.layers)
    if isinstance(model, tf.keras.Sequential) and len(model.get_config()["layers"]) == len(
            layers) + 1:
        layers.insert(0, None)
    return layers


def _endpoints(value: list[list[Any]]) -> list[Any]:
    """Keras 3 writes a model's one input (or output) flat: `[name, 0, 0]`."""
    return value[0] if len(value) == 1 else value


def _entry(layer: Any, entry: dict[str, Any], *, model: keras.Model, functional: bool
           ) -> dict[str, Any]:
    kind = entry["class_name"]
    name = entry["config"].get("name", getattr(layer, "name", "?"))
    if kind in MODELS:
        out = keras3_config(layer)
    elif kind in TRANSLATED:
        out = {"module": "keras.layers", "class_name": kind,
               "config": _settings(kind, entry["config"], layer=name),
               "registered_name": None}
    else:
        raise KerasFileError(f"layer {name!r} ({kind}) cannot be written for Keras 3 (no "
                             "translation); export with --keras-format 2")
    if functional:
        out["name"] = entry["name"]
        out["inbound_nodes"] = [_node(node, model=model) for node in entry["inbound_nodes"]]
    return out


def _settings(kind: str, config: dict[str, Any], *, layer: str) -> dict[str, Any]:
    """A layer's Keras 2.14 settings as Keras 3's class of that name takes them."""
    accepted = keras3_settings()[1][kind]
    out: dict[str, Any] = {}
    for key, value in config.items():
        key = RENAMED_FOR_3.get(kind, {}).get(key, key)
        if key == "activation" and value not in ACTIVATIONS:
            raise KerasFileError(f"layer {layer!r} ({kind}) uses activation {value!r}, "
                                 "which has no Keras 3 translation; export with "
                                 "--keras-format 2")
        if kind == "BatchNormalization" and key == "axis" and isinstance(value, list):
            value = value[0] if len(value) == 1 else value  # Keras 3 takes one axis
        if isinstance(value, dict) and "class_name" in value:
            value = _nested_object(key, value)
        if key not in accepted:
            if value in NEUTRAL or _is_default(kind, key, value):
                continue  # a setting Keras 3 lacks, at a value that changes nothing
            raise KerasFileError(f"layer {layer!r} ({kind}) sets {key}={value!r}, which "
                                 "Keras 3 lacks; export with --keras-format 2")
        out[key] = value
    return out


@cache
def _keras2_defaults(kind: str) -> dict[str, Any]:
    """The default of each setting of Keras 2.14's layer class `kind` (the class's own,
    else its nearest base's)."""
    import inspect

    import tensorflow as tf

    defaults: dict[str, Any] = {}
    for base in reversed(getattr(tf.keras.layers, kind).__mro__):
        init = base.__dict__.get("__init__")
        if init is not None:
            defaults.update({p.name: p.default for p in inspect.signature(
                init).parameters.values() if p.default is not p.empty})
    return defaults


def _is_default(kind: str, key: str, value: Any) -> bool:
    """Whether `value` is what Keras 2.14's `kind` has for `key` when not given (an
    initializer or regularizer default named by a string compared as its object)."""
    import tensorflow as tf

    default = _keras2_defaults(kind).get(key, NEUTRAL)
    if value == default:
        return True
    module = next((kinds for suffix, kinds in OBJECT_KINDS if key.endswith(suffix)), None)
    if not (isinstance(value, dict) and isinstance(default, str) and module):
        return False
    serialized = tf.keras.utils.serialize_keras_object(getattr(tf.keras, module).get(default))
    return (serialized.get("class_name"), serialized.get("config")) == (
        value.get("class_name"), value.get("config"))


def _nested_object(key: str, value: dict[str, Any]) -> dict[str, Any]:
    module = next((name for suffix, name in OBJECT_MODULES if key.endswith(suffix)),
                  value.get("module"))
    return {"module": module, "class_name": value["class_name"],
            "config": value.get("config") or {}, "registered_name": None}


def _node(node: list[list[Any]], *, model: keras.Model) -> dict[str, Any]:
    """A Keras 2 node (`[[layer, node, tensor, kwargs], …]`) as Keras 3's `{"args",
    "kwargs"}`. Keras 3 does not count the node a nested model's own construction made."""
    tensors, kwargs = [], {}
    for name, node_index, tensor_index, *rest in node:
        source = model.get_layer(name)
        shape = _output_shape(source)
        if isinstance(shape, list):
            shape = shape[tensor_index]
        kwargs.update(rest[0] if rest else {})
        history = [name, node_index - (1 if _is_model(source) else 0), tensor_index]
        tensors.append({"class_name": "__keras_tensor__", "config": {
            "shape": list(shape), "dtype": "float32", "keras_history": history}})
    return {"args": [tensors[0] if len(tensors) == 1 else tensors], "kwargs": kwargs}


def _output_shape(layer: Any) -> Any:
    """The shape of what `layer` gives (one shape for every call: a layer called on
    tensors of other shapes in one model is not written)."""
    try:
        return layer.output_shape
    except AttributeError:  # called more than once (a nested model: its own input too)
        shapes = {repr(layer.get_output_shape_at(i)) for i in range(len(layer.inbound_nodes))}
        if len(shapes) != 1:
            raise KerasFileError(f"layer {layer.name!r} is called on inputs of several "
                                 "shapes; export with --keras-format 2") from None
        return layer.get_output_shape_at(0)


def _is_model(layer: Any) -> bool:
    return bool(getattr(layer, "layers", None)) and hasattr(layer, "inputs")


def _weights_h5(model: keras.Model) -> bytes:
    """Keras 3's `model.weights.h5` of `model`: every layer's variables, in order, under
    the path Keras 3 gives that layer."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as store:
        store.create_group("vars").attrs["name"] = model.name
        _write_layers(store, model, "layers")
    return buffer.getvalue()


def _write_layers(store: Any, model: Any, prefix: str) -> None:
    used: dict[str, int] = {}
    for layer in _config_layers(model):
        if layer is None:
            continue
        base = snake_case(type(layer).__name__ if not _is_model(layer) else (
            "Sequential" if type(layer).__name__ == "Sequential" else "Functional"))
        used[base] = used.get(base, -1) + 1
        path = f"{prefix}/{base}" + (f"_{used[base]}" if used[base] else "")
        if _is_model(layer):
            store.create_group(f"{path}/vars").attrs["name"] = layer.name
            _write_layers(store, layer, f"{path}/layers")
            continue
        group = store.create_group(f"{path}/vars")
        group.attrs["name"] = layer.name
        for index, weight in enumerate(layer.get_weights()):
            group.create_dataset(str(index), data=weight)
