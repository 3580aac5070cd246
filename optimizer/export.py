"""`export`: copy a chosen front member's artifact out with a model card, and verify it.

The exported file is the very artifact the trial evaluated (`.tflite` or `.epr`); its
checksum must match the one recorded on the trial, and after writing, the exported copy
is loaded again and its validation accuracy must equal the recorded accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.errors import CheckFailed, UsageError

if TYPE_CHECKING:
    import optuna

ACCURACY_TOLERANCE = 1e-6


def pick_trial(
    study: optuna.Study, *, trial: int | None = None, max_bytes: int | None = None,
    min_accuracy: float | None = None,
) -> optuna.trial.FrozenTrial:
    """The trial named, the most accurate within `max_bytes`, or the smallest above
    `min_accuracy` (the last two pick from the Pareto front)."""
    from optuna.trial import TrialState

    from optimizer.pareto import front_trials

    if trial is not None:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        if trial not in by_number:
            raise UsageError(
                f"study {study.study_name!r} has no trial {trial} (trials 0–{len(by_number) - 1})"
            )
        chosen = by_number[trial]
        if chosen.state != TrialState.COMPLETE:
            raise UsageError(f"trial {trial} did not complete (state {chosen.state.name})")
        return chosen
    front = front_trials(study)
    if not front:
        raise UsageError(f"study {study.study_name!r} has no completed trials")
    if max_bytes is not None:
        fits = [t for t in front if t.values[1] <= max_bytes]
        if not fits:
            smallest = min(t.values[1] for t in front)
            raise UsageError(
                f"no trial has payload_bytes <= {max_bytes}; the smallest is {smallest:.0f}"
            )
        return max(fits, key=lambda t: (t.values[0], -t.values[1]))
    fits = [t for t in front if t.values[0] >= min_accuracy]
    if not fits:
        best = max(t.values[0] for t in front)
        raise UsageError(f"no trial reaches accuracy {min_accuracy}; the best is {best:.4f}")
    return min(fits, key=lambda t: (t.values[1], -t.values[0]))


def _writable_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as error:
        raise UsageError(f"--out {out} is not writable: {error.strerror}") from None


def export_trial(
    *, study: optuna.Study, trial: optuna.trial.FrozenTrial, out: Path, splits,
) -> dict[str, object]:
    """Writes `model.<ext>` and `model_card.json` into `out`; returns the card."""
    from objectives.pipeline import evaluate_artifact, sha256_file
    from optimizer.pareto import test_accuracies

    source = Path(trial.user_attrs["artifact_path"])
    if not source.is_file():
        raise UsageError(f"trial {trial.number}'s artifact {source} is missing")
    recorded = trial.user_attrs.get("artifact_sha256")
    if sha256_file(source) != recorded:
        raise UsageError(f"trial {trial.number}'s artifact {source} does not match its checksum")
    measured_on = trial.user_attrs.get("data_source")
    if measured_on is not None and measured_on != splits.source:
        raise UsageError(
            f"trial {trial.number} was measured on {measured_on}, but the data found now is "
            f"{splits.source}; pass the same --data-dir as the run"
        )
    _writable_dir(out)
    mode = trial.user_attrs["candidate"]["quantization"]
    target = out / f"model{source.suffix}"
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    accuracy = evaluate_artifact(target, quantization=mode, x=splits.x_val, y=splits.y_val)
    if abs(accuracy - trial.values[0]) > ACCURACY_TOLERANCE:
        target.unlink()
        raise CheckFailed(
            f"exported model scores {accuracy:.6f} on validation, recorded {trial.values[0]:.6f}"
        )
    attrs = trial.user_attrs
    card = {
        "study": study.study_name,
        "trial": trial.number,
        "candidate": attrs["candidate"],
        "file": target.name,
        "format": "epr" if mode == "epr" else "tflite",
        "sha256": sha256_file(target),
        "metrics": {
            "validation_accuracy": trial.values[0],
            "validation_accuracy_rechecked": accuracy,
            "test_accuracy": test_accuracies(study).get(trial.number),
            "keras_validation_accuracy": attrs.get("keras_accuracy"),
        },
        "bytes": {
            "payload_bytes": attrs["payload_bytes"],
            "artifact_bytes": attrs["artifact_bytes"],
            "artifact_gzip_bytes": attrs["artifact_gzip_bytes"],
            "size_definition": attrs["size_definition"],
        },
        "params": attrs.get("params"),
        "head_mec_bits": attrs.get("head_mec_bits"),
        "feature_compression_ratio": attrs.get("feature_compression_ratio"),
        "data_source": attrs.get("data_source"),
        "load": (
            "from objectives import epr; model = epr.load('model.epr')"
            if mode == "epr"
            else "tf.lite.Interpreter(model_path='model.tflite')"
        ),
    }
    card_tmp = out / "model_card.json.tmp"
    card_tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(card_tmp, out / "model_card.json")
    return card


def export_command(args: argparse.Namespace) -> int:
    """CLI entry for `export`."""
    from optimizer.storage import open_stored
    from studies.datasets import load_dataset

    definition, _, _, study = open_stored(args)
    chosen = pick_trial(study, trial=args.trial, max_bytes=args.max_bytes,
                        min_accuracy=args.min_accuracy)
    _writable_dir(args.out)
    splits = load_dataset(definition.dataset, data_dir=args.data_dir)
    card = export_trial(study=study, trial=chosen, out=args.out, splits=splits)
    print(
        f"exported trial {chosen.number} to {args.out / card['file']}: validation accuracy "
        f"{card['metrics']['validation_accuracy_rechecked']:.4f} (matches the record), "
        f"payload {card['bytes']['payload_bytes']:,} bytes, "
        f"file {card['bytes']['artifact_bytes']:,} bytes"
    )
    return 0
