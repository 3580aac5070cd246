"""Users' own data (`studies.user_data`): an .npz file, a folder of class subfolders of PNGs
or a Python loader becomes train / validation / test `Splits`; bad input is a one-line
`DataError` naming the source, the array and what was expected."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from definitions.errors import UsageError
from studies.datasets import DataError, as_float
from studies.user_data import identical_across_splits, load_user_data

CLASSES = 3


def _arrays(n_per_class=20, *, shape=(5, 4), seed=0):
    """uint8 images sorted by class (the worst order for a prefix), labels 0..2."""
    rng = np.random.default_rng(seed)
    n = n_per_class * CLASSES
    return {
        "x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "y_train": np.repeat(np.arange(CLASSES, dtype=np.uint8), n_per_class),
    }


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _rows(x, y):
    return sorted(xi.tobytes() + int(yi).to_bytes(8, "little") for xi, yi in zip(x, y, strict=True))


def _error(source, **options):
    with pytest.raises(DataError) as caught:
        load_user_data(source, **options)
    assert isinstance(caught.value, UsageError)  # the CLI prints it as one line, exit 2
    message = str(caught.value)
    assert "\n" not in message and "expected" in message, message
    return message


# --- npz ------------------------------------------------------------------------------------


def test_an_npz_with_only_training_data_gets_three_fair_splits_and_a_stable_fingerprint(
    tmp_path,
):
    arrays = _arrays(20)
    path = _npz(tmp_path, **arrays)
    splits = load_user_data(path)
    assert splits.source == f"npz:{path.resolve()}"
    assert splits.num_classes == CLASSES and splits.split_seed == 0
    assert splits.input_shape == (5, 4, 1)
    # 20 per class: 4 held out for test, 2 of the other 16 for validation, 14 to train
    assert splits.sizes() == {"train": 42, "validation": 6, "test": 12}
    for y, per_class in ((splits.y_train, 14), (splits.y_val, 2), (splits.y_test, 4)):
        assert y.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(y), [per_class] * CLASSES)
    assert set(np.bincount(splits.y_train[:6], minlength=CLASSES)) <= {1, 2, 3}  # fair prefix
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert x.dtype == np.uint8  # integer pixels kept as they were: 1 byte a pixel
    everything = (as_float(np.concatenate([splits.x_train, splits.x_val, splits.x_test])),
                  np.concatenate([splits.y_train, splits.y_val, splits.y_test]))
    assert _rows(*everything) == _rows(
        arrays["x_train"][..., None].astype(np.float32) / 255, arrays["y_train"])
    copy = _npz(tmp_path, "elsewhere.npz", **arrays)
    assert load_user_data(str(copy)).fingerprints() == splits.fingerprints()  # not the path


def test_an_npz_with_validation_and_test_splits_uses_them_as_given(tmp_path):
    arrays = _arrays(6)
    val, test = _arrays(2, seed=1), _arrays(3, seed=2)
    path = _npz(tmp_path, **arrays, x_val=val["x_train"], y_val=val["y_train"],
                x_test=test["x_train"], y_test=test["y_train"])
    splits = load_user_data(path)
    np.testing.assert_array_equal(as_float(splits.x_test),
                                  test["x_train"][..., None] / np.float32(255))
    np.testing.assert_array_equal(splits.y_test, test["y_train"])
    # no carve: the same rows, in the fair order every prefix relies on
    assert _rows(as_float(splits.x_val), splits.y_val) == _rows(
        val["x_train"][..., None] / np.float32(255), val["y_train"])
    assert _rows(as_float(splits.x_train), splits.y_train) == _rows(
        arrays["x_train"][..., None] / np.float32(255), arrays["y_train"])
    np.testing.assert_array_equal(np.bincount(splits.y_val[:3]), [1, 1, 1])


def test_float_images_with_channels_are_kept_as_they_are(tmp_path):
    arrays = _arrays(3, shape=(4, 4, 3))
    arrays["x_train"] = arrays["x_train"].astype(np.float64) / 255
    splits = load_user_data(_npz(tmp_path, **arrays))
    assert splits.input_shape == (4, 4, 3)
    assert _rows(np.concatenate([splits.x_train, splits.x_val, splits.x_test]),
                 np.concatenate([splits.y_train, splits.y_val, splits.y_test])) == _rows(
        arrays["x_train"].astype(np.float32), arrays["y_train"])


def test_the_split_seed_changes_the_validation_split_and_never_the_test_split(tmp_path):
    path = _npz(tmp_path, **_arrays(20))
    first, again, other = (load_user_data(path, split_seed=s) for s in (0, 0, 1))
    assert first.fingerprints() == again.fingerprints()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert other.fingerprints()["test"] == first.fingerprints()["test"]
    assert other.fingerprints()["validation"] != first.fingerprints()["validation"]
    assert other.split_seed == 1
    assert _rows(np.concatenate([other.x_train, other.x_val]),
                 np.concatenate([other.y_train, other.y_val])) == _rows(
        np.concatenate([first.x_train, first.x_val]),
        np.concatenate([first.y_train, first.y_val]))


def _changed(**changes):
    def change(arrays):
        arrays.update(changes)
        for key in [key for key, value in arrays.items() if value is None]:
            del arrays[key]
        return arrays
    return change


X, Y = _arrays(3)["x_train"], _arrays(3)["y_train"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_changed(y_train=None), ["lacks y_train", "found: x_train"]),
        (_changed(x_val=X), ["x_val but no y_val"]),
        (_changed(y_test=Y), ["y_test but no x_test"]),
        (_changed(y_train=Y.astype(np.int64) - 1), ["[y_train]", "labels -1..1", "0..K-1"]),
        (_changed(y_train=Y.astype(np.float32)), ["[y_train]", "dtype float32", "integer"]),
        (_changed(y_train=Y[:-1]), ["[y_train] has 8 labels", "x_train has 9 images"]),
        (_changed(y_train=Y[:, None]), ["[y_train]", "shape (9, 1)", "(N,)"]),
        (_changed(x_test=X[:, :4], y_test=Y), ["[x_test]", "(9, 4, 4)", "like x_train"]),
        (_changed(x_val=X[..., None].repeat(3, -1), y_val=Y), ["[x_val]", "(N, 5, 4) or"]),
        (_changed(x_train=np.where(X > 128, np.nan, X / 255)), ["[x_train]", "non-finite"]),
        (_changed(x_train=np.where(X == X.max(), 300, X.astype(np.int16))),
         ["[x_train]", "integer pixel values", "..300", "expected 0..255"]),
        (_changed(x_train=X > 128), ["[x_train]", "dtype bool", "numeric"]),
        (_changed(x_train=X[..., None].repeat(5, -1)), ["[x_train]", "C in 1..4"]),
        (_changed(x_train=X[:, 0]), ["[x_train]", "shape (9, 4)"]),
        (_changed(y_train=np.zeros(9, np.int8)), ["[y_train] has one class only"]),
        (_changed(y_train=Y * 2), ["[y_train] has too few", "class 1: 0", "class 3: 0"]),
        (_changed(x_val=X[:0], y_val=Y[:0]), ["[x_val] has no images"]),
    ],
    ids=lambda v: None if callable(v) else v[0],
)
def test_bad_npz_arrays_are_a_one_line_error_naming_the_array(tmp_path, change, named):
    path = _npz(tmp_path, **change(_arrays(3)))
    message = _error(path)
    assert message.startswith(f"npz:{path.resolve()}"), message
    for text in named:
        assert text in message, message


def test_two_images_of_a_class_are_too_few_when_the_test_split_is_held_out(tmp_path):
    arrays = _arrays(3)
    keep = np.r_[0:2, 3:9]  # class 0 has two images
    message = _error(_npz(tmp_path, x_train=arrays["x_train"][keep],
                          y_train=arrays["y_train"][keep]))
    assert "class 0: 2" in message and "at least 3" in message and "held out" in message


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"not numbers at all", "not an .npz archive"),
        (None, "no such file or folder"),
    ],
)
def test_a_missing_or_foreign_file_is_named(tmp_path, content, named):
    path = tmp_path / "data.npz"
    if content is not None:
        path.write_bytes(content)
    message = _error(path)
    assert named in message and str(path) in message


def test_a_damaged_npz_is_named(tmp_path):
    path = _npz(tmp_path, **_arrays(3))
    path.write_bytes(path.read_bytes()[:300])
    assert "cannot be read as an .npz archive (BadZipFile" in _error(path)


# --- loaders ------------------------------------------------------------------------------


LOADER = """\
import numpy as np

