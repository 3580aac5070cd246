"""Bad data files under --data-dir (and in Keras' cache, downloaded or not) are a
`DataError` that names the file, what is wrong and what was expected; never a traceback
from NumPy, gzip or zipfile."""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from definitions.errors import UsageError
from studies import datasets
from studies.datasets import DataError, load_dataset


def _arrays(n_train=50, n_test=10):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 10,
    }


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _error(tmp_path, dataset="mnist"):
    with pytest.raises(DataError) as caught:
        load_dataset(dataset, data_dir=tmp_path)
    assert isinstance(caught.value, UsageError)  # the CLI prints it as one line, exit 2
    message = str(caught.value)
    assert "\n" not in message and "expected" in message
    return message


def test_a_valid_npz_with_a_channel_axis_loads(tmp_path):
    arrays = _arrays()
    arrays["x_train"] = arrays["x_train"][..., None]
    np.savez(tmp_path / "mnist.npz", **arrays)
    assert load_dataset("mnist", data_dir=tmp_path).sizes() == {
        "train": 40, "validation": 10, "test": 10}  # one of each class


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"these are not the bytes you are looking for" * 10, r"not an \.npz archive"),
        (b"", r"not an \.npz archive"),
        (_npz_bytes(**_arrays())[:700], r"damaged \.npz archive \(BadZipFile"),
    ],
    ids=["garbage", "empty", "truncated"],
)
def test_an_npz_that_is_not_an_archive_is_named(tmp_path, content, problem):
    path = tmp_path / "mnist.npz"
    path.write_bytes(content)
    message = _error(tmp_path)
    assert message.startswith(str(path))
    assert re.search(problem, message), message
    assert "x_train, y_train, x_test, y_test" in message


def test_an_npz_with_wrong_keys_names_the_missing_and_the_found_keys(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "mnist.npz", images=arrays["x_train"], x_test=arrays["x_test"],
             labels=arrays["y_train"])
    message = _error(tmp_path)
    assert f"{tmp_path / 'mnist.npz'} lacks x_train, y_train, y_test" in message
    assert "(found: images, x_test, labels)" in message


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"x_train": np.zeros((50, 28, 27), np.uint8)},
         r"\[x_train\] has images of shape \(50, 28, 27\); expected \(N, 28, 28\)"),
        ({"x_test": np.zeros((10, 784), np.uint8)},
         r"\[x_test\] has images of shape \(10, 784\)"),
        ({"x_train": np.zeros((50, 28, 28), np.float64)},
         r"\[x_train\] has images of dtype float64; expected integer pixels 0\.\.255"),
        ({"x_train": np.full((50, 28, 28), 300, np.int16)},
         r"\[x_train\] has pixel values 300\.\.300; expected 0\.\.255"),
        ({"y_train": np.arange(50) % 11},
         r"\[y_train\] has labels 0\.\.10; expected class labels 0\.\.9"),
        ({"y_test": np.arange(10) - 1},
         r"\[y_test\] has labels -1\.\.8; expected class labels 0\.\.9"),
        ({"y_train": (np.arange(50) % 10).astype(np.float32)},
         r"\[y_train\] has labels of dtype float32; expected integer class labels"),
        ({"y_train": (np.arange(50) % 10)[:, None]},
         r"\[y_train\] has labels of shape \(50, 1\); expected \(N,\)"),
        ({"y_train": np.arange(49) % 10},
         r"\[y_train\] has 49 labels but .*\[x_train\] has 50 images; expected one label"),
        ({"y_test": np.arange(12) % 10},
         r"\[y_test\] has 12 labels but .*\[x_test\] has 10 images"),
    ],
    ids=["image-shape", "flat-test-images", "float-images", "pixels-out-of-range",
         "label-too-large", "label-negative", "float-labels", "2d-labels",
         "fewer-labels", "more-test-labels"],
)
def test_an_npz_with_bad_arrays_names_the_file_the_array_and_the_rule(tmp_path, change, problem):
    np.savez(tmp_path / "mnist.npz", **{**_arrays(), **change})
    message = _error(tmp_path)
    assert message.startswith(f"{tmp_path / 'mnist.npz'} [")
    assert re.search(problem, message), message


def test_ten_images_are_too_few_to_carve_a_validation_split(tmp_path):
    np.savez(tmp_path / "mnist.npz", **_arrays(n_train=10))
    message = _error(tmp_path)
    assert message.startswith(f"{tmp_path / 'mnist.npz'} [y_train] has too few training images")
    assert "(10 in all; class 0: 1, class 1: 1," in message
    assert f"expected at least {datasets.MIN_TRAIN_PER_CLASS} images of every class 0..9" in message


