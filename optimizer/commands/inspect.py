"""`inspect`: the per-layer rule table and capacity summary of one candidate model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from definitions.errors import UsageError
from definitions.sources import classify
from definitions.vocabulary import TFLITE_MODES
from objectives import capacity, device, rewrite, tflite
from objectives.build import build_model
from objectives.keras_files import file_format
from objectives.parent import (
    check_graph,
    check_shapes,
    output_kind,
    own_model,
    source_is_hypermodel,
)
from objectives.pipeline import distinct_weights, float32_file
from optimizer.commands.tables import format_table
from search_spaces.candidate import Candidate
from search_spaces.families import FAMILIES, get_family
from studies.datasets import DATASET_SHAPES
from studies.references import ParentSource, parent_source, resolve_study

if TYPE_CHECKING:
    from tensorflow import keras

    from search_spaces.families import Family

MAX_WIDTH = 4.0
#: The TFLite modes whose flash, RAM and latency `inspect` prints, and the timed runs.
DEVICE_RUNS = 20


def parse_shape(text: str) -> tuple[int, int, int]:
    """`224x224x3` → (224, 224, 3)."""
    try:
        h, w, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input {text!r} is not HxWxC, e.g. 28x28x1") from None
    if min(h, w, c) < 1:
        raise UsageError(f"--input {text!r} has a dimension below 1")
    return h, w, c


def _flag(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def inspect_command(args: argparse.Namespace) -> int:
    """Builds the candidate's model and prints its rule table and capacity summary."""
    if args.study is not None:
        study = resolve_study(args.study)
        if not study.family:
            if args.input is not None:
                raise UsageError("--input goes with --model; a study's shape comes from "
                                 "its data")
            return _inspect_parent(parent_source(
                study, trust_code=args.trust_model_code), args)
        family = get_family(study.family)
        input_shape = study.input_shape
        if args.input is not None:
            raise UsageError("--input goes with --model; a study's shape comes from its dataset")
        num_classes = DATASET_SHAPES[study.dataset][1]
    elif args.model not in FAMILIES and (":" in args.model or "." in args.model
                                         or "/" in args.model):
        kind = "file" if classify(args.model).kind == "file" else "function"
        return _inspect_parent(ParentSource(kind=kind, target=args.model,
                                            trust_code=args.trust_model_code), args)
    else:
        family = get_family(args.model)
        input_shape = parse_shape(args.input or "28x28x1")
        num_classes = args.classes
    if not 0 < args.width <= MAX_WIDTH:
        raise UsageError(f"--width {args.width} is out of range (0, {MAX_WIDTH}]")
    candidate = Candidate(width=args.width, factorize=tuple(args.factorize))
    modes = () if args.no_device else TFLITE_MODES
    print(inspection_text(family=family, candidate=candidate, input_shape=input_shape,
                          num_classes=num_classes, device_modes=modes))
    return 0


def _inspect_parent(source: ParentSource, args: argparse.Namespace) -> int:
    """`inspect` of the user's own model: what the rewriter may change, what it keeps."""
    if source_is_hypermodel(source):
        raise UsageError(f"{source.target} is a hypermodel: every trial builds its own "
                         "model from its hp_* values, so there is no one parent to inspect")
    if not 0 < args.width <= MAX_WIDTH:
        raise UsageError(f"--width {args.width} is out of range (0, {MAX_WIDTH}]")
    model = own_model(source)
    check_graph(model)  # no data here: checked against its own input and class count
    check_shapes(model, input_shape=tuple(model.inputs[0].shape[1:]),
                 num_classes=int(model.outputs[0].shape[-1]))
    if source.kind == "file":
        print(file_line(Path(source.target)))
    print(parent_text(model, width=args.width, factorize=tuple(args.factorize),
                      device_modes=() if args.no_device else TFLITE_MODES))
    return 0


def file_line(path: Path) -> str:
    """What wrote a model file, and whether it was translated from a newer Keras."""
    fmt = file_format(path)
    return (f"file: {path.name}, {fmt.container} format, written by Keras "
            f"{fmt.keras_version or '(not recorded)'}"
            + (" (translated into Keras 2.14 with its weights)" if fmt.translated else ""))


