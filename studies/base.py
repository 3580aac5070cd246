"""`Study`: a dataset, a parent model, a training budget and the ranges of the search.

The parent is a built-in family (`family`) or the user's own model (`model`: a saved Keras
model, a builder function or a KerasTuner hypermodel); the data are a built-in dataset
(`dataset`) or the user's own (`data`: an .npz, a folder of class subfolders, or a loader;
`studies.user_data`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from definitions.budgets import Budget, DeviceBudgets
from definitions.errors import StudyDefinitionError, UsageError
from definitions.vocabulary import (
    FACTORIZE_MODES,
    INITS,
    OUTPUTS,
    QUANTIZATION_MODES,
    SCHEDULES,
    SIZE_OBJECTIVES,
)
from search_spaces.candidate import Candidate
from search_spaces.families import FAMILIES
from studies.datasets import DATASET_SHAPES

#: The reference points a study enqueues first when it names none (DESIGN §6, seed 004):
#: the base model uncompressed, and the EPR tutorial's λ = 2 and λ = 10 at full width.
#: Those outside a study's space (its modes and ranges) are left out.
DEFAULT_REFERENCE_POINTS: tuple[Candidate, ...] = (
    Candidate(width=1.0, quantization="float32"),
    Candidate(width=1.0, epr_lambda=2.0, quantization="epr"),
    Candidate(width=1.0, epr_lambda=10.0, quantization="epr"),
)

#: The reference points under `size_objective="flash"` when a study names none: what a
#: device user tries first — full integer at full and half width — then the float32 base
#: model (over a RAM budget it is rejected before training, which teaches the sampler).
DEVICE_REFERENCE_POINTS: tuple[Candidate, ...] = (
    Candidate(width=1.0, quantization="int8"),
    Candidate(width=0.5, quantization="int8"),
    Candidate(width=1.0, quantization="float32"),
)

#: The reference points under `size_objective="ota"` when a study names none: full
#: integer at full width, then trained with the entropy penalty at full and half width —
#: the penalty is what shrinks the update a device receives (`objectives.ota`).
OTA_REFERENCE_POINTS: tuple[Candidate, ...] = (
    Candidate(width=1.0, quantization="int8"),
    Candidate(width=1.0, epr_lambda=2.0, quantization="int8"),
    Candidate(width=0.5, epr_lambda=2.0, quantization="int8"),
)
#: The size objectives that measure what a device holds or receives: under them the `epr`
#: storage mode is left out unless named (`Study.narrowed`).
DEVICE_OBJECTIVES: tuple[str, ...] = ("flash", "ota")
#: The reference points by size objective; any other objective has the default ones.
REFERENCE_POINTS_BY_OBJECTIVE: dict[str, tuple[Candidate, ...]] = {
    "flash": DEVICE_REFERENCE_POINTS, "ota": OTA_REFERENCE_POINTS}


#: A study's name: it names the run folder (`runs/<name>/`) and the stored study, so it is a
#: plain name — letters, digits, `.`, `_`, `-`, starting with a letter or digit — never a
#: path (`../x`, `/abs`, `x/y`) nor anything unprintable.
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_study_name(name: str) -> None:
    """Refuses a study name that is not a plain name (`STUDY_NAME`), in one line."""
    if not isinstance(name, str) or not STUDY_NAME.match(name) or ".." in name:
        raise StudyDefinitionError(
            f"study name {name!r} is not a plain name: use letters, digits, '.', '_' and "
            "'-' (up to 100, starting with a letter or digit), no path separators or '..'")


class UnknownStudyError(UsageError, KeyError):
    """A study name that is not registered; args are (name, valid names)."""

    def __str__(self) -> str:
        return (f"unknown study {self.args[0]!r}; choose one of {', '.join(self.args[1])}, "
                "give a study file (path/to/study.py or pkg.module:NAME), or run "
                "--model my_model.keras --data my_data.npz")


#: The widest width multiplier a study may search: a candidate this many times the
#: parent's width has ~16x its parameters, past what a compression search is for.
MAX_WIDTH = 4.0
#: The most epochs a budget may train a trial or the parent for: over thirty times what
#: the built-in studies train (at most 30), so a larger number is taken for a typo that
#: would hold the machine for days (issue 31).
MAX_EPOCHS = 1000


@dataclass(frozen=True)
class Study:
    """One searchable problem.

    Attributes:
        name: the key in `STUDIES` and the Optuna study name.
        budget: the default training budget; `smoke` is the `--smoke` one.
        dataset: a key of `studies.datasets.LOADERS`; or empty, with `data`.
        family: a key of `search_spaces.families.FAMILIES`; or empty, with `model`.
        model: the parent, when it is the user's: a path to a saved Keras model (`.keras`,
            `.h5`, a SavedModel folder), `module:fn` / `file.py:fn` naming a builder or a
            hypermodel, or the object itself (a function `build()` returning a model, a
            `build(hp)` function or a `keras_tuner.HyperModel`).
        data: the user's data, as `run --data` takes it (`studies.user_data`).
        init: `scratch` (children start from fresh weights) or `inherit` (children inherit
            the trained parent's weights; a parent that does not come trained is trained
            once per study).
        outputs: `auto` (told from the last layer), `logits` or `probabilities`.
        defined_in: where the study was found (`pkg.module:NAME`, a study file), set by
            `studies.references.load_study` and recorded on the stored study.
        expected_runtime: wall time of the default run, as measured, naming the machine it
            was measured on (machines here differ by 3× or more).
        width_range: (low, high) of the width multiplier α, searched in steps of `width_step`.
        epr_lambda_range: (low, high) of the normalized entropy-penalty weight, log-uniform.
        quantization_modes: the storage formats the search may propose.
        factorize_mode: `guided` (only layers where n×1 + 1×n pays) or `unguided`.
        accuracy_floor: after the first epoch, a trial below this validation accuracy is
            stopped and marked PRUNED (Optuna's pruners do not work with two objectives).
        usable_accuracy: a finished trial whose artifact's validation accuracy is below
            this is marked PRUNED: a model near chance is of no use to anyone, yet being
            the smallest it would sit on the front (EPR at a large λ can round every
            weight to zero after passing the first-epoch floor).
        size_objective: which byte figure is the second objective, a key of
            `definitions.vocabulary.SIZE_OBJECTIVES` (`payload`, `flash`, `gzip`, `ota`:
            the update a device receives for its file, `objectives.ota`).
        device_budgets: flash, RAM, latency and accuracy limits, as Optuna constraints.
        reference_points: the candidates a new study tries first, before its sampler proposes
            any: known points that anchor the front and give the sampler's model its first
            good and bad examples. None: `DEFAULT_REFERENCE_POINTS` (under `flash` and `ota`,
            `REFERENCE_POINTS_BY_OBJECTIVE`), those in the study's space; a tuple: exactly these
            (each must lie in the space), `()` for none.
        tflite_epr: whether a TFLite storage mode may also train with the entropy penalty
            (the `epr` switch and its λ). None: yes, except under `size_objective="flash"`,
            where λ cannot change the file a device holds (a TFLite file stores every weight
            at its mode's width whatever their entropy), so searching it only spends trials.
            Under `ota` it is searched: the penalty shrinks the update a device receives.
    """

    name: str
    budget: Budget
    dataset: str = ""
    family: str = ""
    smoke: Budget = Budget(epochs=1, batch_size=32, n_trials=3, train_subset=512)
    expected_runtime: str = "not measured"
    model: Any = None
    data: str | None = None
    init: str = "scratch"
    outputs: str = "auto"
    defined_in: str | None = None
    width_range: tuple[float, float] = (0.25, 1.5)
    width_step: float = 0.05
    epr_lambda_range: tuple[float, float] = (0.5, 100.0)
    quantization_modes: tuple[str, ...] = QUANTIZATION_MODES
    factorize_mode: str = "guided"
    accuracy_floor: float = 0.2
    usable_accuracy: float = 0.5
    size_objective: str = "payload"
    device_budgets: DeviceBudgets = DeviceBudgets()
    reference_points: tuple[Candidate, ...] | None = None
    tflite_epr: bool | None = None

    def validate(self) -> None:
        """Raises `StudyDefinitionError` naming the first thing that cannot be searched.

        Called by `studies.get_study` when a study is used, not at import, so one broken
        definition cannot break the CLI for every study."""
        check_study_name(self.name)
        self._check_quantization_modes()
        self._check_data_and_parent()
        self._check_choices()
        self._check_ranges()
        self._check_reference_points()
        for budget in (self.budget, self.smoke):
            self._check_budget(budget)

    def _check_quantization_modes(self) -> None:
        """At least one mode, each a known one."""
        unknown = [m for m in self.quantization_modes if m not in QUANTIZATION_MODES]
        if unknown or not self.quantization_modes:
            raise StudyDefinitionError(
                f"study {self.name!r}: quantization modes {list(self.quantization_modes)} — "
                f"each must be one of {', '.join(QUANTIZATION_MODES)}"
            )

    def _check_data_and_parent(self) -> None:
        """Exactly one of a built-in dataset and the user's data, and exactly one of a
        built-in family and the user's model; a built-in one must exist."""

        if bool(self.dataset) == bool(self.data):
            raise StudyDefinitionError(
                f"study {self.name!r}: give exactly one of dataset (built-in: "
                f"{', '.join(DATASET_SHAPES)}) and data (your own)"
            )
        if self.dataset and self.dataset not in DATASET_SHAPES:
            raise StudyDefinitionError(
                f"study {self.name!r}: unknown dataset {self.dataset!r}; "
                f"choose one of {', '.join(DATASET_SHAPES)}"
            )
        if bool(self.family) == (self.model is not None):
            raise StudyDefinitionError(
                f"study {self.name!r}: give exactly one of family (built-in: "
                f"{', '.join(FAMILIES)}) and model (your own)"
            )
        if self.family and self.family not in FAMILIES:
            raise StudyDefinitionError(
                f"study {self.name!r}: unknown family {self.family!r}; "
                f"choose one of {', '.join(FAMILIES)}"
            )

    def _check_choices(self) -> None:
        """Init, outputs, size objective and factorize mode: each one of its vocabulary."""
        if self.init not in INITS or self.outputs not in OUTPUTS:
            raise StudyDefinitionError(
                f"study {self.name!r}: init {self.init!r} / outputs {self.outputs!r} — init "
                f"is one of {', '.join(INITS)}, outputs one of {', '.join(OUTPUTS)}"
            )
        if self.size_objective not in SIZE_OBJECTIVES:
            raise StudyDefinitionError(
                f"study {self.name!r}: size objective {self.size_objective!r} is not one of "
                f"{', '.join(SIZE_OBJECTIVES)}"
            )
        if self.factorize_mode not in FACTORIZE_MODES:
            raise StudyDefinitionError(
                f"study {self.name!r}: factorize_mode {self.factorize_mode!r} is not one of "
                f"{', '.join(FACTORIZE_MODES)}"
            )

    def _check_ranges(self) -> None:
        """Width and λ ranges not empty and positive (width finite); the accuracy floors
        in [0, 1)."""
        low, high = self.width_range
        if not (0 < low <= high and math.isfinite(high)):
            raise StudyDefinitionError(
                f"study {self.name!r}: width_range {tuple(self.width_range)} is empty, not "
                "positive or not finite"
            )
        if high > MAX_WIDTH:
            raise StudyDefinitionError(
                f"study {self.name!r}: width_range {tuple(self.width_range)} goes above "
                f"{MAX_WIDTH:g}, the widest a candidate may be (times the parent's width: "
                "every conv and dense layer scaled by it); search narrower than that")
        low, high = self.epr_lambda_range
        if not 0 < low <= high:
            raise StudyDefinitionError(
                f"study {self.name!r}: epr_lambda_range {self.epr_lambda_range} is empty "
                "or not positive"
            )
        for floor in (self.accuracy_floor, self.usable_accuracy):
            if not 0 <= floor < 1:
                raise StudyDefinitionError(
                    f"study {self.name!r}: accuracy_floor and usable_accuracy must lie in "
                    f"[0, 1), got {floor}"
                )

    def _check_reference_points(self) -> None:
        """Every reference point a `Candidate` the study's space holds."""
        for candidate in self.reference_points or ():
            if not isinstance(candidate, Candidate) or not self.contains(candidate):
                raise StudyDefinitionError(
                    f"study {self.name!r}: reference {candidate!r} is not a Candidate in "
                    f"the study's space (width {self.width_range}, λ "
                    f"{self.epr_lambda_range}, modes {list(self.quantization_modes)})"
                )

    def _check_budget(self, budget: Budget) -> None:
        """A budget (the study's or its smoke one): counts at least 1, rungs increasing
        epochs below the budget's with eta at least 2, a known schedule."""
        if budget.epochs < 1 or budget.batch_size < 1 or budget.n_trials < 1 or (
            budget.parent_epochs is not None and budget.parent_epochs < 1
        ):
            raise StudyDefinitionError(
                f"study {self.name!r}: epochs, batch size and trials must be at least 1"
            )
        if max(budget.epochs, budget.parent_epochs or 0) > MAX_EPOCHS:
            raise StudyDefinitionError(
                f"study {self.name!r}: epochs {budget.epochs} and parent_epochs "
                f"{budget.parent_epochs} must be at most {MAX_EPOCHS}, the most a trial or "
                "the parent may train")
        rungs = tuple(budget.rungs)
        if rungs and (list(rungs) != sorted(set(rungs)) or rungs[0] < 1
                      or rungs[-1] >= budget.epochs or budget.eta < 2):
            raise StudyDefinitionError(
                f"study {self.name!r}: rungs {rungs} must be increasing epochs from 1 "
                f"to below the budget's {budget.epochs}, with eta at least 2"
            )
        if budget.schedule not in SCHEDULES:
            raise StudyDefinitionError(
                f"study {self.name!r}: schedule {budget.schedule!r} is not one of "
                f"{', '.join(SCHEDULES)}"
            )
        if not (0 <= budget.distill_weight < 1 and math.isfinite(budget.distill_temperature)
                and budget.distill_temperature > 0):
            raise StudyDefinitionError(
                f"study {self.name!r}: distill_weight must lie in [0, 1) and "
                f"distill_temperature be positive, got {budget.distill_weight} and "
                f"{budget.distill_temperature}")

    def contains(self, candidate: Candidate) -> bool:
        """Whether the search could propose `candidate`: its mode is offered, its width and
        (when it has one) its λ lie in the ranges, and a TFLite mode has a penalty only
        where the study offers one (`searches_tflite_epr`). Which layers it factorizes depends on
        the parent and is checked when the trial builds it."""
        low, high = self.width_range
        lam_low, lam_high = self.epr_lambda_range
        return (candidate.quantization in self.quantization_modes
                and low <= candidate.width <= high
                and (candidate.epr_lambda == 0 or lam_low <= candidate.epr_lambda <= lam_high)
                and (candidate.epr_lambda == 0 or candidate.quantization == "epr"
                     or self.searches_tflite_epr))

    @property
    def reference_point_candidates(self) -> tuple[Candidate, ...]:
        """The candidates a new study enqueues first (see `reference_points`)."""
        if self.reference_points is not None:
            return tuple(self.reference_points)
        defaults = REFERENCE_POINTS_BY_OBJECTIVE.get(self.size_objective,
                                                     DEFAULT_REFERENCE_POINTS)
        return tuple(c for c in defaults if self.contains(c))

    @property
    def searches_tflite_epr(self) -> bool:
        """Whether TFLite modes are offered the entropy penalty (see `tflite_epr`)."""
        if self.tflite_epr is not None:
            return self.tflite_epr
        return self.size_objective != "flash"

    def narrowed(self, *, quantization_modes: tuple[str, ...] | None = None,
                 width_range: tuple[float, float] | None = None) -> Study:
        """The study searched on `quantization_modes` and `width_range` where given (the
        CLI's `--quantization` and `--width-range`), and without the `epr` storage mode
        under a device objective (`DEVICE_OBJECTIVES`: flash, ota) where its modes are the
        default ones: an `.epr` file is not what a device holds (it runs the decoded
        model), so it would compete on the decoded file's flash or update, which a TFLite
        mode already covers (with λ under `ota`), and `export` would hand the device
        another file (the decoded model in int8) than the one measured. The study's own
        `epr` reference points are then tried as int8 files of the same width (and λ,
        where the objective searches it: `device_point`); its reference points outside
        the narrowed space are left out rather than refused."""
        modes = tuple(quantization_modes or self.quantization_modes)
        points = self.reference_points
        if (quantization_modes is None and self.size_objective in DEVICE_OBJECTIVES
                and modes == QUANTIZATION_MODES):
            modes = tuple(m for m in modes if m != "epr")
            if points is not None:
                points = tuple(dict.fromkeys(self.device_point(c) for c in points))
        low, high = width_range or self.width_range
        changed = replace(self, quantization_modes=modes, width_range=(low, high),
                          reference_points=points)
        if points is not None:
            changed = replace(changed, reference_points=tuple(
                c for c in points if changed.contains(c)))
        return changed

    def device_point(self, candidate: Candidate) -> Candidate:
        """`candidate` as a device objective tries it: an `epr` one as the int8 file of
        the same width, trained with its λ where TFLite modes search the penalty
        (`searches_tflite_epr`: under `ota`), without it otherwise (under `flash`)."""
        if candidate.quantization != "epr":
            return candidate
        lam = candidate.epr_lambda if self.searches_tflite_epr else 0.0
        return replace(candidate, quantization="int8", epr_lambda=lam)

    @property
    def parent_label(self) -> str:
        """The family name, or what the user's model is (for logs and listings)."""
        if self.family:
            return self.family
        return self.model if isinstance(self.model, str) else f"the model of {self.defined_in}"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the built-in dataset's images (user data: see `Splits`)."""

        return DATASET_SHAPES[self.dataset][0]

    def with_smoke_budget(self) -> Study:
        """The same study with its `--smoke` budget as the budget."""
        return replace(self, budget=self.smoke)
