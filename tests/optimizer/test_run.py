"""A real CLI run of the `digits` study (smoke budget), then pareto, export, report, resume.

One module-scoped run keeps this within CI's time: a handful of tiny trials.
"""

from __future__ import annotations

import json
import sqlite3

import optuna
import pytest

from tests.conftest import run_cli

N_TRIALS = 5


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", str(N_TRIALS),
                  "--run-dir", str(run_dir), "--seed", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir, out


def _study(run_dir):
    return optuna.load_study(study_name="digits-smoke", storage=f"sqlite:///{run_dir}/study.db")


def test_run_stores_trials_params_and_attributes(digits_run):
    run_dir, out = digits_run
    study = _study(run_dir)
    assert len(study.trials) == N_TRIALS
    assert study.metric_names == ["accuracy", "payload_bytes"]
    assert study.user_attrs["data_source"] == "digits:scikit-learn"
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 3
    # the reference points come first: float32 at width 1, then EPR at λ = 2 and 10
    assert study.trials[0].params["quantization"] == "float32"
    assert study.trials[0].params["width"] == 1.0
    assert study.trials[1].params["quantization"] == "epr"
    assert study.trials[1].params["epr_lambda"] == 2.0
    for t in complete:
        assert set(t.params) <= {"width", "factorize_conv_2", "factorize_conv_3", "quantization",
                                 "epr", "epr_lambda"}
        attrs = t.user_attrs
        for key in ("payload_bytes", "artifact_bytes", "artifact_gzip_bytes", "size_definition",
                    "params", "head_mec_bits", "feature_compression_ratio", "train_seconds",
                    "eval_seconds", "data_source", "artifact_id", "artifact_sha256",
                    "keras_accuracy"):
            assert key in attrs, key
        assert attrs["payload_bytes"] == t.values[1] > 0
        assert t.values[0] >= 0.5  # below the study's usable_accuracy a trial is PRUNED
    assert study.trials[0].values[0] > 0.85  # 10 epochs of the float32 reference on digits
    # EPR payload is far below the float32 reference's
    assert study.trials[1].values[1] < study.trials[0].values[1] / 4
    assert "trial 0 COMPLETE" in out.stderr


def test_no_front_member_is_dominated(digits_run):
    run_dir, _ = digits_run
    study = _study(run_dir)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = study.best_trials
    assert front
    for f in front:
        for t in complete:
            dominates = (t.values[0] >= f.values[0] and t.values[1] <= f.values[1]
                         and (t.values[0] > f.values[0] or t.values[1] < f.values[1]))
            assert not dominates, (t.number, f.number)


def test_front_is_scored_on_test_once(digits_run):
    run_dir, _ = digits_run
    study = _study(run_dir)
    tests = study.user_attrs["test_accuracy"]
    assert {int(k) for k in tests} == {t.number for t in study.best_trials}


def test_pareto_formats(digits_run):
    run_dir, _ = digits_run
    out = run_cli("pareto", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                  "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    sizes = [r["payload_bytes"] for r in rows]
    assert sizes == sorted(sizes) and rows
    by_number = {t.number: t for t in _study(run_dir).trials}
    for row in rows:  # exact integers, equal to what the trial stored
        trial = by_number[row["trial"]]
        assert row["payload_bytes"] == trial.values[1] == trial.user_attrs["payload_bytes"]
        assert isinstance(row["payload_bytes"], int)
        assert row["artifact_bytes"] == trial.user_attrs["artifact_bytes"]
    assert {"trial", "accuracy", "test_accuracy", "quantization", "width"} <= set(rows[0])
    table = run_cli("pareto", "--study", "digits", "--smoke", "--run-dir", str(run_dir))
    assert "payload_kb" in table.stdout.splitlines()[0]


def test_export_of_a_seed_1_run_reloads_with_the_same_accuracy(digits_run, tmp_path):
    # the run used --seed 1: export must carve validation with the stored seed, not 0
    run_dir, _ = digits_run
    study = _study(run_dir)
    best = max(study.best_trials, key=lambda t: t.values[0])
    out = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                  "--trial", str(best.number), "--out", str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr
    card = json.loads((tmp_path / "exp" / "model_card.json").read_text())
    assert card["trial"] == best.number
    assert card["metrics"]["validation_accuracy_rechecked"] == pytest.approx(best.values[0])
    assert (tmp_path / "exp" / card["file"]).stat().st_size == card["bytes"]["artifact_bytes"]
    smallest = min(study.best_trials, key=lambda t: t.values[1])
    out = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                  "--max-bytes", str(int(smallest.values[1])), "--out", str(tmp_path / "e2"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "e2" / "model_card.json").read_text())["trial"] == (
        smallest.number
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--trial", "999"], "no trial 999"),
        (["--max-bytes", "1"], "no trial has payload_bytes <= 1"),
        (["--min-accuracy", "1.5"], "no trial reaches accuracy 1.5"),
    ],
)
def test_export_bad_choice(digits_run, tmp_path, args, needle):
    run_dir, _ = digits_run
    before = (run_dir / "study.db").read_bytes()
    out = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(run_dir), *args,
                  "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr
    assert (run_dir / "study.db").read_bytes() == before


def test_export_to_unwritable_out(digits_run, tmp_path):
    run_dir, _ = digits_run
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                  "--trial", "0", "--out", str(blocker / "sub"))
    assert out.returncode == 2 and "not writable" in out.stderr


