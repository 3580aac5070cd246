"""`export` writes what a microcontroller build uses, and it runs there.

One module-scoped CLI run of a digits study whose three trials are its reference points
(an int8, an EPR and a float16 candidate of `tiny_cnn`; smoke budget, about 1 min), then
one export of each. Checked: the C array is the .tflite file byte for byte; the int8 file
runs in TensorFlow Lite for Microcontrollers' own interpreter (`tflite_micro`) in exactly
the card's arena, fed the card's quantization, and scores the card's accuracy; the card
names the operators to register, the input and output quantization and the class names;
an EPR trial gets a `model_device.tflite` with its own measured figures; and a second
export into the same folder leaves no model file of the first behind.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import reference_study_run, run_cli

MODEL_FILES = {"model.epr", "model.tflite", "model_device.tflite", "model_data.cc",
               "model_data.h"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(study file, run dir, {quantization: trial}, study) of a finished 3-trial run."""
    return reference_study_run(tmp_path_factory.mktemp("device"), name="device_digits",
                               candidates=['Candidate(width=0.5, quantization="int8")',
                                           'Candidate(width=1.0, epr_lambda=0.5, '
                                           'quantization="epr")',
                                           'Candidate(width=0.25, quantization="float16")'])


def _export(run, trial, out: Path, *extra: str):
    study_file, run_dir, _, _ = run
    return run_cli("export", "--study", str(study_file), "--smoke", "--run-dir", str(run_dir),
                   "--trial", str(trial.number), "--out", str(out), *extra,
                   cwd=study_file.parent)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """{quantization: (out folder, card)} of one export of each trial."""
    _, _, trials, _ = run
    folders = {}
    for mode, trial in trials.items():
        out = tmp_path_factory.mktemp(f"export-{mode}")
        done = _export(run, trial, out)
        assert done.returncode == 0, done.stderr[-3000:]
        folders[mode] = (out, json.loads((out / "model_card.json").read_text()))
    return folders


@pytest.fixture(scope="module")
def splits(run):
    from optimizer.engine.data import load_recorded_data

    return load_recorded_data(run[3], data_dir=None)


def _array_bytes(source: str) -> bytes:
    body = re.search(r"g_model_data\[\] = \{(.*?)\};", source, re.S)
    return bytes(int(token, 16) for token in re.findall(r"0x([0-9a-f]{2})", body[1]))


@pytest.mark.parametrize("mode", ["int8", "epr", "float16"])
def test_the_c_array_is_the_device_file_byte_for_byte(exported, mode):
    out, card = exported[mode]
    device = (out / card["device_file"]["file"]).read_bytes()
    source = (out / "model_data.cc").read_text()
    assert _array_bytes(source) == device
    length = re.search(r"const unsigned int g_model_data_len = (\d+);", source)
    assert int(length[1]) == len(device) == card["c_array"]["length"]
    assert re.search(r"^alignas\(16\) const unsigned char g_model_data\[\] = \{$", source, re.M)


#: Builds TFLM's interpreter for the model on stdin in an arena of argv[1] bytes, in a
#: child: TFLM may crash outright on an arena too small, not only raise.
TFLM_ALLOCATES = """\
import sys
from tflite_micro.python.tflite_micro import runtime
runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1]))
"""


def _tflm_allocates(data: bytes, arena: int) -> bool:
    child = subprocess.run([sys.executable, "-c", TFLM_ALLOCATES, str(arena)], input=data,
                           capture_output=True, timeout=120, check=False)
    return child.returncode == 0


def test_the_int8_arena_constant_is_the_smallest_arena_tflm_runs_it_in(run, exported):
    _, _, trials, _ = run
    out, card = exported["int8"]
    attrs = trials["int8"].user_attrs
    arena = card["c_array"]["tensor_arena_size"]
    assert attrs["ram_method"] == "tflite-micro"
    # TFLM's arena total once allocated is a lower bound: planning needs a little more
    assert arena >= attrs["ram_bytes"] > 0 and arena % 16 == 0
    assert f"constexpr int kTensorArenaSize = {arena};" in (out / "model_data.h").read_text()
    data = (out / "model.tflite").read_bytes()
    assert _tflm_allocates(data, arena) and not _tflm_allocates(data, arena - 16)


