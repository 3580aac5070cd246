"""Where a trial's time goes, and what is spent outside training (issue 24).

    .venv/bin/python benchmarks/trial_overhead.py --out benchmarks/out/overhead \\
        --arm before=/tmp/wt-before --arm after=/work/main --n-trials 30
    .venv/bin/python benchmarks/trial_overhead.py --out benchmarks/out/jobs \\
        --arm jobs1=/work/main,1 --arm jobs2=/work/main,2 --n-trials 50

Each arm is a checkout of this repository (a `git worktree` at the commit to measure),
optionally with `run --jobs N` (`LABEL=CHECKOUT,N`);
each runs the README's first command, `python -m optimizer run --study mnist` (offline:
the 5,000-image MNIST subset), from a fresh run dir with `--finalists 0`, one arm after the
other on the same machine. Per trial: its wall time (Optuna's start to complete, so the
driver's sampling and recording count), its training time (`train_seconds`: `model.fit`),
and the fixed overhead = wall − training; and where a checkout records it
(`phase_seconds`), the time per phase and the worker's resident memory after each trial.
The figure the issue targets: median overhead / median trial wall. Output:
`overhead.json`, `memory.png` (resident memory per worker over the trials) and a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_arm(checkout: Path, *, n_trials: int, jobs: int, seed: int) -> dict:
    """`run --study mnist` of `checkout` in a fresh run dir; the trials' figures."""
    import optuna
    from optuna.trial import TrialState

    from optimizer.store.trial import StoredTrial

    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        command = [sys.executable, "-m", "optimizer", "run", "--study", "mnist",
                   "--seed", str(seed), "--n-trials", str(n_trials), "--run-dir", tmp]
        help_text = subprocess.run([*command[:3], "run", "--help"], cwd=checkout,
                                   capture_output=True, text=True).stdout
        if "--finalists" in help_text:
            command += ["--finalists", "0"]
        if jobs != 1:
            command += ["--jobs", str(jobs)]
        start = time.time()
        subprocess.run(command, check=True, cwd=checkout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(checkout)})
        wall = time.time() - start
        stored = optuna.load_study(study_name="mnist", storage=f"sqlite:///{tmp}/study.db")
        ended = [t for t in stored.trials if t.state.is_finished()]
        loop_seconds = (max(t.datetime_complete for t in ended)
                        - min(t.datetime_start for t in ended)).total_seconds()
        trials = []
        for t in map(StoredTrial.from_trial, stored.get_trials(states=(TrialState.COMPLETE,))):
            seconds = (t.datetime_complete - t.datetime_start).total_seconds()
            trials.append({
                "number": t.number, "wall": seconds, "train": t.train_seconds,
                "phases": t.phase_seconds, "worker": t.worker,
            })
    return {"checkout": str(checkout), "jobs": jobs, "run_seconds": wall, "trials": trials,
            "ended": len(ended), "loop_seconds": loop_seconds}


def summary(arm: dict) -> dict:
    """Medians of one arm: trial wall, training, overhead, and overhead / trial."""
    trials = arm["trials"]
    walls = [t["wall"] for t in trials]
    overheads = [t["wall"] - t["train"] for t in trials]
    phases: dict[str, list[float]] = {}
    for t in trials:
        for name, value in (t["phases"] or {}).items():
            phases.setdefault(name, []).append(value)
    return {
        "trials": len(trials), "run_seconds": arm["run_seconds"],
        "trials_per_hour": (3600 * arm["ended"] / arm["loop_seconds"]
                            if arm.get("loop_seconds") else None),
        "median_wall": statistics.median(walls),
        "median_train": statistics.median(t["train"] for t in trials),
        "median_overhead": statistics.median(overheads),
        "overhead_share": statistics.median(overheads) / statistics.median(walls),
        "total_overhead_share": sum(overheads) / sum(walls),
        "phases": {name: {"median": statistics.median(v), "total": sum(v)}
                   for name, v in phases.items()},
    }


def plot_memory(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    for label, arm in results.items():
        by_pid: dict[int, list[tuple[int, int]]] = {}
        for t in arm["trials"]:
            if t["worker"]:
                by_pid.setdefault(t["worker"]["pid"], []).append(
                    (t["worker"]["task"], t["worker"]["resident_bytes"]))
        for pid, points in by_pid.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] / 2**20 for p in points], marker=".",
                    label=f"{label}: worker {pid}")
    ax.set_xlabel("trials the worker had run")
    ax.set_ylabel("resident memory after the trial (MiB)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(results: dict[str, dict]) -> str:
    lines = ["| arm | trials | trials / hour | median trial (s) | median training (s) | "
             "median overhead (s) | overhead / median trial | overhead / all trial time |",
             "|---|---|---|---|---|---|---|---|"]
    for label, arm in results.items():
        s = summary(arm)
        rate = "–" if s["trials_per_hour"] is None else f"{s['trials_per_hour']:.0f}"
        lines.append(f"| {label} | {s['trials']} | {rate} | {s['median_wall']:.1f} | "
                     f"{s['median_train']:.1f} | {s['median_overhead']:.2f} | "
                     f"{s['overhead_share']:.1%} | {s['total_overhead_share']:.1%} |")
    for label, arm in results.items():
        phases = summary(arm)["phases"]
        if phases:
            lines += ["", f"Phases of `{label}` (median s per trial; total s over the run):", "",
                      "| phase | median | total |", "|---|---|---|"]
            lines += [f"| {name} | {v['median']:.2f} | {v['total']:.1f} |"
                      for name, v in phases.items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", action="append", required=True,
                        metavar="LABEL=CHECKOUT[,JOBS]",
                        help="a label and a checkout of this repository to run (with --jobs)")
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/overhead")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "overhead.json"
    results: dict[str, dict] = json.loads(saved.read_text()) if saved.exists() else {}
    for spec in args.arm:
        label, _, rest = spec.partition("=")
        checkout, _, jobs = rest.partition(",")
        print(f"arm {label}: {checkout} --jobs {jobs or args.jobs}", flush=True)
        results[label] = run_arm(Path(checkout), n_trials=args.n_trials,
                                 jobs=int(jobs or args.jobs), seed=args.seed)
        saved.write_text(json.dumps(results, indent=1))
        print(markdown({label: results[label]}), flush=True)
    plot_memory(results, args.out / "memory.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
