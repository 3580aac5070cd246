"""`export --ota` of a real study's front, end to end, as CI checks it (issue 32).

One module-scoped CLI run of a digits study whose three trials are its reference points
(an int8 `tiny_cnn` at width 0.25, a float32 one at width 1.0 and an EPR one at width 1.0;
smoke budget, about 20 s): none dominates another, so `pareto --format json` lists all
three. Every member is exported with `--ota` through the CLI; the exported decoder
(`ota_decode.c` + `model_update.c`) is built once with `gcc -std=c99 -Wall -Wextra
-Werror` and run on each member's `model.update`. Checked: it rebuilds each device file
(`model.tflite`, or an EPR trial's `model_device.tflite`) byte for byte; each rebuilt int8
or float32 file runs in tflite-micro in the arena its card states and gives what the
TFLite interpreter gives on the exported file; a byte flipped in a real update's coded
stream is refused (exit 1) and leaves no file; the trials of this payload study measure
no `ota_bytes` (only an `ota` study's do), the card's `ota` section is the measurement.
The int8 member exported again with `--ota --base` (its first export) gives a tiny update
relative to it; `--base` without `--ota` or without a device file is one line, exit 2.
Synthetic files' updates, truncations and the Python decoder are
`tests/objectives/test_ota.py`'s; the card's `ota` section and check command are
`tests/optimizer/test_ota_export.py`'s and `test_export_bundle.py`'s.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from objectives import ota
from tests.conftest import reference_study_run, run_cli

GCC = shutil.which("gcc")
C_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
#: Three trials of which none dominates another (measured: accuracy 0.739 at 1,619
#: payload bytes, 0.944 at 7,501, 0.965 at 68,558).
CANDIDATES = ['Candidate(width=0.25, quantization="int8")',
              'Candidate(width=1.0, quantization="float32")',
              'Candidate(width=1.0, epr_lambda=0.5, quantization="epr")']
#: The modes tflite-micro runs (it has no float16 or dynamic-range kernels).
TFLM_MODES = ("int8", "float32")
#: Runs the model at argv[1] in tflite-micro in an arena of argv[2] bytes on each input of
#: the .npy file argv[3] and saves the raw outputs to argv[4]: in a child, as
#: `objectives.micro` runs TFLM, since TFLM's C++ may abort the process.
TFLM_RUN = """\
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
model, arena, inputs, outputs = sys.argv[1:]
with open(model, "rb") as file:
    interpreter = runtime.Interpreter.from_bytes(file.read(), arena_size=int(arena))
results = []
for x in np.load(inputs):
    interpreter.set_input(x[None], 0)
    interpreter.invoke()
    results.append(interpreter.get_output(0)[0].copy())
