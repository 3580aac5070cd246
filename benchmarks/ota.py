"""The update a device receives (issue 32): sizes, the C decoder, and the `ota` objective.

    .venv/bin/python benchmarks/ota.py --out benchmarks/out/ota --seeds 0 --timeout 600

For each seed, two arms run one after the other on the same machine, each in a fresh run
directory, with the same `--timeout` (equal time), everything else the shipped default:

- `flash`: `run --study fashion_mnist --size-objective flash --seed S`: ranked by the
  `.tflite` file a device holds (no λ on TFLite modes, no `epr` storage);
- `ota`: the same with `--size-objective ota`: ranked by `model.update`, λ searched again.

Then every completed trial of both arms is scored, with the code of this tree:

- its device file: a TFLite trial's artifact, an `epr` trial's float32 TFLite file of its
  decoded model (what the search measured, `objectives.pipeline.device_figures`);
- `ota`: `len(objectives.ota.encode_update(file))` (re-encoded here, so both arms are
  scored by the same coder even where the search ran an earlier one; `stored_ota` is what
  the search recorded), `gzip -9` and `xz -9e` of the same file;
- bit-exactness: the C decoder (`ota_decode.c` + `model_update.c`, built here with
  `gcc -std=c99 -O2 -Wall -Wextra -Werror`) and the Python decoder rebuild the file;
- test accuracy of the artifact (the search saw only validation).

Figures: for the `ota` arm's front members, update / gzip and update / xz (EPR-trained
int8 members: target ≤ ½; every member: ≤ 1 against xz); whether the `ota` front (test
accuracy × update bytes) weakly dominates each member of the `flash` front re-scored by its
update bytes; the hypervolume of both (test accuracy × log10 update bytes above
`REF_ACCURACY`, `REF_BYTES`); the decoder's Cortex-M4 `-Os` code size (where
`arm-none-eabi-gcc` is installed) and x86-64 size, its state bytes besides the window
(`sizeof(struct mu_decoder)` on x86-64 and on the M4 where it builds), and the host time
to decode the largest device file. Output: `ota.json` and the Markdown printed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REF_ACCURACY = 0.7
REF_BYTES = 2_000_000
ARMS = ("flash", "ota")
GCC = ("gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")
STATE_PROBE = """#include "model_update.c"
#include <stdio.h>
int main(void) { printf("%u\\n", (unsigned)sizeof(struct mu_decoder)); return 0; }
"""


def run_arm(*, arm: str, seed: int, run_dir: Path, timeout: float, tree: Path) -> float:
    """`run --study fashion_mnist --size-objective ARM` to `timeout`; its wall seconds."""
    command = [sys.executable, "-m", "optimizer", "run", "--study", "fashion_mnist",
               "--seed", str(seed), "--run-dir", str(run_dir), "--size-objective", arm,
               "--n-trials", "1000", "--timeout", str(timeout)]
    start = time.time()
    subprocess.run(command, check=True, cwd=tree, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(tree)})
    return time.time() - start


def device_file(path: Path, quantization: str) -> bytes:
    """The file a device runs for a trial's artifact at `path` (see the docstring)."""
    if quantization != "epr":
        return path.read_bytes()
    from objectives import epr, tflite

    return tflite.convert(epr.load(path), quantization="float32")


def c_decode(decoder: Path, update: bytes, tmp: Path) -> tuple[bytes | None, float]:
    """The C decoder's output for `update` (None if it refused it) and its seconds."""
    (tmp / "m.update").write_bytes(update)
    out = tmp / "m.out"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run([str(decoder), str(tmp / "m.update"), str(out)],
                          capture_output=True)
    seconds = time.perf_counter() - start
    return (out.read_bytes() if done.returncode == 0 else None), seconds


