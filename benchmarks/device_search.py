"""Device-first search (issue 21): do budgets known before training steer the search?

    .venv/bin/python benchmarks/device_search.py --out benchmarks/out/device --seeds 0

What a device user does: their own Keras CNN, their data, a RAM budget, the file size as
the objective. This script makes that user's model and data once (`--out`/user):

- `fmnist3k.npz`: 3,000 Fashion-MNIST training images (uint8, the loader's seeded,
  stratified order; 10% of them become validation) and 1,000 test images, from Debian's
  `dataset-fashion-mnist`.
- `mycnn.keras`: a CNN like the issue's (5×5 conv + BatchNorm, a residual `Add` over a
  `DepthwiseConv2D` branch, a `SeparableConv2D`, a 3×3 conv, global average pooling,
  `Dropout`, softmax), trained properly first (`PARENT_EPOCHS` epochs of Adam, so its
  BatchNorm statistics are those of a trained model).

Then, for each seed, these arms run one after the other on the same machine, each in a
fresh run directory, all with `run --model mycnn.keras --data fmnist3k.npz
--size-objective flash --max-ram-kb 64 --seed S`:

- `default`: as shipped, `--n-trials 12`: candidates over the budget are measured untrained
  and rejected before training; under the flash objective neither λ nor `epr` storage is
  searched; int8-first reference points.
- `no_check`: the same with `--no-check-before-training` (every candidate trained, budgets
  judged after: the behaviour before this issue's check), stopped at the default's wall time.
- `random`: the default with `--sampler random`, stopped at the default's wall time.
- `before30` (issue 30): the default of the commit before issue 30 (`--jobs 1`, three
  finalists), run from a git worktree of it (`--before-tree`), `--n-trials 12`; its HV is
  taken at the default's wall time like the others'.

Figures per arm: trials trained, feasible completed trials, trained trials that were over a
flash or RAM budget (known before training: their recorded figures are those of the file
an untrained model gives, `footprint_before_training`), candidates rejected untrained, and
the hypervolume of the feasible front — validation accuracy × log10 flash bytes above
(`REF_ACCURACY`, `REF_BYTES`) — of what each arm had finished by the default's wall time,
counted from the arm's start (the parent check and data loading count). Output:
`device_search.json` and the Markdown table printed.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RAM_KB = 64
N_TRIALS = 12
TRAIN_IMAGES = 3000
TEST_IMAGES = 1000
PARENT_EPOCHS = 30
REF_ACCURACY = 0.5
REF_BYTES = 1_000_000
FLAGS = ("--size-objective", "flash", "--max-ram-kb", str(RAM_KB))
ARMS = {
    "default": (),
    "no_check": ("--no-check-before-training",),
    "random": ("--sampler", "random"),
    "before30": (),
}


def make_user_files(folder: Path) -> tuple[Path, Path, dict]:
    """The user's data and trained model (made once, reused when present)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    data, model_path = folder / "fmnist3k.npz", folder / "mycnn.keras"
    info_path = folder / "parent.json"
    if data.exists() and model_path.exists() and info_path.exists():
        return data, model_path, json.loads(info_path.read_text())
    from studies.datasets import as_float, load_dataset

    splits = load_dataset("fashion_mnist", split_seed=0)
    as_uint8 = lambda x: np.rint(as_float(x) * 255).astype(np.uint8)  # noqa: E731
    arrays = {"x_train": as_uint8(splits.x_train[:TRAIN_IMAGES]),
              "y_train": splits.y_train[:TRAIN_IMAGES],
              "x_test": as_uint8(splits.x_test[:TEST_IMAGES]),
              "y_test": splits.y_test[:TEST_IMAGES]}
    np.savez_compressed(data, **arrays)

    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = user_cnn()
    x = arrays["x_train"].astype(np.float32) / 255.0
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x[: int(0.9 * TRAIN_IMAGES)], arrays["y_train"][: int(0.9 * TRAIN_IMAGES)],
              epochs=PARENT_EPOCHS, batch_size=64, verbose=0)
    held_out = model.evaluate(x[int(0.9 * TRAIN_IMAGES):],
                              arrays["y_train"][int(0.9 * TRAIN_IMAGES):], verbose=0)[1]
    model.save(model_path)
    info = {"params": int(model.count_params()), "epochs": PARENT_EPOCHS,
            "held_out_accuracy": float(held_out),
            "train_seconds": round(time.perf_counter() - start, 1)}
    info_path.write_text(json.dumps(info, indent=2))
    return data, model_path, info