def test_the_int8_export_runs_in_tflite_micro_in_the_cards_arena(exported, splits):
    from tflite_micro.python.tflite_micro import runtime

    out, card = exported["int8"]
    data = (out / card["device_file"]["file"]).read_bytes()
    interpreter = runtime.Interpreter.from_bytes(
        data, arena_size=card["c_array"]["tensor_arena_size"])
    scale, zero_point = card["input"]["scale"], card["input"]["zero_point"]
    assert interpreter.get_input_details(0)["dtype"] == np.int8
    correct = 0
    for image, label in zip(splits.x_val, splits.y_val, strict=True):
        q = np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8)
        interpreter.set_input(q[None], 0)
        interpreter.invoke()
        output = interpreter.get_output(0)
        assert output.dtype == np.int8
        correct += int(np.argmax(output[0]) == label)
    accuracy = correct / len(splits.y_val)
    assert card["metrics"]["validation_accuracy"] > 0.5  # a trained model, not noise
    assert card["device_file"]["validation_accuracy"] == card["metrics"]["validation_accuracy"]
    assert abs(accuracy - card["device_file"]["validation_accuracy"]) <= (
        1 / len(splits.y_val) + 1e-6)


def test_the_card_says_how_to_feed_the_model_and_what_to_register(exported):
    from objectives import micro

    _, card = exported["int8"]
    assert card["input"]["shape"] == [1, 8, 8, 1] and card["output"]["shape"] == [1, 10]
    for side in ("input", "output"):
        assert card[side]["dtype"] == "int8"
        assert card[side]["scale"] > 0 and -128 <= card[side]["zero_point"] <= 127
    assert card["class_names"] == [str(d) for d in range(10)]
    assert len(card["class_names"]) == card["output"]["shape"][-1]
    assert card["preprocessing"]["pixels"] == "float32 = integer pixel (0..16) / 16"
    assert "input.scale" in card["preprocessing"]["quantize"]
    builtins = [op["builtin"] for op in card["ops"]]
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(builtins)
    assert len(builtins) == len(set(builtins))
    assert "QUANTIZE" not in builtins  # int8 in, int8 out: nothing to convert at the edges
    for op in card["ops"]:
        assert op["resolver"] == micro.resolver_method(op["builtin"])
    assert {"builtin": "CONV_2D", "resolver": "AddConv2D"} in card["ops"]
    # compute to budget a device on, beside a latency that says it is the host's
    assert card["device"]["macs"] > 10_000
    assert card["device"]["ram_method"] == "tflite-micro"
    assert "host" in card["latency"] and "macs" in card["latency"]


def test_a_mode_tflm_does_not_run_gets_no_arena_constant(run, exported):
    _, _, trials, _ = run
    out, card = exported["float16"]
    assert trials["float16"].user_attrs["ram_method"] != "tflite-micro"
    assert card["c_array"]["tensor_arena_size"] is None
    header = (out / "model_data.h").read_text()
    assert "kTensorArenaSize =" not in header
    assert "does not run this float16 model" in " ".join(
        line.removeprefix("// ") for line in header.splitlines())
    assert card["input"]["dtype"] == "float32" and card["input"]["scale"] is None
    assert "quantize" not in card["preprocessing"]


def test_an_epr_export_writes_the_device_file_with_its_own_figures(exported, splits):
    from objectives import device, tflite

    out, card = exported["epr"]
    assert {p.name for p in out.iterdir()} == {"model.epr", "model_device.tflite",
                                               "model_data.cc", "model_data.h",
                                               "model.keras", "model_card.json"}
    figures = card["device_file"]
    assert figures["file"] == "model_device.tflite" and figures["quantization"] == "int8"
    data = (out / "model_device.tflite").read_bytes()
    assert figures["flash_bytes"] == len(data)
    measured = device.measure(data, runs=1)
    assert figures["ram_method"] == measured.ram_method == "tflite-micro"
    assert figures["ram_bytes"] == measured.ram_bytes <= card["c_array"]["tensor_arena_size"]
    assert figures["validation_accuracy"] == pytest.approx(
        tflite.evaluate(data, splits.x_val, splits.y_val), abs=1e-6)
    # the int8 file of the decoded model scores about what the decoded model scored
    assert card["metrics"]["validation_accuracy"] > 0.5
    assert abs(figures["validation_accuracy"] - card["metrics"]["validation_accuracy"]) < 0.05
    assert card["input"]["dtype"] == card["output"]["dtype"] == "int8"


