"""Issue 28's targets: a parent saved by today's Keras searched end to end, against the same
architecture and weights saved by this tool's tf.keras 2.14.

    .venv/bin/python benchmarks/keras_today.py [--train 6000] [--n-trials 8] [--out DIR]

1. Fashion-MNIST (the first `--train` training images and 2,000 test images) is written as
   the `.npz` a user has (uint8 images).
2. Today's Keras (the second virtualenv, `tests/keras_today/write_models.py --train`) trains
   the issue's architecture (BatchNorm, a residual Add, a DepthwiseConv2D, a
   SeparableConv2D, global average pooling, Dropout, softmax) for `--parent-epochs`, once
   with Keras 3 and once with tf_keras 2.21, and saves each as `.keras` and `.h5`.
3. Each writer's model, translated here, is saved by tf.keras 2.14 (`model.save`): the
   same architecture and weights in this tool's own Keras.
4. Each file is searched with `run --model F --data d.npz --n-trials N --seed 0`
   (`--jobs 1`, so trial by trial reproducible); the script reports per file the parent's
   and the children's first-epoch validation accuracy, the front, its hypervolume (test
   accuracy × log10 bytes, as `search_efficiency.py` measures it) and whether its trials
   equal those of the tf.keras 2.14 copy of the same weights; then it exports each
   front's most accurate member and opens its `model.keras` in today's Keras, reporting
   the largest difference from this tool's predictions.
Output: `keras_today.json` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TODAY = Path(os.environ.get("KERAS_TODAY_PYTHON", ROOT / ".venv-keras3" / "bin" / "python"))
WRITE_MODELS = ROOT / "tests" / "keras_today" / "write_models.py"
REF_ACCURACY, REF_BYTES = 0.70, 2_000_000


def today(*args: object) -> str:
    done = subprocess.run([str(TODAY), str(WRITE_MODELS), *map(str, args)], check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    return done.stdout


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def write_data(path: Path, *, train: int) -> None:
    import numpy as np

    from studies.datasets import as_float, load_dataset

    splits = load_dataset("fashion_mnist", split_seed=0)
    to_uint8 = lambda x: np.round(as_float(x[..., 0]) * 255).astype("uint8")  # noqa: E731
    np.savez(path, x_train=to_uint8(splits.x_train[:train]), y_train=splits.y_train[:train],
             x_test=to_uint8(splits.x_test[:2000]), y_test=splits.y_test[:2000])


def search(model: Path, data: Path, run_dir: Path, *, n_trials: int) -> dict:
    import optuna

    from optimizer.commands.report import hypervolume_2d
    from optimizer.store.record import stored_record, study_attribute
    from optimizer.store.trial import StoredTrial

    start = time.perf_counter()
    done = cli("run", "--model", str(model), "--data", str(data), "--name", model.stem,
               "--n-trials", str(n_trials), "--seed", "0", "--finalists", "0",
               "--run-dir", str(run_dir))
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:], "seconds": seconds}
    study = optuna.load_study(study_name=model.stem, storage=f"sqlite:///{run_dir}/study.db")
    front = json.loads(cli("pareto", "--study", model.stem, "--run-dir", str(run_dir),
                           "--format", "json").stdout)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    record = stored_record(study)
    points = [(row["test_accuracy"], row["payload_bytes"]) for row in front]
    return {
        "seconds": round(seconds, 1),
        "file_format": record["parent"].get("file_format"),
        "parent_accuracy": study_attribute(study, "parent_accuracy"),
        "first_epoch_accuracy": sorted(
            round(StoredTrial.from_trial(t).first_epoch_accuracy, 4) for t in complete),
        "trials": [(t.number, t.params, round(t.values[0], 6), t.values[1])
                   for t in complete],
        "front": [(row["trial"], row["test_accuracy"], row["payload_bytes"]) for row in front],
        "hv": hypervolume_2d(points, ref_log_bytes=math.log10(REF_BYTES),
                             ref_accuracy=REF_ACCURACY),
        "best": max(front, key=lambda row: row["accuracy"])["trial"],
    }


def exported(run_dir: Path, name: str, trial: int, out: Path, reader: str, x) -> dict:
    import numpy as np

    from objectives.parent import load_model_file

    done = cli("export", "--study", name, "--run-dir", str(run_dir), "--trial", str(trial),
               "--out", str(out))
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    card = json.loads((out / "model_card.json").read_text())
    reference = out / "reference.npz"
    np.savez(reference, x=x, y=load_model_file(out / "model.keras").predict(x, verbose=0))
    (check,) = json.loads(today("--check", reader, out / "model.keras", reference))
    return {"keras_format": card["keras"]["keras_format"], "opened_by": check["keras_version"],
            "max_abs_diff": check["max_abs_diff"],
            "export_recheck_diff": card["keras"]["max_abs_diff_rechecked"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--parent-epochs", type=int, default=3)
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "keras_today")
    args = parser.parse_args()
    import numpy as np

    from objectives.parent import load_model_file

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "d.npz"
    write_data(data, train=args.train)
    today("--train", data, "fmnist", args.parent_epochs, args.out)
    for writer in ("keras3", "tf_keras"):  # the same weights saved by tf.keras 2.14
        load_model_file(args.out / f"{writer}-fmnist.keras").save(
            args.out / f"tfkeras214-{writer}-fmnist.keras")
    x = np.load(data)["x_test"][:256, ..., None].astype("float32") / 255.0
    files = {"keras3 .keras": "keras3-fmnist.keras", "keras3 .h5": "keras3-fmnist.h5",
             "tf.keras 2.14 .keras (Keras 3's weights)": "tfkeras214-keras3-fmnist.keras",
             "tf_keras 2.21 .keras": "tf_keras-fmnist.keras",
             "tf_keras 2.21 .h5": "tf_keras-fmnist.h5",
             "tf.keras 2.14 .keras (tf_keras' weights)": "tfkeras214-tf_keras-fmnist.keras"}
    results = {}
    for label, name in files.items():
        path = args.out / name
        run_dir = args.out / f"run-{path.stem}-{path.suffix[1:]}"
        result = search(path, data, run_dir, n_trials=args.n_trials)
        if "best" in result:
            reader = "tf_keras" if name.startswith("tf") else "keras3"
            result["export"] = exported(run_dir, path.stem, result["best"],
                                        args.out / f"export-{path.stem}-{path.suffix[1:]}",
                                        reader, x)
        results[label] = result
        print(label, json.dumps({k: v for k, v in result.items() if k != "trials"}),
              flush=True)
    for label, result in results.items():  # against the tf.keras 2.14 copy of its weights
        copy = results["tf.keras 2.14 .keras (tf_keras' weights)" if "tf_keras" in label
                       else "tf.keras 2.14 .keras (Keras 3's weights)"]
        result["same_trials_as_tf_keras_2_14"] = result.get("trials") == copy.get("trials")
    (args.out / "keras_today.json").write_text(json.dumps(results, indent=1))
    print("\n| parent file | first-epoch val. accuracy (children) | front | HV | same trials "
          "as tf.keras 2.14 | model.keras opened by | max diff |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results.items():
        e = r.get("export", {})
        print(f"| {label} | {min(r['first_epoch_accuracy']):.3f}–"
              f"{max(r['first_epoch_accuracy']):.3f} | {len(r['front'])} points | "
              f"{r['hv']:.3f} | {r['same_trials_as_tf_keras_2_14']} | "
              f"{e.get('opened_by')} (format {e.get('keras_format')}) | "
              f"{e.get('max_abs_diff', float('nan')):.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
