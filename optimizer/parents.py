"""The driver's view of a study's parent: what each trial's suggest and worker need.

`plan_parent` runs once per `run`, before anything is stored, so a model that cannot be
searched (not a model, wrong shapes, a hypermodel that raises, a subclassed model) is one
line and exit 2 with the storage untouched. For a built-in family searched from scratch
it needs no TensorFlow (the rule table offers the same convs as the rewriter); for the
user's own model, or `--init inherit`, `objectives.parent.prepare` runs in a worker
process, so the driver stays free of TensorFlow and workers keep forking. A KerasTuner
hypermodel is built in the driver (each trial's architecture depends on its `hp_*`
values, asked of the trial there), so its workers are spawned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objectives.parent import ParentInfo, ParentSource, width_grid
from optimizer.errors import UsageError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import optuna

    from search_spaces.suggest import Offered
    from studies.base import Study
    from studies.datasets import Splits


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
        else:
            record["reference"] = self.source.reference
        if self.info is not None:
            record["outputs"] = self.info.outputs
        return record


def plan_parent(*, study: Study, splits: Splits, seed: int, cache_dir: Path,
                isolate: bool = True) -> SearchParent:
    """Checks the study's parent against its data and prepares it (see the module doc)."""
    from objectives.parent import prepare, source_is_hypermodel
    from search_spaces.families import get_family
    from search_spaces.suggest import family_offered
    from studies.references import parent_source

    source = parent_source(study)
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
        from objectives.parent import hypermodel_of

        hypermodel = hypermodel_of(source)
        _try_hypermodel(hypermodel, study=study, splits=splits)
        return SearchParent(source, None, hypermodel)
    from optimizer.worker import run_in_process, run_isolated

    run = run_isolated if isolate else run_in_process
    if study.init == "inherit" and source.kind != "file":
        log.info("training the parent once (or reading it from %s) for the children to "
                 "inherit", cache_dir)
    info = run(prepare, source=source, splits=splits, budget=study.budget, init=study.init,
               outputs=study.outputs, widths=widths, factorize_mode=study.factorize_mode,
               seed=seed, cache_dir=cache_dir, accuracy_floor=0.0)
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

    from objectives.parent import check_shapes
    from objectives.train import output_kind
    from search_spaces.hypermodel import build_from_hypermodel

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
    from objectives import rewrite
    from objectives.parent import check_shapes
    from objectives.train import output_kind
    from search_spaces.hypermodel import HP_PREFIX, build_from_hypermodel

    model, _ = build_from_hypermodel(parent.hypermodel, trial)
    check_shapes(model, input_shape=splits.input_shape, num_classes=splits.num_classes)
    outputs = output_kind(model, declared=study.outputs)
    analysis = rewrite.analyze(model, trained=False)
    hp_params = {k: v for k, v in trial.params.items() if k.startswith(HP_PREFIX)}

    def offered(width: float) -> tuple[str, ...]:
        return rewrite.offered_factorizations(analysis, width=width, mode=study.factorize_mode)

    return offered, outputs, hp_params