def load():
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (60, 5, 4), dtype=np.uint8),
        "y_train": np.repeat(np.arange(3, dtype=np.uint8), 20),
        "notes": "ignored",
    }

def broken():
    raise RuntimeError("no data\\nhere")

def a_list():
    return [1, 2, 3]

NOT_A_FUNCTION = 3
"""


def test_a_loader_file_gives_the_same_splits_as_the_npz_of_its_arrays(tmp_path):
    (tmp_path / "my_loader.py").write_text(LOADER)
    splits = load_user_data(f"{tmp_path}/my_loader.py:load")
    assert splits.source == f"loader:{tmp_path.resolve()}/my_loader.py:load"
    from_npz = load_user_data(_npz(tmp_path, **_arrays(20)))
    assert splits.fingerprints() == from_npz.fingerprints()


def test_a_loader_module_path_is_imported(tmp_path, monkeypatch):
    package = tmp_path / "user_data_fixture_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "arrays.py").write_text(LOADER)
    monkeypatch.syspath_prepend(tmp_path)
    splits = load_user_data("user_data_fixture_pkg.arrays:load")
    assert splits.source == "loader:user_data_fixture_pkg.arrays:load"
    assert splits.sizes() == {"train": 42, "validation": 6, "test": 12}


@pytest.mark.parametrize(
    ("function", "named"),
    [
        ("broken", "my_loader.py:broken raised RuntimeError: no data here"),
        ("a_list", "my_loader.py:a_list returned a list; expected a mapping"),
        ("missing", "has no function missing"),
        ("NOT_A_FUNCTION", "has no function NOT_A_FUNCTION"),
    ],
)
def test_a_loader_that_fails_or_returns_something_else_is_named(tmp_path, function, named):
    (tmp_path / "my_loader.py").write_text(LOADER)
    message = _error(f"{tmp_path}/my_loader.py:{function}")
    assert message.startswith(f"loader:{tmp_path.resolve()}/my_loader.py"), message
    assert named in message, message


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("no_such_module_for_user_data:load", "cannot import module no_such_module_for_user_data"),
        ("{tmp}/fails_on_import.py:load", "fails_on_import.py raised ModuleNotFoundError"),
        ("{tmp}/absent.py:load", "no such file"),
        ("{tmp}/my_loader.py", "is a Python file"),
        ("{tmp}/absent.npz", "no such file or folder"),
    ],
)
def test_a_source_that_names_nothing_usable_is_named(tmp_path, source, named):
    (tmp_path / "my_loader.py").write_text(LOADER)
    (tmp_path / "fails_on_import.py").write_text("import no_such_module_for_user_data\n")
    assert named.format(tmp=tmp_path) in _error(source.format(tmp=tmp_path))


def test_a_loader_missing_a_training_array_names_the_found_keys(tmp_path):
    (tmp_path / "only_x.py").write_text(textwrap.dedent("""\
        import numpy as np
        def load():
            return {"x_train": np.zeros((6, 2, 2), np.uint8), "labels": np.arange(6)}
        """))
    message = _error(f"{tmp_path}/only_x.py:load")
    assert "lacks y_train (found: x_train, labels)" in message


# --- folders of images --------------------------------------------------------------------


def _write_pngs(folder, images):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")


def test_a_folder_of_class_subfolders_of_pngs_is_read_with_labels_from_the_folder_names(
    tmp_path,
):
    rng = np.random.default_rng(0)
    written = {}
    for name in ("emu", "cat", "dog"):  # labels follow the sorted names: cat 0, dog 1, emu 2
        written[name] = rng.integers(0, 256, (4, 6, 6), dtype=np.uint8)
        _write_pngs(tmp_path / "images" / name, written[name])
    (tmp_path / "images" / ".cache").mkdir()  # hidden: not a class
    splits = load_user_data(tmp_path / "images")
    assert splits.source == f"folder:{(tmp_path / 'images').resolve()}"
    assert splits.num_classes == 3 and splits.input_shape == (6, 6, 1)
    # 4 per class: 1 held out for test, 1 of the other 3 for validation, 2 to train
    assert splits.sizes() == {"train": 6, "validation": 3, "test": 3}
    everything = (as_float(np.concatenate([splits.x_train, splits.x_val, splits.x_test])),
                  np.concatenate([splits.y_train, splits.y_val, splits.y_test]))
    expected = [(written[name][..., None] / np.float32(255), np.full(4, label))
                for label, name in enumerate(("cat", "dog", "emu"))]
    assert _rows(*everything) == _rows(np.concatenate([x for x, _ in expected]),
                                       np.concatenate([y for _, y in expected]))


def test_a_folder_with_one_colour_image_is_read_as_rgb(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        _write_pngs(tmp_path / name, rng.integers(0, 256, (3, 6, 6), dtype=np.uint8))
    _write_pngs(tmp_path / "b" / "colour", rng.integers(0, 256, (1, 6, 6, 3), dtype=np.uint8))
    splits = load_user_data(tmp_path)
    assert splits.input_shape == (6, 6, 3) and splits.sizes()["test"] == 2


def _all(splits):
    return (as_float(np.concatenate([splits.x_train, splits.x_val, splits.x_test])),
            np.concatenate([splits.y_train, splits.y_val, splits.y_test]))


def test_a_folder_with_link_loops_reads_each_image_once_under_its_own_class(tmp_path, caplog):
    rng = np.random.default_rng(0)
    written = {name: rng.integers(0, 256, (20, 6, 6), dtype=np.uint8) for name in "ab"}
    for name, images in written.items():
        _write_pngs(tmp_path / "images" / name, images)
    (tmp_path / "images" / "a" / "loop").symlink_to("..")  # reaches b from a, and a again
    (tmp_path / "images" / "b" / "self").symlink_to(tmp_path / "images" / "b")
    with caplog.at_level("WARNING"):
        splits = load_user_data(tmp_path / "images")
    x, y = _all(splits)
    assert len(x) == 40  # Keras' own walk read 18,040 and labelled 16,400 of b's images a
    expected = [(written[name][..., None] / np.float32(255), np.full(20, label))
                for label, name in enumerate("ab")]
    assert _rows(x, y) == _rows(np.concatenate([e for e, _ in expected]),
                                np.concatenate([e for _, e in expected]))
    assert splits.folder_images["links_not_followed"] == 2
    assert "2 folder links not followed" in caplog.text and "identical" not in caplog.text


def test_an_image_linked_into_another_class_is_read_once_under_the_first(tmp_path, caplog):
    rng = np.random.default_rng(1)
    for name in "ab":
        _write_pngs(tmp_path / name, rng.integers(0, 256, (6, 6, 6), dtype=np.uint8))
    (tmp_path / "b" / "also.png").symlink_to(tmp_path / "a" / "0.png")
    with caplog.at_level("WARNING"):
        splits = load_user_data(tmp_path)
    x, y = _all(splits)
    assert len(x) == 12 and np.count_nonzero(y == 0) == 6
    assert len({row.tobytes() for row in x}) == 12  # no image twice, so none in two splits
    assert splits.folder_images["files_reached_twice"] == 1
    assert f"1 images reached twice through links read once (e.g. {tmp_path}/b/also.png)" in (
        caplog.text)


def test_copies_of_one_picture_in_two_splits_are_counted_and_reported(tmp_path, caplog):
    rng = np.random.default_rng(2)
    _write_pngs(tmp_path / "a", np.repeat(rng.integers(0, 256, (1, 6, 6), np.uint8), 8, 0))
    _write_pngs(tmp_path / "b", rng.integers(0, 256, (8, 6, 6), dtype=np.uint8))
    with caplog.at_level("WARNING"):
        splits = load_user_data(tmp_path)
    # every validation and test image of class a is a copy of the training ones
    expected = int(np.count_nonzero(splits.y_val == 0) + np.count_nonzero(splits.y_test == 0))
    assert expected >= 2
    assert splits.folder_images["identical_across_splits"] == expected
    assert f"{expected} validation or test images are identical" in caplog.text


def test_identical_across_splits_counts_each_later_copy_of_an_earlier_image():
    a, b, c, d = (np.full((2, 2), v, np.uint8) for v in range(4))
    assert identical_across_splits(np.stack([a, b]), np.stack([a, c]),
                                   np.stack([c, d, a])) == 3
    assert identical_across_splits(np.stack([a, a]), np.stack([b])) == 0


def test_a_folder_of_images_of_different_sizes_names_both_files(tmp_path):
    rng = np.random.default_rng(0)
    _write_pngs(tmp_path / "a", rng.integers(0, 256, (3, 6, 6), dtype=np.uint8))
    _write_pngs(tmp_path / "b", rng.integers(0, 256, (3, 6, 7), dtype=np.uint8))
    message = _error(tmp_path)
    assert f"{tmp_path / 'b' / '0.png'} is 6×7 pixels but {tmp_path / 'a' / '0.png'} is 6×6" in (
        message)


def test_a_folder_with_a_file_that_is_not_an_image_names_the_file(tmp_path):
    _write_pngs(tmp_path / "a", np.zeros((3, 6, 6), np.uint8))
    _write_pngs(tmp_path / "b", np.zeros((3, 6, 6), np.uint8))
    (tmp_path / "b" / "1.png").write_bytes(b"not a png")
    assert f"{tmp_path / 'b' / '1.png'} cannot be decoded" in _error(tmp_path)


def test_a_folder_with_one_class_or_none_is_named(tmp_path):
    assert "has no class subfolders" in _error(tmp_path)
    _write_pngs(tmp_path / "only", np.zeros((3, 6, 6), np.uint8))
    assert "has one class only ('only')" in _error(tmp_path)


# --- folders of images of mixed sizes and modes, read for a parent model -------------------


def _mixed_folder(root, *, per_class=3, seed=0):
    """Two classes, each of grey 20×20 and RGB 40-wide × 30-high PNGs (PIL modes L and
    RGB); returns {file name: the PIL image written}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            grey = Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8), "L")
            colour = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB")
            for kind, image in (("grey", grey), ("colour", colour)):
                path = root / name / f"{kind}{i}.png"
                image.save(path)
                written[str(path)] = image
    return written


