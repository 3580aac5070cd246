"""Does our search beat what a user would do instead, per CPU-minute? (issue 13)

    .venv/bin/python benchmarks/search_efficiency.py --seeds 0 --out benchmarks/out/efficiency

Side by side on full Fashion-MNIST with the built-in `lenet5_caffe`, each arm from a fresh
run directory, one after the other on the same machine, wall time counted from the arm's
start to each artifact (training a parent counts):

- `seed`: the seed's procedure (seed 004, the EPR tutorial): width 1, no factorization,
  EPR at λ ∈ {2, 5, 10, 20, 50}, each trained from scratch on the whole training split for
  5 epochs (Adam 1e-3), stored as `.epr`.
- `default`: `python -m optimizer run --study fashion_mnist --seed S` as shipped (warm
  start, TPE, multi-objective successive halving: rungs after 1 and 3 of 9 epochs, η = 3,
  a trial on its rung's front kept; one trial in four a small-end extension).
- `shipped` (issue 24): `run --study fashion_mnist --seed S` as shipped now: the default
  search in one lasting worker, then its finalists (`--finalists 3`: front members
  fine-tuned on the whole training split); the table reads its front after the search
  and after the finalists. (`default` runs with `--finalists 0`, as it was measured.)
- `jobs2` (issue 24): `shipped` with `--jobs 2`: two trials at once, a core each.
- `no_extension`: the default with `--extend-every 0` (TPE alone proposes), run to its own
  budget: what the small-end extension (`optimizer.engine.extension`) buys.
- `random`: the same study with `--sampler random --extend-every 0` (random proposals
  only), stopped at the default arm's wall time.
- `random_extension`: `--sampler random` with the default's small-end extension, stopped
  at the default's wall time: whether TPE still earns its place next to the extension.
- `kerastuner`: the same study with `--backend kerastuner` (KerasTuner's
  BayesianOptimization on accuracy − 0.02·log10 bytes), stopped at the same wall time.
- `nsga2`: the same study with `--sampler nsga2 --extend-every 0`, run to its own
  budget: whether TPE is still the sampler to ship on this benchmark.
- The variant arms below also run with `--extend-every 0`, as they were measured.
- `rank_only`: `benchmarks/variants.py: RANK_ONLY`, the default without `Budget.keep_front`
  (MO-ASHA's rule alone: a trial trains on only when it ranks in the best ⌊n/η⌋), run to
  its own budget.
- `three_references`: `benchmarks/variants.py: THREE_REFERENCES`, the default without its
  two small-end reference points, run to its own budget.
- `previous`: `benchmarks/variants.py: PREVIOUS`, the default before successive halving
  (every candidate fine-tuned 3 epochs), run to its own budget: what the change bought.

Every completed trial's artifact is scored once on the test split (the search itself saw
only validation). An arm's front at time t is the validation front of what it had made
by t (what the user would pick from), scored on test. Hypervolume: test accuracy ×
log10 payload bytes, above the reference point (70 % accuracy, 2,000,000 bytes) — the
points of the issue's measurement. Output: `efficiency.json`, `hypervolume.png` (HV against
wall time per arm and seed) and the table and fronts printed in Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimizer.store.trial import StoredTrial  # noqa: E402

REF_ACCURACY = 0.70
REF_BYTES = 2_000_000
SEED_LAMBDAS = (2.0, 5.0, 10.0, 20.0, 50.0)
SEED_EPOCHS = 5
#: Arms that run a study of `benchmarks/variants.py` to its own budget.
VARIANT_ARMS = {"rank_only": "RANK_ONLY", "previous": "PREVIOUS",
                "three_references": "THREE_REFERENCES", "no_distill": "NO_DISTILL"}


def hypervolume(points: list[tuple[float, int]]) -> float:
    """HV of (test accuracy, payload bytes) points above the reference point."""
    from optimizer.commands.report import hypervolume_2d

    return hypervolume_2d(points, ref_log_bytes=math.log10(REF_BYTES),
                          ref_accuracy=REF_ACCURACY)


def front(points: list[dict]) -> list[dict]:
    """The non-dominated points by (validation accuracy ↑, payload ↓)."""
    keep = [p for p in points if not dominates_any(points, p, accuracy="val")]
    return sorted(keep, key=lambda p: p["bytes"])


def history(points: list[dict]) -> list[tuple[float, float]]:
    """(seconds, HV of the validation front made by then, scored on test) per artifact."""
    out = []
    for p in sorted(points, key=lambda p: p["seconds"]):
        made = [q for q in points if q["seconds"] <= p["seconds"]]
        out.append((p["seconds"], hypervolume([(q["test"], q["bytes"]) for q in front(made)])))
    return out


def seed_arm(seed: int) -> list[dict]:
    """The seed's λ sweep, in this process, timed from its start."""
    import tensorflow as tf

    from objectives import epr
    from objectives.build import build_model
    from objectives.train import accuracy, compile_model
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES
    from studies.datasets import as_float, load_dataset

    start = time.perf_counter()
    splits = load_dataset("fashion_mnist", split_seed=seed)
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for lam in SEED_LAMBDAS:
            tf.keras.backend.clear_session()
            plain = build_model(family=FAMILIES["lenet5_caffe"], candidate=Candidate(),
                                input_shape=splits.input_shape,
                                num_classes=splits.num_classes, seed=seed)
            model = epr.make_compressible(plain, epr_lambda=lam)
            compile_model(model)
            model.fit(as_float(splits.x_train), splits.y_train, batch_size=64,
                      epochs=SEED_EPOCHS, verbose=0)
            compressed = epr.compress(model)
            path = Path(tmp) / f"lambda{lam:g}.epr"
            epr.save(compressed, path)
            decoded = epr.load(path)
            points.append({
                "label": f"λ={lam:g}", "bytes": epr.payload_bytes(compressed),
                "val": accuracy(decoded, splits.x_val, splits.y_val),
                "test": accuracy(decoded, splits.x_test, splits.y_test),
                "seconds": time.perf_counter() - start,
            })
            print(f"  seed arm λ={lam:g}: {points[-1]}", flush=True)
    return points


