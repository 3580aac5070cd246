"""What a device needs from `export`: the TFLite file it runs, that file as C++ source for
TensorFlow Lite for Microcontrollers, and the card's account of how to feed it.

- The device file. For a TFLite trial it is the exported artifact itself, with the figures
  the trial recorded for it (`objectives.device`). An `.epr` file runs in no interpreter,
  so for an EPR trial the decoded model (`objectives.epr.load`) is converted in the storage
  mode the user names (`export --device-mode`: `int8` by default, calibrated on the
  study's own training split as the pipeline calibrates, or `float32`), written as
  `model_device.tflite`, and measured here: flash, TFLM's arena, host latency, and its
  own validation accuracy.
- `model_data.cc` / `model_data.h` (`objectives.c_array`): the device file as a 16-byte
  aligned array, and `kTensorArenaSize`, the smallest arena in which TFLM allocates and
  runs it (`objectives.micro.minimal_arena`), left out where TFLM does not run the model.
  Not the `ram_bytes` figure itself: that is TFLM's arena total once allocation is done,
  and planning briefly needs more (an arena of `ram_bytes` fails on small models).
- The card's sections `input` / `output` (shape, dtype, scale, zero point:
  `objectives.tflite.io_quantization`), `preprocessing` (how the study's loader scaled the
  pixels), `class_names` (index order) and `ops` (the `MicroMutableOpResolver` calls:
  `objectives.micro`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from definitions.errors import UsageError
from definitions.vocabulary import DEVICE_MODES
from objectives import c_array, micro, tflite
from objectives.device import measure as measure_device
from objectives.pipeline import (
    LATENCY_RUNS,
    REPRESENTATIVE_EXAMPLES,
    representative_draw,
    sha256_file,
)
from optimizer.store.trial import StoredTrial
from studies import datasets, user_data

if TYPE_CHECKING:
    import optuna

    from studies.datasets import Splits

#: The modes `export --device-mode` converts a decoded EPR model to (TFLM runs both).
DEVICE_FILE = "model_device.tflite"
#: Every model file an export may write; an export removes those it did not write, so a
#: folder exported into twice holds one model (`optimizer.commands.staging`).
MODEL_FILES: tuple[str, ...] = ("model.epr", "model.tflite", DEVICE_FILE, "model_data.cc",
                                "model_data.h", "model.keras")
#: The device figures of a TFLite file, as `objectives.device` records them on a trial.
FIGURE_KEYS: tuple[str, ...] = ("flash_bytes", "ram_bytes", "ram_method",
                                "planner_ram_bytes", "latency_ms", "ram_note")


@dataclass(frozen=True)
class DeviceFile:
    """The TFLite file a device runs, what it was made from, and its measured figures.

    `figures` holds `FIGURE_KEYS` (as recorded on the trial, or measured at export for a
    converted EPR model); `validation_accuracy` is the file's own on the study's split."""

    path: Path
    quantization: str
    made_from: str
    figures: dict[str, Any]
    validation_accuracy: float

    @property
    def flatbuffer(self) -> bytes:
        """The file's bytes, read when asked (a few KB to a few MB)."""
        return self.path.read_bytes()


def resolve_device_mode(*, quantization: str, device_mode: str | None) -> str | None:
    """The mode the device file of an EPR trial is converted to (`int8` unless named);
    None for a TFLite trial, whose artifact is the device file already. `UsageError` when
    `--device-mode` asks another mode of a TFLite trial."""
    if device_mode is not None and device_mode not in DEVICE_MODES:
        raise UsageError(f"--device-mode must be one of {', '.join(DEVICE_MODES)}, "
                         f"not {device_mode!r}")
    if quantization == "epr":
        return device_mode or "int8"
    if device_mode not in (None, quantization):
        raise UsageError(
            f"this trial's artifact is a {quantization} TFLite file, which is what a device "
            f"runs; --device-mode {device_mode} applies to epr trials only (pick a trial "
            f"stored as {device_mode}, or drop --device-mode)"
        )
    return None


def device_file(
    *, trial: optuna.trial.FrozenTrial, artifact: Path, out: Path, device_mode: str | None,
    splits: Splits, seed: int,
) -> DeviceFile:
    """The artifact with its recorded figures (a TFLite trial, `device_mode` None), or the
    decoded EPR `artifact` converted to `device_mode` and written as `out/DEVICE_FILE`."""
    if device_mode is None:
        stored = StoredTrial.from_trial(trial)
        return DeviceFile(
            path=artifact, quantization=str(stored.quantization),
            made_from="the trial's artifact", validation_accuracy=trial.values[0],
            figures={key: getattr(stored, key) for key in FIGURE_KEYS},
        )
    flatbuffer = convert_decoded(artifact, device_mode=device_mode, splits=splits, seed=seed)
    target = Path(out) / DEVICE_FILE
    tflite.save(flatbuffer, target)
    figures = measure_device(flatbuffer, runs=LATENCY_RUNS, seed=seed).as_attrs()
    return DeviceFile(
        path=target, quantization=device_mode,
        made_from=f"{artifact.name} decoded, converted to {device_mode} TFLite",
        figures={key: figures.get(key) for key in FIGURE_KEYS},
        validation_accuracy=tflite.evaluate(flatbuffer, splits.x_val, splits.y_val),
    )