np.save(outputs, np.stack(results))
"""


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """(study file, run dir, study, the `pareto --format json` rows) of a finished run."""
    study_file, run_dir, _, study = reference_study_run(
        tmp_path_factory.mktemp("front"), name="ota_front_digits", candidates=CANDIDATES)
    done = run_cli("pareto", "--study", str(study_file), "--smoke", "--run-dir", str(run_dir),
                   "--format", "json", cwd=study_file.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return study_file, run_dir, study, json.loads(done.stdout)


@pytest.fixture(scope="module")
def exports(front, tmp_path_factory) -> dict[int, tuple[Path, dict]]:
    """{trial: (out folder, card)} of `export --ota` of every front member."""
    study_file, run_dir, _, rows = front
    folders = {}
    for row in rows:
        out = tmp_path_factory.mktemp(f"trial{row['trial']}")
        done = run_cli("export", "--study", str(study_file), "--smoke", "--run-dir",
                       str(run_dir), "--trial", str(row["trial"]), "--out", str(out),
                       "--ota", cwd=study_file.parent)
        assert done.returncode == 0, done.stderr[-3000:]
        folders[row["trial"]] = (out, json.loads((out / "model_card.json").read_text()))
    return folders


@pytest.fixture(scope="module")
def ota_decode(exports, tmp_path_factory) -> Path:
    """The host program built once, as CI builds it, from the first export's sources."""
    if GCC is None:
        pytest.skip("gcc is not installed (.ci/run installs it): the exported decoder "
                    "is not compiled")
    out, _ = next(iter(exports.values()))
    program = tmp_path_factory.mktemp("c") / "ota_decode"
    done = subprocess.run([GCC, *C_FLAGS, "-o", str(program), str(out / "ota_decode.c"),
                           str(out / "model_update.c")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # -Werror: any warning fails the build
    return program


def _decode(program: Path, update: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(program), str(update), str(out)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def decoded(exports, ota_decode, tmp_path_factory) -> dict[int, tuple[Path, str]]:
    """{trial: (the file ota_decode wrote from the member's model.update, its stdout)}."""
    folder = tmp_path_factory.mktemp("decoded")
    files = {}
    for trial, (out, _) in exports.items():
        target = folder / f"trial{trial}.tflite"
        done = _decode(ota_decode, out / "model.update", target)
        assert done.returncode == 0, done.stderr
        files[trial] = (target, done.stdout)
    return files


def test_every_member_of_a_mixed_front_exports_an_update_and_the_same_decoder(front,
                                                                             exports):
    rows = front[3]
    modes = {row["trial"]: row["quantization"] for row in rows}
    assert sorted(modes.values()) == ["epr", "float32", "int8"], rows
    assert set(exports) == set(modes)
    sources = {name: (exports[rows[0]["trial"]][0] / name).read_bytes()
               for name in ("ota_decode.c", "model_update.c", "model_update.h")}
    for trial, (out, card) in exports.items():
        device = card["device_file"]["file"]
        assert card["ota"]["device_file"] == device
        assert device == ("model_device.tflite" if modes[trial] == "epr" else "model.tflite")
        assert card["ota"]["ota_bytes"] == (out / "model.update").stat().st_size
        for name, text in sources.items():
            assert (out / name).read_bytes() == text, (trial, name)


def test_a_payload_study_leaves_ota_bytes_to_export(front, exports):
    """Trials measure `ota_bytes` only under `--size-objective ota`
    (`tests/optimizer/test_ota_objective.py`: there it is what export writes); under the
    payload objective the search does not pay for the encoder, and the card's `ota`
    section is the measurement."""
    for row in front[3]:
        card = exports[row["trial"]][1]
        assert row["ota_bytes"] is None and card["device"]["ota_bytes"] is None
        assert card["ota"]["ota_bytes"] > 0


def test_the_built_decoder_rebuilds_every_front_members_device_file_bit_for_bit(exports,
                                                                                decoded):
    for trial, (out, card) in exports.items():
        target, stdout = decoded[trial]
        device = out / card["device_file"]["file"]
        assert target.read_bytes() == device.read_bytes(), trial
        assert "checked (SHA-256)" in stdout
        assert not target.with_name(target.name + ".part").exists()


@pytest.fixture(scope="module")
def x_val(front) -> np.ndarray:
    """The study's own validation images, as recorded."""
    from optimizer.engine.data import load_recorded_data

    return load_recorded_data(front[2], data_dir=None).x_val


def _card_input(card: dict, x: np.ndarray) -> np.ndarray:
    """The study's images `x` (scaled as its loader scales them) fed as the card says: as
    float32, then for an int8 input int8 = clamp(round(x / scale) + zero_point, -128, 127)."""
    from studies.datasets import as_float

    x = as_float(x)
    if card["input"]["dtype"] == "float32":
        return x
    assert card["input"]["dtype"] == "int8", card["input"]
    q = np.round(x / np.float32(card["input"]["scale"])) + card["input"]["zero_point"]
    return np.clip(q, -128, 127).astype(np.int8)


def _tflm_outputs(model: Path, *, arena: int, x: np.ndarray, tmp: Path) -> np.ndarray:
    """The raw outputs of `model` in tflite-micro in `arena` bytes, one input at a time."""
    np.save(tmp / "inputs.npy", x)
    child = subprocess.run([sys.executable, "-c", TFLM_RUN, str(model), str(arena),
                            str(tmp / "inputs.npy"), str(tmp / "outputs.npy")],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    return np.load(tmp / "outputs.npy")


def _dequantized(raw: np.ndarray, output: dict) -> np.ndarray:
    if output["dtype"] == "float32":
        return raw.astype(np.float32)
    return (raw.astype(np.float32) - output["zero_point"]) * np.float32(output["scale"])


def _assert_same_outputs(micro: np.ndarray, lite: np.ndarray, *, output: dict,
                         trial: int) -> None:
    """TFLM's outputs are TFLite's, as far as their kernels agree: the same prediction for
    every image; float32 outputs within 1e-5 of the largest output (measured: 5.7e-6 at
    outputs up to 19); int8 ones within one step, on under 1% of the values (measured:
    11 and 7 of 2,870 differ, TFLM's reference kernels rounding otherwise)."""
    assert np.array_equal(micro.argmax(axis=1), lite.argmax(axis=1)), trial
    difference = np.abs(micro - lite)
    if output["dtype"] == "float32":
        assert difference.max() <= 1e-5 * np.abs(lite).max(), (trial, difference.max())
        return
    assert difference.max() <= output["scale"] * 1.001, (trial, difference.max())
    assert np.count_nonzero(difference) < 0.01 * difference.size, (trial, difference)


def test_each_rebuilt_file_runs_in_tflite_micro_in_the_cards_arena_as_tflite_runs_it(
        exports, decoded, x_val, tmp_path):
    from objectives import tflite

    ran = []
    for trial, (out, card) in exports.items():
        mode = card["device_file"]["quantization"]
        if mode not in TFLM_MODES:
            continue
        arena = card["c_array"]["tensor_arena_size"]
        assert arena is not None, (trial, card["c_array"]["tensor_arena_note"])
        raw = _tflm_outputs(decoded[trial][0], arena=arena, x=_card_input(card, x_val),
                            tmp=tmp_path)
        assert raw.dtype == np.dtype(card["output"]["dtype"]), (trial, raw.dtype)
        micro = _dequantized(raw, card["output"])
        lite = tflite.predict((out / card["device_file"]["file"]).read_bytes(), x_val)
        _assert_same_outputs(micro, lite, output=card["output"], trial=trial)
        ran.append(mode)
    assert sorted(ran) == ["float32", "int8", "int8"]  # the EPR trial's device file is int8


def test_a_byte_flipped_in_a_real_updates_coded_stream_is_refused_and_writes_no_file(
        exports, ota_decode, tmp_path):
    from objectives import ota

    for trial, (out, _) in exports.items():
        update = bytearray((out / "model.update").read_bytes())
        at = ota.HEADER_BYTES + (len(update) - ota.HEADER_BYTES) // 2
        update[at] ^= 0x10
        (tmp_path / "flipped.update").write_bytes(update)
        target = tmp_path / "out.tflite"
        done = _decode(ota_decode, tmp_path / "flipped.update", target)
        assert done.returncode == 1, (trial, done.stdout, done.stderr)
        assert "no file written" in done.stderr, done.stderr
        assert not target.exists() and not target.with_name("out.tflite.part").exists()


# -- export --ota --base: an update relative to the export a device already runs ---------


def _int8_trial(front) -> int:
    (trial,) = [row["trial"] for row in front[3] if row["quantization"] == "int8"]
    return trial


def _export_int8(front, out: Path, *flags: str) -> subprocess.CompletedProcess:
    study_file, run_dir, _, _ = front
    trial = _int8_trial(front)
    return run_cli("export", "--study", str(study_file), "--smoke", "--run-dir", str(run_dir),
                   "--trial", str(trial), "--out", str(out), *flags, cwd=study_file.parent)


def test_export_ota_base_writes_an_update_relative_to_the_earlier_export(front, exports,
                                                                          tmp_path):
    earlier = exports[_int8_trial(front)][0]  # exported with --ota by the fixture
    later = tmp_path / "v2"
    done = _export_int8(front, later, "--ota", "--base", str(earlier))
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((later / "model_card.json").read_text())["ota"]
    update = (later / "model.update").read_bytes()
    base = (earlier / "model.tflite").read_bytes()
    assert card["base"]["relative"] and card["base"]["sha256"] == hashlib.sha256(
        base).hexdigest()
    assert ota.decode_update(update, base=base) == (later / "model.tflite").read_bytes()
    assert len(update) < 200 < card["base"]["plain_ota_bytes"]  # the same file: tiny
    assert "relative to" in done.stdout


def test_export_base_without_ota_or_without_a_device_file_is_one_line_exit_2(front,
                                                                              tmp_path):
    (tmp_path / "empty").mkdir()
    for flags, says in (((), "--base needs --ota"),
                        (("--ota",), "no device file")):
        done = _export_int8(front, tmp_path / "out", *flags, "--base",
                            str(tmp_path / "empty"))
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert len(lines) == 1 and says in lines[0], done.stderr
    assert not (tmp_path / "out").exists()
