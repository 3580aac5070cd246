"""Peak memory of a `--jobs 2` search against the size of its data (issue 31, item 9).

    .venv/bin/python benchmarks/data_memory.py --out benchmarks/out/data-memory \\
        --json docs/data-memory-31.json [--tree /tmp/wt-31] [--before-tree /tmp/wt-before31]

Runs `python -m optimizer run --study fashion_mnist --smoke --jobs 2 --seed 0` (4 trials,
two workers forked by the driver after it loaded the data) on Fashion-MNIST at several
sizes: the full dataset as the study reads it (Debian's dataset-fashion-mnist, 70,000
images), and subsets of it (the first `s` × 60,000 training and `s` × 10,000 test images,
written as `fashion_mnist.npz` into a folder read with `--data-dir`); a scale above 1
repeats the dataset (the same images again, only to make the data larger). The smoke
budget trains on 4,000 images whatever the size; what grows with the data is holding it
(driver and workers), evaluating on its validation split, the parent's outputs on its
training split (the teacher), and scoring the front on its test split.

While a run lasts, the process tree (the driver, its workers and their children) is
sampled every `--interval` seconds: the sum of each process's PSS
(`/proc/PID/smaps_rollup`: a page shared by forked processes is split among them, so the
sum counts it once), and each process's peak RSS (`VmHWM`, the kernel's high-water
mark). A least-squares line through (uint8 bytes of the data, peak summed PSS) gives the
memory each byte of data costs (the slope; issue 31's target: at most 1.3) and the
memory of the processes themselves (the intercept). `--before-tree` runs the same sizes
with the tool of another commit (a git worktree: before issue 31, images were float32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 1 << 20
PIXELS = 28 * 28
FULL = (60_000, 10_000)  # Fashion-MNIST's training and test images
COMMAND = ["-m", "optimizer", "run", "--study", "fashion_mnist", "--smoke", "--jobs", "2",
           "--seed", "0"]


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:  # the process ended while it was read
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += _children(current)
    return found


def _field_kib(path: str, name: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
    except OSError:
        return []


def _role(pid: int, driver: int) -> str:
    """"driver"; "worker" for a process forked by it (the same command line); else the
    module or script a helper (a worker's child) runs."""
    if pid == driver:
        return "driver"
    words = _cmdline(pid)
    if words == _cmdline(driver):
        return "worker"
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    return " ".join(Path(w).name for w in words[:2]) or "ended"


def sample_run(command: list[str], *, cwd: Path, log: Path, interval: float) -> dict:
    """Runs `command`, sampling its process tree every `interval` seconds (see the module
    docstring); its wall time, peak summed PSS and each process's peak RSS."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        peak_pss, peak_at, peak_parts = 0, 0.0, {}
        hwm: dict[int, tuple[str, int]] = {}
        samples = 0
        while proc.poll() is None:
            parts = {}
            for pid in process_tree(proc.pid):
                pss = _field_kib(f"/proc/{pid}/smaps_rollup", "Pss:")
                high = _field_kib(f"/proc/{pid}/status", "VmHWM:")
                if pss is None or high is None:
                    continue
                role = hwm[pid][0] if pid in hwm else _role(pid, proc.pid)
                parts[pid] = (role, pss)
                hwm[pid] = (role, max(high, hwm.get(pid, (role, 0))[1]))
            total = sum(pss for _, pss in parts.values())
            if total > peak_pss:
                peak_pss, peak_at, peak_parts = total, time.perf_counter() - started, parts
            samples += 1
            time.sleep(interval)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}, see {log}): {' '.join(command)}")
    return {
        "wall_seconds": round(time.perf_counter() - started, 1),
        "samples": samples,
        "peak_pss_mib": round(peak_pss / 1024, 1),
        "peak_at_seconds": round(peak_at, 1),
        "pss_at_peak_mib": [{"role": role, "pss_mib": round(pss / 1024, 1)}
                            for role, pss in peak_parts.values()],
        "peak_rss_mib": sorted(({"role": role, "peak_rss_mib": round(high / 1024, 1)}
                                for role, high in hwm.values()),
                               key=lambda p: -p["peak_rss_mib"]),
    }


def write_subset(scale: float, folder: Path) -> tuple[int, int]:
    """`fashion_mnist.npz` in `folder`: the first `scale` of Debian's training and test
    images (repeated for a scale above 1); (training, test) image counts."""
    from studies.datasets import DEBIAN_FASHION_MNIST, _read_28x28_dir

    raw = _read_28x28_dir(DEBIAN_FASHION_MNIST)
    if raw is None:
        raise SystemExit(f"Debian's dataset-fashion-mnist is not in {DEBIAN_FASHION_MNIST}")
    arrays = {}
    for key, part, full in (("train", raw.x_train, FULL[0]), ("test", raw.x_test, FULL[1])):
        n = round(scale * full)
        labels = raw.y_train if key == "train" else raw.y_test
        rows = np.arange(n) % full  # the first n, the whole set again above 1
        arrays[f"x_{key}"], arrays[f"y_{key}"] = part.array[rows], labels.array[rows]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "fashion_mnist.npz", **arrays)
    return len(arrays["y_train"]), len(arrays["y_test"])


def measure(scale: float, *, tree: Path, out: Path, arm: str, interval: float) -> dict:
    """One run at `scale` (1: the study's own data, no `--data-dir`) with the tool in
    `tree`, its run folder in `out` (removed after) and its log beside it; the figures of
    `sample_run` and the data's size."""
    run_dir = out / f"{arm}-{scale:g}"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, *COMMAND, "--run-dir", str(run_dir / "run")]
    counts = FULL
    if scale != 1:
        counts = write_subset(scale, run_dir / "data")
        command += ["--data-dir", str(run_dir / "data")]
    images = sum(counts)
    result = sample_run(command, cwd=tree, log=out / f"{arm}-{scale:g}.log", interval=interval)
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"{arm} scale {scale:g}: {images:,} images, peak PSS {result['peak_pss_mib']} MiB "
          f"({result['wall_seconds']} s)", file=sys.stderr, flush=True)
    return {"arm": arm, "scale": scale, "images": images,
            "uint8_mib": round(images * PIXELS / MIB, 2),
            "float32_mib": round(4 * images * PIXELS / MIB, 2),
            "command": " ".join(["python", *command[1:]]), **result}


