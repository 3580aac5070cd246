"""What distilling the trained parent buys the small end, at which weight and temperature,
and what it costs in training time (issue 30).

    .venv/bin/python benchmarks/distillation.py --seed 0 --out benchmarks/out/distill

Full Fashion-MNIST, the built-in study's parent (`lenet5_caffe`, trained once, 5 epochs on
the whole training split, cached) and budget (9 epochs on a 20,000-image subset, cosine,
no rungs): small-end children of the kind the issue measured — a width-0.25 int8 model
and a width-1 EPR model at λ = 50 — each trained once per arm from the parent's weights,
one after the other in this process. Arms: no distillation, then (weight, temperature)
pairs. Each child's artifact is scored on the test split; training seconds are
`train_seconds`. Output: `distill.json` and the table in Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (weight, temperature); weight 0 is training on the labels alone.
ARMS = ((0.0, 1.0), (0.5, 2.0), (0.5, 4.0), (0.9, 4.0))


def main() -> int:
    import numpy as np

    from objectives.pipeline import evaluate_artifact, evaluate_candidate
    from optimizer.engine.parents import plan_parent
    from search_spaces.candidate import Candidate
    from studies import get_study
    from studies.datasets import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/distill")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    study = get_study("fashion_mnist")
    splits = load_dataset("fashion_mnist", split_seed=args.seed)
    parent = plan_parent(study=study, splits=splits, seed=args.seed,
                         cache_dir=args.out / "parent", isolate=False)
    assert parent.info is not None and parent.info.teacher is not None
    teacher = np.load(parent.info.teacher)
    children = (Candidate(width=0.25, quantization="int8"),
                Candidate(width=1.0, epr_lambda=50.0, quantization="epr"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for number, (candidate, (weight, temperature)) in enumerate(
                (c, arm) for c in children for arm in ARMS):
            budget = replace(study.budget, rungs=(), distill_weight=weight,
                             distill_temperature=temperature)
            result = evaluate_candidate(
                candidate=candidate, parent=parent.source, splits=splits, budget=budget,
                accuracy_floor=0.0, usable_accuracy=0.0, artifact_dir=Path(tmp),
                trial_number=number, seed=args.seed, outputs=parent.info.outputs,
                weights=parent.info.weights, teacher=teacher)
            test = evaluate_artifact(Path(result.artifact_path),
                                     quantization=candidate.quantization,
                                     x=splits.x_test, y=splits.y_test)
            rows.append({"candidate": candidate.to_params(), "weight": weight,
                         "temperature": temperature, "val": result.accuracy, "test": test,
                         "payload_bytes": result.payload_bytes,
                         "train_seconds": result.train_seconds})
            print(json.dumps(rows[-1]), flush=True)
            (args.out / "distill.json").write_text(json.dumps(rows, indent=1))
    print(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    lines = ["| child | weight | T | validation | test | payload | training (s) | "
             "× no distillation |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        c = row["candidate"]
        base = next(r for r in rows if r["candidate"] == c and r["weight"] == 0.0)
        lines.append(
            f"| {c['quantization']} width {c['width']} λ {c['epr_lambda']:g} | "
            f"{row['weight']:g} | {row['temperature']:g} | {100 * row['val']:.1f}% | "
            f"{100 * row['test']:.1f}% | {row['payload_bytes'] / 1024:.2f} KB | "
            f"{row['train_seconds']:.1f} | {row['train_seconds'] / base['train_seconds']:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
