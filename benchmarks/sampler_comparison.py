"""Which sampler finds the better front for the same budget? (issue 6: choose by measurement)

    .venv/bin/python benchmarks/sampler_comparison.py --study mnist --n-trials 15 --seeds 0 1

Runs `python -m optimizer run --study S --smoke --sampler X --seed K --n-trials N` for each
sampler and seed in fresh run directories and compares the final hypervolume (in
accuracy × log10 payload bytes, one reference point shared by all runs: accuracy 0 and 10×
the largest payload any run saw). The first three trials of every run are the same
enqueued reference points, so the samplers differ in the rest.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="mnist")
    parser.add_argument("--n-trials", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "random"])
    args = parser.parse_args()

    import optuna
    from optuna.trial import TrialState

    from optimizer.commands.report import hypervolume_2d

    base = Path(tempfile.mkdtemp())
    runs = []
    for seed in args.seeds:
        for sampler in args.samplers:
            run_dir = base / f"{sampler}-{seed}"
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "optimizer", "run", "--study", args.study, "--smoke",
                 "--n-trials", str(args.n_trials), "--sampler", sampler, "--seed", str(seed),
                 "--run-dir", str(run_dir)],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            study = optuna.load_study(study_name=f"{args.study}-smoke",
                                      storage=f"sqlite:///{run_dir}/study.db")
            done = [t for t in study.trials if t.state == TrialState.COMPLETE]
            runs.append((sampler, seed, done, len(study.best_trials),
                         time.perf_counter() - start))
            print(f"{sampler} seed {seed}: {len(done)} complete", file=sys.stderr)
    ref = math.log10(max(t.values[1] for _, _, done, _, _ in runs for t in done) * 10)
    print(f"{args.study} --smoke, {args.n_trials} trials per run, seeds {args.seeds}")
    print("| sampler | hypervolume per seed | mean | front sizes | mean wall time |")
    print("|---|---|---|---|---|")
    for sampler in args.samplers:
        mine = [r for r in runs if r[0] == sampler]
        hvs = [hypervolume_2d([(t.values[0], t.values[1]) for t in r[2]], ref_log_bytes=ref)
               for r in mine]
        print(f"| {sampler} | {', '.join(f'{h:.3f}' for h in hvs)} | "
              f"{statistics.mean(hvs):.3f} | {', '.join(str(r[3]) for r in mine)} | "
              f"{statistics.mean(r[4] for r in mine) / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
