"""Inherited weights versus a fresh start for children of a trained parent (`objectives.rewrite`).

Two parents are trained on Fashion-MNIST: the built-in `lenet5_caffe` (width 1,
`objectives.build.build_model`) and a small residual CNN in the style of the Keras examples
(conv→BN→ReLU blocks with `Add` shortcuts, global average pooling, Dense(10) logits). Each is
rewritten by `objectives.rewrite.transform` into three children — width 0.5, width 0.75, and
width 1.0 with one n×n conv factorized into n×1 + 1×n (no activation between, the rewriter's
default) — once with `inherit=True` (top-L1 channel selection, truncated SVD for the
factorized conv) and once with `inherit=False` (the same architecture, fresh seeded init).
Every child is evaluated on the test split right after the rewrite and again after one epoch
of fine-tuning on the training split with Adam, learning rate 1e-3 cosine-decayed to 0 over
that epoch, batch 64, the same seed (so the same batch order) for both arms.

    .venv/bin/python benchmarks/inherit_vs_scratch.py --subset 3000   # quick check
    .venv/bin/python benchmarks/inherit_vs_scratch.py                  # full training split

Prints a markdown table and writes it to --out (default /tmp/inherit_vs_scratch.md).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH_SIZE = 64
FINE_TUNE_LR = 1e-3
LENET_FACTORIZE = "conv_2"  # 5×5, 20 → 50 channels
RESNET_FACTORIZE = "block3_conv1"  # 3×3, 32 → 32 channels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-parent", type=int, default=3,
                        help="training epochs of each parent (default 3)")
    parser.add_argument("--subset", type=int, default=0,
                        help="use the first N training images (a stratified prefix; 0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/inherit_vs_scratch.md"),
                        help="also write the markdown here")
    return parser.parse_args(argv)


def small_resnet(input_shape, num_classes: int, seed: int):
    """Stem conv 16@3x3 + max-pool, then three residual blocks (16, 32/2, 32), GAP, Dense."""
    import tensorflow as tf
    from tensorflow.keras import layers

    tf.keras.utils.set_random_seed(seed)

    def block(x, filters: int, name: str, stride: int = 1):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                          name=f"{name}_conv1")(x)
        y = layers.BatchNormalization(name=f"{name}_bn1")(y)
        y = layers.ReLU(name=f"{name}_relu1")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
        shortcut = x
        if stride != 1 or int(x.shape[-1]) != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                     name=f"{name}_proj")(x)
            shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
        y = layers.Add(name=f"{name}_add")([y, shortcut])
        return layers.ReLU(name=f"{name}_out")(y)

    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(2, name="stem_pool")(x)  # 14×14
    x = block(x, 16, "block1")
    x = block(x, 32, "block2", stride=2)  # 7×7
    x = block(x, 32, "block3")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="output")(x)
    return tf.keras.Model(inputs, outputs, name="small_resnet")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall_start = time.perf_counter()
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])

    import tensorflow as tf

    from objectives.build import build_model
    from objectives.rewrite import analyze, offered_factorizations, transform
    from objectives.train import accuracy, compile_model
    from search_spaces import Candidate
    from search_spaces.families import get_family
    from studies.datasets import as_float, load_dataset

    splits = load_dataset("fashion_mnist", split_seed=0)
    x, y = splits.x_train, splits.y_train
    if args.subset:
        x, y = x[: args.subset], y[: args.subset]
    x_test, y_test = splits.x_test, splits.y_test
    steps = math.ceil(len(x) / BATCH_SIZE)

    def log(message: str) -> None:
        elapsed = time.perf_counter() - wall_start
        print(f"[{elapsed:6.0f}s] {message}", file=sys.stderr, flush=True)

    def fit(model, epochs: int) -> float:
        """Seeded fit; seconds per epoch."""
        tf.keras.utils.set_random_seed(args.seed)
        start = time.perf_counter()
        model.fit(as_float(x), y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0)
        return (time.perf_counter() - start) / epochs

    def fine_tune(model) -> float:
        schedule = tf.keras.optimizers.schedules.CosineDecay(FINE_TUNE_LR, steps, alpha=0.0)
        model.compile(
            optimizer=tf.keras.optimizers.Adam(schedule),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return fit(model, 1)

    parents = {
        "lenet5_caffe": (
            lambda: build_model(
                family=get_family("lenet5_caffe"), candidate=Candidate(),
                input_shape=splits.input_shape, num_classes=splits.num_classes, seed=args.seed,
            ),
            LENET_FACTORIZE, "unguided",
        ),
        "small_resnet": (
            lambda: small_resnet(splits.input_shape, splits.num_classes, args.seed),
            RESNET_FACTORIZE, "guided",
        ),
    }
    rows, notes = [], []
    for parent_name, (make, conv, mode) in parents.items():
        parent = make()
        compile_model(parent)  # Adam 1e-3, cross-entropy on logits, as objectives/train.py
        secs = fit(parent, args.epochs_parent)
        parent_acc = accuracy(parent, x_test, y_test)
        log(f"{parent_name}: {parent.count_params():,} params, test acc {parent_acc:.4f}, "
            f"{secs:.1f} s/epoch")
        rows.append((parent_name, f"parent ({args.epochs_parent} epochs)", "trained",
                     parent.count_params(), parent_acc, None, secs))
        analysis = analyze(parent, trained=True)
        offered = offered_factorizations(analysis, width=1.0, mode=mode)
        if conv not in offered:
            raise SystemExit(f"{conv} is not offered for {parent_name} ({mode}): {offered}")
        identity = accuracy(transform(analysis, width=1.0, inherit=True, seed=args.seed),
                            x_test, y_test)
        notes.append(f"`{parent_name}` width 1.0 inherited, unchanged: test acc {identity:.4f} "
                     f"(parent {parent_acc:.4f}).")
        children = (("width 0.5", 0.5, ()), ("width 0.75", 0.75, ()),
                    (f"width 1.0, {conv} factorized", 1.0, (conv,)))
        for label, width, factorize in children:
            for inherit in (True, False):
                child = transform(analysis, width=width, factorize=factorize, inherit=inherit,
                                  seed=args.seed)
                before = accuracy(child, x_test, y_test)
                secs = fine_tune(child)
                after = accuracy(child, x_test, y_test)
                init = "inherited" if inherit else "scratch"
                log(f"{parent_name} / {label} / {init}: {child.count_params():,} params, "
                    f"{before:.4f} -> {after:.4f} ({secs:.1f} s/epoch)")
                rows.append((parent_name, label, init, child.count_params(), before, after, secs))
        # The parent's weights must be untouched by its children's fine-tuning.
        assert accuracy(parent, x_test, y_test) == parent_acc

    wall = time.perf_counter() - wall_start
    data = f"first {len(x):,}" if args.subset else f"all {len(x):,}"
    lines = [
        "```",
        command,
        "```",
        "",
        f"Fashion-MNIST (`{splits.source}`, split seed 0): {data} training images, test split "
        f"{len(y_test):,} images; seed {args.seed}; TF {tf.__version__}, CPU.",
        f"Parents: trained from scratch for {args.epochs_parent} epochs, batch {BATCH_SIZE}, "
        "Adam 1e-3 constant (`objectives.train.compile_model`). Children: "
        "`objectives.rewrite.transform(inherit=True|False, seed=...)`; `inherited` = top-L1 "
        "channels of the trained parent (truncated SVD for the factorized conv, "
        "no activation between the halves), `scratch` = same architecture, fresh init. "
        f"Fine-tuning: 1 epoch, batch {BATCH_SIZE}, Adam, learning rate {FINE_TUNE_LR:g} "
        f"cosine-decayed to 0 over the epoch's {steps} steps, same seed (same batch order) for "
        "both arms. Accuracy: top-1 on the test split. s/epoch: wall seconds of one training "
        "epoch on a shared 2-core CPU.",
        "",
        "| parent | child | init | params | test acc after transform | "
        "test acc after 1 epoch | s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for parent_name, label, init, params, before, after, secs in rows:
        after_s = "—" if after is None else f"{after:.4f}"
        lines.append(f"| {parent_name} | {label} | {init} | {params:,} | {before:.4f} | "
                     f"{after_s} | {secs:.1f} |")
    lines += ["", "Inherited minus scratch, after 1 epoch:", ""]
    by_key = {(r[0], r[1], r[2]): r for r in rows}
    for (parent_name, label, init), row in by_key.items():
        if init == "inherited":
            scratch = by_key[(parent_name, label, "scratch")]
            lines.append(f"- {parent_name}, {label}: {100 * (row[5] - scratch[5]):+.2f} points")
    lines += ["", "Checks:", "", *(f"- {n}" for n in notes), "",
              f"Total wall time: {wall:.0f} s ({wall / 60:.1f} min)."]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