def score_trials(run_dir: Path, *, seed: int, decoder: Path, study_name: str = "fashion_mnist",
                 dataset: str = "fashion_mnist") -> list[dict]:
    """Every completed trial of a run: accuracies, bytes, and whether both decoders
    rebuild its device file."""
    import optuna
    from optuna.trial import TrialState

    from objectives import ota
    from objectives.pipeline import evaluate_artifact
    from optimizer.store.artifacts import fetch, open_store
    from optimizer.store.trial import StoredTrial
    from studies.datasets import load_dataset

    stored = optuna.load_study(study_name=study_name, storage=f"sqlite:///{run_dir}/study.db")
    splits = load_dataset(dataset, split_seed=seed)
    store_dir = run_dir / "artifact-store"
    store = open_store(store_dir, create=False)
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for t in stored.get_trials(states=(TrialState.COMPLETE,)):
            s = StoredTrial.from_trial(t)
            path = fetch(t, store=store, store_dir=store_dir, into=tmp)
            data = device_file(path, str(s.quantization))
            update = ota.encode_update(data)
            rebuilt, seconds = c_decode(decoder, update, tmp)
            rows.append({
                "trial": s.number, "quantization": s.quantization,
                "epr_lambda": s.candidate.epr_lambda, "width": s.candidate.width,
                "finalist_of": s.finalist_of, "val": s.values[0],
                "test": evaluate_artifact(path, quantization=str(s.quantization),
                                          x=splits.x_test, y=splits.y_test),
                "device_bytes": len(data), "flash_bytes": s.flash_bytes,
                "stored_ota": s.ota_bytes, "ota": len(update),
                "gzip": len(gzip.compress(data, 9, mtime=0)),
                "xz": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
                "c_exact": rebuilt == data, "py_exact": ota.decode_update(update) == data,
                "decode_seconds": seconds,
            })
            path.unlink()
    return rows


def front(rows: list[dict], *, size: str, accuracy: str = "val") -> list[dict]:
    """The members of `rows` no other row beats on `accuracy` and `size` together."""
    def beaten(r: dict) -> bool:
        return any(o[accuracy] >= r[accuracy] and o[size] <= r[size]
                   and (o[accuracy] > r[accuracy] or o[size] < r[size]) for o in rows)
    return sorted((r for r in rows if not beaten(r)), key=lambda r: r[size])


def hypervolume(points: list[tuple[float, int]]) -> float:
    """Area dominated by (accuracy, log10 bytes) points above (`REF_ACCURACY`,
    `REF_BYTES`), in accuracy × decades."""
    ref = math.log10(REF_BYTES)
    area, best = 0.0, REF_ACCURACY
    for acc, size in sorted(points, key=lambda p: p[1]):
        if acc > best and size < REF_BYTES:
            area += (acc - best) * (ref - math.log10(size))
            best = acc
    return area


def compare(arms: dict[str, list[dict]]) -> dict:
    """The `ota` front against the `flash` front re-scored by update bytes."""
    ota_front = front(arms["ota"], size="ota")
    flash_front = front(arms["flash"], size="flash_bytes")
    covered = [any(o["test"] >= f["test"] and o["ota"] <= f["ota"] for o in ota_front)
               for f in flash_front]
    return {
        "ota_front": ota_front, "flash_front": flash_front,
        "flash_members_dominated": sum(covered), "flash_members": len(flash_front),
        "hv_ota_front": hypervolume([(r["test"], r["ota"]) for r in ota_front]),
        "hv_flash_front_rescored": hypervolume([(r["test"], r["ota"]) for r in flash_front]),
    }


def decoder_figures(tree: Path, build: Path) -> dict:
    """Code and state sizes of the C decoder, and the host program `ota_decode`."""
    sources = tree / "objectives" / "c" / "ota"
    build.mkdir(parents=True, exist_ok=True)
    decoder = build / "ota_decode"
    subprocess.run([*GCC, "-o", str(decoder), str(sources / "ota_decode.c"),
                    str(sources / "model_update.c")], check=True)
    (build / "probe.c").write_text(STATE_PROBE)
    subprocess.run([*GCC, "-I", str(sources), "-o", str(build / "probe"),
                    str(build / "probe.c")], check=True)
    figures = {"decoder": str(decoder), "state_bytes_x86_64": int(subprocess.run(
        [str(build / "probe")], check=True, capture_output=True, text=True).stdout)}
    figures["text_bytes_x86_64_Os"] = _text_size("gcc", ["-Os"], sources, build)
    if shutil.which("arm-none-eabi-gcc"):
        flags = ["-mcpu=cortex-m4", "-mthumb", "-Os"]
        figures["text_bytes_cortex_m4_Os"] = _text_size("arm-none-eabi-gcc", flags,
                                                        sources, build)
    return figures


def _text_size(cc: str, flags: list[str], sources: Path, build: Path) -> int:
    """The code (`text`) bytes of `model_update.c` compiled by `cc` with `flags`."""
    obj = build / f"model_update-{cc}.o"
    subprocess.run([cc, "-std=c99", *flags, "-c", "-o", str(obj),
                    str(sources / "model_update.c")], check=True)
    size = cc.replace("gcc", "size") if cc != "gcc" else "size"
    out = subprocess.run([size, str(obj)], check=True, capture_output=True, text=True)
    return int(out.stdout.splitlines()[1].split()[0])


