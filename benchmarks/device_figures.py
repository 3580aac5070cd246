"""Device figures (flash, RAM by both methods, host latency) of LeNet5-Caffe in every TFLite mode.

Builds the built-in `lenet5_caffe` family untrained on 28×28×1 inputs at each `--widths`
multiplier (weights do not change any figure here but int8's calibration, which random
normal inputs serve), converts it to the four TFLite modes, and measures each flatbuffer
with `objectives.device.measure`: flash (the file), RAM as TFLite Micro's own arena
(activations + bookkeeping) where it runs the model and always as the greedy planner's
activations alone, and the median single-inference latency on the host CPU (one
thread, batch 1). About 30 s on 2 cores.

    .venv/bin/python benchmarks/device_figures.py --widths 1 0.5 --runs 50

Prints a markdown table (and writes it to --out when given).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--runs", type=int, default=50, help="timed inferences per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np

    from objectives import device, tflite
    from objectives.build import build_model
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES

    representative_x = np.random.default_rng(args.seed).standard_normal(
        (64, 28, 28, 1)).astype(np.float32)
    rows = [
        "| width | mode | flash bytes | RAM bytes (method) | TFLM arena bytes "
        "| planner bytes | latency ms |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for width in args.widths:
        model = build_model(
            family=FAMILIES["lenet5_caffe"], candidate=Candidate(width=width),
            input_shape=(28, 28, 1), num_classes=10, seed=args.seed,
        )
        for mode in tflite.TFLITE_MODES:
            flatbuffer = tflite.convert(model, quantization=mode,
                                        representative_x=representative_x)
            figures = device.measure(flatbuffer, runs=args.runs, seed=args.seed)
            tflm = (f"{figures.ram_bytes:,}" if figures.ram_method == "tflite-micro"
                    else "—")
            rows.append(
                f"| {width:g} | {mode} | {figures.flash_bytes:,} | {figures.ram_bytes:,} "
                f"({figures.ram_method}) | {tflm} | {figures.planner_ram_bytes:,} "
                f"| {figures.latency_ms:.3f} |"
            )
            if figures.ram_note:
                notes.append(f"- width {width:g}, {mode}: {figures.ram_note}")
    text = "\n".join([*rows, *([""] if notes else []), *notes]) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
