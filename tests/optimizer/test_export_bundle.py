"""`export` writes its bundle whole or not at all (issue 31, items 4 and 5).

One module-scoped CLI run of a digits study whose two trials are its reference points (an
int8 and an EPR candidate of `tiny_cnn`; smoke budget), then exports of them. A write that
fails (a full disk, simulated: `model_data.cc`'s write raises ENOSPC, in-process) is one
line naming `--out`, exit 2, and leaves `--out` as it was and no staging folder; a
corrupt `.epr` in the store (its recorded checksum edited to match) is one line, exit 2,
and exports nothing; the files get the modes the umask gives.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import struct
import zlib
from pathlib import Path

import pytest

from tests.conftest import reference_study_run, run_cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(study file, run dir, {quantization: trial number}) of a finished 2-trial run."""
    study_file, run_dir, trials, _ = reference_study_run(
        tmp_path_factory.mktemp("bundle"), name="bundle_digits",
        candidates=['Candidate(width=0.5, quantization="int8")',
                    'Candidate(width=1.0, epr_lambda=0.5, quantization="epr")'])
    return study_file, run_dir, {mode: t.number for mode, t in trials.items()}


def _args(run, mode: str, out: Path, run_dir: Path | None = None) -> list[str]:
    study_file, stored, trials = run
    return ["export", "--study", str(study_file), "--smoke", "--run-dir",
            str(run_dir or stored), "--trial", str(trials[mode]), "--out", str(out)]


def _export_here(run, mode: str, out: Path, capsys, monkeypatch) -> tuple[int, str]:
    """`optimizer export` in this process (so a test can make a write fail): its exit
    code and standard error."""
    from optimizer.commands import cli

    monkeypatch.chdir(run[0].parent)
    monkeypatch.setattr(cli, "_divert_native_stderr", lambda: None)  # pytest owns fd 2
    capsys.readouterr()
    code = cli.main(_args(run, mode, out))
    return code, capsys.readouterr().err


def _disk_full_at_c_source(monkeypatch) -> None:
    """`model_data.cc` cannot be written (ENOSPC, as a full disk says it); the header
    before it is written as usual."""
    from objectives import c_array

    real = c_array.write_atomically

    def write(path, data):
        if Path(path).name == "model_data.cc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(c_array, "write_atomically", write)


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry under `folder` (names relative to it) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


