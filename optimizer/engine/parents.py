"""The driver's view of a study's parent: what each trial's suggest and worker need.

`plan_parent` runs once per `run`, before anything is stored, so a model that cannot be
searched (not a model, wrong shapes, a hypermodel that raises, a subclassed model) is one
line and exit 2 with the storage untouched. For a built-in family searched from scratch
it needs no TensorFlow (the rule table offers the same convs as the rewriter); for the
user's own model, or `--init inherit`, `objectives.parent.prepare` runs in a worker
process, so the driver stays free of TensorFlow and workers keep forking. A KerasTuner
hypermodel is built in the driver (each trial's architecture depends on its `hp_*`
values, asked of the trial there), so its workers are spawned.

With `--init inherit` the parent must be able to teach: one whose validation accuracy is
hardly above chance (`teaching_floor`) is refused the same way, before any trial, since
its children would inherit noise and the whole search would be spent fine-tuning it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from definitions.errors import UsageError
from objectives import rewrite
from objectives.keras_files import file_format
from objectives.parent import (
    ParentInfo,
    build_from_hypermodel,
    check_shapes,
    hypermodel_of,
    output_kind,
    prepare,
    source_is_hypermodel,
    width_grid,
)
from optimizer.engine.worker import run_in_process, run_isolated
from search_spaces.families import get_family
from search_spaces.hypermodel import HP_PREFIX
from search_spaces.suggest import family_offered
from studies.references import ParentSource, parent_source

log = logging.getLogger(__name__)

#: The share of the way from chance to a perfect score a parent must close to be
#: inherited from (see `teaching_floor`).
TEACHING_KAPPA = 0.2

if TYPE_CHECKING:
    import optuna

    from search_spaces.suggest import Offered
    from studies.base import Study
    from studies.datasets import Splits


class ParentCannotTeach(UsageError):
    """With `--init inherit`, a parent whose validation accuracy is below `teaching_floor`:
    the run stops before the study is stored."""


def teaching_floor(num_classes: int) -> float:
    """The least validation accuracy of a parent children may inherit from, for
    `num_classes` classes: chance (1/k) plus `TEACHING_KAPPA` of the way from chance to 1.

    Why this form: accuracy means little without the class count, so the floor asks how
    much of the gap from chance to a perfect score the parent closes, i.e. Cohen's kappa
    against a uniform guess, (accuracy - 1/k) / (1 - 1/k). Kappa up to 0.2 is "slight"
    agreement on Landis and Koch's (1977) scale, which is what a parent that learnt next
    to nothing shows: 28% for 10 classes, 60% for 2, 20.8% for 100. A floor of 1.5/k alone
    is too low (15% for 10 classes passes the 17.5% a parent with stale BatchNorm
    statistics reached after one epoch, a kappa of 0.08), and `max(1.5/k, ...)` only
    matters for k <= 3, where it would ask 75% of a binary parent that already closes half
    of the gap. A trained parent is far above the floor (the tiny digits CNN after 10
    epochs: over 80%), so the floor refuses broken parents, not weak ones."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    chance = 1.0 / num_classes
    return chance + TEACHING_KAPPA * (1.0 - chance)


def check_can_teach(info: ParentInfo, *, num_classes: int, source: ParentSource) -> None:
    """`ParentCannotTeach` when `info`'s trained parent scores below `teaching_floor`: one
    line naming its accuracy, chance, the likely causes and what to do instead."""
    accuracy = info.parent_accuracy
    floor = teaching_floor(num_classes)
    if accuracy is None or accuracy >= floor:
        return
    how = ("train the saved model longer (or check it on its own validation data) and save "
           "it again" if source.kind == "file" else
           "train the parent longer (Budget(parent_epochs=N) in a study file)")
    raise ParentCannotTeach(
        f"parent {info.name!r} reaches {accuracy:.1%} validation accuracy, where chance is "
        f"{1 / num_classes:.1%} ({num_classes} classes) and children inherit only from a "
        f"parent at {floor:.1%} or more (teaching_floor). Likely causes: too few "
        "training epochs, BatchNorm moving statistics not yet settled (they lag the weights "
        "for the first epochs), or labels numbered in another order than the model was "
        f"trained on (mismatched labels). Use --init scratch, or {how}"
    )