def run_arm(seed: int, *, sampler: str, run_dir: Path, timeout: float | None,
            backend: str = "optuna", study: str = "fashion_mnist",
            name: str = "fashion_mnist", extend_every: int | None = 0,
            jobs: int | None = 1, finalists: int | None = 0, tree: Path = ROOT) -> list[dict]:
    """`run --study STUDY` in a fresh run dir; every completed trial scored on test.
    `extend_every`, `finalists` and `jobs` None: `run`'s default; `tree`: whose code runs
    it (another commit's git worktree, its own code first on the path)."""
    import optuna
    from optuna.trial import TrialState

    from objectives.pipeline import evaluate_artifact
    from optimizer.store.artifacts import fetch, open_store
    from studies.datasets import load_dataset

    command = [sys.executable, "-m", "optimizer", "run", "--study", study,
               "--seed", str(seed), "--run-dir", str(run_dir), "--sampler", sampler,
               "--backend", backend]
    if extend_every is not None:
        command += ["--extend-every", str(extend_every)]
    if finalists is not None:
        command += ["--finalists", str(finalists)]
    if jobs is not None:
        command += ["--jobs", str(jobs)]
    if timeout is not None:
        command += ["--n-trials", "1000", "--timeout", str(timeout)]
    start = time.time()
    subprocess.run(command, check=True, cwd=tree, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(tree)})
    stored = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir}/study.db")
    splits = load_dataset("fashion_mnist", split_seed=seed)
    store_dir = run_dir / "artifact-store"
    store = open_store(store_dir, create=False)
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in stored.get_trials(states=(TrialState.COMPLETE,)):
            path = fetch(t, store=store, store_dir=store_dir, into=Path(tmp))
            s = StoredTrial.from_trial(t)
            points.append({
                "label": f"trial {s.number} {s.candidate.to_params()}",
                "first_epoch": s.first_epoch_accuracy,
                "stopped_at_epoch": s.stopped_at_epoch,
                "rungs": s.rungs,
                "finalist_of": s.finalist_of,
                "bytes": s.payload_bytes, "val": s.values[0],
                "test": evaluate_artifact(path, quantization=s.quantization, x=splits.x_test,
                                          y=splits.y_test),
                "seconds": s.datetime_complete.timestamp() - start,
            })
            path.unlink()
    finished = [StoredTrial.from_trial(t) for t in stored.trials if t.state.is_finished()]
    finished = [t for t in finished
                if t.finalist_of is None and t.rejected_before_training is None]
    for p in points:  # the search's trials ended by each point's time (for trials/hour)
        p["finished_by_then"] = sum(1 for t in finished if t.datetime_complete.timestamp()
                                    - start <= p["seconds"])
    return points