def user_cnn():
    """The issue's kind of user CNN: conv + BN, a residual branch with a depthwise conv,
    a separable conv, a 5×5 conv, GAP, Dropout and softmax (about 120k parameters)."""
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = tf.keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 5, padding="same", name="stem")(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D()(x)
    branch = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    branch = layers.ReLU()(layers.BatchNormalization()(branch))
    branch = layers.BatchNormalization()(layers.Conv2D(32, 1, name="pw")(branch))
    x = layers.ReLU()(layers.Add()([x, branch]))
    x = layers.SeparableConv2D(64, 3, padding="same", name="sep")(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(160, 3, padding="same", name="conv3")(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu", name="hidden")(x)
    outputs = layers.Dense(10, activation="softmax", name="output")(x)
    return tf.keras.Model(inputs, outputs, name="mycnn")


def run_arm(*, arm: str, seed: int, data: Path, model: Path, out: Path,
            timeout: float | None, tree: Path = ROOT) -> dict:
    """One arm in a fresh run dir, the tool as it is in `tree` (a git worktree of another
    commit, or this one); returns its trials as plain dicts and its wall time."""
    run_dir = out / f"{arm}-seed{seed}"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    n_trials = N_TRIALS if timeout is None else 100
    command = [sys.executable, "-m", "optimizer", "run", "--model", str(model), "--data",
               str(data), "--name", "mycnn", "--run-dir", str(run_dir), "--seed", str(seed),
               "--n-trials", str(n_trials), *FLAGS, *ARMS[arm]]
    if timeout is not None:
        command += ["--timeout", f"{timeout:.0f}"]
    started = time.time()
    with open(out / f"{arm}-seed{seed}.log", "w") as log:
        done = subprocess.run(command, cwd=tree, stdout=log, stderr=subprocess.STDOUT,
                              check=False)
    wall = time.time() - started
    return {"arm": arm, "seed": seed, "returncode": done.returncode, "wall_seconds": wall,
            "started": started, "run_dir": str(run_dir), "command": " ".join(command[1:]),
            "trials": read_trials(run_dir, started)}


def read_trials(run_dir: Path, started: float) -> list[dict]:
    """Each trial's state, figures and finish time (seconds from the arm's start)."""
    import optuna

    from optimizer.store.constraints import is_feasible
    from optimizer.store.trial import StoredTrial

    study = optuna.load_study(study_name="mycnn", storage=f"sqlite:///{run_dir}/study.db")
    rows = []
    for t in study.trials:
        s = StoredTrial.from_trial(t)
        rejected = s.rejected_before_training is not None
        rows.append({
            "number": s.number, "state": s.state,
            "finished_s": (s.datetime_complete.timestamp() - started
                           if s.datetime_complete else None),
            "rejected": rejected,
            "candidate": None if s.candidate is None else s.candidate.to_params(),
            "accuracy": s.values[0] if s.values else None,
            "flash_bytes": s.flash_bytes, "ram_bytes": s.ram_bytes,
            # every finished trial not rejected before training was trained (a PRUNED one
            # at the accuracy floor after its first epoch, too)
            "trained": not rejected and s.state in ("COMPLETE", "PRUNED", "FAIL"),
            "train_seconds": s.train_seconds,
            "feasible": s.state == "COMPLETE" and is_feasible(t),
            "over_budget_trained": not rejected and (s.ram_bytes or 0) > RAM_KB * 1024,
        })
    return rows


def hypervolume(trials: list[dict], *, by: float | None) -> float:
    """HV (validation accuracy × log10 flash bytes) of the feasible trials finished by `by`."""
    from optimizer.commands.report import hypervolume_2d

    points = [(t["accuracy"], t["flash_bytes"]) for t in trials
              if t["feasible"] and (by is None or t["finished_s"] <= by)]
    return hypervolume_2d(points, ref_log_bytes=math.log10(REF_BYTES),
                          ref_accuracy=REF_ACCURACY)


def summary(result: dict, *, at: float) -> dict:
    trials = result["trials"]
    return {
        "arm": result["arm"], "seed": result["seed"],
        "wall_min": round(result["wall_seconds"] / 60, 1),
        "trained": sum(t["trained"] for t in trials),
        "feasible": sum(t["feasible"] for t in trials),
        "over_budget_trained": sum(t["over_budget_trained"] for t in trials),
        "rejected": sum(t["rejected"] for t in trials),
        "int8": sum(1 for t in trials if t["trained"]
                    and (t["candidate"] or {}).get("quantization") == "int8"),
        "train_min": round(sum(t["train_seconds"] or 0 for t in trials) / 60, 1),
        "hv_at_default_time": round(hypervolume(trials, by=at), 4),
        "hv_final": round(hypervolume(trials, by=None), 4),
        "best_feasible": max(((t["accuracy"], t["flash_bytes"]) for t in trials
                              if t["feasible"]), default=None),
    }


def table(rows: list[dict]) -> str:
    head = ["arm", "seed", "wall_min", "train_min", "trained", "feasible", "over_budget_trained",
            "rejected", "int8", "hv_at_default_time", "hv_final", "best_feasible"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        best = r["best_feasible"]
        r = {**r, "best_feasible": "-" if best is None else
             f"{best[0]:.3f} at {best[1] / 1024:.1f} KB"}
        lines.append("| " + " | ".join(str(r[h]) for h in head) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/device")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--table", action="store_true", help="print the stored results only")
    parser.add_argument("--before-tree", type=Path, default=None,
                        help="a git worktree of the commit before issue 30 (arm before30)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "device_search.json"
    stored = json.loads(results_path.read_text()) if results_path.exists() else {}
    if not args.table:
        data, model, info = make_user_files(args.out / "user")
        stored["parent"] = info
        for seed in args.seeds:
            default_wall = None
            for arm in args.arms:
                key = f"{arm}-seed{seed}"
                if arm != "default" and default_wall is None:
                    default_wall = stored[f"default-seed{seed}"]["wall_seconds"]
                if arm == "before30" and args.before_tree is None:
                    raise SystemExit("arm before30 needs --before-tree")
                result = run_arm(arm=arm, seed=seed, data=data, model=model, out=args.out,
                                 timeout=None if arm in ("default", "before30")
                                 else default_wall,
                                 tree=args.before_tree if arm == "before30" else ROOT)
                if arm == "default":
                    default_wall = result["wall_seconds"]
                stored[key] = result
                results_path.write_text(json.dumps(stored, indent=1))
                print(f"{key}: exit {result['returncode']}, "
                      f"{result['wall_seconds'] / 60:.1f} min", flush=True)
    rows = []
    for key, result in stored.items():
        if key == "parent":
            continue
        if Path(result.get("run_dir", "")).is_dir():  # re-read: the figures as defined now
            result["trials"] = read_trials(Path(result["run_dir"]), result["started"])
        at = stored[f"default-seed{result['seed']}"]["wall_seconds"]
        rows.append(summary(result, at=at))
    print(f"parent: {stored.get('parent')}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