def _keras_resize(pixels, size):
    """What Keras does to a decoded image: `tf.image.resize`, bilinear, no antialiasing."""
    import tensorflow as tf

    pixels = pixels if pixels.ndim == 3 else pixels[..., None]
    return tf.image.resize(pixels.astype(np.float32), size, method="bilinear").numpy()


def _nearest(images, expected):
    """The largest difference of `expected` to the closest of `images`."""
    return float(np.abs(images - expected[None]).max(axis=(1, 2, 3)).min())


def _all_images(splits):
    return as_float(np.concatenate([splits.x_train, splits.x_val, splits.x_test]))


def test_images_of_mixed_sizes_and_modes_are_resized_and_converted_for_the_model(
    tmp_path, caplog,
):
    import logging

    from PIL import Image

    written = _mixed_folder(tmp_path / "pets")
    with caplog.at_level(logging.WARNING, logger="studies"):
        splits = load_user_data(tmp_path / "pets", image_shape=(28, 28, 1))
    assert splits.input_shape == (28, 28, 1) and splits.num_classes == 2
    assert splits.x_train.dtype == np.float32  # Keras' interpolated pixels, kept / 255
    images = _all_images(splits)
    assert 0.0 <= images.min() and images.max() <= 1.0
    for image in written.values():
        grey = np.asarray(image.convert("L"))  # ITU-R 601 luma, as libpng's (±1 level)
        # as Keras reads it: decoded to grey, then resized bilinear without antialiasing
        assert _nearest(images, _keras_resize(grey, (28, 28)) / 255) <= 1.01 / 255
        if image.size == (20, 20):  # enlarged: PIL's bilinear agrees (within a level)
            pil = np.asarray(image.resize((28, 28), Image.BILINEAR), np.float32)[..., None]
            assert _nearest(images, pil / 255) <= 1.01 / 255
    assert splits.folder_images == {
        "size": [28, 28], "channels": 1, "parent_input": [28, 28, 1],
        "interpolation": "bilinear", "images": 12, "resized": 12, "converted": {"RGB": 6},
    }
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"folder:{(tmp_path / 'pets').resolve()}: 12 of 12 images resized to 28×28 "
        "(bilinear, as Keras' image_dataset_from_directory), 6 converted to grayscale "
        "(from RGB: 6), for the parent model's input (28×28×1)"]
    again = load_user_data(tmp_path / "pets", image_shape=(28, 28, 1))
    assert again.fingerprints() == splits.fingerprints()  # deterministic