def _one_error_line(stderr: str) -> str:
    """The one error line (log lines aside); asserts there is no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("optimizer export: error: "), stderr
    return lines[0]


@pytest.mark.parametrize("mode", ["int8", "epr"])
def test_a_failed_write_names_out_exits_2_and_leaves_no_folder(run, tmp_path, capsys,
                                                               monkeypatch, mode):
    out = tmp_path / "new" / "export"
    _disk_full_at_c_source(monkeypatch)
    code, stderr = _export_here(run, mode, out, capsys, monkeypatch)
    assert code == 2, stderr
    line = _one_error_line(stderr)
    assert f"--out {out}" in line and "No space left on device" in line, line
    assert "storage" not in line and "study.db" not in line, line
    assert list(tmp_path.iterdir()) == []  # no --out, no staging folder, no parent made


def test_a_failed_write_into_an_earlier_export_leaves_it_as_it_was(run, tmp_path, capsys,
                                                                   monkeypatch):
    out = tmp_path / "export"
    code, stderr = _export_here(run, "epr", out, capsys, monkeypatch)
    assert code == 0, stderr
    (out / "notes.txt").write_text("the user's own file")
    before = _snapshot(tmp_path)
    _disk_full_at_c_source(monkeypatch)
    code, stderr = _export_here(run, "int8", out, capsys, monkeypatch)
    assert code == 2 and f"--out {out}" in _one_error_line(stderr)
    assert _snapshot(tmp_path) == before


def test_an_export_into_an_earlier_one_replaces_its_model_and_keeps_other_files(
        run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "export"
    assert _export_here(run, "epr", out, capsys, monkeypatch)[0] == 0
    (out / "notes.txt").write_text("the user's own file")
    code, stderr = _export_here(run, "int8", out, capsys, monkeypatch)
    assert code == 0, stderr
    card = json.loads((out / "model_card.json").read_text())
    assert card["file"] == "model.tflite"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        {"model.tflite", "model_data.cc", "model_data.h", "model.keras", "model_card.json",
         "notes.txt"})
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging folder left


def test_exported_files_and_folders_get_the_modes_the_umask_gives(run, tmp_path, capsys,
                                                                  monkeypatch):
    out = tmp_path / "made" / "export"
    umask = os.umask(0o027)
    try:
        code, stderr = _export_here(run, "epr", out, capsys, monkeypatch)
    finally:
        os.umask(umask)
    assert code == 0, stderr
    for folder in (tmp_path / "made", out):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder
    files = list(out.iterdir())
    assert len(files) == 6  # model.epr, model_device.tflite, C source and header, keras, card
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o640, file


# -- a corrupt .epr in the store ---------------------------------------------------------


def _renamed_layer_path(blob: bytes) -> bytes:
    """The .epr file with its first layer's path renamed in the header (a layer the
    architecture does not have)."""
    head = struct.Struct("<4sBI")
    magic, version, size = head.unpack_from(blob)
    header = json.loads(zlib.decompress(blob[head.size:head.size + size]))
    header["layers"][0]["path"] = ["no_such_layer"]
    packed = zlib.compress(json.dumps(header).encode(), 9)
    return head.pack(magic, version, len(packed)) + packed + blob[head.size + size:]


#: How the stored artifact is altered, and what the export's line then says.
CORRUPTIONS = {
    "layer_path_renamed": (_renamed_layer_path, "layer 'no_such_layer', which the architecture"),
    "cut_short": (lambda blob: blob[: len(blob) // 2], "truncated"),
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_a_corrupt_epr_artifact_is_one_line_exit_2_and_exports_nothing(run, tmp_path, how):
    run_dir = tmp_path / "run"
    shutil.copytree(run[1], run_dir)
    number = run[2]["epr"]
    with sqlite3.connect(run_dir / "study.db") as db:
        (artifact_id,) = db.execute(
            "SELECT value_json FROM trial_user_attributes WHERE key = 'artifact_id' AND "
            "trial_id = (SELECT trial_id FROM trials WHERE number = ?)", (number,)).fetchone()
        stored = run_dir / "artifact-store" / json.loads(artifact_id)
        corrupt, says = CORRUPTIONS[how]
        stored.write_bytes(corrupt(stored.read_bytes()))
        # the database edited to vouch for the altered file: the checksum passes
        db.execute(
            "UPDATE trial_user_attributes SET value_json = ? WHERE key = 'artifact_sha256' "
            "AND trial_id = (SELECT trial_id FROM trials WHERE number = ?)",
            (json.dumps(hashlib.sha256(stored.read_bytes()).hexdigest()), number))
    out = tmp_path / "export"
    done = run_cli(*_args(run, "epr", out, run_dir=run_dir), cwd=run[0].parent)
    assert done.returncode == 2, done.stderr[-3000:]
    line = _one_error_line(done.stderr)
    assert f"trial {number}'s artifact" in line and says in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing exported


@pytest.mark.parametrize("mode", ["int8", "epr"])
def test_export_ota_writes_the_update_the_device_file_decodes_from(run, tmp_path, mode):
    from objectives import ota

    out = tmp_path / "out"
    done = run_cli(*_args(run, mode, out), "--ota", cwd=run[0].parent)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((out / "model_card.json").read_text())
    update = (out / "model.update").read_bytes()
    device = (out / card["device_file"]["file"]).read_bytes()
    assert ota.decode_update(update) == device  # the device file, byte for byte
    assert card["ota"]["ota_bytes"] == len(update) < card["ota"]["device_gzip_bytes"]
    assert {"model_update.c", "model_update.h", "ota_decode.c"} <= {p.name for p in
                                                                    out.iterdir()}
    assert f"update: {out / 'model.update'} ({len(update):,} bytes" in done.stdout


def test_an_export_without_ota_removes_an_earlier_update(run, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*_args(run, "int8", out), "--ota", cwd=run[0].parent).returncode == 0
    done = run_cli(*_args(run, "int8", out), cwd=run[0].parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (out / "model.update").exists()
    assert json.loads((out / "model_card.json").read_text())["ota"] is None
