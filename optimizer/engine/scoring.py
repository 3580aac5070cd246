"""Test scoring: after the search, each front member's artifact is evaluated once on the
test split (the search itself never sees it) and the figure stored on the study
(`test_accuracy`, keyed by trial number).

Scoring several decoded EPR models one after another makes TensorFlow warn, twice, that
`model.predict` "triggered tf.function retracing" (each model is new and predicted once,
so it is expected and costs little): `tensorflow_warnings_held_back` keeps TensorFlow's
Python warnings off the terminal unless `--verbose`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.errors import UsageError
from objectives import pipeline
from optimizer.engine.processes import tensorflow_warnings_held_back
from optimizer.store.artifacts import fetch
from optimizer.store.front import front_trials
from optimizer.store.record import test_accuracies, write_test_accuracies
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from studies.datasets import Splits

log = logging.getLogger(__name__)


def score_front_on_test(
    opt_study: optuna.Study, *, splits: Splits, store: FileSystemArtifactStore, store_dir: Path,
) -> dict[int, float]:
    """Evaluates each front member's artifact (read from the store) on the test split
    once; stores the result on the study."""
    known = test_accuracies(opt_study)
    todo = [t for t in front_trials(opt_study) if t.number not in known]
    if not todo:
        return known
    with tempfile.TemporaryDirectory() as tmp:
        for trial in todo:
            try:
                path = fetch(trial, store=store, store_dir=store_dir, into=Path(tmp))
            except UsageError as error:
                # another driver's trial whose store this machine does not see: that
                # driver (or a run with its --artifact-dir) scores it
                log.warning("test accuracy of trial %d not scored here: %s", trial.number, error)
                continue
            mode = StoredTrial.from_trial(trial).quantization
            with tensorflow_warnings_held_back():
                known[trial.number] = pipeline.evaluate_artifact(
                    path, quantization=mode, x=splits.x_test, y=splits.y_test
                )
    write_test_accuracies(opt_study, known)
    return known
