"""`export --ota`'s files: model.update beside the device file, the decoder's sources, and
the card's `ota` section naming `ota_bytes`; the exported sources build and check it.
`--base DIR`: the update relative to an earlier export's device file when that is
smaller, the card saying which with both sizes; bad input is one line, exit 2."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from definitions.errors import UsageError
from objectives import ota, ota_stream
from optimizer.commands import ota_export


@pytest.fixture(scope="module")
def device_file(tmp_path_factory):
    import tensorflow as tf

    from objectives import tflite

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Conv2D(4, 3),
                                 tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("export") / "model.tflite"
    path.write_bytes(tflite.convert_for_device(model, quantization="int8", representative_x=x))
    return path


def test_write_update_writes_the_update_and_the_decoder_and_says_so(device_file):
    out = device_file.parent
    card = ota_export.write_update(device_file, out=out)
    json.dumps(card)
    assert set(ota_export.FILES) <= {p.name for p in out.iterdir()}
    update = (out / "model.update").read_bytes()
    assert card["ota_bytes"] == len(update) < card["device_gzip_bytes"]
    assert ota.decode_update(update) == device_file.read_bytes()
    assert card["work_buffer_bytes"] == ota.STATE_BYTES + (1 << ota.DEFAULT_WINDOW_LOG2)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (.ci/run installs gcc)")
def test_the_cards_check_command_builds_and_passes_in_the_export_folder(device_file):
    out = device_file.parent
    card = ota_export.write_update(device_file, out=out)
    done = subprocess.run(card["check"], shell=True, cwd=out, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / "model.tflite.check").read_bytes() == device_file.read_bytes()


# -- relative to an earlier export (`--base`) ---------------------------------------------


def _fine_tuned(device_file: Path, tmp: Path) -> Path:
    """A copy of `device_file` whose first int8 weight buffer has a few values a step off,
    as a fine-tuned model's are: the new export beside an earlier one."""
    data = bytearray(device_file.read_bytes())
    start, end, *_ = next(s for s in ota.weight_spans(bytes(data), window=1024)
                          if s[2] == ota_stream.INT8)
    for at in range(start, end, 7):
        data[at] = (data[at] + 1) & 0xFF
    new = tmp / "model.tflite"
    new.write_bytes(bytes(data))
    return new


def test_an_update_relative_to_an_earlier_export_is_written_when_smaller(device_file,
                                                                          tmp_path):
    earlier = ota_export.read_base(device_file.parent, out=tmp_path)
    new = _fine_tuned(device_file, tmp_path)
    card = ota_export.write_update(new, out=tmp_path, base=earlier)
    update = (tmp_path / "model.update").read_bytes()
    base = card["base"]
    assert base["relative"] and card["format_version"] == ota.RELATIVE_VERSION
    assert card["ota_bytes"] == len(update) == base["relative_ota_bytes"]
    # measured: 102 bytes relative against 2,419 plain (a 3,552-byte file)
    assert base["relative_ota_bytes"] < 0.1 * base["plain_ota_bytes"], base
    assert base["sha256"] == hashlib.sha256(device_file.read_bytes()).hexdigest()
    assert ota.decode_update(update, base=device_file.read_bytes()) == new.read_bytes()
    assert shlex.quote(str(device_file.resolve())) in card["check"]


def test_an_update_stays_plain_when_relative_is_not_smaller(device_file, tmp_path):
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "model_device.tflite").write_bytes(bytes(range(256)) * 4)
    card = ota_export.write_update(device_file, out=tmp_path,
                                   base=ota_export.read_base(unrelated, out=tmp_path))
    assert not card["base"]["relative"] and card["format_version"] == ota.FORMAT_VERSION
    assert card["ota_bytes"] == card["base"]["plain_ota_bytes"] == len(
        ota.encode_update(device_file.read_bytes()))
    assert card["base"]["relative_ota_bytes"] >= card["ota_bytes"]
    assert "unrelated" not in card["check"]


def test_a_base_folder_that_is_missing_empty_or_the_output_is_refused(device_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, says in ((tmp_path / "missing", "no such folder"),
                         (empty, "no device file (model_device.tflite or model.tflite)"),
                         (device_file.parent, "is --out")):
        with pytest.raises(UsageError, match=re.escape(says)):
            ota_export.read_base(folder, out=device_file.parent)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (.ci/run installs gcc)")
def test_the_cards_check_command_passes_the_base_to_the_decoder(device_file, tmp_path):
    new = _fine_tuned(device_file, tmp_path)
    card = ota_export.write_update(new, out=tmp_path,
                                   base=ota_export.read_base(device_file.parent, out=tmp_path))
    assert card["base"]["relative"]
    done = subprocess.run(card["check"], shell=True, cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model.tflite.check").read_bytes() == new.read_bytes()