def test_an_rgb_model_gets_three_channels_from_grey_palette_and_rgba_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(grey, "L").save(tmp_path / name / f"grey{i}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8, 4), dtype=np.uint8), "RGBA").save(
            tmp_path / name / "rgba.png")
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").quantize(
            16).save(tmp_path / name / "palette.png")
    splits = load_user_data(tmp_path, image_shape=(8, 8, 3))
    assert splits.input_shape == (8, 8, 3)
    images = _all_images(splits)
    grey = np.asarray(Image.open(tmp_path / "a" / "grey0.png"))[..., None] / np.float32(255)
    assert _nearest(images, np.repeat(grey, 3, axis=-1)) == 0.0  # grey into R, G and B
    rgba = np.asarray(Image.open(tmp_path / "b" / "rgba.png"))
    assert _nearest(images, rgba[..., :3] / np.float32(255)) == 0.0  # alpha dropped
    palette = np.asarray(Image.open(tmp_path / "a" / "palette.png").convert("RGB"))
    assert _nearest(images, palette / np.float32(255)) == 0.0  # the palette's colours
    assert splits.folder_images["resized"] == 0  # no resize: the integer pixels / 255
    assert splits.x_train.dtype == np.uint8  # kept as read, 1 byte a pixel
    assert splits.folder_images["converted"] == {"grayscale": 6, "RGBA": 2}