def test_device_mode_float32_converts_an_epr_trial_to_float32(run, tmp_path):
    _, _, trials, _ = run
    done = _export(run, trials["epr"], tmp_path, "--device-mode", "float32")
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["device_file"]["quantization"] == "float32"
    assert card["input"]["dtype"] == "float32" and card["input"]["scale"] is None
    data = (tmp_path / "model_device.tflite").read_bytes()
    assert card["device_file"]["flash_bytes"] == len(data)
    assert card["c_array"]["tensor_arena_size"] >= card["device_file"]["ram_bytes"] > 0


def test_device_mode_for_a_tflite_trial_is_refused_before_anything_is_written(run, tmp_path):
    _, _, trials, _ = run
    done = _export(run, trials["int8"], tmp_path / "out", "--device-mode", "float32")
    assert done.returncode == 2 and "applies to epr trials only" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("first", "second"), [("epr", "int8"), ("int8", "epr")])
def test_a_second_export_into_one_folder_leaves_no_stale_model(run, exported, tmp_path,
                                                               first, second):
    _, _, trials, _ = run
    out = tmp_path / "out"
    shutil.copytree(exported[first][0], out)
    done = _export(run, trials[second], out)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((out / "model_card.json").read_text())
    left = {p.name for p in out.iterdir()} & MODEL_FILES
    expected = {card["file"], card["device_file"]["file"], "model_data.cc", "model_data.h"}
    assert left == expected
    assert _array_bytes((out / "model_data.cc").read_text()) == (
        out / card["device_file"]["file"]).read_bytes()


def _splits(num_classes: int, class_names=None):
    from studies.datasets import Splits

    x, y = np.zeros((num_classes, 2, 2, 1), np.float32), np.arange(num_classes)
    return Splits(x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y, source="test",
                  split_seed=0, num_classes=num_classes, class_names=class_names)


@pytest.mark.parametrize(("record", "names", "expected"), [
    ({"dataset": "fashion_mnist", "class_names": ["T-shirt/top", "Trouser", "Pullover"]},
     None, ["T-shirt/top", "Trouser", "Pullover"]),
    ({"data_reference": "/d/pets", "class_names": ["cat", "dog", "eel"]}, None,
     ["cat", "dog", "eel"]),
    ({"data_reference": "/d/x.npz"}, ("a", "b", "c"), ["a", "b", "c"]),  # an older record
    ({"data_reference": "/d/x.npz", "class_names": None}, None, ["0", "1", "2"]),
])
def test_class_names_come_from_the_record_else_the_data_else_the_labels(record, names,
                                                                        expected):
    from optimizer.commands.device_export import class_names

    assert class_names(record, splits=_splits(3, names)) == expected


@pytest.mark.parametrize(("record", "source", "expected"), [
    ({"dataset": "mnist"}, "mnist:keras", "float32 = uint8 pixel (0..255) / 255"),
    ({"dataset": "digits"}, "digits:scikit-learn", "float32 = integer pixel (0..16) / 16"),
    ({"data_reference": "/d/pets"}, "folder:/d/pets", "float32 = uint8 pixel / 255 (read as "
     "grayscale when no image has colour, else RGB; alpha dropped)"),
    ({"data_reference": "/d/x.npz"}, "npz:/d/x.npz", "float32 = integer pixel (0..255) / 255 "
     "when the data's images are integers; floating-point images as given, not rescaled"),
    ({"dataset": "", "data_reference": None}, "loader:x:y", "as the training data given"),
])
def test_preprocessing_says_how_the_loader_scaled_the_pixels(record, source, expected):
    from optimizer.commands.device_export import preprocessing

    steps = preprocessing(record, source=source, model_input={"dtype": "float32"})
    assert steps["pixels"] == expected and "quantize" not in steps
    assert "input.zero_point" in preprocessing(record, source=source,
                                               model_input={"dtype": "int8"})["quantize"]


def test_a_built_in_family_exports_model_keras_for_keras_3(exported, splits, tmp_path):
    """tiny_cnn, a built-in family: its int8 trial's float model as a Keras 3 file, which
    Keras 3 opens and which predicts what the float model the int8 file came from does."""
    from objectives.parent import load_model_file
    from tests.conftest import keras_today_run

    out, card = exported["int8"]
    assert card["keras"]["keras_format"] == 3 and card["keras"]["file"] == "model.keras"
    x = splits.x_val[:32]
    reference = tmp_path / "reference.npz"
    np.savez(reference, x=x, y=load_model_file(out / "model.keras").predict(x, verbose=0))
    (check,) = json.loads(keras_today_run("--check", "keras3", out / "model.keras", reference))
    assert check["max_abs_diff"] < 1e-5