def rung_correlation(points: list[dict], *, objective: str = "val") -> float | None:
    """Spearman rank correlation of a first-rung score with the artifact's final one, over
    the arm's completed trials that trained their full budget: `val` (first-epoch validation
    accuracy against the final) or `bytes` (the payload at the first rung against the
    final; EPR's code length falls over many steps, so this is the weaker proxy)."""
    if objective == "val":
        pairs = [(p["first_epoch"], p["val"]) for p in points
                 if p.get("first_epoch") is not None and p.get("stopped_at_epoch") is None]
    else:
        pairs = [(p["rungs"][0][2], p["bytes"]) for p in points
                 if p.get("rungs") and p.get("stopped_at_epoch") is None]
    if len(pairs) < 5:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)


def table_row(arm: str, seed: int, points: list[dict]) -> dict:
    final = front(points)
    searched = [p for p in points if p.get("finalist_of") is None]
    search_seconds = max(p["seconds"] for p in searched)
    return {"arm": arm, "seed": seed, "seconds": max(p["seconds"] for p in points),
            "search_seconds": search_seconds,
            "search_trials": max((p.get("finished_by_then", 0) for p in searched), default=0),
            "finalists": len(points) - len(searched),
            "hv_after_search": hypervolume([(p["test"], p["bytes"]) for p in front(searched)]),
            "best_test": max(p["test"] for p in final),
            "best_test_4kb": max((p["test"] for p in final if p["bytes"] <= 4096), default=None),
            "best_test_16kb": max((p["test"] for p in final if p["bytes"] <= 16384),
                                  default=None),
            "trials": len(points), "rung_correlation": rung_correlation(points),
            "rung_bytes_correlation": rung_correlation(points, objective="bytes"),
            "hv": hypervolume([(p["test"], p["bytes"]) for p in final]),
            "front": [{k: p[k] for k in ("label", "bytes", "val", "test")} for p in final],
            "history": history(points)}


