"""Python code stored in a saved model, found by reading the model's config as data.

A Keras model file can carry Python code: a `Lambda` layer's function is stored as
marshalled bytecode, and Keras runs it while it loads the model (for an HDF5 file, and a
SavedModel folder, `safe_mode` does not apply; an HDF5 file renamed `.keras` is loaded as
HDF5, so the suffix protects nothing). So before Keras deserializes anything, the config
is read the way Keras would find it, by content, without running it:

- a zip file (the `.keras` format): its `config.json`;
- an HDF5 file (`h5py.is_hdf5`, Keras' own test): the root attribute `model_config`;
- a SavedModel folder: the layer metadata in `keras_metadata.pb` and, for SavedModels
  written before TF 2.5, the `user_object` metadata in `saved_model.pb`; both files are
  also searched as bytes for a Lambda layer's config (best effort: the folder's graphs
  are TensorFlow ops, not Python, and are not checked).

A file that is both a zip and HDF5 has both configs checked. Any layer holding Python code
(`code_layers`) — bytecode, or an object from a module outside Keras' own, which Keras
would import and call (`foreign_object`: a custom layer's module, `builtins.eval`) — is
refused unless the user passed `--trust-model-code` for the run, and so is a zip whose
weights are stored as pickled numpy objects (`pickled_weights`: Keras unpickles them
whatever `safe_mode` says).
"""

from __future__ import annotations

import builtins
import json
import re
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from definitions.errors import UsageError, one_line

#: The flag that lets a run load Python code stored in a model file.
TRUST_FLAG = "--trust-model-code"
#: How many layers a refusal names before it counts the rest.
NAMED_LAYERS = 4
#: How long a (hostile, arbitrary) layer name may be in a message.
NAME_CHARS = 40
#: A Lambda layer's config, or a serialized Python lambda, in raw bytes (JSON text).
_CODE_BYTES = re.compile(
    rb'"class_name"\s*:\s*"(?:Lambda|__lambda__)"|"function_type"\s*:\s*"lambda"')


class StoredCodeRefused(UsageError):
    """A saved model holds Python code and the run does not trust the file."""


