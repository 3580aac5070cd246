"""`StoredTrial`: what a trial stores, typed, and the one place its attributes are read.

Every user attribute a trial writes is a field here, under the attribute's own name (the
one exception: the parameter count, stored as `params`, is `param_count`, beside Optuna's
`params` of suggested values, here `suggested`). `StoredTrial.from_trial` reads a frozen
Optuna trial and checks every value's form: a value this tool did not write (a string
where a byte count belongs, a list where a number does) is refused with one line naming
the trial, the attribute and what was expected (`StoredValueError`, exit 2), so no reading
command ends in a traceback, and nothing is changed. The candidate is read back as a
`Candidate`.

The readers (pareto, report, export and its card, scoring, finalists, extension, retry,
progress, the benchmarks) take a `StoredTrial`; writers name attributes by the constants
of `definitions.attributes`, which equal the field names here.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from definitions.attributes import CANDIDATE_ATTR, FULL_BUDGET_ATTRS, HYPERMODEL_KEY
from definitions.errors import UsageError
from search_spaces.candidate import Candidate, InvalidCandidateError

if TYPE_CHECKING:
    import optuna


class StoredValueError(UsageError):
    """A stored trial attribute of a form this tool never writes: the study was edited, or
    written by something else. One line: the trial, the attribute, what was expected."""


def _attr(form: str, *, stored_as: str | None = None) -> Any:
    """A field read from the trial user attribute of its name (or `stored_as`), checked to
    be of `form` (see `_FORMS`); None where the trial has no such attribute."""
    return field(default=None, metadata={"form": form, "stored_as": stored_as})


@dataclass(frozen=True)
class StoredTrial:
    """One stored trial: Optuna's own fields, then every attribute a trial of this tool
    writes (None where the trial has none; a PRUNED or FAIL trial has few).

    `stored` keeps every attribute as stored, by its stored name (checked where this
    version knows it), for `report`'s table of everything and for a retry's marks."""

    number: int
    state: str  #: Optuna's `TrialState` name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    values: tuple[float, ...] | None
    suggested: Mapping[str, Any]  #: Optuna's params: the values the sampler suggested
    datetime_start: datetime.datetime | None = None
    datetime_complete: datetime.datetime | None = None
    stored: Mapping[str, Any] = field(default_factory=dict)
    # -- what was searched, and on what ---------------------------------------------------
    #: None where the trial recorded none (its build failed first) or only part of one
    candidate: Candidate | None = _attr("candidate")
    #: the candidate's storage format (`Candidate.quantization`), also where only part of
    #: the candidate is stored
    quantization: str | None = None
    #: a hypermodel trial's hyperparameter values (the candidate's `hypermodel` key)
    hypermodel: Mapping[str, Any] | None = None
    data_source: str | None = _attr("str")
    # -- validation accuracy and the byte figures -----------------------------------------
    accuracy: float | None = _attr("number")
    keras_accuracy: float | None = _attr("number")
    first_epoch_accuracy: float | None = _attr("number")
    payload_bytes: int | None = _attr("int")
    artifact_bytes: int | None = _attr("int")
    artifact_gzip_bytes: int | None = _attr("int")
    float32_bytes: int | None = _attr("int")
    size_definition: str | None = _attr("str")
    # -- device figures -------------------------------------------------------------------
    flash_bytes: int | None = _attr("int")
    #: the bytes a device receives for its file: `model.update` (`objectives.ota`)
    ota_bytes: int | None = _attr("int")
    ram_bytes: int | None = _attr("int")
    planner_ram_bytes: int | None = _attr("int")
    ram_method: str | None = _attr("str")
    ram_note: str | None = _attr("str")
    latency_ms: float | None = _attr("number")
    latency_runs: int | None = _attr("int")
    device_format: str | None = _attr("str")
    macs: int | None = _attr("int")
    footprint_before_training: Mapping[str, Any] | None = _attr("dict")
    # -- the model ------------------------------------------------------------------------
    param_count: int | None = _attr("int", stored_as="params")
    head_mec_bits: int | None = _attr("int")
    feature_compression_ratio: float | None = _attr("number")
    embedding_dims: int | None = _attr("int")
    # -- training -------------------------------------------------------------------------
    losses: list[float] | None = _attr("list")
    rungs: list[list[float]] | None = _attr("list")
    stopped_at_epoch: int | None = _attr("int")
    train_examples: int | None = _attr("int")
    train_seconds: float | None = _attr("number")
    eval_seconds: float | None = _attr("number")
    phase_seconds: Mapping[str, float] | None = _attr("dict")
    worker: Mapping[str, Any] | None = _attr("dict")
    # -- the artifact store ---------------------------------------------------------------
    artifact_id: str | None = _attr("str")
    artifact_sha256: str | None = _attr("str")
    float_model_id: str | None = _attr("str")
    float_model_sha256: str | None = _attr("str")
    # -- marks: why this trial was run, and how it ended ------------------------------------
    #: a reference point the study enqueued first (stored as `reference`)
    reference_point: bool | None = _attr("bool", stored_as="reference")
    extends: int | None = _attr("int")  #: the trial a small-end extension steps down from
    finalist_of: int | None = _attr("int")  #: the front member a finalist fine-tunes
    finalist_start: str | None = _attr("str")
    retry_of: int | None = _attr("int")
    rejected_before_training: Mapping[str, Any] | None = _attr("dict")
    prune_reason: str | None = _attr("str")
    failure_kind: str | None = _attr("str")
    fail_reason: str | None = _attr("str")

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial | optuna.Trial) -> StoredTrial:
        """The trial, every stored attribute checked (`StoredValueError` otherwise). A
        live trial (the objective's, a callback's) reads as RUNNING, with no values."""
        attrs = dict(trial.user_attrs)
        read: dict[str, Any] = {}
        for f in fields(cls):
            name, form = f.metadata.get("stored_as") or f.name, f.metadata.get("form")
            if form is not None and attrs.get(name) is not None:
                read[f.name] = _checked(trial.number, name, attrs[name], form)
        if isinstance(recorded := attrs.get(CANDIDATE_ATTR), dict):
            read["quantization"] = recorded.get("quantization")
            hypermodel = recorded.get(HYPERMODEL_KEY)
            read["hypermodel"] = None if hypermodel is None else _checked(
                trial.number, f"{CANDIDATE_ATTR}.{HYPERMODEL_KEY}", hypermodel, "dict")
        state, values = getattr(trial, "state", None), getattr(trial, "values", None)
        return cls(number=trial.number, state="RUNNING" if state is None else state.name,
                   values=None if values is None else tuple(values),
                   suggested=dict(trial.params), datetime_start=trial.datetime_start,
                   datetime_complete=getattr(trial, "datetime_complete", None),
                   stored=attrs, **read)

    def full_budget_marks(self) -> dict[str, Any]:
        """The marks that exempt the trial from being stopped early, as stored: a reference
        point, an extension or a finalist (`FULL_BUDGET_ATTRS`); a retry keeps them."""
        return {name: self.stored[name] for name in FULL_BUDGET_ATTRS if name in self.stored}

    @property
    def full_budget(self) -> bool:
        """Whether the trial trains its full budget (`full_budget`)."""
        return full_budget(self.stored)


def full_budget(attrs: Mapping[str, Any]) -> bool:
    """Whether a trial with these stored attributes trains its full budget: it carries a
    mark of `FULL_BUDGET_ATTRS` (a reference point, an extension, a finalist)."""
    return any(name in attrs for name in FULL_BUDGET_ATTRS)


#: The forms a stored attribute may take, and what a refusal says was expected.
_FORMS: dict[str, str] = {
    "int": "a whole number", "number": "a number", "str": "a string", "bool": "true or false",
    "list": "a list", "dict": "a mapping", "candidate": "a candidate (width, factorize, "
    "epr_lambda, quantization)",
}


def _checked(number: int, name: str, value: Any, form: str) -> Any:
    """`value` of the attribute `name` of trial `number` in `form`, or `StoredValueError`."""
    ok, read = _read(value, form)
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise StoredValueError(
            f"trial {number}'s stored attribute {name!r} is {shown} "
            f"({type(value).__name__}); expected {_FORMS[form]}: the study was edited or "
            "written by something else; remove that trial or use a study this tool wrote")
    return read


def _read(value: Any, form: str) -> tuple[bool, Any]:
    """(whether `value` has `form`, the value as read)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if form == "int":
        whole = number and math.isfinite(value) and float(value).is_integer()
        return whole, int(value) if whole else None
    if form == "number":
        return number, float(value) if number else None
    if form == "candidate":
        return _candidate(value)
    kinds = {"str": str, "bool": bool, "list": list, "dict": dict}
    return isinstance(value, kinds[form]), value


#: The candidate's keys and the forms of their values.
_CANDIDATE_FORMS = {"width": "number", "epr_lambda": "number", "quantization": "str",
                    "factorize": "list"}


def _candidate(value: Any) -> tuple[bool, Candidate | None]:
    """A stored candidate: a mapping whose keys present have their forms (a candidate of
    another tool's writing, or edited, is refused), read as a `Candidate` when whole."""
    if not isinstance(value, dict) or not all(
            _read(value[k], form)[0] for k, form in _CANDIDATE_FORMS.items() if k in value):
        return False, None
    if not all(isinstance(name, str) for name in value.get("factorize", ())):
        return False, None
    if any(k not in value for k in _CANDIDATE_FORMS):
        return True, None  # part of a candidate: its quantization is still read
    try:
        return True, Candidate(width=float(value["width"]), factorize=tuple(value["factorize"]),
                               epr_lambda=float(value["epr_lambda"]),
                               quantization=value["quantization"])
    except InvalidCandidateError:
        return False, None
