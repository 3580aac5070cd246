"""Keras files written by today's Keras, read as data and translated into this tool's Keras.

The engine runs on Keras 2.14 (tensorflow-compression pins TensorFlow 2.14), whose loader
cannot open what Keras 3 (TensorFlow's Keras since 2.16, March 2024) or tf_keras 2.16+
write: Keras 3 stores an `InputLayer`'s `batch_shape`, dtype *policies* and its own node
format; both add `optional`. So a file from a newer Keras is never handed to Keras 2.14's
loader. Its model config is read as JSON (`model_code.stored_configs` already reads it so,
to refuse stored Python code before anything loads), each layer is translated into the
Keras 2.14 config of the same layer (a table of the layers whose meaning is the same in
both: `TRANSLATED`), the model is built from that config, and every weight is carried over
by layer from the file's weight store:

- a `.keras` zip: `model.weights.h5`, where Keras 3 and tf_keras address a layer not by its
  name but by its class in snake case, numbered per container in the order of the config's
  `layers` (`conv2d`, `conv2d_1`, …; a nested model's under `<its path>/layers/`);
- an `.h5` file: `model_weights/<layer name>`, the weights in the order its `weight_names`
  attribute lists (a nested model's group names each weight `…/<inner layer>/<weight>`).

A layer, activation, initializer or setting with no translation is refused in one line that
names it, its class and the Keras version that wrote the file (`KerasFileError`, a
`UsageError`: exit 2, nothing stored); so is a serving SavedModel (`model.export`), which
holds a graph of TensorFlow ops and no Keras layers.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from definitions.errors import UsageError, one_line

if TYPE_CHECKING:
    from tensorflow import keras


class KerasFileError(UsageError):
    """A Keras file this tool cannot read: a layer without a translation, a serving
    SavedModel, weights that do not fit the model the config describes."""


@dataclass(frozen=True)
class FileFormat:
    """What wrote a saved model: its container (`keras` zip, `h5`, `savedmodel` folder)
    and the Keras version the file records (None when it records none)."""

    container: str
    keras_version: str | None

    @property
    def translated(self) -> bool:
        """Whether Keras 2.14's own loader cannot read it: written by Keras 3, or by
        tf_keras 2.16 or newer (the Keras 2 API on today's TensorFlow)."""
        version = _version(self.keras_version)
        return self.container != "savedmodel" and version is not None and version >= (2, 16)

    @property
    def keras_major(self) -> int:
        """3 for a file of Keras 3, else 2 (the format `export` writes back by default)."""
        version = _version(self.keras_version)
        return 3 if version is not None and version[0] >= 3 else 2

    def as_record(self) -> dict[str, str | None]:
        return {"container": self.container, "keras_version": self.keras_version}


def _version(text: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


def file_format(path: Path) -> FileFormat:
    """The container and recorded Keras version of the saved model at `path` (read as
    data, no TensorFlow)."""
    path = Path(path)
    if path.is_dir():
        return FileFormat("savedmodel", None)
    if not path.is_file():
        return FileFormat("unknown", None)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            raw = archive.read("metadata.json") if "metadata.json" in names else b"{}"
        try:
            version = json.loads(raw).get("keras_version")
        except (ValueError, AttributeError):
            version = None
        return FileFormat("keras", version if isinstance(version, str) else None)
    import h5py

    if not h5py.is_hdf5(str(path)):
        return FileFormat("unknown", None)
    with h5py.File(path, "r") as handle:
        version = handle.attrs.get("keras_version")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return FileFormat("h5", version if isinstance(version, str) else None)


def refuse_serving_savedmodel(path: Path) -> None:
    """`KerasFileError` for a SavedModel folder with no Keras layer graph (`model.export`
    writes one: TensorFlow ops only)."""
    if path.is_dir() and not (path / "keras_metadata.pb").is_file():
        raise KerasFileError(
            f"{path} is a serving SavedModel (Keras 3's model.export): it holds TensorFlow "
            "ops, no layer graph to search; save the model with model.save(\"m.keras\") and "
            "pass that file")


# --- the translation table ------------------------------------------------------------

#: Layers whose Keras 3 / tf_keras config means the same layer in Keras 2.14 (once the
#: settings below are renamed): the only ones translated.
TRANSLATED = frozenset({
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense",
    "BatchNormalization", "LayerNormalization", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Add", "Subtract", "Multiply",
    "Average", "Maximum", "Minimum", "Concatenate", "ReLU", "Activation", "Softmax",
    "LeakyReLU", "ELU", "PReLU", "Dropout", "SpatialDropout2D", "Flatten", "Reshape",
    "ZeroPadding2D", "Cropping2D", "Rescaling", "Normalization",
})
#: Models nested as layers, translated recursively.
MODELS = frozenset({"Functional", "Model", "Sequential"})
#: Activations that compute the same function in both (Keras 3's `hard_sigmoid` has
#: another slope than Keras 2's, so it is not here).
ACTIVATIONS = frozenset({
    "linear", "relu", "relu6", "elu", "selu", "gelu", "sigmoid", "tanh", "softmax",
    "softplus", "softsign", "swish", "silu", "mish", "exponential", "leaky_relu",
    "log_softmax",
})
#: Settings renamed between Keras 3 and Keras 2.14, per layer class.
RENAMED = {"InputLayer": {"batch_shape": "batch_input_shape"},
           "LeakyReLU": {"negative_slope": "alpha"}}
#: What Keras 2.14's base `Layer` takes besides its signature (`base_layer.allowed_kwargs`).
LAYER_KWARGS = frozenset({"input_dim", "input_shape", "batch_input_shape", "batch_size",
                          "weights", "activity_regularizer", "autocast", "name",
                          "trainable", "dtype", "dynamic"})
#: Values of a setting Keras 2.14 does not know that change nothing (Keras 3's
#: `optional: false`, `lora_rank: null`, `quantization_config: null`, …).
NEUTRAL = (None, False, 0, "", (), [], {})
#: The modules of nested objects (initializers, regularizers, constraints) by setting.
OBJECT_KINDS = (("_initializer", "initializers"), ("_regularizer", "regularizers"),
                ("_constraint", "constraints"))


@dataclass(frozen=True)
class _Context:
    """Where a translation is: the file (for messages) and the Keras that wrote it."""

    path: Path
    version: str

    def refuse(self, layer: str, kind: str, what: str) -> KerasFileError:
        return KerasFileError(
            f"{self.path.name} (written by Keras {self.version}): layer {layer!r} "
            f"({kind}) {what}; the layers translated are listed in the README (\"Keras 3 "
            "and tf_keras files\")")


def translate_model_config(config: dict[str, Any], *, context: _Context) -> dict[str, Any]:
    """The Keras 2.14 config (`{"class_name", "config"}`) of a model config written by
    Keras 3 or tf_keras."""
    kind = config.get("class_name")
    inner = config.get("config") or {}
    name = str(inner.get("name", "?"))
    if kind not in MODELS:
        raise context.refuse(name, str(kind), "is not a Functional or Sequential model")
    models = frozenset(str((entry.get("config") or {}).get("name"))
                       for entry in inner.get("layers", []) if entry.get("class_name") in MODELS)
    layers = [_translate_entry(entry, context=context, functional=kind != "Sequential",
                               models=models)
              for entry in inner.get("layers", [])]
    _check_references(layers, context=context)
    if kind == "Sequential":
        out = {"name": name, "layers": layers}
        if inner.get("build_input_shape") is not None:
            out["build_input_shape"] = inner["build_input_shape"]
        return {"class_name": "Sequential", "config": out}
    return {"class_name": "Functional", "config": {
        "name": name, "trainable": inner.get("trainable", True), "layers": layers,
        "input_layers": _endpoints(inner.get("input_layers")),
        "output_layers": _endpoints(inner.get("output_layers")),
    }}


def _check_references(layers: list[dict[str, Any]], *, context: _Context) -> None:
    """Refuses a node that names a layer or a call the model does not have: Keras 2.14's
    rebuilding waits for such a node for ever."""
    calls = {entry["name"]: len(entry["inbound_nodes"]) + (
        1 if entry["class_name"] in MODELS or entry["class_name"] == "InputLayer" else 0)
        for entry in layers if "inbound_nodes" in entry}
    for entry in layers:
        for node in entry.get("inbound_nodes", []):
            for source, index, *_ in node:
                if source not in calls or not 0 <= int(index) < calls[source]:
                    raise context.refuse(entry["name"], entry["class_name"],
                                         f"takes call {index} of {source!r}, which the "
                                         "model does not have")


def _endpoints(value: Any) -> list[list[Any]]:
    """Keras 3 writes a model's one input as `[name, 0, 0]`; Keras 2 as a list of those."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value]
    return list(value or [])


def _translate_entry(entry: dict[str, Any], *, context: _Context, functional: bool,
                     models: frozenset[str]) -> dict[str, Any]:
    """One entry of a model's `layers`: the layer's config and, in a functional model,
    its name and inbound nodes (`models`: the names of the nested models among them)."""
    kind = str(entry.get("class_name"))
    config = entry.get("config") or {}
    name = str(config.get("name", entry.get("name", "?")))
    if kind in MODELS:
        out = translate_model_config(entry, context=context)
    elif kind in TRANSLATED:
        out = {"class_name": kind, "config": _layer_config(kind, config, context=context)}
    else:
        raise context.refuse(name, kind, "has no translation")
    if functional:
        out["name"] = name
        out["inbound_nodes"] = [_node(node, layer=name, kind=kind, context=context,
                                      models=models)
                                for node in entry.get("inbound_nodes", [])]
    return out


def _layer_config(kind: str, config: dict[str, Any], *, context: _Context) -> dict[str, Any]:
    """A layer's settings as Keras 2.14's class of that name takes them."""
    import tensorflow as tf

    layer_class = getattr(tf.keras.layers, kind)
    accepted = _accepted(layer_class) | LAYER_KWARGS
    name = str(config.get("name", "?"))
    out: dict[str, Any] = {}
    for key, value in config.items():
        key = RENAMED.get(kind, {}).get(key, key)
        if key == "dtype":
            value = _dtype(value)
        elif key == "activation":
            value = _activation(value, layer=name, kind=kind, context=context)
        elif isinstance(value, dict) and "class_name" in value:
            value = _nested_object(key, value, layer=name, kind=kind, context=context)
        if key not in accepted:
            if value in NEUTRAL:
                continue
            raise context.refuse(name, kind, f"sets {key}={value!r}, which Keras 2.14 lacks")
        out[key] = value
    return out


def _accepted(cls: type) -> set[str]:
    """The named parameters of `cls.__init__` and its bases' (they pass `**kwargs` up)."""
    names: set[str] = set()
    for base in cls.__mro__:
        init = base.__dict__.get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}


def _dtype(value: Any) -> Any:
    """A Keras 3 dtype policy (`{"class_name": "DTypePolicy", "config": {"name": …}}`) as
    the dtype name; a mixed policy as float32 (its variables are float32; this tool trains
    in float32)."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name", "float32")
    if isinstance(value, str) and value.startswith("mixed_"):
        return "float32"
    return value


def _activation(value: Any, *, layer: str, kind: str, context: _Context) -> str:
    if isinstance(value, dict):  # Keras 3 may store a built-in function as an object
        value = value.get("config") if str(value.get("module", "")).startswith(
            "keras") else None
    if value not in ACTIVATIONS:
        raise context.refuse(layer, kind, f"uses activation {value!r}, which has no "
                             "translation")
    return str(value)


def _nested_object(key: str, value: dict[str, Any], *, layer: str, kind: str,
                   context: _Context) -> dict[str, Any]:
    """An initializer, regularizer or constraint as Keras 2.14's class of that name takes
    its settings."""
    import tensorflow as tf

    module = next((getattr(tf.keras, kinds) for suffix, kinds in OBJECT_KINDS
                   if key.endswith(suffix)), None)
    name = str(value["class_name"])
    cls = getattr(module, name, None) if module is not None else None
    if not isinstance(cls, type):
        raise context.refuse(layer, kind, f"sets {key} to {name}, which has no translation")
    accepted = _accepted(cls)
    settings = {}
    for setting, inner in (value.get("config") or {}).items():
        if setting in accepted:
            settings[setting] = inner
        elif inner not in NEUTRAL:
            raise context.refuse(layer, kind, f"sets {key} {name}({setting}={inner!r}), "
                                 "which Keras 2.14 lacks")
    return {"class_name": name, "config": settings}


def _node(node: Any, *, layer: str, kind: str, context: _Context, models: frozenset[str]
          ) -> list[list[Any]]:
    """One inbound node in Keras 2's form, `[[layer, node, tensor, kwargs], …]`, from Keras
    3's `{"args": [...], "kwargs": {...}}` (a Keras 2 node is kept as it is). Keras 2
    numbers a nested model's calls after the node its own construction made, Keras 3 does
    not: a reference to one of `models` moves up by one."""
    if isinstance(node, list):
        return node
    args, kwargs = node.get("args", []), node.get("kwargs", {}) or {}
    if len(args) != 1:
        raise context.refuse(layer, kind, f"is called with {len(args)} positional "
                             "arguments; one (a tensor or a list of tensors) is translated")
    tensors = args[0] if isinstance(args[0], list) else [args[0]]
    kept = {key: value for key, value in kwargs.items() if value is not None}
    entries = []
    for tensor in tensors:
        history = (tensor.get("config") or {}).get("keras_history") if isinstance(
            tensor, dict) else None
        if not history:
            raise context.refuse(layer, kind, "takes an input that is not a layer's output")
        node_index = int(history[1]) + (1 if history[0] in models else 0)
        entries.append([history[0], node_index, history[2], dict(kept)])
    return entries


# --- the weights ------------------------------------------------------------------------


def snake_case(name: str) -> str:
    """A class name as Keras' saving addresses it (`PReLU` → `p_re_lu`)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _zip_weights(config: dict[str, Any], store: Any, prefix: str = "layers"
                 ) -> dict[tuple[str, ...], list[Any]]:
    """`(model name …, layer name)` → the arrays a `.keras` zip stores for that layer, in
    order, walking the config as Keras' saving walked the model."""
    found: dict[tuple[str, ...], list[Any]] = {}
    used: dict[str, int] = {}
    for entry in (config.get("config") or {}).get("layers", []):
        base = snake_case(str(entry.get("class_name")))
        used[base] = used.get(base, -1) + 1
        path = f"{prefix}/{base}" + (f"_{used[base]}" if used[base] else "")
        name = str((entry.get("config") or {}).get("name"))
        if entry.get("class_name") in MODELS:
            inner = _zip_weights(entry, store, prefix=f"{path}/layers")
            found.update({(name, *key): value for key, value in inner.items()})
            continue
        variables = store.get(f"{path}/vars")
        if variables is not None and len(variables):
            found[(name,)] = [variables[str(i)][()] for i in range(len(variables))]
    return found