def test_a_missing_class_is_named(tmp_path):
    arrays = _arrays(n_train=45)
    arrays["y_train"] = np.arange(45) % 9
    np.savez(tmp_path / "mnist.npz", **arrays)
    message = _error(tmp_path, dataset="fashion_mnist")
    assert "(45 in all; class 9: 0)" in message


def test_twenty_images_two_of_each_class_are_enough(tmp_path):
    np.savez(tmp_path / "mnist.npz", **_arrays(n_train=20, n_test=1))
    splits = load_dataset("mnist", data_dir=tmp_path)
    assert splits.sizes() == {"train": 10, "validation": 10, "test": 1}
    assert set(splits.y_train.tolist()) == set(splits.y_val.tolist()) == set(range(10))


def test_an_empty_test_split_is_an_error(tmp_path):
    np.savez(tmp_path / "mnist.npz", **_arrays(n_test=0))
    assert "[x_test] has no test images; expected at least 1" in _error(tmp_path)


def _idx_bytes(array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dir(directory, *, gz=True):
    arrays = _arrays(n_train=30, n_test=5)
    paths = []
    for name, key in zip(datasets.IDX_NAMES, datasets.NPZ_KEYS, strict=True):
        data = _idx_bytes(arrays[key])
        path = directory / (f"{name}.gz" if gz else name)
        path.write_bytes(gzip.compress(data) if gz else data)
        paths.append(path)
    return paths


def test_uncompressed_idx_files_load(tmp_path):
    _write_idx_dir(tmp_path, gz=False)
    assert load_dataset("mnist", data_dir=tmp_path).sizes() == {
        "train": 20, "validation": 10, "test": 5}


@pytest.mark.parametrize(
    ("which", "gz", "damage", "problem"),
    [
        (0, True, lambda d: gzip.compress(d[:1000]),
         r"is truncated: its header declares shape \(30, 28, 28\), expected 23520 values "
         r"after it, found 984"),
        (1, True, lambda d: gzip.compress(d + b"\x00"),
         r"is longer than its header says: .*expected 30 values after it, found 31"),
        (0, True, lambda d: gzip.compress(d)[:200],
         r"is not a complete gzip file .*; expected a gzip-compressed IDX file"),
        (2, True, lambda d: b"plain garbage, not gzip at all",
         r"is not a complete gzip file"),
        (0, False, lambda d: b"garbage that is no IDX file",
         r"is not an IDX file of unsigned bytes \(it starts with 67 61 72 62\)"),
        (1, False, lambda d: b"\x00\x00\x0d\x01" + d[4:],
         r"is not an IDX file of unsigned bytes \(it starts with 00 00 0d 01\)"),
        (3, False, lambda d: d[:6],
         r"is truncated in its header \(6 bytes for 1 dimensions\)"),
        (3, False, lambda d: b"",
         r"is not an IDX file of unsigned bytes \(it starts with nothing\)"),
    ],
    ids=["truncated-body", "extra-bytes", "truncated-gzip", "gz-not-gzip", "garbage",
         "float-element-type", "truncated-header", "empty"],
)
def test_a_damaged_idx_file_is_named(tmp_path, which, gz, damage, problem):
    paths = _write_idx_dir(tmp_path, gz=gz)
    path = paths[which]
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    path.write_bytes(damage(raw))
    message = _error(tmp_path)
    assert message.startswith(f"{path} ")
    assert re.search(problem, message), message


def test_idx_files_swapped_are_named_by_their_shape(tmp_path):
    images, labels = _write_idx_dir(tmp_path)[:2]
    swapped = labels.read_bytes()
    labels.write_bytes(images.read_bytes())
    images.write_bytes(swapped)
    message = _error(tmp_path)
    assert message.startswith(f"{images} has images of shape (30,); expected (N, 28, 28)")


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    np.savez(tmp_path / "mnist.npz", **_arrays())
    path = tmp_path / "mnist.npz"
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: fail the read as it fails for a user
        read_bytes = Path.read_bytes

        def denied(self):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return read_bytes(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
    try:
        assert _error(tmp_path) == (
            f"cannot read {path}: Permission denied; expected a readable data file")
    finally:
        path.chmod(0o644)


def test_a_damaged_keras_cache_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path)
    (tmp_path / "mnist.npz").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match=rf"^{tmp_path / 'mnist.npz'} is not an \.npz archive"):
        load_dataset("mnist")


def test_bad_arrays_from_a_download_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path)
    arrays = _arrays()
    arrays["y_train"] = arrays["y_train"] + 5

    def fetch(url, destination):
        destination.write_bytes(_npz_bytes(**arrays))

    path = re.escape(str(tmp_path / "mnist.npz"))
    with pytest.raises(DataError, match=rf"^{path} \[y_train\] has labels 5\.\.14; expected "
                                        r"class labels 0\.\.9$"):
        load_dataset("mnist", fetch=fetch)
