"""Image folders as users have them: `run --model m.h5 --data folder` with images of mixed
sizes and modes reads each one at the parent's input size and channels (as Keras'
`image_dataset_from_directory` would for it), records what it did on the study, says it
once on stderr, and `export` reads the folder again the same way. A folder whose images
cannot be brought to one size is one line, exit 2, nothing stored."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from tests.conftest import run_cli

#: Images per class; half grey 20×20, half RGB 40 wide × 30 high.
PER_CLASS = 30


def _brightness_model(input_shape):
    """A small CNN that tells bright images (class 0, as the sorted folder names number
    them) from dark ones (class 1), trained."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input(input_shape),
        layers.Conv2D(4, 3, activation="relu", name="conv"),
        layers.GlobalAveragePooling2D(name="gap"),
        layers.Dense(2, activation="softmax", name="probs"),
    ])
    if None not in input_shape:
        rng = np.random.default_rng(0)
        y = np.arange(200) % 2
        x = np.where(y[:, None, None, None] == 0, rng.uniform(0.65, 1.0, (200, *input_shape)),
                     rng.uniform(0.0, 0.35, (200, *input_shape)))
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=30, verbose=0)
    return model


def _folder(root):
    """`dark/` and `bright/` with grey 20×20 and RGB 40×30 PNGs (PIL modes L and RGB)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, (low, high) in (("dark", (0, 80)), ("bright", (170, 256))):
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS // 2):
            Image.fromarray(rng.integers(low, high, (20, 20), dtype=np.uint8), "L").save(
                root / name / f"grey{i}.png")
            Image.fromarray(rng.integers(low, high, (30, 40, 3), dtype=np.uint8), "RGB").save(
                root / name / f"colour{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    here = tmp_path_factory.mktemp("folders")
    _brightness_model((28, 28, 1)).save(here / "m.h5")
    _folder(here / "images")
    run_dir = here / "run"
    out = run_cli("run", "--model", str(here / "m.h5"), "--data", str(here / "images"),
                  "--smoke", "--n-trials", "2", "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    return here, run_dir, out


def test_run_reads_a_mixed_folder_at_the_models_input_and_records_it(folder_run):
    _, run_dir, out = folder_run
    study = optuna.load_study(study_name="m-smoke", storage=f"sqlite:///{run_dir}/study.db")
    record = study.user_attrs["definition"]
    assert record["folder_images"] == {
        "size": [28, 28], "channels": 1, "parent_input": [28, 28, 1],
        "interpolation": "bilinear", "images": 2 * PER_CLASS, "resized": 2 * PER_CLASS,
        "converted": {"RGB": PER_CLASS}}
    said = [line for line in out.stderr.splitlines() if "images resized to" in line]
    assert len(said) == 1 and said[0].endswith(
        f"{2 * PER_CLASS} of {2 * PER_CLASS} images resized to 28×28 (bilinear, as Keras' "
        f"image_dataset_from_directory), {PER_CLASS} converted to grayscale (from RGB: "
        f"{PER_CLASS}), for the parent model's input (28×28×1)"), out.stderr[-3000:]
    assert study.user_attrs["parent_accuracy"] > 0.9  # the children inherit a real parent
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 2


def test_export_reads_the_folder_again_as_recorded(folder_run, tmp_path):
    _, run_dir, _ = folder_run
    study = optuna.load_study(study_name="m-smoke", storage=f"sqlite:///{run_dir}/study.db")
    trial = next(t for t in study.best_trials if "artifact_id" in t.user_attrs)
    out = run_cli("export", "--study", "m", "--smoke", "--run-dir", str(run_dir), "--trial",
                  str(trial.number), "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr[-3000:]
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert card["preprocessing"]["pixels"] == (
        "float32 = pixel / 255, each image read as grayscale and resized to 28×28 "
        "(bilinear, as Keras' image_dataset_from_directory)")


def test_a_mixed_folder_for_a_model_of_any_size_is_one_line_and_nothing_stored(tmp_path):
    _brightness_model((None, None, 1)).save(tmp_path / "any.keras")
    _folder(tmp_path / "images")
    run_dir = tmp_path / "run"
    out = run_cli("run", "--model", str(tmp_path / "any.keras"), "--data",
                  str(tmp_path / "images"), "--smoke", "--run-dir", str(run_dir))
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "takes any height and width" in lines[0], out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert not run_dir.exists()
