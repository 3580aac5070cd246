"""Users' own data: an .npz file, a folder of class subfolders of images, or a Python loader.

`load_user_data(source, split_seed=..., validation_fraction=..., image_shape=...)` returns
the same `Splits` as `studies.datasets.load_dataset` (images (N, H, W, C): uint8 for
integer pixels, float32 for float ones; int64 labels, fingerprints), for data of any image
size and any number of classes. What `source` names:

- An existing file: a NumPy `.npz` archive (`np.savez`) with arrays `x_train`, `y_train` and
  optionally the pairs `x_val`, `y_val` and `x_test`, `y_test`; other arrays are ignored
  (and logged). `Splits.source` is `npz:/absolute/path.npz`.
- An existing folder: one subfolder per class, read as
  `tf.keras.utils.image_dataset_from_directory` reads it (labels 0..K-1 in the sorted order
  of the subfolder names; hidden subfolders skipped; .png, .jpg, .jpeg, .bmp and .gif files,
  also in nested folders and through links), but each folder and each file once: a link
  loop, a second way into a folder, and a link back to the top or into another class are
  not followed, and an image reached twice is read once (Keras' walk follows a loop until
  the paths are too long). Images with the same pixels in two splits are counted. These
  are recorded in `Splits.folder_images` and logged in one line. With `image_shape`, the parent
  model's input (H, W, C), every image is resized to H×W (bilinear, Keras' default; the
  aspect ratio is not kept) and converted to C channels (1: grayscale, 3: RGB, 4: RGBA;
  grey repeated into RGB, colour weighted into grey, alpha dropped, a palette expanded).
  Where the model fixes no size (or there is none), every image must have the height and
  width of the first one (a mismatch is an error naming both files), and where it fixes no
  channels the images are read as grayscale (C = 1) when none has colour (grey or grey +
  alpha), else as RGB (C = 3). Integer pixels as decoded, or Keras' float ones where an
  image was resized, are divided by 255. What was done is `Splits.folder_images` (size,
  channels, how many images were resized and converted from which mode; recorded on the
  study) and, when any image was resized or converted, logged in one line. Each image is
  decoded twice (once for its size, once to read it). A folder has no test split of its own.
  `Splits.source` is `folder:/absolute/dir`; `Splits.class_names` are the subfolder names
  in label order, logged once (`classes: 0=cat, 1=dog`) and recorded on the study.
- `"module.path:function"` or `"path/to/file.py:function"` (when it names no existing
  file or folder): the function is called without arguments and returns a mapping with the
  npz keys above, whose values are NumPy arrays (anything `np.asarray` makes a numeric
  array of will do). `Splits.source` is `loader:module.path:function` or
  `loader:/absolute/file.py:function`. A file loader is imported on its own: its folder is
  not put on `sys.path`.

Rules, the same for every source; each violation is a one-line `DataError` that names the
source, the array (`npz:/d/x.npz [y_train] has ...`) and what was expected:

- Images are shaped (N, H, W) (read as (N, H, W, 1)) or (N, H, W, C) with C in 1..4, with the
  same H, W and C in every split, and have a numeric dtype. Integer pixels must lie in
  0..255 (uint8 or any other integer dtype); they are kept as uint8 and divided by 255
  into float32 [0, 1] per batch (`studies.datasets.as_float`: in memory 1 byte a pixel).
  Floating-point pixels must be finite and are kept as they are (as float32): they are NOT
  rescaled, so bring them in [0, 1] yourself (a warning is logged when they are not).
- Labels are integers (a float dtype is an error even for whole numbers), shaped (N,), one
  per image, and non-negative. K, the number of classes, is the largest label + 1 over all
  splits (for a folder: the number of class subfolders); K >= 2 and every class 0..K-1
  needs `MIN_TRAIN_PER_CLASS` training images, one more when the test split is held out of
  them. A given validation or test split must not be empty.

Splits, as `studies.datasets` makes them (DESIGN §4): without `x_test`, `TEST_FRACTION` of
every class is held out of the training images as the test split with the fixed
`TEST_SEED`, so the test split is the same for every `split_seed`; without `x_val`, the
validation split is carved from the rest with `split_seed` (`validation_fraction` of every
class). A given `x_val` / `x_test` keeps its rows (no carve); the training rows and the
given validation rows are put in the seeded stratified order of `studies.datasets` (every
prefix a fair sample, which `Budget.train_subset` and the accuracy floor's first validation
rows rely on), seeded by `split_seed`; a given test split keeps its order.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from definitions.errors import one_line
from definitions.importer import MODULE, import_module_target
from definitions.sources import classify, target_is_file
from studies.datasets import (
    MIN_TRAIN_PER_CLASS,
    TEST_FRACTION,
    TEST_SEED,
    UINT8_PIXEL_MAX,
    DataError,
    Splits,
    _carve,
    _stratified_order,
    check_labels,
)

log = logging.getLogger(__name__)

#: The arrays a source may give: the training pair is required, the others come in pairs.
TRAIN_KEYS = ("x_train", "y_train")
OPTIONAL_PAIRS = (("x_val", "y_val"), ("x_test", "y_test"))
KEYS = (*TRAIN_KEYS, *(key for pair in OPTIONAL_PAIRS for key in pair))
#: Image files a folder source reads (Keras' allow-list).
IMAGE_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
#: Keras' `color_mode` for each number of channels a folder can be read with.
COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}
#: What an image file holds, by the channels TensorFlow decodes it to (a palette image is
#: decoded to RGB, or RGBA when it has transparency).
IMAGE_MODES = {1: "grayscale", 2: "grayscale+alpha", 3: "RGB", 4: "RGBA"}
#: How a folder's images are resized (Keras' default `interpolation`).
INTERPOLATION = "bilinear"
#: (height, width, channels) of a parent model's input, each None where it takes any.
ImageShape = tuple[int | None, int | None, int | None]

_SPLITS = ("train", "val", "test")
_EXPECTED_SOURCE = (
    "expected an .npz file, a folder of class subfolders of images, or a loader "
    "'module.path:function' or 'path/to/file.py:function'"
)
_EXPECTED_KEYS = (
    "expected arrays x_train, y_train and optionally the pairs x_val, y_val and x_test, y_test"
)


@dataclass(frozen=True)
class _UserRaw:
    """A source as read, before the checks: its known arrays, every key it had, and the
    class names (a folder's subfolders; None when K comes from the labels) and how a
    folder's images were read (`Splits.folder_images`)."""

    source: str
    arrays: dict[str, np.ndarray]
    found: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    folder_images: dict[str, object] | None = None


def load_user_data(
    source: str | Path, *, split_seed: int = 0, validation_fraction: float = 0.1,
    image_shape: ImageShape | None = None,
) -> Splits:
    """Reads, checks and splits the user's data (see the module docstring for the sources,
    the rules and the splits); `DataError` names the source, the array and what is wrong.

    `image_shape`: the parent model's input (H, W, C), any of them None where it takes
    any, or None without a model to read for: an image folder is read at that size and
    with that many channels; other sources are taken as they are."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    splits = _split(
        _read_source(source, image_shape=image_shape), split_seed=split_seed,
        validation_fraction=validation_fraction,
    )
    log.info("loaded %s: %s, %d classes", splits.source, splits.sizes(), splits.num_classes)
    if splits.folder_images is not None and (changed := folder_changes(splits.folder_images)):
        log.warning("%s: %s", splits.source, changed)
    if splits.class_names is not None:
        log.info("classes: %s", class_mapping(splits.class_names))
    return splits


def folder_changes(read: Mapping[str, Any]) -> str | None:
    """What reading a folder did to its images (`Splits.folder_images`), in one line:
    `40 of 80 images resized to 28×28 (bilinear, as Keras' image_dataset_from_directory),
    20 converted to grayscale (from RGB: 20), for the parent model's input (28×28×1)`, then
    the links not followed, the files reached twice and the images identical across splits;
    None when every image was read as it is, once."""
    done = _conversions(read)
    if read.get("links_not_followed"):
        done.append(f"{read['links_not_followed']} folder links not followed (a loop, a "
                    "second way into a folder or a way into another class, e.g. "
                    f"{read['first_link_not_followed']})")
    if read.get("files_reached_twice"):
        done.append(f"{read['files_reached_twice']} images reached twice through links read "
                    f"once (e.g. {read['first_file_reached_twice']})")
    if read.get("identical_across_splits"):
        done.append(f"{read['identical_across_splits']} validation or test images are "
                    "identical to one in an earlier split (the same picture saved twice?)")
    return "; ".join(done) or None


def _conversions(read: Mapping[str, Any]) -> list[str]:
    """The resizing and conversion part of `folder_changes` (one item, or none)."""
    (height, width), channels = read["size"], read["channels"]
    total, converted = read["images"], read["converted"]
    done = []
    if read["resized"]:
        done.append(f"{read['resized']} of {total} images resized to {height}×{width} "
                    f"({read['interpolation']}, as Keras' image_dataset_from_directory)")
    if converted:
        modes = ", ".join(f"{mode}: {count}" for mode, count in converted.items())
        of = "" if done else f" of {total} images"
        done.append(f"{sum(converted.values())}{of} converted to {IMAGE_MODES[channels]} "
                    f"(from {modes})")
    if not done:
        return []
    parent = read.get("parent_input")
    shape = "×".join("any" if d is None else str(d) for d in parent) if parent else None
    return [", ".join(done) + (f", for the parent model's input ({shape})" if shape else "")]


def identical_across_splits(*splits: np.ndarray) -> int:
    """How many images of each split after the first have the very pixels of one in an
    earlier split: copies of one picture under two names, which a folder may hold and
    which would put the same image in training and in the test."""
    earlier: set[bytes] = set()
    count = 0
    for i, images in enumerate(splits):
        digests = [hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest()
                   for row in images]
        if i:
            count += sum(digest in earlier for digest in digests)
        earlier.update(digests)
    return count


#: The classes `class_mapping` lists before it says how many more there are.
LISTED_CLASSES = 30


def class_mapping(names: Sequence[str]) -> str:
    """`0=cat, 1=dog, ...`: the label each class name was given (a folder's subfolders,
    sorted), so a user can check the order against the one their model was trained on."""
    listed = ", ".join(f"{i}={name}" for i, name in enumerate(names[:LISTED_CLASSES]))
    more = len(names) - LISTED_CLASSES
    return listed + (f", … ({more} more; all {len(names)} in the study record's class_names)"
                     if more > 0 else "")


# --- reading: every failure is a DataError naming the source -----------------------------


def _read_source(source: str | Path, *, image_shape: ImageShape | None) -> _UserRaw:
    if isinstance(source, str) and not source.strip():
        raise DataError(f"the data source is empty; {_EXPECTED_SOURCE}")
    named = classify(source)
    if named.target is not None and named.attr is not None:  # code: a loader
        return _read_loader(named.target, named.attr)
    path = named.path
    if path.is_dir():
        return _read_folder(path.resolve(), image_shape=image_shape)
    if path.is_file() and named.python_file:
        raise DataError(
            f"{path} is a Python file; expected 'path/to/file.py:function' naming the "
            "function that returns the arrays"
        )
    if not path.exists():  # a string is shown as given, a Path `~` expanded
        shown = path if isinstance(source, Path) else source
        raise DataError(f"no such file or folder: {shown}; {_EXPECTED_SOURCE}")
    return _read_npz(path.resolve())


def _read_npz(path: Path) -> _UserRaw:
    source = f"npz:{path}"
    try:
        with path.open("rb") as file:
            head = file.read(4)
    except OSError as error:
        raise DataError(
            f"cannot read {path}: {error.strerror or error}; expected a readable .npz file"
        ) from None
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise DataError(
            f"{source} is not an .npz archive (no zip header); {_EXPECTED_KEYS} (np.savez)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            found = tuple(archive.files)
            arrays = {key: archive[key] for key in KEYS if key in found}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(
            f"{source} cannot be read as an .npz archive ({type(error).__name__}: "
            f"{one_line(error)}); {_EXPECTED_KEYS} of numbers (np.savez)"
        ) from None
    return _UserRaw(source, arrays, found)


def _read_loader(target: str, function: str) -> _UserRaw:
    spec_text = f"{target}:{function}"
    if target_is_file(target):
        path = Path(target).expanduser().resolve()
        source = f"loader:{path}:{function}"
    elif MODULE.match(target):
        source = f"loader:{spec_text}"
    else:
        raise DataError(f"no such file or folder: {spec_text}; {_EXPECTED_SOURCE}")
    try:
        module = import_module_target(target, error=DataError, source=source)
    except DataError as error:
        raise DataError(f"{error}; {_EXPECTED_SOURCE}") from error.__cause__
    loader = getattr(module, function, None)
    if not callable(loader):
        raise DataError(
            f"{source}: {target} has no function {function}; expected a function that "
            "takes no arguments and returns the arrays"
        )
    try:
        result = loader()
    except Exception as error:  # the user's code may fail in any way; keep it as the cause
        raise DataError(
            f"{source} raised {type(error).__name__}: {one_line(error)}; expected it to "
            "return a mapping of arrays"
        ) from error
    if not isinstance(result, Mapping):
        raise DataError(
            f"{source} returned a {type(result).__name__}; expected a mapping (dict) of arrays"
            " x_train, y_train and optionally the pairs x_val, y_val and x_test, y_test"
        )
    arrays = {}
    for key in KEYS:
        if key in result:
            try:
                arrays[key] = np.asarray(result[key])
            except (ValueError, TypeError) as error:
                raise DataError(
                    f"{source} [{key}] is not an array ({one_line(error)}); expected a "
                    "NumPy array"
                ) from None
    return _UserRaw(source, arrays, tuple(str(key) for key in result))


#: What a folder of images must hold, for the messages that refuse one.
FOLDER_EXPECTED = (f"expected one subfolder of images ({', '.join(IMAGE_FORMATS)}) per class, "
                   "named after the class")


def _read_folder(directory: Path, *, image_shape: ImageShape | None) -> _UserRaw:
    """A folder of class subfolders read as Keras' `image_dataset_from_directory` reads it,
    every image at the parent's input size and channels (`image_shape`) where given."""
    source = f"folder:{directory}"
    subfolders = _class_folders(directory, source)
    height, width, channels = image_shape or (None, None, None)
    if channels is not None and channels not in COLOR_MODES:
        raise DataError(
            f"{source}: the parent model takes {channels}-channel images; expected a model "
            f"whose input has 1 (grayscale), 3 (RGB) or 4 (RGBA) channels for a folder of "
            "images, or an .npz or a loader with images of that many channels"
        )

    import tensorflow as tf

    listing = _image_files(directory, subfolders, source)
    paths, class_names = list(listing.paths), tuple(subfolders)
    shapes = _decoded_shapes(tf, paths, source)
    if height is None or width is None:
        height, width = _one_size(shapes, paths, source, image_shape=image_shape)
    if channels is None:
        channels = 3 if np.any(shapes[:, 2] >= 3) else 1
    resized = int(np.count_nonzero((shapes[:, 0] != height) | (shapes[:, 1] != width)))
    modes, counts = np.unique(shapes[shapes[:, 2] != channels, 2], return_counts=True)
    color_mode = COLOR_MODES[channels]
    dataset = _decoded(tf, paths, listing.labels, size=(height, width), channels=channels)
    x_train, labels = _pixels(tf, dataset, source, color_mode=color_mode,
                              shape=(len(paths), height, width, channels), resized=resized > 0)
    arrays = {"x_train": x_train, "y_train": labels.astype(np.int64)}
    read = {
        "size": [int(height), int(width)],
        "channels": int(channels),
        "parent_input": None if image_shape is None else list(image_shape),
        "interpolation": INTERPOLATION,
        "images": len(paths),
        "resized": resized,
        "converted": {IMAGE_MODES.get(int(mode), f"{mode} channels"): int(count)
                      for mode, count in zip(modes, counts, strict=True)},
        **_links(listing),
    }
    return _UserRaw(source, arrays, tuple(arrays), class_names, read)


def _class_folders(directory: Path, source: str) -> list[str]:
    """The class subfolders' names, sorted; `DataError` when there are none."""
    try:
        subfolders = sorted(
            p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    except OSError as error:
        raise DataError(f"cannot read {source}: {error.strerror or error}") from None
    if not subfolders:
        raise DataError(f"{source} has no class subfolders; {FOLDER_EXPECTED}")
    return subfolders


@dataclass(frozen=True)
class _Listing:
    """The image files of a folder source, each once, in Keras' order, with their labels;
    what was not followed or read twice: the links to a folder already walked (a loop such
    as `a/loop -> ..`, or a second way into one folder) and the files reached again through
    a link (`skipped_links`, `repeated_files`: their paths as found)."""

    paths: tuple[str, ...]
    labels: np.ndarray
    skipped_links: tuple[str, ...]
    repeated_files: tuple[str, ...]


def _image_files(directory: Path, subfolders: Sequence[str], source: str) -> _Listing:
    """Every image file under each class subfolder (labels 0..K-1 in `subfolders`' order), as
    Keras lists them — links followed, folders in the order of their paths, files sorted
    by name, `IMAGE_FORMATS` by suffix in any case — but each folder and each file once:
    Keras' own walk follows a link loop until the paths grow too long, reading the same
    images thousands of times under both classes (issue 31). A link back to the top folder
    or into another class's folder is not followed (`a/loop -> ..` would label `b`'s images
    `a`); otherwise the first way into a folder or a file is the one kept. `DataError` when
    no image is found."""
    tops = [_real(directory / name) for name in subfolders]
    walked = {_real(directory)}
    seen_files: set[Path] = set()
    paths: list[str] = []
    labels: list[int] = []
    skipped: list[str] = []
    repeated: list[str] = []
    for label, name in enumerate(subfolders):
        foreign = tuple(top for top in tops if top != tops[label])
        for root, files in sorted(_walk(directory / name, walked, foreign, skipped)):
            for file in sorted(files):
                if not file.lower().endswith(IMAGE_FORMATS):
                    continue
                path = os.path.join(root, file)
                if (real := _real(path)) in seen_files:
                    repeated.append(path)
                    continue
                seen_files.add(real)
                paths.append(path)
                labels.append(label)
    if not paths:
        raise DataError(f"{source} has no images in {', '.join(subfolders)}; {FOLDER_EXPECTED}")
    return _Listing(tuple(paths), np.asarray(labels, np.int64), tuple(skipped), tuple(repeated))


def _links(listing: _Listing) -> dict[str, Any]:
    """What `Splits.folder_images` records of the links not followed and the files reached
    twice (only when there were any, so a plain folder's record is as before): counts, and
    the first path of each for the message."""
    recorded: dict[str, Any] = {}
    if listing.skipped_links:
        recorded["links_not_followed"] = len(listing.skipped_links)
        recorded["first_link_not_followed"] = listing.skipped_links[0]
    if listing.repeated_files:
        recorded["files_reached_twice"] = len(listing.repeated_files)
        recorded["first_file_reached_twice"] = listing.repeated_files[0]
    return recorded


def _real(path: str | Path) -> Path:
    return Path(path).resolve()


def _walk(top: Path, walked: set[Path], foreign: tuple[Path, ...], skipped: list[str]
          ) -> list[tuple[str, list[str]]]:
    """(folder, its file names) for `top` and every folder under it, links followed; a
    folder already `walked` (by its real path; the set grows) or inside a `foreign` one
    is not entered, and its path goes to `skipped`."""
    found: list[tuple[str, list[str]]] = []
    pending = [str(top)]  # breadth first: the shortest way into a folder is the one kept
    while pending:
        folder = pending.pop(0)
        real = _real(folder)
        if real in walked or any(real.is_relative_to(other) for other in foreign):
            skipped.append(folder)
            continue
        walked.add(real)
        files = []
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue  # unreadable, or a dangling link: no images (Keras skips it too)
        for entry in entries:
            if entry.is_dir():
                pending.append(entry.path)
            elif entry.is_file():
                files.append(entry.name)
        found.append((folder, files))
    return found


def _decoded(tf: Any, paths: Sequence[str], labels: np.ndarray, *, size: tuple[int, int],
            channels: int) -> Any:
    """The files decoded to `channels` and resized to `size` as Keras'
    `image_dataset_from_directory` does (`load_image`: `decode_image`, then `resize` with
    `INTERPOLATION`), float32 0..255, batched with their labels."""

    def load(path: Any) -> Any:
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                                   expand_animations=False)
        image = tf.image.resize(image, size, method=INTERPOLATION)
        image.set_shape((*size, channels))
        return image

    images = tf.data.Dataset.from_tensor_slices(list(paths)).map(load)
    return tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(labels))).batch(256)