def test_a_folder_of_the_models_size_reads_as_it_did_without_a_model(tmp_path, caplog):
    import logging

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        _write_pngs(tmp_path / name, rng.integers(0, 256, (3, 6, 6), dtype=np.uint8))
    alone = load_user_data(tmp_path)
    with caplog.at_level(logging.WARNING, logger="studies"):
        for shape in ((6, 6, 1), (6, 6, None), (None, None, 1)):
            read = load_user_data(tmp_path, image_shape=shape)
            assert read.fingerprints() == alone.fingerprints(), shape
            assert read.folder_images["resized"] == 0 and not read.folder_images["converted"]
    assert not caplog.records  # nothing resized or converted: nothing announced
    assert alone.folder_images == {"size": [6, 6], "channels": 1, "parent_input": None,
                                   "interpolation": "bilinear", "images": 6, "resized": 0,
                                   "converted": {}}


@pytest.mark.parametrize(("shape", "named"), [
    ((None, None, 1), "the parent model's input takes any height and width"),
    ((28, 28, 2), "the parent model takes 2-channel images"),
])
def test_a_folder_without_a_size_or_channels_to_read_at_is_one_line(tmp_path, shape, named):
    _mixed_folder(tmp_path, per_class=1)
    assert named in _error(tmp_path, image_shape=shape)
