"""`export`: copy a chosen front member's artifact out with a model card, and verify it.

The exported file is the very artifact the trial evaluated (`.tflite` or `.epr`), read from
the study's artifact store; its checksum must match the one recorded on the trial, and
after writing, the exported copy is loaded again and its accuracy on the study's own
validation split (data and split seed as recorded) must equal the recorded accuracy.

Beside it go the files a microcontroller build uses (`optimizer.commands.device_export`): for an
EPR trial the decoded model converted to TFLite (`model_device.tflite`, `--device-mode`),
and for the TFLite file a device runs, `model_data.cc` / `model_data.h` for TensorFlow
Lite for Microcontrollers; the card says how to feed it (input and output quantization,
preprocessing, class names, the operators to register). Model files of an earlier export
into the same folder that this one did not write are removed.

The bundle is written whole or not at all (`optimizer.commands.staging`): into a folder
beside `--out`, moved into place once every file is written and matches the card; a
failure — a full disk, a refused or corrupt artifact, a failed check — leaves `--out` as
it was, and a failed write is one line naming `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from definitions.attributes import CANDIDATE_ATTR
from definitions.errors import CheckFailed, UsageError, one_line
from objectives.errors import EPRError
from objectives.files import write_atomically
from objectives.pipeline import evaluate_artifact, sha256_file
from optimizer.commands import device_export, ota_export, staging
from optimizer.commands.keras_export import default_keras_format, write_keras_file
from optimizer.commands.lookup import open_stored
from optimizer.commands.pareto import budget_note
from optimizer.engine.data import load_recorded_data
from optimizer.store.artifacts import fetch, open_store, store_dir_for, stored_artifact_id
from optimizer.store.constraints import infeasible_count, is_feasible
from optimizer.store.front import front_trials
from optimizer.store.record import stored_record, test_accuracies
from optimizer.store.storage import size_metric
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from studies.datasets import Splits

ACCURACY_TOLERANCE = 1e-6
CARD_FILE = "model_card.json"
#: How a phone or host runs a `.tflite` file today (TensorFlow 2.21 deprecates
#: `tf.lite.Interpreter` in favour of LiteRT).
LITERT_LOAD = ("from ai_edge_litert.interpreter import Interpreter; "
               "interpreter = Interpreter(model_path='{file}')")


#: The card's `bytes` and `device` sections: the trial's figures of these names.
CARD_BYTES = ("payload_bytes", "artifact_bytes", "artifact_gzip_bytes", "size_definition")
CARD_DEVICE = ("flash_bytes", "ota_bytes", "ram_bytes", "ram_method", "ram_note",
               "planner_ram_bytes", "macs", "latency_ms", "latency_runs", "device_format")


def pick_trial(
    opt_study: optuna.Study, *, trial: int | None = None, max_bytes: int | None = None,
    min_accuracy: float | None = None,
) -> optuna.trial.FrozenTrial:
    """The trial named, the most accurate within `max_bytes`, or the smallest above
    `min_accuracy` (the last two pick from the Pareto front)."""
    from optuna.trial import TrialState

    if trial is not None:
        by_number = {t.number: t for t in opt_study.get_trials(deepcopy=False)}
        if trial not in by_number:
            raise UsageError(
                f"study {opt_study.study_name!r} has no trial {trial} "
                f"(trials 0–{len(by_number) - 1})"
            )
        chosen = by_number[trial]
        if chosen.state != TrialState.COMPLETE:
            raise UsageError(f"trial {trial} did not complete (state {chosen.state.name})")
        return chosen
    front = front_trials(opt_study)
    if not front:
        excluded = budget_note(opt_study) if infeasible_count(opt_study) else ""
        if excluded:
            raise UsageError(f"no completed trial of study {opt_study.study_name!r} meets its "
                             f"budgets: {excluded}; pick one with --trial N, or run a new "
                             "study with looser budgets")
        raise UsageError(f"study {opt_study.study_name!r} has no completed trials")
    if max_bytes is not None:
        metric = size_metric(opt_study)
        fits = [t for t in front if t.values[1] <= max_bytes]
        if not fits:
            smallest = min(t.values[1] for t in front)
            raise UsageError(
                f"no trial has {metric} <= {max_bytes}; the smallest is {smallest:.0f}"
            )
        return max(fits, key=lambda t: (t.values[0], -t.values[1]))
    fits = [t for t in front if t.values[0] >= min_accuracy]
    if not fits:
        best = max(t.values[0] for t in front)
        raise UsageError(f"no trial reaches accuracy {min_accuracy}; the best is {best:.4f}")
    return min(fits, key=lambda t: (t.values[1], -t.values[0]))


def export_trial(
    *, opt_study: optuna.Study, trial: optuna.trial.FrozenTrial, out: Path, splits: Splits,
    store: FileSystemArtifactStore, store_dir: Path, device_mode: str | None = None,
    keras_format: int | None = None, ota: bool = False,
    ota_base: ota_export.BaseFile | None = None,
) -> dict[str, object]:
    """Writes `model.<ext>`, the device files, `model.keras` and `model_card.json` into
    `out`, whole or not at all (`optimizer.commands.staging`); returns the card. `ota`:
    also `model.update`, the device file as a device receives it, and its C decoder
    (`optimizer.commands.ota_export`); relative to `ota_base` when that is smaller.

    The artifact comes from the study's artifact store (checksum checked) and `splits`
    must be the study's own data (`optimizer.engine.data.load_recorded_data`).
    `device_mode` (`int8`, the default, or `float32`) is the TFLite mode an EPR trial's
    decoded model is converted to for the device; a TFLite trial's artifact is its device
    file. `keras_format` (2 or 3; default: the parent's Keras) is the format of
    `model.keras`, the float model (`optimizer.commands.keras_export`)."""
    mode = str(StoredTrial.from_trial(trial).quantization)
    device_mode = device_export.resolve_device_mode(quantization=mode, device_mode=device_mode)
    record = stored_record(opt_study)
    with staging.staged(out, replaces=(*device_export.MODEL_FILES, *ota_export.FILES,
                                       CARD_FILE)) as stage:
        target, accuracy = _checked_artifact(trial, out=stage, store=store,
                                             store_dir=store_dir, splits=splits)
        device = device_export.device_file(trial=trial, artifact=target, out=stage,
                                           device_mode=device_mode, splits=splits,
                                           seed=int(record["split_seed"]))
        c_array = device_export.write_c_array(device, out=stage,
                                              study_name=opt_study.study_name,
                                              trial_number=trial.number)
        keras = write_keras_file(
            trial=trial, quantization=mode, artifact=target, out=stage, store=store,
            store_dir=store_dir, keras_format=keras_format or default_keras_format(record),
            x_check=splits.x_val[:256])
        card = {
            **_trial_card(opt_study, trial, target=target, accuracy=accuracy, record=record),
            "runtimes": _runtimes(record, device_file=device.path.name),
            "keras": keras,
            **device_export.device_card(device, record=record, splits=splits),
            "c_array": c_array,
            "ota": (ota_export.write_update(device.path, out=stage, base=ota_base)
                    if ota else None),
        }
        write_atomically(stage / CARD_FILE, json.dumps(card, indent=2) + "\n")
        _check_bundle(stage, card)
    return card


def _checked_artifact(trial: optuna.trial.FrozenTrial, *, out: Path,
                      store: FileSystemArtifactStore, store_dir: Path, splits: Splits
                      ) -> tuple[Path, float]:
    """The trial's artifact fetched into `out` as `model.<ext>`, and its validation accuracy,
    which must equal the recorded one (`CheckFailed` otherwise). An `.epr` artifact that
    does not load (`EPRError`: altered, with the record's checksum edited to match) is a
    `UsageError` naming the trial, as a checksum that does not match is."""
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        source = fetch(trial, store=store, store_dir=store_dir, into=Path(tmp))
        target = out / f"model{source.suffix}"
        os.replace(source, target)
    try:
        accuracy = evaluate_artifact(target, quantization=str(StoredTrial.from_trial(
            trial).quantization), x=splits.x_val, y=splits.y_val)
    except EPRError as error:
        raise UsageError(one_line(
            f"trial {trial.number}'s artifact in the study's store is not a readable .epr "
            f"file: {str(error).removeprefix(f'{target}: ')}")) from None
    if abs(accuracy - trial.values[0]) > ACCURACY_TOLERANCE:
        raise CheckFailed(
            f"exported model scores {accuracy:.6f} on validation, recorded {trial.values[0]:.6f}"
        )
    return target, accuracy


def _check_bundle(stage: Path, card: dict[str, Any]) -> None:
    """Every file the card names is in `stage`, the model and device files with the
    checksums the card gives, before anything is moved into `--out` (`CheckFailed`)."""
    named: dict[str, str | None] = {
        str(card["file"]): str(card["sha256"]),
        str(card["device_file"]["file"]): str(card["device_file"]["sha256"]),
        **dict.fromkeys(card["c_array"]["files"]), CARD_FILE: None,
        **({str(card["keras"]["file"]): None} if card["keras"]["file"] else {}),
        **({card["ota"]["file"]: None, **dict.fromkeys(card["ota"]["decoder"])}
           if card.get("ota") else {}),
    }
    for name, digest in named.items():
        path = stage / name
        if not path.is_file() or (digest is not None and sha256_file(path) != digest):
            raise CheckFailed(f"{name} is missing from the export or differs from its card; "
                              "nothing was exported")


def _trial_card(opt_study: optuna.Study, trial: optuna.trial.FrozenTrial, *, target: Path,
                accuracy: float, record: dict[str, Any]) -> dict[str, object]:
    """What the card says of the trial: its candidate, file, metrics, bytes and figures."""
    t = StoredTrial.from_trial(trial)
    mode = t.quantization
    return {
        "study": opt_study.study_name,
        "trial": trial.number,
        "candidate": t.stored[CANDIDATE_ATTR],
        "file": target.name,
        "format": "epr" if mode == "epr" else "tflite",
        "sha256": sha256_file(target),
        "metrics": {
            "validation_accuracy": trial.values[0],
            "validation_accuracy_rechecked": accuracy,
            "test_accuracy": test_accuracies(opt_study).get(trial.number),
            "keras_validation_accuracy": t.keras_accuracy,
        },
        "bytes": {name: getattr(t, name) for name in CARD_BYTES},
        "device": {name: getattr(t, name) for name in CARD_DEVICE},
        "latency": "latency_ms is the host CPU's (one thread, batch 1), not a device's; "
                   "budget a device's compute on macs",
        "feasible": is_feasible(trial),
        "params": t.param_count,
        "head_mec_bits": t.head_mec_bits,
        "feature_compression_ratio": t.feature_compression_ratio,
        "data_source": t.data_source,
        "study_definition": record,
        "load": (
            "from objectives import epr; model = epr.load('model.epr')"
            if mode == "epr" else LITERT_LOAD.format(file=target.name)
        ),
    }


def _runtimes(record: dict[str, Any], *, device_file: str) -> dict[str, object]:
    """Which runtimes run the files today, the TensorFlow that converted the trials' files
    (recorded on the study) and the tflite-micro that measured the arena (this one)."""
    return {
        "phones_and_hosts": "LiteRT (pip install ai-edge-litert): "
                            + LITERT_LOAD.format(file=device_file),
        "microcontrollers": "tflite-micro, with model_data.cc / model_data.h",
        "converted_with_tensorflow": record.get("tensorflow_version"),
        "arena_measured_with_tflite_micro": version("tflite-micro"),
    }


def export_stored(
    *, opt_study: optuna.Study, run_dir: Path, out: Path, trial: int | None = None,
    max_bytes: int | None = None, min_accuracy: float | None = None,
    artifact_dir: Path | None = None, data_dir: Path | None = None, data: str | None = None,
    device_mode: str | None = None, keras_format: int | None = None, ota: bool = False,
    base: Path | None = None,
) -> dict[str, object]:
    """`export` of a stored study (`pick_trial`'s choice) into `out`; returns the card.
    `base` (with `ota`): an earlier export's folder, whose device file a device runs.

    Every refusal comes before the data are loaded; the data and splits are the study's
    own, as recorded (a recorded loader runs only when `data` names it again)."""
    if base is not None and not ota:
        raise UsageError("--base needs --ota: it names the export the update is relative to")
    ota_base = None if base is None else ota_export.read_base(base, out=out)
    chosen = pick_trial(opt_study, trial=trial, max_bytes=max_bytes, min_accuracy=min_accuracy)
    device_export.resolve_device_mode(
        quantization=str(StoredTrial.from_trial(chosen).quantization), device_mode=device_mode)
    staging.check_out(out)
    store_dir = store_dir_for(run_dir, artifact_dir=artifact_dir)
    store = open_store(store_dir, create=False)
    stored_artifact_id(chosen, store_dir=store_dir)  # an edited id refused before the data
    splits = load_recorded_data(opt_study, data_dir=data_dir, data=data)
    return export_trial(opt_study=opt_study, trial=chosen, out=out, splits=splits, store=store,
                        store_dir=store_dir, device_mode=device_mode,
                        keras_format=keras_format, ota=ota, ota_base=ota_base)


def export_command(args: argparse.Namespace) -> int:
    """CLI entry for `export` (`export_stored`), then two lines on what it wrote."""
    _, run_dir, opt_study = open_stored(args)
    card = export_stored(opt_study=opt_study, run_dir=run_dir, out=args.out, trial=args.trial,
                         max_bytes=args.max_bytes, min_accuracy=args.min_accuracy,
                         artifact_dir=args.artifact_dir, data_dir=args.data_dir,
                         data=args.data, device_mode=args.device_mode,
                         keras_format=args.keras_format, ota=args.ota, base=args.base)
    print(
        f"exported trial {card['trial']} to {args.out / card['file']}: validation accuracy "
        f"{card['metrics']['validation_accuracy_rechecked']:.4f} (matches the record), "
        f"payload {card['bytes']['payload_bytes']:,} bytes, "
        f"file {card['bytes']['artifact_bytes']:,} bytes"
    )
    print(_device_line(card))
    keras = card["keras"]
    print(f"keras: {args.out / keras['file']} (Keras {keras['keras_format']} format, the "
          "float model; predictions rechecked)" if keras["file"] else f"keras: {keras['note']}")
    if card["ota"]:
        update = card["ota"]
        print(f"update: {args.out / update['file']} ({update['ota_bytes']:,} bytes for the "
              f"{update['device_bytes']:,}-byte {update['device_file']}; gzip -9 "
              f"{update['device_gzip_bytes']:,}{_relative_note(update)}) and "
              f"{' + '.join(update['decoder'])}")
    return 0


def _relative_note(update: dict) -> str:
    """What `--base` made of the update, for the `update:` line."""
    base = update.get("base")
    if not base:
        return ""
    if base["relative"]:
        return (f"; relative to {base['file']}, the plain update "
                f"{base['plain_ota_bytes']:,} bytes")
    return (f"; plain: relative to {base['file']} would be "
            f"{base['relative_ota_bytes']:,} bytes")


def _device_line(card: dict) -> str:
    """One line on the device files: which file, its accuracy, flash and arena."""
    device, c_array = card["device_file"], card["c_array"]
    arena = c_array["tensor_arena_size"]
    return (
        f"device: {device['file']} ({device['quantization']}, validation accuracy "
        f"{device['validation_accuracy']:.4f}, flash {device['flash_bytes']:,} bytes) and "
        f"{' + '.join(c_array['files'])} for TFLM, "
        + (f"kTensorArenaSize {arena:,} bytes" if arena is not None
           else "no kTensorArenaSize (TFLM does not run this mode)")
    )
