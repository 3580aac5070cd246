"""A KerasTuner hypermodel searched by our Optuna study, jointly with the compression axes.

A KerasTuner user keeps their `build(hp)` function or `keras_tuner.HyperModel`; each trial
hands it an `OptunaHyperParameters`, which answers `hp.Int`, `hp.Float`, `hp.Choice`, ...
by asking the Optuna trial. The model itself is built by `objectives.parent`
(`build_from_hypermodel`, `rebuild_from_params`): building a parent is a trial's work, the
space is this layer's.

Optuna parameter names. Every KerasTuner hyperparameter `name` is suggested as
`hp_<name>` (`HP_PREFIX`; a name scope `block` gives `hp_block/<name>`), so a hypermodel's
`units` or even `width` can never collide with our own `width`, `factorize_<layer>`,
`quantization`, `epr` and `epr_lambda`.

How KerasTuner's arguments map onto Optuna's distributions:

- `Int`: `suggest_int(low, high, step)`; `high` is lowered onto the step grid (KerasTuner
  includes only `min_value + k*step <= max_value`), so Optuna does not warn.
- `Float`: `suggest_float(low, high, step=...)`, same grid rule.
- `sampling="log"`: `log=True`. `sampling="reverse_log"` (dense near `max_value` in
  KerasTuner) has no Optuna counterpart and is searched as `log=True` too.
- `sampling="log"`/`"reverse_log"` with a `step`: KerasTuner multiplies by `step`
  (`2, 4, 8, 16, 32`); Optuna cannot combine log and step, so the grid KerasTuner lists
  is asked with `suggest_categorical` (still `hp_<name>`, still the value itself).
- `Choice` and `Boolean`: `suggest_categorical` (`Boolean` over `[False, True]`; `ordered`
  is accepted and ignored). `Fixed`: nothing is suggested; the value is in `values`.

Conditional hyperparameters, as in KerasTuner: inside `conditional_scope(parent_name,
parent_values)` (or with `parent_name=`/`parent_values=`), a hyperparameter is active only
when the parent is active and its value is one of `parent_values` (scopes nest: all must
hold). An active one is suggested; an inactive one suggests nothing and returns `None`, as
KerasTuner's `HyperParameters` does, so the Optuna search space stays conditional like
`epr_lambda` under `epr`, and `values` holds active hyperparameters only. Asking an active
name again returns the value already chosen (KerasTuner's rule, even with other bounds).

`keras_tuner`'s own hyperparameter classes check the arguments and give the defaults
(used when a non-tunable `HyperModel` copies `hp`); their `ValueError`/`TypeError`, e.g.
`min_value > max_value`, become `HypermodelError`. TensorFlow and keras_tuner are imported
inside the functions only.
"""

from __future__ import annotations

import contextlib
import decimal
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from definitions.errors import UsageError, one_line

if TYPE_CHECKING:
    import optuna

#: Prefix of the Optuna parameter of every KerasTuner hyperparameter (`units` → `hp_units`).
HP_PREFIX = "hp_"


class HypermodelError(UsageError):
    """The hypermodel cannot be searched: a bad hyperparameter, or its `build` failed or
    returned something other than a `keras.Model`. The message is one line."""

    kind = "hypermodel"


def optuna_name(name: str) -> str:
    """The Optuna parameter name of the KerasTuner hyperparameter `name`."""
    return f"{HP_PREFIX}{name}"


def hypermodel_values(params: dict[str, Any]) -> dict[str, Any]:
    """The KerasTuner values among a trial's `params` (prefix removed; `Fixed` ones absent)."""
    return {k[len(HP_PREFIX) :]: v for k, v in params.items() if k.startswith(HP_PREFIX)}