def plot(result: dict, path: Path) -> None:
    """Per seed, the `ota` front and the `flash` front re-scored by update bytes (test
    accuracy against update bytes, log scale), and every other trial in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted(result["seeds"])
    fig, axes = plt.subplots(1, len(seeds), figsize=(6.5 * len(seeds), 4.5), squeeze=False)
    for ax, seed in zip(axes[0], seeds, strict=True):
        res = result["seeds"][seed]
        rows = [r for arm in ARMS for r in res["trials"][arm]]
        ax.scatter([r["ota"] for r in rows], [r["test"] for r in rows], s=8, c="0.8",
                   label="other trials (both arms)")
        ota_front = sorted(res["compare"]["ota_front"], key=lambda r: r["ota"])
        ax.step([r["ota"] for r in ota_front], [r["test"] for r in ota_front], where="post",
                color="tab:blue", marker="o", ms=4, label="ota front")
        flash = res["compare"]["flash_front"]
        ax.plot([r["ota"] for r in flash], [r["test"] for r in flash], ls="none",
                marker="s", ms=5, color="tab:orange",
                label="flash front's members, re-scored by update bytes")
        ax.set_xscale("log")
        ax.set_ylim(0.5, None)
        ax.set_xlabel("model.update bytes a device receives (log)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"Fashion-MNIST, seed {seed}, equal time ({result['timeout']:g} s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(result: dict) -> str:
    lines = []
    for seed, res in result["seeds"].items():
        cmp = res["compare"]
        lines += [f"### seed {seed}: `ota` {res['seconds']['ota']:.0f} s, `flash` "
                  f"{res['seconds']['flash']:.0f} s (`--timeout` {result['timeout']:g})", "",
                  "| trial | mode | λ | width | test | device B | update B | /gzip | /xz |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in cmp["ota_front"]:
            lines.append(f"| {r['trial']} | {r['quantization']} | {r['epr_lambda']:.3g} | "
                         f"{r['width']:.3g} | {r['test']:.4f} | {r['device_bytes']:,} | "
                         f"{r['ota']:,} | {r['ota'] / r['gzip']:.3f} | "
                         f"{r['ota'] / r['xz']:.3f} |")
        lines += ["", f"flash-front members dominated by the ota front (test accuracy, "
                  f"update bytes): {cmp['flash_members_dominated']} of {cmp['flash_members']}; "
                  f"HV {cmp['hv_ota_front']:.3f} against {cmp['hv_flash_front_rescored']:.3f}",
                  ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "ota")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the tree whose code runs the searches (a frozen worktree)")
    parser.add_argument("--score-only", action="store_true",
                        help="score the runs already in --out")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                        help="the arms to run (the others' runs in --out are scored)")
    parser.add_argument("--plot", type=Path,
                        help="only draw the fronts of --out's ota.json into this PNG")
    args = parser.parse_args()
    if args.plot:
        plot(json.loads((args.out / "ota.json").read_text()), args.plot)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    figures = decoder_figures(ROOT, args.out / "build")
    saved = args.out / "ota.json"  # seeds scored before are kept
    seeds = json.loads(saved.read_text())["seeds"] if saved.exists() else {}
    result = {"timeout": args.timeout, "decoder": figures, "seeds": seeds}
    for seed in args.seeds:
        seconds_file = args.out / f"seconds-{seed}.json"
        seconds = json.loads(seconds_file.read_text()) if seconds_file.exists() else {}
        arms = {}
        for arm in ARMS:
            run_dir = args.out / f"{arm}-{seed}"
            if not args.score_only and arm in args.arms:
                shutil.rmtree(run_dir, ignore_errors=True)
                seconds[arm] = run_arm(arm=arm, seed=seed, run_dir=run_dir,
                                       timeout=args.timeout, tree=args.tree)
                seconds_file.write_text(json.dumps(seconds))
            arms[arm] = score_trials(run_dir, seed=seed, decoder=Path(figures["decoder"]))
        result["seeds"][str(seed)] = {"seconds": seconds, "trials": arms,
                                      "compare": compare(arms)}
        (args.out / "ota.json").write_text(json.dumps(result, indent=1))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
