"""How should one trial train? Schedule and warm start, side by side (issue 13).

    .venv/bin/python benchmarks/trial_recipe.py --lambda 10

On full Fashion-MNIST (split seed 0), LeNet5-Caffe at width 1, one float32 model and one EPR
model (λ) per recipe, each scored on the test split (float32: the Keras model; EPR: the
model decoded from its `.epr` file), with its training time:

- `scratch-constant`: the shipped trial before issue 13: fresh weights, Adam 1e-3 constant,
  10 epochs on the 20,000-image subset.
- `scratch-cosine`: the same with the rate decayed to zero at the last step.
- `inherit-cosine-E`: the child starts from a parent trained once (5 epochs on the whole
  training split, cosine; its time is reported apart, paid once per study), then E epochs
  on the subset, cosine; EPR log steps start from the weights' scale.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambda", dest="lam", type=float, default=10.0)
    parser.add_argument("--subset", type=int, default=20_000)
    parser.add_argument("--parent-epochs", type=int, default=5)
    parser.add_argument("--child-epochs", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()

    import tensorflow as tf

    from objectives import epr
    from objectives.build import build_model
    from objectives.train import accuracy, train
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES
    from studies.datasets import load_dataset

    splits = load_dataset("fashion_mnist", split_seed=0)
    x, y = splits.x_train[: args.subset], splits.y_train[: args.subset]

    def fresh():
        return build_model(family=FAMILIES["lenet5_caffe"], candidate=Candidate(),
                           input_shape=splits.input_shape, num_classes=10, seed=0)

    def fit(model, *, epochs, schedule, data=(x, y)):
        start = time.perf_counter()
        train(model, x=data[0], y=data[1], x_val=splits.x_val, y_val=splits.y_val,
              epochs=epochs, batch_size=64, accuracy_floor=0.0, seed=0, schedule=schedule)
        return time.perf_counter() - start

    def score(model, lam):
        """(float32 test accuracy, seconds) or (EPR test accuracy, payload, seconds)."""
        if lam == 0:
            return accuracy(model, splits.x_test, splits.y_test)
        compressed = epr.compress(model)
        with tempfile.TemporaryDirectory() as tmp:
            epr.save(compressed, Path(tmp) / "m.epr")
            decoded = epr.load(Path(tmp) / "m.epr")
        return accuracy(decoded, splits.x_test, splits.y_test), epr.payload_bytes(compressed)

    rows = []

    def measure(label, make, epochs, schedule, inherited=False):
        for lam in (0.0, args.lam):
            tf.keras.backend.clear_session()
            model = make()
            if lam:
                model = epr.make_compressible(model, epr_lambda=lam,
                                              steps_from_weights=inherited)
            seconds = fit(model, epochs=epochs, schedule=schedule)
            result = score(model, lam)
            rows.append((label, lam, result, seconds))
            print(rows[-1], flush=True)

    measure("scratch-constant-10", fresh, 10, "constant")
    measure("scratch-cosine-10", fresh, 10, "cosine")
    parent = fresh()
    parent_seconds = fit(parent, epochs=args.parent_epochs, schedule="cosine",
                         data=(splits.x_train, splits.y_train))
    weights = parent.get_weights()
    print(f"parent: {args.parent_epochs} epochs on {len(splits.x_train)} images, "
          f"{parent_seconds:.0f} s, test {accuracy(parent, splits.x_test, splits.y_test):.4f}")

    def inherited():
        model = fresh()
        model.set_weights(weights)
        return model

    for epochs in args.child_epochs:
        measure(f"inherit-cosine-{epochs}", inherited, epochs, "cosine", inherited=True)
    print("| recipe | float32 test | EPR λ test | EPR payload B | seconds (float32, EPR) |")
    print("|---|---|---|---|---|")
    for label in dict.fromkeys(r[0] for r in rows):
        plain = next(r for r in rows if r[0] == label and r[1] == 0)
        coded = next(r for r in rows if r[0] == label and r[1] != 0)
        print(f"| {label} | {100 * plain[2]:.2f}% | {100 * coded[2][0]:.2f}% | "
              f"{coded[2][1]:,} | {plain[3]:.0f}, {coded[3]:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