class OptunaHyperParameters:
    """KerasTuner's `HyperParameters` interface, as used in `build(hp)`, backed by an
    Optuna trial (see the module docstring for the mapping).

    Args:
        trial: the trial that chooses the values; `None` gives every hyperparameter its
            default (what a non-tunable `HyperModel` sees through `copy()`).
    """

    def __init__(self, trial: optuna.trial.BaseTrial | None) -> None:
        self._trial = trial
        self._values: dict[str, Any] = {}
        self._declared: set[str] = set()
        self._conditions: list[tuple[str, list[Any]]] = []
        self._name_scopes: list[str] = []

    # -- the values -------------------------------------------------------------------

    @property
    def values(self) -> dict[str, Any]:
        """The active hyperparameters' values, by KerasTuner name (a copy)."""
        return dict(self._values)

    def get(self, name: str) -> Any:
        """The value of the active hyperparameter `name` (KerasTuner's errors otherwise)."""
        name = self._scoped(name)
        if name in self._values:
            return self._values[name]
        if name in self._declared:
            raise ValueError(f"{name} is currently inactive.")
        raise KeyError(f"{name} does not exist.")

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return self._scoped(name) in self._values

    def copy(self) -> OptunaHyperParameters:
        """A copy that keeps the values chosen so far and gives new names their default
        (KerasTuner copies `hp` for a `HyperModel(tunable=False)`)."""
        clone = OptunaHyperParameters(None)
        clone._values = dict(self._values)
        clone._declared = set(self._declared)
        return clone

    # -- scopes -----------------------------------------------------------------------

    @contextlib.contextmanager
    def name_scope(self, name: str) -> Iterator[None]:
        """Prefixes the names declared inside with `name/`, as KerasTuner does."""
        self._name_scopes.append(name)
        try:
            yield
        finally:
            self._name_scopes.pop()

    @contextlib.contextmanager
    def conditional_scope(self, parent_name: str, parent_values: Any) -> Iterator[None]:
        """Hyperparameters declared inside are active only when `parent_name`'s value is in
        `parent_values`; inactive ones suggest nothing and return `None`."""
        parent = self._scoped(parent_name)
        if parent not in self._declared:
            raise HypermodelError(
                f"conditional_scope: hyperparameter {parent!r} is not defined yet; "
                "declare the parent before its conditional scope"
            )
        if isinstance(parent_values, (str, bytes)) or not isinstance(parent_values, Sequence):
            parent_values = [parent_values]
        if not parent_values:
            raise HypermodelError(f"conditional_scope({parent!r}): parent_values is empty")
        self._conditions.append((parent, list(parent_values)))
        try:
            yield
        finally:
            self._conditions.pop()

    # -- KerasTuner's declarations ----------------------------------------------------

    def Int(
        self,
        name: str,
        min_value: int,
        max_value: int,
        step: int | None = None,
        sampling: str = "linear",
        default: int | None = None,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> int | None:
        """An integer in [min_value, max_value] (both included)."""
        return self._declare(
            "Int",
            dict(
                name=name,
                min_value=min_value,
                max_value=max_value,
                step=step,
                sampling=sampling,
                default=default,
            ),
            parent_name,
            parent_values,
        )

    def Float(
        self,
        name: str,
        min_value: float,
        max_value: float,
        step: float | None = None,
        sampling: str = "linear",
        default: float | None = None,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> float | None:
        """A float in [min_value, max_value]."""
        return self._declare(
            "Float",
            dict(
                name=name,
                min_value=min_value,
                max_value=max_value,
                step=step,
                sampling=sampling,
                default=default,
            ),
            parent_name,
            parent_values,
        )

    def Choice(
        self,
        name: str,
        values: Sequence[Any],
        ordered: bool | None = None,
        default: Any = None,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> Any:
        """One of `values` (all of one type: int, float, str or bool)."""
        return self._declare(
            "Choice",
            dict(name=name, values=list(values), ordered=ordered, default=default),
            parent_name,
            parent_values,
        )

    def Boolean(
        self,
        name: str,
        default: bool = False,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> bool | None:
        """`False` or `True`."""
        return self._declare(
            "Boolean", dict(name=name, default=default), parent_name, parent_values
        )

    def Fixed(
        self,
        name: str,
        value: Any,
        parent_name: str | None = None,
        parent_values: Any = None,
    ) -> Any:
        """Always `value`; nothing is suggested."""
        return self._declare("Fixed", dict(name=name, value=value), parent_name, parent_values)

    # -- internals --------------------------------------------------------------------

    def _scoped(self, name: str) -> str:
        return "/".join([*self._name_scopes, str(name)])

    def _declare(
        self, kind: str, kwargs: dict[str, Any], parent_name: str | None, parent_values: Any
    ) -> Any:
        scope = (
            self.conditional_scope(parent_name, parent_values)
            if parent_name
            else contextlib.nullcontext()
        )
        with scope:
            name = self._scoped(kwargs["name"])
            spec = _keras_tuner_hp(kind, {**kwargs, "name": name})
            if any(parent == name for parent, _ in self._conditions):
                raise HypermodelError(f"{kind}({name!r}) cannot be conditional on itself")
            self._declared.add(name)
            if not self._is_active():
                return None
            if name not in self._values:
                self._values[name] = self._suggest(kind, spec)
            return self._values[name]

    def _is_active(self) -> bool:
        return all(
            parent in self._values and self._values[parent] in allowed
            for parent, allowed in self._conditions
        )

    def _suggest(self, kind: str, spec: Any) -> Any:
        trial = self._trial
        if kind == "Fixed":
            return spec.value
        if trial is None:
            return spec.default
        param = optuna_name(spec.name)
        if kind == "Boolean":
            return trial.suggest_categorical(param, [False, True])
        if kind == "Choice":
            return trial.suggest_categorical(param, list(spec.values))
        user_step = spec.step  # `Int`: None only for log sampling without a step
        low, high = spec.min_value, spec.max_value
        if spec.sampling in ("log", "reverse_log"):
            if user_step is None:
                if kind == "Int":
                    return trial.suggest_int(param, low, high, log=True)
                return trial.suggest_float(param, low, high, log=True)
            # KerasTuner's grid, rid of float noise (1e-4 * 10**2 = 0.010000000000000002)
            grid = [round(v) if kind == "Int" else float(f"{v:.12g}") for v in spec.values]
            return trial.suggest_categorical(param, grid)
        if user_step is not None and user_step <= 0:
            raise HypermodelError(f"{kind}({spec.name!r}): step must be > 0, got {user_step!r}")
        if kind == "Int":
            high = low + (high - low) // user_step * user_step
            return trial.suggest_int(param, low, high, step=user_step)
        if user_step is None:
            return trial.suggest_float(param, low, high)
        return trial.suggest_float(param, low, _on_grid(low, high, user_step), step=user_step)


def _on_grid(low: float, high: float, step: float) -> float:
    """The largest `low + k*step <= high`, computed in decimal (no float noise)."""
    d_low, d_step = decimal.Decimal(str(low)), decimal.Decimal(str(step))
    k = (decimal.Decimal(str(high)) - d_low) // d_step
    return float(d_low + k * d_step)


def _keras_tuner_hp(kind: str, kwargs: dict[str, Any]) -> Any:
    """KerasTuner's own hyperparameter object: checks the arguments, knows the default."""
    from keras_tuner.engine import hyperparameters as kt_hp

    try:
        return getattr(kt_hp, kind)(**kwargs)
    except (ValueError, TypeError) as e:
        raise HypermodelError(one_line(f"{kind}({kwargs['name']!r}): {e}")) from e
