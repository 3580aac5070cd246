"""Peak memory of a long `digits` study with and without trial isolation (issue 7).

    .venv/bin/python benchmarks/isolation_memory.py --n-trials 50

Runs `python -m optimizer run --study digits --smoke --n-trials N` twice, once with a
worker process per trial (the default) and once with `--no-isolation`, sampling the
resident memory of the whole process tree twice a second. Prints a markdown table.
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


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    kids = [int(p) for p in out.stdout.split()]
    return [pid] + [k for kid in kids for k in _tree(kid)]


def measure(n_trials: int, *, isolate: bool) -> dict[str, float]:
    run_dir = Path(tempfile.mkdtemp()) / "digits"
    cmd = [sys.executable, "-m", "optimizer", "run", "--study", "digits", "--smoke",
           "--n-trials", str(n_trials), "--run-dir", str(run_dir)]
    if not isolate:
        cmd.append("--no-isolation")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_driver = peak_tree = 0
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        driver = _rss_kib(proc.pid)
        tree = sum(_rss_kib(p) for p in _tree(proc.pid))
        peak_driver, peak_tree = max(peak_driver, driver), max(peak_tree, tree)
        samples.append((time.perf_counter() - start, tree))
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}): {' '.join(cmd)}")
    tenth = max(1, len(samples) // 10)
    early = max(v for _, v in samples[tenth : 2 * tenth] or samples[:1])
    late = max(v for _, v in samples[-tenth:])
    return {"seconds": seconds, "peak_driver_mib": peak_driver / 1024,
            "peak_tree_mib": peak_tree / 1024, "early_mib": early / 1024,
            "late_mib": late / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=50)
    args = parser.parse_args()
    rows = [("worker per trial", measure(args.n_trials, isolate=True)),
            ("in process (--no-isolation)", measure(args.n_trials, isolate=False))]
    print(f"digits smoke study, {args.n_trials} trials, RSS sampled every 0.5 s")
    print("| mode | wall time | peak driver RSS | peak tree RSS | tree RSS 2nd tenth "
          "| tree RSS last tenth |")
    print("|---|---|---|---|---|---|")
    base = rows[1][1]["seconds"]
    for name, r in rows:
        print(f"| {name} | {r['seconds'] / base:.2f}× | {r['peak_driver_mib']:.0f} MiB | "
              f"{r['peak_tree_mib']:.0f} MiB | {r['early_mib']:.0f} MiB | "
              f"{r['late_mib']:.0f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