def _h5_weights(group: Any) -> dict[tuple[str, ...], list[Any]]:
    """`(layer name,)` or `(model name, inner layer name)` → arrays, from an `.h5` file's
    `model_weights` group (each layer's `weight_names` in order)."""
    found: dict[tuple[str, ...], list[Any]] = {}
    for layer in group.attrs.get("layer_names", []):
        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
        sub = group[layer]
        for weight in sub.attrs.get("weight_names", []):
            weight = weight.decode() if isinstance(weight, bytes) else str(weight)
            parts = weight.split("/")
            owner = parts[-2] if len(parts) >= 2 else layer
            key = (layer,) if owner == layer else (layer, owner)
            found.setdefault(key, []).append(sub[weight][()])
    return found


def _stored_weights(path: Path, fmt: FileFormat, config: dict[str, Any]
                    ) -> dict[tuple[str, ...], list[Any]]:
    import h5py

    if fmt.container == "keras":
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("model.weights.h5")
        with h5py.File(io.BytesIO(raw), "r") as store:
            return _zip_weights(config, store)
    with h5py.File(path, "r") as handle:
        return _h5_weights(handle["model_weights"] if "model_weights" in handle else handle)


def _set_weights(model: keras.Model, stored: dict[tuple[str, ...], list[Any]], *,
                 context: _Context) -> None:
    """Every weighted layer of `model` gets its stored arrays (a layer of a nested model
    under `(model, layer)`; an `.h5`'s deeper nesting under its outermost model)."""
    for layer, key in _weighted_layers(model):
        arrays = stored.get(key) or stored.get((key[0], key[-1]))
        wanted = [tuple(w.shape) for w in layer.weights]
        if arrays is None or [tuple(a.shape) for a in arrays] != wanted:
            got = None if arrays is None else [tuple(a.shape) for a in arrays]
            raise context.refuse(layer.name, type(layer).__name__,
                                 f"needs weights of shapes {wanted}; the file stores {got}")
        layer.set_weights(arrays)


def _weighted_layers(model: Any, prefix: tuple[str, ...] = ()) -> list[tuple[Any, tuple]]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out += _weighted_layers(layer, (*prefix, layer.name))
        elif layer.weights:
            out.append((layer, (*prefix, layer.name)))
    return out


def load_translated(path: Path, *, config: dict[str, Any], fmt: FileFormat) -> keras.Model:
    """The model `config` (read from `path`, written by `fmt`'s Keras) in Keras 2.14, with
    every weight the file stores."""
    import tensorflow as tf

    context = _Context(path=Path(path), version=fmt.keras_version or "?")
    try:
        translated = translate_model_config(config, context=context)
        model = tf.keras.layers.deserialize(translated)
        stored = _stored_weights(Path(path), fmt, config)
    except KerasFileError:
        raise
    except (AttributeError, TypeError, ValueError, KeyError, IndexError, OSError) as error:
        # a config or weight store of another form than Keras writes (edited, damaged)
        raise KerasFileError(one_line(
            f"{Path(path).name} (written by Keras {context.version}) could not be read as "
            f"a model: {type(error).__name__}: {error}")) from None
    _set_weights(model, stored, context=context)
    return model
