"""The parent of a study, and the candidate models made from it (DESIGN §3).

Every candidate is a rewrite of one parent model (`objectives.rewrite.transform`): the
built-in families are parents built by `objectives.build` at width 1 (their halves keep
the activation between them, as the families always had), a user's saved model or model
builder is the parent as given, and a KerasTuner hypermodel gives each trial its own
parent, built from the trial's `hp_*` parameters.

`ParentSource` names a parent with strings only, so a worker process (forked, or spawned
when the driver already holds TensorFlow) finds it again; `prepare` runs once per study in
a worker and returns, as plain data, what the TensorFlow-free driver needs to search
(`ParentInfo`: the factorizations offered at each width, the layers kept as they are, the
loss the output calls for); with `--init inherit` it also trains the parent once (when it
does not come trained from a file) and caches its weights in the run directory, so the
children inherit them (channels by L1 norm, factorized convs by truncated SVD; Li et al.
2017, Tai et al. 2016). `candidate_model` then makes one trial's model in its worker.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from definitions.errors import UsageError, one_line
from definitions.importer import import_reference
from objectives.batches import predict
from objectives.keras_files import file_format, load_translated, refuse_serving_savedmodel
from search_spaces.candidate import Candidate
from search_spaces.families import get_family
from search_spaces.hypermodel import HypermodelError, OptunaHyperParameters
from studies.references import ParentSource

if TYPE_CHECKING:
    from collections.abc import Callable

    import keras_tuner
    import optuna
    from tensorflow import keras

    from definitions.budgets import Budget
    from studies.datasets import Splits

#: The file suffixes of a saved Keras model (besides a SavedModel folder).
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


class ParentError(UsageError):
    """A parent that cannot be searched: not a model, wrong input or output shape, …"""


@dataclass(frozen=True)
class ParentInfo:
    """What the driver learns about a parent from `prepare` (plain data, no TensorFlow).

    Attributes:
        name: the parent model's name.
        outputs: `logits` or `probabilities` (the loss follows it).
        offered: for each width of the study's grid (rounded to 6 places), the convs the
            search may factorize there.
        kept: `(layer, reason)` for each layer the rewriter keeps as it is.
        weights: the trained parent weights children inherit, or None (scratch).
        parent_accuracy: validation accuracy of the trained parent (None if not trained).
        teacher: a `.npy` file of the trained parent's outputs (`outputs`: logits or
            probabilities) on the training split, row for row, computed once per study:
            what its children distill (`Budget.distill_weight`); None without a trained
            parent.
    """

    name: str
    outputs: str
    offered: dict[float, tuple[str, ...]] = field(default_factory=dict)
    kept: tuple[tuple[str, str], ...] = ()
    weights: str | None = None
    parent_accuracy: float | None = None
    teacher: str | None = None

    def offered_at(self, width: float) -> tuple[str, ...]:
        """The offered convs at `width` (a width off the grid offers none)."""
        return self.offered.get(round(width, 6), ())


def width_grid(low: float, high: float, step: float) -> tuple[float, ...]:
    """The widths `suggest` can draw: low, low + step, … up to high (rounded to 6 places)."""
    if low == high:
        return (round(low, 6),)
    count = math.floor((high - low) / step + 1e-9)
    return tuple(round(low + k * step, 6) for k in range(count + 1))


# --- resolving references --------------------------------------------------------------


def _model_object(source: ParentSource) -> Any:
    """The Python object behind a `function` or `study` source."""
    if source.kind == "function":
        return import_reference(source.target, what="model")
    from studies.references import load_study

    return load_study(source.target).model


def is_hypermodel(obj: Any) -> bool:
    """A `keras_tuner.HyperModel`, or a function taking exactly one argument (`hp`)."""
    if obj is None or isinstance(obj, str | Path):
        return False
    if type(obj).__module__.startswith("keras_tuner") or any(
        c.__module__.startswith("keras_tuner") for c in type(obj).__mro__
    ):
        return True
    if not callable(obj):
        return False
    try:
        parameters = [
            p for p in inspect.signature(obj).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(parameters) == 1


def source_is_hypermodel(source: ParentSource) -> bool:
    """Whether `source` is a hypermodel (each trial builds its own parent)."""
    if source.kind in ("family", "file"):
        return False
    return is_hypermodel(_model_object(source))


def hypermodel_of(source: ParentSource) -> Any:
    """The hypermodel object of a `function` or `study` source."""
    return _model_object(source)


def load_model_file(path: str | Path, *, trust_code: bool = False) -> keras.Model:
    """A saved Keras model, uncompiled; `ParentError` in one line for anything else.

    Python code stored in the file (a `Lambda` layer's bytecode) would run while Keras
    loads it, so the config is first read as data (`objectives.model_code`) and a model
    holding code is refused unless `trust_code` (the run's `--trust-model-code`); then
    Keras loads it in safe mode (zip `.keras`: `safe_mode`; HDF5 and SavedModel: Keras'
    safe-mode scope, which its legacy loaders honour), so code the check missed is refused
    too. A file written by Keras 3 or tf_keras 2.16+, which Keras 2.14's loader cannot
    read, is translated layer by layer with its weights (`objectives.keras_files`)."""
    import tensorflow as tf

    from objectives.model_code import TRUST_FLAG, check_stored_code, stored_configs

    path = Path(path)
    if not path.exists():
        raise ParentError(f"model file {path} does not exist")
    if path.is_file() and path.suffix.lower() not in MODEL_SUFFIXES:
        raise ParentError(
            f"{path} is not a saved Keras model: expected a .keras or .h5 file or a "
            "SavedModel folder"
        )
    refuse_serving_savedmodel(path)
    check_stored_code(path, trusted=trust_code)
    fmt = file_format(path)
    if fmt.translated:  # Keras 3 or tf_keras 2.16+: read as data, translated
        configs = stored_configs(path)
        if not configs:
            raise ParentError(f"{path} holds no model config (weights only?): save the "
                              "whole model with model.save(\"m.keras\")")
        return load_translated(path, config=configs[0], fmt=fmt)
    try:
        with _safe_mode(not trust_code):
            model = tf.keras.models.load_model(path, compile=False, safe_mode=not trust_code)
    except Exception as error:  # the file is the user's: any failure is one line
        if "safe_mode" in str(error):  # Keras' own refusal names an argument we do not take
            raise ParentError(f"{path.name} holds Python code that Keras refuses to load in "
                              f"safe mode. Pass {TRUST_FLAG} if you trust this file, or "
                              "rebuild the model without Lambda layers") from None
        raise ParentError(f"{path} could not be loaded as a Keras model: "
                          f"{type(error).__name__}: {one_line(error)}") from None
    if not isinstance(model, tf.keras.Model):
        raise ParentError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def _safe_mode(safe: bool) -> Any:
    """Keras' scope that makes every deserialization in it refuse (`safe`) or allow Python
    lambdas, the legacy HDF5 and SavedModel loaders included (they take no `safe_mode`);
    a no-op where this Keras has no such scope."""
    import contextlib

    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        return contextlib.nullcontext()
    return SafeModeScope(safe)


def own_model(source: ParentSource, *, hp_params: dict[str, Any] | None = None
              ) -> keras.Model:
    """The model a `file`, `function` or `study` source gives (a hypermodel's built from
    `hp_params`), not yet checked against any data."""
    import tensorflow as tf

    if source.kind == "file":
        return load_model_file(source.target, trust_code=source.trust_code)
    obj = _model_object(source)
    label = source.target
    if is_hypermodel(obj):
        model, _ = rebuild_from_params(obj, hp_params or {})
    elif isinstance(obj, tf.keras.Model):
        model = obj
    elif callable(obj):
        try:
            model = obj()
        except Exception as error:  # the user's code
            raise ParentError(f"model builder {label} failed: {type(error).__name__}: "
                              f"{one_line(error)}") from None
    else:
        raise ParentError(f"{label} is a {type(obj).__name__}, not a Keras model, a "
                          "builder function or a KerasTuner hypermodel")
    if not isinstance(model, tf.keras.Model):
        raise ParentError(f"model builder {label} returned {type(model).__name__}, "
                          "not a keras.Model")
    return model


def build_parent(
    source: ParentSource, *, input_shape: tuple[int, ...], num_classes: int, seed: int,
    hp_params: dict[str, Any] | None = None,
) -> keras.Model:
    """The parent model of `source` (a hypermodel's from `hp_params`), checked against the
    data: its input takes the images and its output has one unit per class."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    if source.kind == "family":
        from objectives.build import build_model

        model = build_model(family=get_family(source.target), candidate=Candidate(),
                            input_shape=tuple(input_shape), num_classes=num_classes, seed=seed)
    else:
        model = own_model(source, hp_params=hp_params)
    check_shapes(model, input_shape=input_shape, num_classes=num_classes)
    return model


def check_graph(model: keras.Model) -> None:
    """`ParentError` unless `model` has a known graph with one input and one output."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ParentError(
            f"model {model.name!r} has no known inputs (a subclassed or unbuilt model); "
            "build it with keras.Input or as a Sequential model with an input shape"
        )
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ParentError(f"model {model.name!r} has {len(inputs)} inputs and "
                          f"{len(model.outputs)} outputs; one of each is needed")


def check_shapes(model: keras.Model, *, input_shape: tuple[int, ...], num_classes: int) -> None:
    """`ParentError` unless `model` has one input taking `input_shape` images and one
    output of `num_classes` units."""
    check_graph(model)
    inputs = model.inputs
    given = tuple(inputs[0].shape[1:])
    if len(given) != len(input_shape) or any(
        g is not None and g != want for g, want in zip(given, input_shape, strict=False)
    ):
        raise ParentError(f"model {model.name!r} takes inputs of shape {given}, but the data's "
                          f"images are {tuple(input_shape)}")
    units = model.outputs[0].shape[-1]
    if len(model.outputs[0].shape) != 2 or units != num_classes:
        raise ParentError(f"model {model.name!r} outputs shape "
                          f"{tuple(model.outputs[0].shape[1:])}, but the data have "
                          f"{num_classes} classes: the last layer needs {num_classes} units")


# --- preparing a study's parent (in a worker) -----------------------------------------


def prepare(
    *, source: ParentSource, splits: Splits, budget: Budget, init: str, outputs: str,
    widths: tuple[float, ...], factorize_mode: str, seed: int, cache_dir: Path,
    accuracy_floor: float = 0.0,
) -> ParentInfo:
    """Builds and analyzes the parent once; with `init="inherit"` trains it when it does
    not come trained (a family or a builder: `budget.parent_epochs` on the whole training
    split, or a trial's epochs and data), caching the weights in `cache_dir` under a key of
    everything they depend on."""
    from objectives import rewrite
    from objectives.train import accuracy, train

    model = build_parent(source, input_shape=splits.input_shape,
                         num_classes=splits.num_classes, seed=seed)
    kind = output_kind(model, declared=outputs)
    analysis = rewrite.analyze(model, trained=False)
    offered = {
        w: rewrite.offered_factorizations(analysis, width=w, mode=factorize_mode)
        for w in widths
    }
    info = ParentInfo(name=model.name, outputs=kind,
                      offered=offered, kept=tuple(analysis.blocked))
    if init == "scratch":
        return info
    if source.kind == "file":  # a saved model comes with its weights
        return ParentInfo(**{**asdict(info), "weights": "file",
                             "parent_accuracy": accuracy(model, splits.x_val, splits.y_val),
                             "teacher": teacher_outputs(model, splits=splits,
                                                        cache_dir=cache_dir)})
    key = hashlib.sha256(json.dumps(
        # the source's kind and target (trusting its code changes no weights)
        # (how children learn from it is not what the parent is: distillation left out)
        [{"kind": source.kind, "target": source.target},
         {k: v for k, v in asdict(budget).items() if not k.startswith("distill_")},
         splits.fingerprints(), seed, kind], sort_keys=True
    ).encode()).hexdigest()[:16]
    weights = Path(cache_dir) / f"parent-{key}.weights.h5"
    if not weights.exists():
        x, y = splits.x_train, splits.y_train
        epochs = budget.parent_epochs
        if epochs is None:  # as long as a trial, on the same data
            epochs = budget.epochs
            if budget.train_subset is not None:
                x, y = x[: budget.train_subset], y[: budget.train_subset]
        train(model, x=x, y=y, x_val=splits.x_val, y_val=splits.y_val, epochs=epochs,
              batch_size=budget.batch_size, accuracy_floor=accuracy_floor, seed=seed,
              from_logits=kind == "logits", schedule=budget.schedule)
        weights.parent.mkdir(parents=True, exist_ok=True)
        # the suffix picks Keras' weights format: the partial file keeps `.weights.h5`
        partial = weights.with_name(f".partial-{weights.name}")
        model.save_weights(partial)
        partial.replace(weights)
    else:
        model.load_weights(weights)
    return ParentInfo(**{**asdict(info), "weights": str(weights),
                         "parent_accuracy": accuracy(model, splits.x_val, splits.y_val),
                         "teacher": teacher_outputs(model, splits=splits, cache_dir=cache_dir)})


def teacher_outputs(model: keras.Model, *, splits: Splits, cache_dir: Path) -> str:
    """The trained parent's outputs on the training split, written once per parent and
    data (a key of its weights and the splits' fingerprints) as a float32 `.npy` in
    `cache_dir`; its path. What every child of the study distills, so no trial predicts
    with the parent again."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    digest.update(json.dumps(splits.fingerprints(), sort_keys=True).encode())
    path = Path(cache_dir) / f"teacher-{digest.hexdigest()[:16]}.npy"
    if not path.exists():
        outputs = predict(model, splits.x_train, batch_size=512).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".partial-{path.name}")
        with open(partial, "wb") as f:
            np.save(f, outputs)
        partial.replace(path)
    return str(path)


def candidate_model(
    *, source: ParentSource, candidate: Candidate, input_shape: tuple[int, ...],
    num_classes: int, seed: int, weights: str | None = None,
    hp_params: dict[str, Any] | None = None,
) -> keras.Model:
    """One trial's model: the parent rewritten to `candidate`'s width and factorization,
    inheriting the parent's trained weights when `weights` is set (`"file"`: the weights
    the saved model came with; a path: the parent trained by `prepare`)."""
    from objectives import rewrite
    from objectives.build import build_model

    if source.kind == "family" and get_family(source.target).application is not None:
        # a Keras application is one nested model the rewriter cannot open: α is its own
        return build_model(family=get_family(source.target), candidate=candidate,
                           input_shape=tuple(input_shape), num_classes=num_classes, seed=seed)
    parent = build_parent(source, input_shape=input_shape, num_classes=num_classes, seed=seed,
                          hp_params=hp_params)
    if weights not in (None, "file"):
        parent.load_weights(weights)
    try:
        return rewrite.transform(
            rewrite.analyze(parent, trained=weights is not None), width=candidate.width,
            factorize=candidate.factorize, inherit=weights is not None, seed=seed,
            activation_between=source.kind == "family",
        )
    except rewrite.RewriteError as error:
        from search_spaces.candidate import InvalidCandidateError

        raise InvalidCandidateError(str(error)) from None


# -- what a parent model gives, and a hypermodel's build ---------------------------------


class OutputError(UsageError):
    """A model whose output cannot be told apart or contradicts what the study declares."""


def output_kind(model: keras.Model, *, declared: str = "auto") -> str:
    """`probabilities` when the model's output layer is a softmax (a `Softmax` layer or an
    `activation="softmax"`), else `logits`; a declared kind (`logits`/`probabilities`)
    wins, but a declaration the last layer contradicts is refused.

    A sigmoid or another squashing output is neither and is refused (one line), rather than
    trained with a loss that does not fit it."""
    import tensorflow as tf

    output = model.outputs[0]
    layer = next((candidate for candidate in reversed(model.layers)
                  if _single_output(candidate) is output), model.layers[-1])
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    if isinstance(layer, tf.keras.layers.Softmax) or name == "softmax":
        found = "probabilities"
    elif isinstance(layer, tf.keras.layers.Activation) or name not in (None, "linear"):
        raise OutputError(
            f"model {model.name!r} ends in layer {layer.name!r} with activation {name!r}; "
            "the search trains classifiers ending in logits (no activation) or a softmax"
        )
    else:
        found = "logits"
    if declared not in ("auto", found):
        raise OutputError(f"study declares {declared} outputs, but model {model.name!r} "
                          f"ends in {found} (layer {layer.name!r})")
    return found


def _single_output(layer):
    try:
        return layer.output
    except AttributeError:  # a layer called more than once has no single output
        return None


def _hypermodel_name(hypermodel: Any) -> str:
    name = getattr(hypermodel, "name", None)
    if isinstance(name, str) and name:
        return name
    if hasattr(hypermodel, "__name__"):
        return hypermodel.__name__
    return type(hypermodel).__name__


def build_from_hypermodel(
    hypermodel: keras_tuner.HyperModel | Callable[[Any], keras.Model],
    trial: optuna.trial.BaseTrial,
) -> tuple[keras.Model, dict[str, Any]]:
    """Builds `hypermodel` with the values `trial` suggests.

    Args:
        hypermodel: a `keras_tuner.HyperModel` (its `build(hp)` is called) or a callable
            `build(hp)` returning a `keras.Model`.
        trial: the Optuna trial (`optuna.trial.FixedTrial` rebuilds stored params).

    Returns:
        The model and the active hyperparameter values, by KerasTuner name.

    Raises:
        HypermodelError: a bad hyperparameter declaration, any exception raised by the
            build (one line: the hypermodel, then `TypeName: message`), or a result that is
            not a `keras.Model`.
    """
    import keras_tuner
    from tensorflow import keras

    label = _hypermodel_name(hypermodel)
    if isinstance(hypermodel, keras_tuner.HyperModel):
        build = hypermodel.build
    elif callable(hypermodel):
        build = hypermodel
    else:
        raise HypermodelError(
            f"hypermodel {label} is neither a keras_tuner.HyperModel nor a callable build(hp)"
        )
    hp = OptunaHyperParameters(trial)
    try:
        model = build(hp)
    except HypermodelError as e:
        raise HypermodelError(one_line(f"hypermodel {label}: {e}")) from e
    except Exception as e:  # the user's code: any failure is reported, as one line
        raise HypermodelError(
            one_line(f"hypermodel {label} failed to build: {type(e).__name__}: {e}")
        ) from e
    if not isinstance(model, keras.Model):
        raise HypermodelError(
            f"hypermodel {label} returned {type(model).__name__}, not a keras.Model"
        )
    return model, hp.values


def rebuild_from_params(
    hypermodel: keras_tuner.HyperModel | Callable[[Any], keras.Model],
    params: dict[str, Any],
) -> tuple[keras.Model, dict[str, Any]]:
    """The model of a finished trial, from its stored Optuna `params` (`trial.params`;
    parameters of the rest of the space, such as `width`, are ignored)."""
    import optuna

    return build_from_hypermodel(hypermodel, optuna.trial.FixedTrial(dict(params)))