@dataclass(frozen=True)
class SearchParent:
    """A study's parent as the driver holds it.

    Attributes:
        source: where workers find it.
        info: what `prepare` learned (None for a hypermodel: each trial has its own).
        hypermodel: the KerasTuner hypermodel, or None.
    """

    source: ParentSource
    info: ParentInfo | None
    hypermodel: Any = None

    def describe(self) -> dict[str, object]:
        """The parent as recorded on the study: what it is and what `prepare` found."""
        record: dict[str, object] = {"kind": self.source.kind, "hypermodel": bool(
            self.hypermodel is not None)}
        if self.source.kind == "file":
            record["sha256"] = self.source.sha256()
            record["file_format"] = file_format(Path(self.source.target)).as_record()
        else:
            record["reference"] = self.source.target
        if self.info is not None:
            record["outputs"] = self.info.outputs
        return record


def plan_parent(*, study: Study, splits: Splits, seed: int, cache_dir: Path,
                isolate: bool = True, trust_code: bool = False) -> SearchParent:
    """Checks the study's parent against its data and prepares it (see the module doc).

    `trust_code` (the run's `--trust-model-code`) lets a saved model's stored Python code
    (a `Lambda` layer) be loaded; without it such a file is refused in one line, before
    any of its code runs (`objectives.model_code`)."""
    source = parent_source(study, trust_code=trust_code)
    widths = width_grid(*study.width_range, study.width_step)
    if source.kind == "family" and study.init == "scratch":
        family = get_family(study.family)
        offered = family_offered(study, input_shape=splits.input_shape)
        table = {w: offered(w) if family.application is None else () for w in widths}
        return SearchParent(source, ParentInfo(name=family.name, outputs="logits",
                                               offered=table))
    if source_is_hypermodel(source):
        if study.init == "inherit":
            raise UsageError(
                f"study {study.name!r}: a hypermodel builds another architecture in every "
                "trial, so there is no one parent to inherit from; use --init scratch")
        hypermodel = hypermodel_of(source)
        _try_hypermodel(hypermodel, study=study, splits=splits)
        return SearchParent(source, None, hypermodel)
    run = run_isolated if isolate else run_in_process
    if study.init == "inherit" and source.kind != "file":
        log.info("training the parent once (or reading it from %s) for the children to "
                 "inherit", cache_dir)
    info = run(prepare, source=source, splits=splits, budget=study.budget, init=study.init,
               outputs=study.outputs, widths=widths, factorize_mode=study.factorize_mode,
               seed=seed, cache_dir=cache_dir, accuracy_floor=0.0)
    check_can_teach(info, num_classes=splits.num_classes, source=source)
    if info.parent_accuracy is not None:
        log.info("parent %s: validation accuracy %.4f; children inherit its weights",
                 info.name, info.parent_accuracy)
    if info.kept:
        log.info("kept as they are: %s", ", ".join(name for name, _ in info.kept))
    return SearchParent(source, info)


def _try_hypermodel(hypermodel: Any, *, study: Study, splits: Splits) -> None:
    """Builds the hypermodel once with sampled values (in a throw-away in-memory study) and
    checks the model against the data, so a hypermodel that cannot work is refused before
    the study is stored."""
    import optuna

    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = probe.ask()
    model, _ = build_from_hypermodel(hypermodel, trial)
    check_shapes(model, input_shape=splits.input_shape, num_classes=splits.num_classes)
    output_kind(model, declared=study.outputs)


def trial_parent(parent: SearchParent, trial: optuna.Trial, *, study: Study,
                 splits: Splits) -> tuple[Offered, str, dict[str, object] | None]:
    """For one trial: the offered convs by width, the output kind, and the hypermodel's
    `hp_*` values (asked of `trial` here; None without a hypermodel)."""
    if parent.hypermodel is None:
        assert parent.info is not None
        return parent.info.offered_at, parent.info.outputs, None
    model, _ = build_from_hypermodel(parent.hypermodel, trial)
    check_shapes(model, input_shape=splits.input_shape, num_classes=splits.num_classes)
    outputs = output_kind(model, declared=study.outputs)
    analysis = rewrite.analyze(model, trained=False)
    hp_params = {k: v for k, v in trial.params.items() if k.startswith(HP_PREFIX)}

    def offered(width: float) -> tuple[str, ...]:
        return rewrite.offered_factorizations(analysis, width=width, mode=study.factorize_mode)

    return offered, outputs, hp_params
