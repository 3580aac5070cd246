"""Per-epoch training time of EPR vs plain training of the same LeNet5-Caffe (issue 4).

Both models train in this one process on the same Fashion-MNIST images; their epochs
alternate (plain, EPR, EPR, plain, …) so that load from other processes on the machine
hits both alike. The first epoch of each is a warm-up (tracing, allocation) and excluded.
Prints a markdown table: the median epoch time of each and the median of the per-round
ratios EPR / plain.

    .venv/bin/python benchmarks/epr_overhead.py --images 12000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12000, help="training images used")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epr-lambda", type=float, default=10.0)
    parser.add_argument("--family", default="lenet5_caffe")
    parser.add_argument("--jit", action="store_true", help="compile both with jit_compile=True")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    from objectives import epr
    from objectives.build import build_model
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES
    from studies.datasets import as_float, load_dataset

    splits = load_dataset("fashion_mnist")
    x, y = as_float(splits.x_train[: args.images]), splits.y_train[: args.images]

    def fresh() -> tf.keras.Model:
        return build_model(
            family=FAMILIES[args.family], candidate=Candidate(), input_shape=splits.input_shape,
            num_classes=splits.num_classes, seed=0,
        )

    models = {"plain": fresh(), "epr": epr.make_compressible(fresh(), epr_lambda=args.epr_lambda)}
    for model in models.values():
        model.compile(
            optimizer=tf.keras.optimizers.Adam(1e-3),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"], jit_compile=args.jit or None,
        )

    def epoch(name: str) -> float:
        start = time.perf_counter()
        models[name].fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
        return time.perf_counter() - start

    for name in models:  # warm-up, excluded
        epoch(name)
    times: dict[str, list[float]] = {"plain": [], "epr": []}
    for r in range(args.rounds):
        order = ("plain", "epr") if r % 2 == 0 else ("epr", "plain")
        for name in order:
            times[name].append(epoch(name))
    ratios = [e / p for e, p in zip(times["epr"], times["plain"], strict=True)]
    print(f"{args.family}, {len(x)} Fashion-MNIST images, batch {args.batch_size}, "
          f"{args.rounds} timed epochs each (1 warm-up excluded), epr_lambda={args.epr_lambda}, "
          f"jit_compile={args.jit}, TF {tf.__version__}, {os.cpu_count()} CPUs\n")
    print("| training | median s/epoch | min s/epoch | all epochs (s) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in values)} |")
    print(f"\nEPR / plain per-epoch ratio: median of per-round ratios "
          f"{statistics.median(ratios):.2f}; ratio of medians "
          f"{statistics.median(times['epr']) / statistics.median(times['plain']):.2f}; "
          f"ratio of minima {min(times['epr']) / min(times['plain']):.2f} "
          f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