def test_report_writes_its_files(digits_run, tmp_path):
    run_dir, _ = digits_run
    out = run_cli("report", "--study", "digits", "--smoke", "--run-dir", str(run_dir),
                  "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    for name in ("trials.csv", "pareto.png", "pareto.html", "hypervolume.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    import pandas as pd

    frame = pd.read_csv(tmp_path / "rep" / "trials.csv")
    assert len(frame) == N_TRIALS
    assert {"trial", "state", "accuracy", "payload_bytes", "quantization", "on_front"} <= set(
        frame.columns
    )


def test_resume_adds_trials_instead_of_restarting(digits_run):
    run_dir, _ = digits_run
    first = _study(run_dir).trials[0]
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", str(N_TRIALS + 1),
                  "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    trials = _study(run_dir).trials
    assert len(trials) == N_TRIALS + 1
    assert trials[0].datetime_start == first.datetime_start
    assert trials[0].values == first.values


def test_bad_storage_url_is_refused(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--storage", "notaurl",
                  "--run-dir", str(tmp_path))
    assert out.returncode == 2 and "malformed" in out.stderr
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(tmp_path),
                  "--storage", "postgresql://nobody@127.0.0.1:1/none")
    assert out.returncode == 2 and "cannot open storage" in out.stderr
    assert "Traceback" not in out.stderr


def test_foreign_or_corrupt_storage_is_left_untouched(tmp_path):
    foreign = tmp_path / "study.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    before = foreign.read_bytes()
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(tmp_path))
    assert out.returncode == 2 and "another tool" in out.stderr
    assert foreign.read_bytes() == before
    foreign.write_bytes(b"garbage" * 100)
    out = run_cli("pareto", "--study", "digits", "--smoke", "--run-dir", str(tmp_path))
    assert out.returncode == 2 and "not a SQLite database" in out.stderr


def test_study_with_other_directions_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path}/study.db"
    optuna.create_study(study_name="digits-smoke", storage=storage,
                        directions=["minimize", "minimize"])
    out = run_cli("run", "--study", "digits", "--smoke", "--run-dir", str(tmp_path))
    assert out.returncode == 2 and "has directions" in out.stderr


def test_reading_a_missing_study_says_how_to_create_it(tmp_path):
    out = run_cli("pareto", "--study", "digits", "--run-dir", str(tmp_path))
    assert out.returncode == 2 and "no study storage" in out.stderr
    assert not (tmp_path / "study.db").exists()


def test_run_with_missing_data_dir_files(tmp_path):
    out = run_cli("run", "--study", "mnist", "--smoke", "--run-dir", str(tmp_path / "r"),
                  "--data-dir", str(tmp_path))
    assert out.returncode == 2 and "mnist.npz or the four IDX files" in out.stderr
    assert not (tmp_path / "r" / "study.db").exists()


def test_the_study_records_what_defines_it(digits_run):
    import dataclasses

    from objectives.size import SIZE_DEFINITION
    from studies import STUDIES
    from studies.datasets import load_dataset

    run_dir, _ = digits_run
    record = _study(run_dir).user_attrs["definition"]
    splits = load_dataset("digits", split_seed=1)
    assert record["split_seed"] == 1
    assert record["data_fingerprints"] == splits.fingerprints()
    assert record["data_fingerprints"] != load_dataset("digits", split_seed=0).fingerprints()
    assert record["splits"] == splits.sizes()
    # The record is JSON (a stored study is read from any machine), so tuples come back as lists.
    assert record["budget"] == json.loads(json.dumps(dataclasses.asdict(STUDIES["digits"].smoke)))
    assert record["search_space"]["width_range"] == list(STUDIES["digits"].width_range)
    assert record["family"] == "tiny_cnn" and record["dataset"] == "digits"
    assert record["size_definition"] == SIZE_DEFINITION


def test_resume_with_another_seed_is_refused_and_changes_nothing(digits_run):
    run_dir, _ = digits_run
    before = (run_dir / "study.db").read_bytes()
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", str(N_TRIALS + 5),
                  "--run-dir", str(run_dir), "--seed", "0")
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "created with --seed 1" in lines[0] and "--seed 0" in lines[0]
    assert (run_dir / "study.db").read_bytes() == before


def test_export_refuses_data_other_than_the_runs(digits_run):
    from definitions.errors import UsageError
    from optimizer.store.record import check_record, stored_record

    study = _study(digits_run[0])
    stored = stored_record(study)
    other = {**stored, "data_source": "digits:elsewhere",
             "data_fingerprints": {**stored["data_fingerprints"], "data": "0" * 16}}
    with pytest.raises(UsageError, match="differs from the data found now"):
        check_record(study, other)


def test_a_copied_run_dir_still_exports(digits_run, tmp_path):
    import shutil

    run_dir, _ = digits_run
    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy)
    best = max(_study(copy).best_trials, key=lambda t: t.values[0])
    out = run_cli("export", "--study", "digits", "--smoke", "--run-dir", str(copy),
                  "--trial", str(best.number), "--out", str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_log_is_quiet_and_has_no_progress_redraws(digits_run):
    _, out = digits_run
    for chatter in ("XNNPACK", "fully_quantize", "inference_type", "\r", "Traceback"):
        assert chatter not in out.stderr, chatter
    finished = [line for line in out.stderr.splitlines() if line.startswith("[")]
    assert len(finished) == N_TRIALS  # one plain line per trial when stderr is a pipe