def convert_decoded(artifact: Path, *, device_mode: str, splits: Splits, seed: int) -> bytes:
    """The decoded EPR model as a `device_mode` flatbuffer; int8 takes and gives int8 and
    is calibrated on the training examples the pipeline would draw (`representative_draw`
    with the study's seed). A failed conversion is a `UsageError` naming the other mode."""
    from objectives import epr  # imports TensorFlow

    calibration = None
    if device_mode == "int8":
        rows = representative_draw(splits.y_train, n=REPRESENTATIVE_EXAMPLES, seed=seed)
        calibration = splits.x_train[rows]
    try:
        return tflite.convert_for_device(epr.load(artifact), quantization=device_mode,
                                         representative_x=calibration)
    except tflite.ConversionError as error:
        other = next(mode for mode in DEVICE_MODES if mode != device_mode)
        raise UsageError(f"the decoded model does not convert to {device_mode}: {error}; "
                         f"try --device-mode {other}") from None


def arena_size(device: DeviceFile) -> tuple[int | None, str]:
    """`kTensorArenaSize` for the device file and the comment that goes with it: the
    smallest arena TFLM allocates and invokes it in (`objectives.micro.minimal_arena`),
    or None, with the reason, where TFLM does not run it."""
    figures = device.figures
    arena = micro.minimal_arena(device.flatbuffer)
    if arena is not None:
        return arena, (
            "The smallest tensor arena in which TensorFlow Lite for Microcontrollers "
            "allocates and runs this model, measured with tflite-micro on a 64-bit host "
            f"(its arena total once allocated is {figures.get('ram_bytes')} bytes; planning "
            "needs the rest for a moment)."
        )
    return None, (
        f"TensorFlow Lite for Microcontrollers does not run this {device.quantization} "
        f"model (tflite-micro could not allocate and invoke it), so no arena size is given; "
        f"its ram_bytes in the model card ({figures.get('ram_bytes')} bytes, "
        f"{figures.get('ram_method')}) is an estimate no runtime confirmed."
    )


def write_c_array(device: DeviceFile, *, out: Path, study_name: str,
                  trial_number: int) -> dict[str, Any]:
    """Writes `model_data.cc` / `.h` for the device file; returns the card's `c_array`."""
    data = device.flatbuffer
    arena, note = arena_size(device)
    comment = (f"Generated by `python -m optimizer export` from {device.path.name} "
               f"({len(data)} bytes, sha256 {sha256_file(device.path)}): trial "
               f"{trial_number} of study {study_name}.")
    source, header = c_array.write(data, directory=out, arena_bytes=arena, arena_note=note,
                                   comment=comment)
    return {
        "files": [source.name, header.name],
        "array": c_array.ARRAY_NAME,
        "length_constant": c_array.LENGTH_NAME,
        "length": len(data),
        "alignment": c_array.ALIGNMENT,
        "tensor_arena_size": arena,
        "tensor_arena_note": note,
    }


def device_card(device: DeviceFile, *, record: dict[str, Any], splits: Splits
                ) -> dict[str, Any]:
    """The card's sections about the device file: `device_file`, `input`, `output`,
    `preprocessing`, `class_names`, `ops`."""
    data = device.flatbuffer
    io = tflite.io_quantization(data)
    return {
        "device_file": {
            "file": device.path.name,
            "quantization": device.quantization,
            "made_from": device.made_from,
            "sha256": sha256_file(device.path),
            **device.figures,
            "validation_accuracy": device.validation_accuracy,
        },
        "input": io["input"],
        "output": io["output"],
        "preprocessing": preprocessing(record, source=splits.source, model_input=io["input"]),
        "class_names": class_names(record, splits=splits),
        "ops": micro.operators(data),
    }


def preprocessing(record: dict[str, Any], *, source: str,
                  model_input: dict[str, Any]) -> dict[str, str]:
    """How an image becomes the model's input: the loader's pixel scaling, then, for an
    int8 input, its quantization with the input's scale and zero point."""
    steps = {"pixels": pixel_scaling(record, source=source),
             "layout": "NHWC: (1, height, width, channels), as the input's shape"}
    if model_input["dtype"] == "int8":
        steps["quantize"] = ("int8 = clamp(round(x / input.scale) + input.zero_point, "
                             "-128, 127)")
    return steps


def pixel_scaling(record: dict[str, Any], *, source: str) -> str:
    """What the study's loader did to the pixels (`studies.datasets`,
    `studies.user_data`), in one line; "as the training data given" when it is unknown."""
    top = datasets.UINT8_PIXEL_MAX
    if record.get("data_reference"):
        read = record.get("folder_images")
        if source.startswith("folder:") and read:
            height, width = read["size"]
            mode = user_data.IMAGE_MODES[read["channels"]]
            return (f"float32 = pixel / {top}, each image read as {mode} "
                    f"and resized to {height}×{width} ({read['interpolation']}, as Keras' "
                    "image_dataset_from_directory)")
        if source.startswith("folder:"):
            return (f"float32 = uint8 pixel / {top} (read as grayscale when "
                    "no image has colour, else RGB; alpha dropped)")
        return (f"float32 = integer pixel (0..{top}) / {top} "
                "when the data's images are integers; floating-point images as given, "
                "not rescaled")
    pixel_max = datasets.PIXEL_MAX.get(str(record.get("dataset")))
    if pixel_max is None:
        return "as the training data given"
    kind = "uint8" if pixel_max == top else "integer"
    return f"float32 = {kind} pixel (0..{pixel_max}) / {pixel_max}"


def class_names(record: dict[str, Any], *, splits: Splits) -> list[str]:
    """The class of each output index: the names the study recorded (a built-in dataset's,
    an image folder's subfolders), else those its data carry now (`Splits.class_names`),
    else the labels "0".."K-1"."""
    for names in (record.get("class_names"), splits.class_names):
        if names and len(names) == splits.num_classes:
            return [str(name) for name in names]
    return [str(label) for label in range(splits.num_classes)]