def code_layers(config: Any, *, modules: bool = True,
                registered: Collection[str] = ()) -> list[tuple[str, str]]:
    """`(layer name, what)` of every layer in a Keras config that holds Python code: a
    `Lambda` layer, a serialized `__lambda__` object (e.g. a lambda activation), or any
    layer config with `function_type: "lambda"` or a `function` stored as a list (the
    bytecode, defaults and closure Keras' `func_dump` writes); `what` is the layer's class.
    With `modules`, also every object naming a module outside Keras (`foreign_object`:
    a custom layer or function, or one of Python's builtins), which Keras would import and
    call: `what` is then `Class from module name` (`function name from module name` for a
    function); an object whose registered name is in `registered` is Keras' to find by that
    name and is not listed. Nested models and wrapped layers are searched too; the walk is
    iterative, so a deep hostile config cannot exhaust the stack."""
    found: dict[tuple[str, str], None] = {}
    stack: list[tuple[Any, tuple[str, str] | None]] = [(config, None)]
    while stack:
        node, layer = stack.pop()
        if isinstance(node, list):
            stack.extend((item, layer) for item in reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        inner = node.get("config")
        if isinstance(node.get("class_name"), str) and isinstance(inner, dict) \
                and "name" in inner:
            layer = (str(inner["name"]), node["class_name"])
        name, kind = layer or ("?", str(node.get("class_name", "?")))
        foreign = foreign_object(node, registered=registered) if modules else None
        if _holds_bytecode(node):
            found[(name, kind)] = None
        elif foreign:
            found[(name, foreign)] = None
        stack.extend((value, layer) for value in reversed(list(node.values())))
    return list(found)


def _holds_bytecode(node: dict[str, Any]) -> bool:
    """Whether one config dict is (or stores) a Python function Keras would rebuild."""
    return (node.get("class_name") in ("Lambda", "__lambda__")
            or node.get("function_type") == "lambda"
            or isinstance(node.get("function"), list | bytes))


#: The packages whose modules a Keras config may name: Keras' own, as the files it writes
#: name them (Keras 3 and tf.keras: `keras`, `keras.layers`, `keras.src.engine.functional`;
#: tf_keras: `tf_keras.src.engine.functional`). No Keras writes TensorFlow's modules.
KERAS_PACKAGES = ("keras", "tf_keras")


def foreign_object(node: dict[str, Any], *, registered: Collection[str] = ()
                   ) -> str | None:
    """`Class from module name` (`function name from module name`) when one config dict is
    an object Keras would find by importing a module outside `KERAS_PACKAGES`
    (`serialization_lib` imports any module a config names and calls what it finds there),
    else None. `builtins` is no exception: tf.keras 2.x names its own losses and metrics,
    and registered functions, as `builtins` functions (`sparse_categorical_crossentropy`,
    `mypkg>act`) and looks such a name up in its own modules and registry first, so only a
    `builtins` function whose name Python's builtins module holds (`eval`, `exec`,
    `__import__`, `open`…) or a `builtins` class reaches Python's own code: those are
    foreign. An object whose `registered_name` is in `registered` is found in Keras'
    registry by that name, its module never imported (outside `builtins`)."""
    module, class_name = node.get("module"), node.get("class_name")
    if not isinstance(module, str) or class_name is None:
        return None
    what = _cut(str(class_name))
    if class_name == "function":
        what = f"function {_cut(str(node.get('config')))}"
    if module == "builtins":
        name = node.get("config")
        keras_named = class_name == "function" and isinstance(name, str) \
            and not hasattr(builtins, name)
        return None if keras_named else f"{what} from module builtins"
    registered_name = node.get("registered_name")
    if module.split(".")[0] in KERAS_PACKAGES or (
            isinstance(registered_name, str) and registered_name in registered):
        return None
    return f"{what} from module {_cut(module)}"


def stored_configs(path: Path) -> list[Any]:
    """The model configs Keras could deserialize from `path`, read as data (see the
    module doc); a file that is neither a zip nor HDF5 has none (Keras cannot load it)."""
    if path.is_dir():
        return _saved_model_configs(path)
    configs = []
    if zipfile.is_zipfile(path):
        configs += _zip_configs(path)
    if _is_hdf5(path):
        configs += _hdf5_configs(path)
    return configs


def _zip_configs(path: Path) -> list[Any]:
    """`config.json` of a zip (`.keras`) file, the one entry Keras deserializes."""
    with zipfile.ZipFile(path) as archive:
        if "config.json" not in archive.namelist():
            return []
        return [_json(archive.read("config.json"), where=f"{path.name}'s config.json")]


#: The weights store Keras reads from a `.keras` zip without `model.weights.h5`: its
#: arrays are pickled Python objects (dicts of arrays, as Keras' `NpzIOStore` writes them)
#: and `numpy.load(allow_pickle=True)` unpickles them, running code, whatever `safe_mode`.
NPZ_WEIGHTS = "model.weights.npz"


def pickled_weights(path: Path) -> bool:
    """Whether Keras would read `path`'s weights from `NPZ_WEIGHTS` (a zip holding it and
    no `model.weights.h5`, the store Keras prefers)."""
    if path.is_dir() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return NPZ_WEIGHTS in names and "model.weights.h5" not in names


def _is_hdf5(path: Path) -> bool:
    import h5py

    return bool(h5py.is_hdf5(str(path)))


def _hdf5_configs(path: Path) -> list[Any]:
    """The `model_config` attribute of an HDF5 file (what Keras' legacy loader reads)."""
    import h5py

    with h5py.File(path, "r") as handle:
        raw = handle.attrs.get("model_config")
    if raw is None:
        return []
    return [_json(raw, where=f"{path.name}'s model_config")]


def _saved_model_configs(folder: Path) -> list[Any]:
    """Layer metadata of a SavedModel folder (`keras_metadata.pb`, and `saved_model.pb`'s
    user objects for older folders), plus a marker config for every Lambda config found in
    either file's bytes that the parsed metadata does not show."""
    from google.protobuf.message import DecodeError

    configs: list[Any] = []
    metadata, graph = folder / "keras_metadata.pb", folder / "saved_model.pb"
    if metadata.is_file():
        from keras.protobuf import saved_metadata_pb2

        saved = saved_metadata_pb2.SavedMetadata()
        try:
            saved.ParseFromString(metadata.read_bytes())
        except DecodeError:
            pass  # Keras refuses it too; the byte search below still runs
        configs += [_json(node.metadata, where=f"{folder.name}/keras_metadata.pb")
                    for node in saved.nodes if node.metadata]
    if graph.is_file():
        from tensorflow.core.protobuf import saved_model_pb2

        model = saved_model_pb2.SavedModel()
        try:
            model.ParseFromString(graph.read_bytes())
        except DecodeError:
            pass
        configs += [_json(node.user_object.metadata, where=f"{folder.name}/saved_model.pb")
                    for meta in model.meta_graphs for node in meta.object_graph_def.nodes
                    if node.HasField("user_object") and node.user_object.metadata]
    if not any(code_layers(config) for config in configs):
        configs += [{"class_name": "Lambda", "config": {"name": f"? (in {file.name})"}}
                    for file in (metadata, graph)
                    if file.is_file() and _CODE_BYTES.search(file.read_bytes())]
    return configs


def _json(raw: bytes | str, *, where: str) -> Any:
    """A config's JSON, or `StoredCodeRefused` when it is not JSON (Keras could not read
    it either, and an unreadable config cannot be checked)."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise StoredCodeRefused(f"{where} is not a readable JSON model config") from None


def check_stored_code(path: Path, *, trusted: bool) -> None:
    """`StoredCodeRefused` (one line: the file, the layers, the flag) when the model at
    `path` holds Python code (`code_layers` of its configs, `pickled_weights`) and
    `trusted` is False; nothing is deserialized."""
    if trusted:
        return
    try:
        configs = stored_configs(path)
        pickles = pickled_weights(path)
    except (OSError, EOFError, zipfile.BadZipFile) as error:  # a damaged file: unchecked
        raise StoredCodeRefused(one_line(
            f"{path.name} could not be read to check it for Python code: "
            f"{type(error).__name__}: {error}")) from None
    layers: dict[tuple[str, str], None] = {}
    for config in configs:
        layers.update(dict.fromkeys(code_layers(config)))
    if layers:
        raise StoredCodeRefused(refusal(path, list(layers)))
    if pickles:
        raise StoredCodeRefused(
            f"{shown(path.name, quote=False)} stores its weights as pickled Python objects "
            f"({NPZ_WEIGHTS}), which would run when loaded. Pass {TRUST_FLAG} if you trust "
            "this file, or save the model again with model.save (its weights are then HDF5)")


def refusal(path: Path, layers: list[tuple[str, str]]) -> str:
    """The one-line refusal naming `layers` (`named_layers`) and `TRUST_FLAG`."""
    custom = any(" from module " in kind for _, kind in layers)
    return (f"{shown(path.name, quote=False)} holds Python code in "
            f"{named_layers(layers)}; it would run when loaded. Pass {TRUST_FLAG} if you "
            f"trust this file, or rebuild the model without Lambda layers"
            f"{' and objects from modules outside Keras' if custom else ''}")


def named_layers(layers: list[tuple[str, str]]) -> str:
    """`layer 'a' (Lambda)` or `layers 'a' (Lambda), 'b' (Lambda) and 3 more`: at most
    `NAMED_LAYERS` named, so the line stays short whatever the file holds."""
    named = ", ".join(f"{shown(name)} ({shown(kind, quote=False, limit=3 * NAME_CHARS)})"
                      for name, kind in layers[:NAMED_LAYERS])
    more = len(layers) - NAMED_LAYERS
    if more > 0:
        named += f" and {more} more"
    return f"layer{'s' if len(layers) > 1 else ''} {named}"


def shown(text: str, *, quote: bool = True, limit: int = NAME_CHARS) -> str:
    """A name from a (possibly hostile) file as it may appear in one terminal line:
    control characters escaped, quoted, and at most `limit` characters."""
    escaped = _cut(repr(str(text))[1:-1], limit=limit)
    return f"'{escaped}'" if quote else escaped


def _cut(text: str, *, limit: int = NAME_CHARS) -> str:
    """`text` cut to at most `limit` characters, the last one "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
