"""Accuracy and bytes of every quantization mode of LeNet5-Caffe, with and without EPR (issue 5).

Trains `lenet5_caffe` on Fashion-MNIST twice from the same initialization: plain, and
EPR-compressible with `--epr-lambda` (trained from scratch with the penalty, as a trial
does). Each trained model is turned into the artifact of every mode — the four TFLite
flatbuffers (for EPR: converted from `epr.decompress(epr.compress(model))`, the weights
the EPR file holds) and, for the EPR model, the `.epr` file itself — and the ARTIFACT is
evaluated on the test split: the TFLite interpreter, or the model loaded from the `.epr`
file. Byte figures come from `objectives.size` (payload, file, gzip -9).

Also timed, side by side on the validation split: the trial's TFLite evaluation
(`tflite.evaluate`, batched, interpreter construction included) against Keras
(`objectives.train.accuracy`, `model.predict` with batch 512) on the float model the
flatbuffer came from. One warm-up call each, then `--repeats` alternating calls; medians.
TFLite runs with `--tflite-threads` interpreter threads (1, the default of `tflite.predict`).

    .venv/bin/python benchmarks/quantization_modes.py --epochs 3 --train-subset 0 \\
        --epr-lambda 10 --repeats 7 --out /tmp/quantization_modes.md

Prints a markdown table (and writes it to --out when given). `--epr-lambda 0` skips EPR.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=0,
                        help="train on the first N training images (0: all 54,000)")
    parser.add_argument("--epr-lambda", type=float, default=10.0,
                        help="λ of the EPR model; 0 skips the EPR half")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7, help="timed evaluations per side")
    parser.add_argument("--tflite-threads", type=int, default=1,
                        help="interpreter threads for the timed TFLite evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser.parse_args(argv)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(keras_eval, tflite_eval, *, repeats: int) -> tuple[float, float]:
    """Median seconds of Keras and TFLite evaluation, after one warm-up call each."""
    keras_eval()
    tflite_eval()
    keras_s, tflite_s = [], []
    for _ in range(repeats):
        keras_s.append(_timed(keras_eval))
        tflite_s.append(_timed(tflite_eval))
    return statistics.median(keras_s), statistics.median(tflite_s)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    from objectives import tflite
    from objectives.build import build_model
    from objectives.size import artifact_figures, tflite_payload_bytes
    from objectives.train import accuracy, train
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES
    from studies.datasets import load_dataset

    epr = None
    if args.epr_lambda > 0:
        try:
            from objectives import epr
        except ImportError as error:
            print(f"EPR half skipped: objectives.epr not importable ({error})", file=sys.stderr)

    splits = load_dataset("fashion_mnist")
    x, y = splits.x_train, splits.y_train
    if args.train_subset:
        x, y = x[: args.train_subset], y[: args.train_subset]
    tmp = Path(tempfile.mkdtemp(prefix="quantization_modes_"))

    def fresh() -> tf.keras.Model:
        return build_model(
            family=FAMILIES["lenet5_caffe"], candidate=Candidate(),
            input_shape=splits.input_shape, num_classes=splits.num_classes, seed=args.seed,
        )

    def fit(model: tf.keras.Model) -> float:
        record = train(model, x=x, y=y, x_val=splits.x_val, y_val=splits.y_val,
                       epochs=args.epochs, batch_size=args.batch_size, accuracy_floor=0.0,
                       seed=args.seed)
        return record.seconds

    rows: list[dict] = []

    def tflite_rows(setting: str, model: tf.keras.Model) -> None:
        keras_test = accuracy(model, splits.x_test, splits.y_test)
        for mode in tflite.TFLITE_MODES:
            start = time.perf_counter()
            flatbuffer = tflite.convert(model, quantization=mode, representative_x=x)
            convert_s = time.perf_counter() - start
            path = tmp / f"{setting.split()[0].lower()}_{mode}.tflite"
            tflite.save(flatbuffer, path)
            stored = path.read_bytes()
            figures = artifact_figures([path], payload_bytes=tflite_payload_bytes(stored))
            keras_s, tflite_s = side_by_side(
                lambda: accuracy(model, splits.x_val, splits.y_val),
                lambda stored=stored: tflite.evaluate(stored, splits.x_val, splits.y_val,
                                                     num_threads=args.tflite_threads),
                repeats=args.repeats,
            )
            rows.append({
                "setting": setting, "mode": mode,
                "acc": tflite.evaluate(stored, splits.x_test, splits.y_test),
                "keras_acc": keras_test, "figures": figures, "convert_s": convert_s,
                "keras_s": keras_s, "tflite_s": tflite_s,
            })
            print(f"done {setting} {mode}: {rows[-1]['acc']:.4f}, {figures}", file=sys.stderr,
                  flush=True)

    plain = fresh()
    params = plain.count_params()
    plain_train_s = fit(plain)
    tflite_rows("plain", plain)

    epr_train_s = None
    if epr is not None:
        tf.keras.backend.clear_session()
        compressible = epr.make_compressible(fresh(), epr_lambda=args.epr_lambda)
        epr_train_s = fit(compressible)
        compressed = epr.compress(compressible)
        path = tmp / "epr.epr"
        epr.save(compressed, path)
        loaded = epr.load(path)
        figures = artifact_figures([path], payload_bytes=epr.payload_bytes(compressed))
        setting = f"EPR λ={args.epr_lambda:g}"
        rows.append({
            "setting": setting, "mode": "epr",
            "acc": accuracy(loaded, splits.x_test, splits.y_test),
            "keras_acc": accuracy(compressible, splits.x_test, splits.y_test),
            "figures": figures, "convert_s": None, "keras_s": None, "tflite_s": None,
        })
        tflite_rows(setting, epr.decompress(compressed))

    subset = f"the first {len(x):,}" if args.train_subset else f"all {len(x):,}"
    lines = [
        f"`lenet5_caffe` ({params:,} parameters) on Fashion-MNIST (source `{splits.source}`): "
        f"trained on {subset} training images for {args.epochs} epochs (batch "
        f"{args.batch_size}, Adam 1e-3, from scratch, seed {args.seed}; plain "
        f"{plain_train_s:.0f} s"
        + (f", EPR {epr_train_s:.0f} s" if epr_train_s is not None else "")
        + f"); test split {len(splits.y_test):,} images; validation split "
        f"{len(splits.y_val):,} images; int8 calibrated on 200 training images; evaluation "
        f"timed as the median of {args.repeats} alternating calls after a warm-up, TFLite "
        f"with {args.tflite_threads} interpreter thread(s), batch 1024; Keras batch 512.",
        "",
        "| model | mode | test acc (artifact) | test acc (Keras) | payload_bytes | "
        "artifact_bytes | artifact_gzip_bytes | convert s | val eval Keras s | "
        "val eval TFLite s | TFLite / Keras |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r["figures"]
        timing = ("— | — | —" if r["keras_s"] is None else
                  f"{r['keras_s']:.2f} | {r['tflite_s']:.2f} | {r['tflite_s'] / r['keras_s']:.2f}×")
        convert_s = "—" if r["convert_s"] is None else f"{r['convert_s']:.1f}"
        lines.append(
            f"| {r['setting']} | {r['mode']} | {r['acc']:.4f} | {r['keras_acc']:.4f} | "
            f"{f.payload_bytes:,} | {f.artifact_bytes:,} | {f.artifact_gzip_bytes:,} | "
            f"{convert_s} | {timing} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
