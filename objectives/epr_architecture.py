"""The plain architecture an `.epr` file holds: checked to hold no code, rebuilt with
decoded weights, and walked layer by layer.

An `.epr` file stores the plain model's Keras JSON (no weights), never code: a model whose
architecture the file cannot hold safely — a `Lambda` layer (its Python bytecode would run
on every decode), a class Keras cannot rebuild from JSON, or an object from a module
outside Keras that Keras' registry does not hold (Keras would import that module) — is
refused before it trains (`storable_json`: `EPRError`, the trial fails alone), and a file
whose architecture names code or such a module is refused when it is read (`refuse_code`),
before Keras sees it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from definitions.errors import one_line
from objectives.errors import EPRError
from objectives.model_code import StoredCodeRefused, code_layers, named_layers


def walk(model: tf.keras.Model, prefix: tuple[str, ...] = ()
          ) -> Iterator[tuple[tuple[str, ...], tf.keras.layers.Layer]]:
    """(path of names, layer) for every layer, descending into nested models."""
    for layer in model.layers:
        path = (*prefix, layer.name)
        if isinstance(layer, tf.keras.Model):
            yield from walk(layer, path)
        else:
            yield path, layer


def storable_json(model: tf.keras.Model) -> str:
    """`model`'s architecture as the Keras JSON an `.epr` file stores, checked to be one
    `load` can rebuild without running code: `EPRError` (the trial fails, the study goes
    on) for a layer holding Python code (a `Lambda`: its bytecode would travel in the file
    and run whenever it is decoded; the TFLite modes convert the graph instead) and for a
    layer class Keras cannot rebuild from its JSON (a custom or unregistered layer), both
    found before the candidate trains."""
    try:
        plain_json = model.to_json()
    except (NotImplementedError, TypeError, ValueError) as error:
        raise EPRError(one_line(f"EPR cannot store model {model.name!r}: its architecture "
                                f"has no JSON config: {type(error).__name__}: {error}")) from None
    code = code_layers(json.loads(plain_json), modules=False)
    if code:
        raise EPRError(f"EPR cannot store model {model.name!r}: {named_layers(code)} "
                       f"hold{'s' if len(code) == 1 else ''} Python code, which the .epr "
                       "file would have to carry and run when decoded; candidates without EPR "
                       "(epr_lambda 0) convert it to TFLite instead")
    custom = [(layer.name, type(layer).__name__) for _, layer in walk(model)
              if not type(layer).__module__.startswith(("keras.", "tensorflow."))]
    if custom:  # Keras' own layers always rebuild; a custom one only when registered
        try:
            tf.keras.models.model_from_json(plain_json)
        except (TypeError, ValueError) as error:
            raise EPRError(one_line(
                f"EPR cannot store model {model.name!r}: Keras cannot rebuild "
                f"{named_layers(custom)} from the JSON the .epr file holds; register a "
                "custom layer with keras.saving.register_keras_serializable, or search "
                f"without EPR (epr_lambda 0): {type(error).__name__}: {error}")) from None
    foreign = code_layers(json.loads(plain_json), registered=registered_names())
    if foreign:  # what `refuse_code` would refuse when the file is read
        raise EPRError(one_line(
            f"EPR cannot store model {model.name!r}: {named_layers(foreign)} name"
            f"{'s' if len(foreign) == 1 else ''} an object from a module outside Keras that "
            "Keras' registry does not hold, which the .epr file's reader refuses to import; "
            "register it with keras.saving.register_keras_serializable, or search without "
            "EPR (epr_lambda 0)"))
    return plain_json


def registered_names() -> frozenset[str]:
    """The names in Keras' registry in this process: Keras' own objects and the custom
    layers and functions that code already imported has registered. Keras rebuilds an
    object naming one of them from the registry, importing nothing the file names."""
    return frozenset(tf.keras.saving.get_custom_objects())


def refuse_code(path: str | os.PathLike, architecture: Any) -> None:
    """An `.epr` file holds a Keras architecture and weights, never code: `save` refuses
    Lambda layers and objects from modules outside Keras (`storable_json`). One whose
    architecture names bytecode (a Lambda, a serialized lambda) or an object from another
    module — `builtins.eval`, a custom layer's module Keras' registry does not hold, which
    Keras would import — was not made by this tool or was altered, and loading it would run
    that code, so it is refused in one line, before Keras reads it
    (`objectives.model_code.code_layers`)."""
    try:
        config = json.loads(architecture)
    except (TypeError, ValueError) as error:
        raise EPRError(one_line(f"corrupt architecture: {error}")) from None
    found = code_layers(config, registered=registered_names())
    if found:
        raise StoredCodeRefused(one_line(
            f"{Path(path).name} names Python code in {named_layers(found)}, which this "
            "tool never stores in an .epr file; it was altered or made elsewhere, and "
            "loading it would run that code: not loaded"))


def rebuild(plain_json: str) -> tf.keras.Model:
    """The plain model of `plain_json`, its weights not yet set; `EPRError` (one line) when
    Keras cannot rebuild it: a layer holding code, a class it does not know, a config
    altered into something else (Keras' reader then fails in any of these ways)."""
    try:
        return tf.keras.models.model_from_json(plain_json)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as error:
        if "safe_mode" in str(error):  # Keras refuses a Lambda's bytecode: it is not run
            raise EPRError("the .epr architecture holds Python code (a Lambda layer), "
                           "which is not run") from None
        raise EPRError(one_line(f"the .epr architecture cannot be rebuilt: "
                                f"{type(error).__name__}: {error}")) from None


def layer_at(model: tf.keras.Model, path: tuple[str, ...]) -> tf.keras.layers.Layer:
    """The layer at `path` (names from the root, through nested models); `EPRError` naming
    the path when the architecture has no such layer (a file whose header was altered)."""
    target: Any = model
    for name in path:
        try:
            target = target.get_layer(name) if isinstance(target, tf.keras.Model) else None
        except ValueError:
            target = None
        if target is None:
            raise EPRError(one_line(f"holds weights for layer {'/'.join(map(str, path))!r}, "
                                    "which the architecture does not have", limit=200))
    return target


def weighted_paths(model: tf.keras.Model) -> set[tuple[str, ...]]:
    """The paths of the layers of `model` that hold weights: those an `.epr` file sets."""
    return {path for path, layer in walk(model) if layer.weights}


def assemble(plain_json: str, layers: list[tuple[tuple[str, ...], list[np.ndarray]]]
              ) -> tf.keras.Model:
    """Plain model from its JSON, with the decoded weights of each layer (by its path of
    names, in Keras' order) set."""
    model = rebuild(plain_json)
    for path, weights in layers:
        layer_at(model, path).set_weights(weights)
    return model