def parent_text(model: keras.Model, *, width: float, factorize: tuple[str, ...],
                device_modes: tuple[str, ...] = ()) -> str:
    """What `analyze` finds in a user's model and the child at `width`: per layer its
    channels before and after, the factorizations offered by the rule, the layers kept as
    they are (and why), the output kind, and the child's device figures."""
    analysis = rewrite.analyze(model, trained=False)
    offered = set(rewrite.offered_factorizations(analysis, width=width, mode="guided"))
    child = rewrite.transform(analysis, width=width, factorize=factorize, inherit=False,
                              seed=0)
    rows = [[p.name, p.kind, p.channels, analysis.channels(p.group, width=width),
             "yes" if p.scalable else "no (output)" if p.name in analysis.outputs else "no",
             "yes" if p.name in offered else ""]
            for p in analysis.prunable]
    table = format_table(["layer", "type", "channels", f"at width {width:g}", "scalable",
                          "factorization pays"], rows)
    lines = [
        f"model {model.name}: input {'x'.join(str(d) for d in model.input_shape[1:])}, "
        f"{model.outputs[0].shape[-1]} classes, outputs {output_kind(model)}",
        f"parameters: {model.count_params():,} -> {child.count_params():,} at width {width:g}"
        f"{', factorized: ' + ', '.join(factorize) if factorize else ''}",
    ]
    if analysis.blocked:
        lines.append("kept as they are (the search does not change them):")
        lines += [f"  {name}: {reason}" for name, reason in analysis.blocked]
    else:
        lines.append("every layer can be rewritten")
    text = table + "\n\n" + "\n".join(lines)
    if device_modes:
        text += "\n\n" + device_table(child, modes=device_modes)
    return text


def inspection_text(
    *, family: Family, candidate: Candidate, input_shape: tuple[int, int, int], num_classes: int,
    device_modes: tuple[str, ...] = (),
) -> str:
    """The table and summary `inspect` prints, then the device figures of `device_modes`."""
    model = build_model(
        family=family, candidate=candidate, input_shape=input_shape, num_classes=num_classes
    )
    rows = []
    for r in capacity.layer_rows(model):
        rows.append(
            [
                r.name, r.kind, r.n, r.m, r.c,
                None if r.m_over_c is None else f"{r.m_over_c:.2f}",
                r.params, r.p0, r.p1, _flag(r.rule), _flag(r.pays),
                "yes" if r.factorized else "",
            ]
        )
    table = format_table(
        ["layer", "type", "n", "m", "c", "m/c", "params", "P0", "P1", "n>1+m/c",
         "P1<P0", "factorized"],
        rows,
    )
    params = model.count_params()
    summary = [
        f"family {family.name}, input {'x'.join(map(str, input_shape))}, width {candidate.width}, "
        f"factorized: {', '.join(candidate.factorize) or 'none'}",
        f"total parameters: {params:,}",
        f"float32 bytes: {4 * params:,}",
        f"embedding dims: {capacity.embedding_dims(model):,}",
        f"feature compression ratio: {capacity.feature_compression_ratio(model):.1f}",
        f"head MEC: {capacity.head_mec_bits(model):,} bits",
    ]
    if len(rows) > 40:
        table = "\n".join(table.splitlines()[:42]) + f"\n... ({len(rows) - 40} more layers)"
    text = table + "\n\n" + "\n".join(summary)
    if device_modes:
        text += "\n\n" + device_table(model, modes=device_modes)
    return text


def device_table(model: keras.Model, *, modes: tuple[str, ...]) -> str:
    """Flash, RAM and host latency of the model's TFLite file in each mode, untrained: a
    freshly built model (its weights made distinct, `pipeline.distinct_weights`) has the
    same file size, tensor arena and operator work as a trained one (int8 is calibrated on
    random inputs, which sets scales, not sizes) — the figures a search checks budgets on
    before it trains."""
    rng = np.random.default_rng(0)
    calibration = rng.random((8, *model.input_shape[1:]), dtype=np.float32)
    rows = []
    files: dict[str, bytes] = {}
    references: dict[str, bytes | None] = {}
    with distinct_weights(model, seed=0):  # the sizes a trained model's files have
        for mode in modes:
            files[mode] = tflite.convert_for_device(model, quantization=mode,
                                                    representative_x=calibration)
            references[mode] = float32_file(model, quantization=mode)
    notes = []
    for mode, flatbuffer in files.items():
        figures = device.measure(flatbuffer, runs=DEVICE_RUNS, float32_file=references[mode])
        rows.append([mode, f"{figures.flash_bytes:,}", f"{figures.ram_bytes:,}",
                     figures.ram_method, f"{figures.latency_ms:.3f}"])
        if mode == "float16":
            notes.append(f"* {device.FLOAT16_NOTE}")
    notes.append("* RAM: the tensor arena TFLM needs (measured by tflite-micro; estimated for "
                 "the modes it does not run, " + ", ".join(device.NOT_ON_TFLM) + ")")
    return (f"device figures (untrained; {capacity.macs(model):,} MACs per inference; host "
            "latency: this machine's CPU, 1 thread, batch 1, not a device's):\n"
            + format_table(["mode", "flash bytes", "RAM bytes", "RAM method",
                            "host latency ms"], rows) + "\n" + "\n".join(notes))