def main() -> int:
    from benchmarks import variants

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--arms", nargs="*",
                        default=["seed", "default", "random", "kerastuner"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/efficiency")
    parser.add_argument("--before-tree", default=None,
                        help="a git worktree of the commit before issue 30 (arm before30)")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="efficiency.json files of earlier runs (other seeds, other "
                        "arms) to add to --out's before running, e.g. to plot them together")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = json.loads((args.out / "efficiency.json").read_text()) if (
        args.out / "efficiency.json").exists() else []
    for path in args.merge:
        earlier = json.loads(path.read_text())
        keys = {(r["arm"], r["seed"]) for r in earlier}
        results = [r for r in results if (r["arm"], r["seed"]) not in keys] + earlier
    (args.out / "efficiency.json").write_text(json.dumps(results, indent=1))
    for seed in args.seeds:
        default_seconds = next((r["seconds"] for r in results
                                if (r["arm"], r["seed"]) == ("default", seed)), None)
        for arm in args.arms:
            print(f"seed {seed}, arm {arm}", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"eff-{arm}-") as tmp:
                if arm == "seed":
                    points = seed_arm(seed)
                elif arm == "default":
                    points = run_arm(seed, sampler="tpe", run_dir=Path(tmp), timeout=None,
                                     extend_every=None)
                    default_seconds = max(p["seconds"] for p in points)
                elif arm in ("new_default", "jobs1", "three_finalists", "gp"):  # issue 30
                    points = run_arm(seed, sampler="gp" if arm == "gp" else "tpe",
                                     run_dir=Path(tmp), timeout=None,
                                     extend_every=None, finalists=3 if arm ==
                                     "three_finalists" else None,
                                     jobs=1 if arm == "jobs1" else None)
                elif arm == "before30":  # issue 30: the default before it, its own commit
                    points = run_arm(seed, sampler="tpe", run_dir=Path(tmp), timeout=None,
                                     extend_every=None, finalists=None, jobs=None,
                                     tree=Path(args.before_tree))
                elif arm in ("shipped", "jobs2"):  # issue 24: as shipped, and --jobs 2
                    points = run_arm(seed, sampler="tpe", run_dir=Path(tmp), timeout=None,
                                     extend_every=None, finalists=None,
                                     jobs=2 if arm == "jobs2" else 1)
                elif arm == "no_extension":
                    points = run_arm(seed, sampler="tpe", run_dir=Path(tmp), timeout=None)
                elif arm == "nsga2":
                    points = run_arm(seed, sampler="nsga2", run_dir=Path(tmp), timeout=None)
                elif arm in VARIANT_ARMS:
                    variant = VARIANT_ARMS[arm]
                    # no_distill (issue 30) is the new default without distillation
                    shipped = {"extend_every": None, "finalists": None, "jobs": None} \
                        if arm == "no_distill" else {}
                    points = run_arm(seed, sampler="tpe", run_dir=Path(tmp), timeout=None,
                                     study=f"benchmarks.variants:{variant}",
                                     name=getattr(variants, variant).name, **shipped)
                elif arm in ("random", "random_extension", "kerastuner"):
                    if default_seconds is None:
                        raise SystemExit(f"the {arm} arm runs after the default arm of "
                                         f"seed {seed} (here, or in --out / --merge)")
                    points = run_arm(seed, sampler="random", run_dir=Path(tmp),
                                     timeout=default_seconds,
                                     backend="kerastuner" if arm == "kerastuner" else "optuna",
                                     extend_every=None if arm == "random_extension" else 0)
                else:
                    raise SystemExit(f"unknown arm {arm}")
            row = table_row(arm, seed, points)
            results = [r for r in results if (r["arm"], r["seed"]) != (arm, seed)] + [row]
            (args.out / "efficiency.json").write_text(json.dumps(results, indent=1))
            print(f"  {arm}: HV {row['hv']:.3f} after {row['seconds'] / 60:.1f} min",
                  flush=True)
    plot(results, args.out / "hypervolume.png")
    print(markdown(results))
    return 0


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _search_rate(row: dict) -> float:
    """The search's trials per hour (finalists not counted)."""
    return 3600 * row["search_trials"] / row["search_seconds"]