def _one_size(shapes: np.ndarray, paths: list[str], source: str, *,
              image_shape: ImageShape | None) -> tuple[int, int]:
    """The one height and width of every image, where no model size says what to resize
    them to; `DataError` naming two that differ."""
    height, width = (int(d) for d in shapes[0, :2])
    wrong = np.flatnonzero((shapes[:, 0] != height) | (shapes[:, 1] != width))
    if wrong.size:
        i = int(wrong[0])
        why = ("the parent model's input takes any height and width, so there is no size "
               "to resize them to" if image_shape else
               "images are resized only to a saved parent model's input size, and there "
               "is none here")
        raise DataError(
            f"{source}: {paths[i]} is {shapes[i, 0]}×{shapes[i, 1]} pixels but {paths[0]} "
            f"is {height}×{width}; expected every image to have the same height and width "
            f"({why}: resize them first, or bring an .npz or a loader)"
        )
    return height, width


def _pixels(tf: Any, dataset: Any, source: str, *, color_mode: str,
            shape: tuple[int, int, int, int], resized: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every image and label of `dataset` (`shape` images), converted batch by batch from
    the float32 0..255 Keras gives (never the whole folder at 4 bytes a pixel): whole
    values where no image was `resized`, kept as uint8 (divided by 255 per batch with the
    other sources' integers), Keras' interpolated ones otherwise, divided by 255 here."""
    images = np.empty(shape, dtype=np.float32 if resized else np.uint8)
    labels, filled = [], 0
    try:
        for x, y in dataset:
            batch = x.numpy()
            rows = slice(filled, filled + len(batch))
            if resized:
                images[rows] = np.clip(batch, 0, UINT8_PIXEL_MAX) / np.float32(UINT8_PIXEL_MAX)
            else:
                images[rows] = np.clip(np.rint(batch), 0, UINT8_PIXEL_MAX).astype(np.uint8)
            filled += len(batch)
            labels.append(y.numpy())
    except tf.errors.OpError as error:
        raise DataError(
            f"{source}: an image cannot be read as {color_mode} "
            f"({type(error).__name__}: {one_line(error.message)}); {FOLDER_EXPECTED}"
        ) from None
    return images[:filled], np.concatenate(labels)


def _decoded_shapes(tf: Any, paths: Sequence[str], source: str) -> np.ndarray:
    """(height, width, channels) of every image file, as TensorFlow decodes it."""

    def shape(path: str) -> Any:
        return tf.shape(tf.io.decode_image(tf.io.read_file(path), expand_animations=False))

    shapes = tf.data.Dataset.from_tensor_slices(list(paths)).map(
        shape, num_parallel_calls=tf.data.AUTOTUNE
    )
    try:
        return np.concatenate([batch.numpy() for batch in shapes.batch(1024)])
    except tf.errors.OpError:
        for path in paths:  # find the file to name
            try:
                shape(tf.constant(path))
            except tf.errors.OpError as error:
                raise DataError(
                    f"{source}: {path} cannot be decoded ({type(error).__name__}: "
                    f"{one_line(error.message)}); expected a {', '.join(IMAGE_FORMATS)} image"
                ) from None
        raise


# --- checking: one function for every source ---------------------------------------------


def _shape_text(hwc: tuple[int, ...]) -> str:
    height, width, channels = hwc
    if channels == 1:
        return f"(N, {height}, {width}) or (N, {height}, {width}, 1)"
    return f"(N, {height}, {width}, {channels})"


def _images(x: np.ndarray, origin: str) -> np.ndarray:
    """Images (N, H, W, C): integers 0..255 as uint8 (`as_float` divides them by 255 per
    batch), finite floats as float32."""
    channels = x.shape[3] if x.ndim == 4 else 1
    if x.ndim not in (3, 4) or min(x.shape[1:3]) < 1 or not 1 <= channels <= 4:
        raise DataError(
            f"{origin} has images of shape {x.shape}; expected (N, H, W) or (N, H, W, C) with "
            "C in 1..4 channels"
        )
    if np.issubdtype(x.dtype, np.integer):
        if x.size and x.dtype != np.uint8:
            low, high = int(x.min()), int(x.max())
            if low < 0 or high > UINT8_PIXEL_MAX:
                raise DataError(
                    f"{origin} has integer pixel values {low}..{high}; expected "
                    f"0..{UINT8_PIXEL_MAX} (integer images are divided by {UINT8_PIXEL_MAX})"
                )
        images = x.astype(np.uint8, copy=False)  # values checked above (or uint8 already)
    elif np.issubdtype(x.dtype, np.floating):
        images = x.astype(np.float32, copy=False)
        bad = int(np.count_nonzero(~np.isfinite(images)))
        if bad:
            raise DataError(
                f"{origin} has {bad} non-finite pixel values (NaN or infinite in float32); "
                "expected finite floats"
            )
        if images.size and (images.min() < 0.0 or images.max() > 1.0):
            log.warning(
                "%s has float pixels %g..%g; they are used as they are, not rescaled to [0, 1]",
                origin, images.min(), images.max(),
            )
    else:
        raise DataError(
            f"{origin} has images of dtype {x.dtype}; expected a numeric dtype: integer "
            f"pixels 0..{UINT8_PIXEL_MAX} (uint8) or floats"
        )
    return images.reshape(*x.shape[:3], channels)


def _checked(raw: _UserRaw) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """(images, labels, K) per split present ("train", and "val", "test" when given)."""
    arrays, source = raw.arrays, raw.source
    missing = [key for key in TRAIN_KEYS if key not in arrays]
    if missing:
        raise DataError(
            f"{source} lacks {', '.join(missing)} (found: {', '.join(raw.found) or 'nothing'});"
            f" {_EXPECTED_KEYS}"
        )
    for x_key, y_key in OPTIONAL_PAIRS:
        if (x_key in arrays) != (y_key in arrays):
            have, lack = (x_key, y_key) if x_key in arrays else (y_key, x_key)
            raise DataError(f"{source} has {have} but no {lack}; expected both or neither")
    ignored = [key for key in raw.found if key not in KEYS]
    if ignored:
        log.warning("%s: ignoring %s (not one of %s)", source, ", ".join(ignored), ", ".join(KEYS))

    present = [split for split in _SPLITS if f"x_{split}" in arrays]
    images = {split: _images(arrays[f"x_{split}"], f"{source} [x_{split}]") for split in present}
    hwc = images["train"].shape[1:]
    for split in present:
        if images[split].shape[1:] != hwc:
            raise DataError(
                f"{source} [x_{split}] has images of shape {arrays[f'x_{split}'].shape}; "
                f"expected {_shape_text(hwc)} like x_train (the same height, width and "
                "channels in every split)"
            )
        if not len(images[split]):
            raise DataError(f"{source} [x_{split}] has no images; expected at least 1")
    labels = {
        split: check_labels(
            np.asarray(arrays[f"y_{split}"]), origin=f"{source} [y_{split}]",
            count=len(images[split]), images_origin=f"x_{split}", num_classes=None,
        )
        for split in present
    }

    if raw.class_names is not None:
        num_classes = len(raw.class_names)
        why = f"K = {num_classes} class subfolders"
    else:
        num_classes = 1 + max(int(y.max()) for y in labels.values())
        why = f"K = {num_classes}: the largest label + 1 over all splits"
    if num_classes < 2:
        only = f"{raw.class_names[0]!r}" if raw.class_names else "0"
        raise DataError(
            f"{source} [y_train] has one class only ({only}); expected at least 2 classes"
        )
    own_test = "test" in present
    need = MIN_TRAIN_PER_CLASS if own_test else MIN_TRAIN_PER_CLASS + 1
    counts = np.bincount(labels["train"], minlength=num_classes)
    short = np.flatnonzero(counts < need)
    if short.size:
        names = raw.class_names
        listed = ", ".join(
            f"class {c}{f' ({names[c]!r})' if names else ''}: {counts[c]}" for c in short[:5]
        )
        more = f" and {short.size - 5} more" if short.size > 5 else ""
        held = "" if own_test else "; one more because the test split is held out of them"
        raise DataError(
            f"{source} [y_train] has too few training images of {listed}{more}; expected at "
            f"least {need} of every class 0..{num_classes - 1} ({why}{held})"
        )
    return images, labels, num_classes


# --- splitting -----------------------------------------------------------------------------


def _split(raw: _UserRaw, *, split_seed: int, validation_fraction: float) -> Splits:
    images, labels, num_classes = _checked(raw)
    x, y = images["train"], labels["train"]
    if "test" in images:
        x_test, y_test = images["test"], labels["test"]
    else:
        rest, held = _carve(y, fraction=TEST_FRACTION, seed=TEST_SEED, keep=MIN_TRAIN_PER_CLASS)
        (x, y), (x_test, y_test) = (x[rest], y[rest]), (x[held], y[held])
    if "val" in images:
        rng = np.random.default_rng(split_seed)
        kept = _stratified_order(y, rng)
        x_val, y_val = images["val"], labels["val"]
        order = _stratified_order(y_val, rng)
        x_val, y_val = x_val[order], y_val[order]
    else:
        kept, held = _carve(y, fraction=validation_fraction, seed=split_seed)
        x_val, y_val = x[held], y[held]
    return Splits(
        x_train=x[kept],
        y_train=y[kept],
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        source=raw.source,
        split_seed=split_seed,
        num_classes=num_classes,
        class_names=raw.class_names,
        folder_images=_with_identical(raw.folder_images, x[kept], x_val, x_test),
    )


def _with_identical(read: dict[str, object] | None, *splits: np.ndarray
                    ) -> dict[str, object] | None:
    """A folder's `read` with the count of `identical_across_splits` where there are any."""
    if read is None or not (count := identical_across_splits(*splits)):
        return read
    return {**read, "identical_across_splits": count}
