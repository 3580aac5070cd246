"""`export --ota`'s files: model.update beside the device file, the decoder's sources, and
the card's `ota` section naming `ota_bytes`; the exported sources build and check it."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from objectives import ota
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