def fit(rows: list[dict]) -> dict:
    """peak PSS = intercept + slope × uint8 bytes, least squares, with the largest
    residual."""
    x = np.array([r["uint8_mib"] for r in rows])
    y = np.array([r["peak_pss_mib"] for r in rows])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    return {"slope": round(float(slope), 3), "intercept_mib": round(float(intercept), 1),
            "max_abs_residual_mib": round(float(np.abs(residual).max()), 1)}


def table(rows: list[dict]) -> str:
    """The markdown table of BENCHMARKS.md."""
    lines = ["| arm | images | uint8 data | peak summed PSS | PSS − uint8 data "
             "| peak RSS: driver / workers | wall |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        driver = [p["peak_rss_mib"] for p in r["peak_rss_mib"] if p["role"] == "driver"]
        workers = [p["peak_rss_mib"] for p in r["peak_rss_mib"] if p["role"] == "worker"]
        lines.append(
            f"| {r['arm']} | {r['images']:,} | {r['uint8_mib']:.1f} MiB "
            f"| {r['peak_pss_mib']:.0f} MiB | {r['peak_pss_mib'] - r['uint8_mib']:.0f} MiB "
            f"| {' / '.join(f'{v:.0f}' for v in driver + workers)} MiB "
            f"| {r['wall_seconds']:.0f} s |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1 / 7, 0.5, 1.0, 2.0, 4.0],
                        help="data sizes as fractions of Fashion-MNIST (1: the study's own)")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the tool to measure (a git worktree; default: this one)")
    parser.add_argument("--before-scales", type=float, nargs="+", default=[1 / 7, 1.0, 2.0])
    parser.add_argument("--before-tree", type=Path, default=None,
                        help="a git worktree of the commit to compare with")
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "data-memory")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out = args.out.resolve()  # the runs start in another folder (--tree)
    args.out.mkdir(parents=True, exist_ok=True)
    arms = [("uint8", args.tree.resolve(), args.scales)]
    if args.before_tree is not None:
        arms.append(("before", args.before_tree.resolve(), args.before_scales))
    rows = [measure(scale, tree=tree, out=args.out, arm=arm, interval=args.interval)
            for arm, tree, scales in arms for scale in scales]
    fits = {arm: fit([r for r in rows if r["arm"] == arm]) for arm, _, _ in arms}
    result = {"benchmark": "benchmarks/data_memory.py", "argv": sys.argv[1:],
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "rows": rows, "fits": fits}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows))
    for arm, line in fits.items():
        print(f"{arm}: peak PSS = {line['intercept_mib']:.0f} MiB + {line['slope']:.2f} × "
              f"uint8 data (largest residual {line['max_abs_residual_mib']:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
