"""The one atomic write: whole or absent, and with the user's normal file modes."""

from __future__ import annotations

import os
import stat

import pytest

from objectives.files import write_atomically


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_written_file_gets_the_modes_open_gives_not_0600(tmp_path, umask_022):
    target = tmp_path / "out" / "model_card.json"
    write_atomically(target, "{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_text() == "{}\n"
    assert [p.name for p in target.parent.iterdir()] == ["model_card.json"]  # no temp left


def test_a_write_that_fails_at_the_rename_leaves_no_temp(tmp_path):
    taken = tmp_path / "model.tflite"
    taken.mkdir()
    (taken / "inside").write_bytes(b"old")
    with pytest.raises(OSError):
        write_atomically(taken, b"new")  # a folder of that name: the rename fails
    assert (taken / "inside").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]