def markdown(results: list[dict]) -> str:
    """The table (one row per arm and seed, with the issue's targets as columns) and each
    final front."""
    lines = ["| arm | seed | wall time (min) | completed | final HV | HV at the seed arm's end "
             "| HV at the default's end | reaches the seed arm's HV at (× its time) "
             "| seed-front points it dominates "
             "| first-rung vs final rank corr. (accuracy / bytes) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["seed"], r["arm"])):
        seed = next((s for s in results if (s["arm"], s["seed"]) == ("seed", r["seed"])), None)
        default = next((s for s in results
                        if (s["arm"], s["seed"]) == ("default", r["seed"])), None)
        reached = dominated = ""
        if seed is not None:
            at_seed = f"{hv_at(r, seed['seconds']):.3f}"
            t = next((t for t, hv in r["history"] if hv >= seed["hv"]), None)
            if t is not None:
                reached = f"{t / 60:.1f} min ({t / seed['seconds']:.2f}×)"
            dominated = f"{sum(dominates_any(r['front'], p) for p in seed['front'])} of " \
                        f"{len(seed['front'])}"
        else:
            at_seed = ""
        at_default = "" if default is None else f"{hv_at(r, default['seconds']):.3f}"
        corr = " / ".join("–" if c is None else f"{c:.2f}" for c in (
            r.get("rung_correlation"), r.get("rung_bytes_correlation")))
        lines.append(f"| {r['arm']} | {r['seed']} | {r['seconds'] / 60:.1f} | "
                     f"{r.get('trials', '')} | {r['hv']:.3f} | {at_seed} | {at_default} | "
                     f"{reached} | {dominated} | {corr} |")
    lines += ["", "| arm | seed | search: trials, min | trials / hour | HV after the search "
              "| finalists | final HV | best ≤ 4 KB | best ≤ 16 KB | most accurate |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["seed"], r["arm"])):
        if not r.get("search_trials"):  # the seed arm, or a row from before issue 24
            continue
        lines.append(
            f"| {r['arm']} | {r['seed']} | {r['search_trials']}, "
            f"{r['search_seconds'] / 60:.1f} | "
            f"{_search_rate(r):.0f} | "
            f"{r['hv_after_search']:.3f} | {r['finalists']} | {r['hv']:.3f} | "
            f"{_pct(r['best_test_4kb'])} | {_pct(r['best_test_16kb'])} | {_pct(r['best_test'])} |")
    pairs = [(r, j) for r in results if r["arm"] == "shipped" for j in results
             if (j["arm"], j["seed"]) == ("jobs2", r["seed"])]
    if pairs:
        lines += ["", "| seed | `--jobs 2` ends at (min) | HV then: `--jobs 1` / `--jobs 2` "
                  "| `--jobs 1` ends at (min) | HV then: `--jobs 1` / `--jobs 2` "
                  "| search trials / hour: `--jobs 1` / `--jobs 2` |",
                  "|---|---|---|---|---|---|"]
        for one, two in sorted(pairs, key=lambda pair: pair[0]["seed"]):
            lines.append(
                f"| {one['seed']} | {two['seconds'] / 60:.1f} | "
                f"{hv_at(one, two['seconds']):.3f} / {hv_at(two, two['seconds']):.3f} | "
                f"{one['seconds'] / 60:.1f} | {hv_at(one, one['seconds']):.3f} / "
                f"{hv_at(two, one['seconds']):.3f} | {_search_rate(one):.0f} / "
                f"{_search_rate(two):.0f} ({_search_rate(two) / _search_rate(one):.2f}×) |")
    for r in sorted(results, key=lambda r: (r["seed"], r["arm"])):
        lines.append(f"\n{r['arm']}, seed {r['seed']} front (test accuracy, payload):")
        lines += [f"- {p['bytes']:,} B at {100 * p['test']:.1f}% ({p['label']})"
                  for p in r["front"]]
    return "\n".join(lines)


def hv_at(row: dict, seconds: float) -> float:
    """The arm's hypervolume at `seconds` into its run (its final one after its end)."""
    return max((hv for t, hv in row["history"] if t <= seconds), default=0.0)


def dominates_any(points: list[dict], point: dict, *, accuracy: str = "test") -> bool:
    """Whether one of `points` dominates `point` on `accuracy` ("test" or "val") ↑ and
    payload ↓."""
    a = accuracy
    return any(q[a] >= point[a] and q["bytes"] <= point["bytes"]
               and (q[a] > point[a] or q["bytes"] < point["bytes"]) for q in points)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({r["seed"] for r in results})
    fig, axes = plt.subplots(1, len(seeds), figsize=(4.2 * len(seeds), 4.6), sharey=True,
                             squeeze=False)
    colors = {"seed": "tab:gray", "default": "tab:blue", "random": "tab:orange",
              "kerastuner": "tab:green", "previous": "tab:purple", "nsga2": "tab:red",
              "rank_only": "tab:cyan", "three_references": "tab:brown",
              "anchored_cut": "tab:olive", "no_extension": "tab:pink",
              "random_extension": "gold", "shipped": "tab:blue", "jobs2": "black"}
    for ax, seed in zip(axes[0], seeds, strict=True):
        for r in sorted((r for r in results if r["seed"] == seed), key=lambda r: r["arm"]):
            xs = [0.0] + [t / 60 for t, _ in r["history"]]
            ys = [0.0] + [hv for _, hv in r["history"]]
            ax.step(xs, ys, where="post", color=colors.get(r["arm"]), alpha=0.85,
                    linewidth=2.4 if r["arm"] in ("default", "shipped") else 1.2,
                    label=r["arm"])
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("wall time (min, 2 cores)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("hypervolume\n(test accuracy − 0.70) × log10(2 MB / bytes)")
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0][-1].legend(handles.values(), handles.keys(), fontsize=7, loc="lower right")
    fig.suptitle("Fashion-MNIST, lenet5_caffe: front quality against wall time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
