"""Budget check for `run`: wall time, completed trials, front size and payload span.

    .venv/bin/python benchmarks/run_budget.py --study mnist --smoke
    .venv/bin/python benchmarks/run_budget.py --study mnist

Runs the CLI exactly as a user would, in a fresh run directory, and prints one markdown
row for BENCHMARKS.md. Targets (issue 6): `--smoke` under 3 minutes with at least 3
completed trials and a non-empty front; the default run under 45 minutes with at least
5 front points spanning more than 10× in payload_bytes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--run-dir", type=Path, help="keep the run here (default: a temp dir)")
    args = parser.parse_args()

    import optuna

    from optimizer.store.record import study_attribute

    run_dir = args.run_dir or Path(tempfile.mkdtemp()) / args.study
    cmd = [sys.executable, "-m", "optimizer", "run", "--study", args.study, "--run-dir",
           str(run_dir)]
    if args.smoke:
        cmd.append("--smoke")
    if args.n_trials:
        cmd += ["--n-trials", str(args.n_trials)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"run failed with exit code {proc.returncode}", file=sys.stderr)
        return proc.returncode
    name = f"{args.study}-smoke" if args.smoke else args.study
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir}/study.db")
    states = [t.state.name for t in study.trials]
    front = study.best_trials
    sizes = [t.values[1] for t in front]
    span = max(sizes) / min(sizes) if sizes else float("nan")
    print("| command | wall time | trials (complete/pruned/fail) | front size | payload span "
          "| data source |")
    print("|---|---|---|---|---|---|")
    print(
        f"| `{' '.join(['python -m optimizer run --study', args.study, *cmd[8:]])}` "
        f"| {seconds / 60:.1f} min "
        f"| {states.count('COMPLETE')}/{states.count('PRUNED')}/{states.count('FAIL')} "
        f"| {len(front)} | {span:.1f}× ({min(sizes):.0f}–{max(sizes):.0f} B) "
        f"| {study_attribute(study, 'data_source')} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
