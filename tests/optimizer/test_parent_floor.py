"""A parent that cannot teach is refused before the search (`--init inherit`): one line
naming its accuracy, chance, the likely causes and what to do, exit 2, nothing stored."""

from __future__ import annotations

import optuna
import pytest

from objectives.parent import ParentInfo
from optimizer.engine.parents import ParentCannotTeach, check_can_teach, plan_parent, teaching_floor
from studies.references import ParentSource
from tests.conftest import fit_on_digits, run_cli, save_digits_npz

FILE = ParentSource(kind="file", target="/m.keras")


@pytest.mark.parametrize(("classes", "floor"), [(2, 0.6), (10, 0.28), (100, 0.208)])
def test_the_floor_is_chance_plus_a_fifth_of_the_way_to_perfect(classes, floor):
    assert teaching_floor(classes) == pytest.approx(floor)
    assert teaching_floor(classes) > 1 / classes


def test_the_reported_stale_batchnorm_parent_is_refused_and_a_trained_one_is_not():
    stale = ParentInfo(name="net", outputs="logits", parent_accuracy=0.175)
    with pytest.raises(ParentCannotTeach) as refused:
        check_can_teach(stale, num_classes=10, source=FILE)
    message = str(refused.value)
    assert "\n" not in message
    for part in ("17.5% validation accuracy", "chance is 10.0% (10 classes)",
                 "parent at 28.0% or more", "too few training epochs", "BatchNorm", "labels",
                 "--init scratch", "train the saved model longer"):
        assert part in message, part
    check_can_teach(ParentInfo(name="net", outputs="logits", parent_accuracy=0.281),
                    num_classes=10, source=FILE)
    check_can_teach(ParentInfo(name="net", outputs="logits"), num_classes=10, source=FILE)


def test_a_builder_is_told_to_train_the_parent_longer():
    weak = ParentInfo(name="net", outputs="logits", parent_accuracy=0.55)
    with pytest.raises(ParentCannotTeach, match=r"Budget\(parent_epochs=N\)"):
        check_can_teach(weak, num_classes=2,
                        source=ParentSource(kind="function", target="m:build"))


def _dense_model(*, trained: bool):
    """A small softmax model on the 8×8 digits, trained well or not at all (with a
    BatchNorm layer whose moving statistics are still at their initial values)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="bn")(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.Flatten()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10, activation="softmax")(x))
    return fit_on_digits(model, epochs=15) if trained else model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("floor")
    _dense_model(trained=False).save(folder / "untrained.keras")
    _dense_model(trained=True).save(folder / "trained.keras")
    save_digits_npz(folder / "digits.npz")
    save_digits_npz(folder / "shifted.npz", shift_labels=1)
    return folder


def test_run_refuses_an_untrained_parent_before_any_trial_and_stores_nothing(folder, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    url = f"sqlite:///{run_dir / 'study.db'}"
    optuna.storages.RDBStorage(url)  # an empty database the run opens and must not write
    out = run_cli("run", "--model", str(folder / "untrained.keras"), "--data",
                  str(folder / "digits.npz"), "--name", "weak", "--smoke", "--run-dir",
                  str(run_dir))
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, out.stderr[-2000:]
    assert errors[0].startswith("optimizer run: error: parent ")
    assert "chance is 10.0% (10 classes)" in errors[0] and "--init scratch" in errors[0]
    assert "Traceback" not in out.stderr and "trial 0" not in out.stderr
    assert optuna.study.get_all_study_summaries(optuna.storages.RDBStorage(url)) == []


def test_labels_in_another_order_than_the_parent_learnt_are_refused(folder, tmp_path):
    from studies.references import files_study
    from studies.user_data import load_user_data

    def plan(data):
        study = files_study(model=str(folder / "trained.keras"), data=str(folder / data))
        splits = load_user_data(str(folder / data), split_seed=0)
        return plan_parent(study=study, splits=splits, seed=0, cache_dir=tmp_path,
                           isolate=False)

    assert plan("digits.npz").info.parent_accuracy > 0.8
    with pytest.raises(ParentCannotTeach, match="mismatched labels") as refused:
        plan("shifted.npz")
    assert "chance is 10.0% (10 classes)" in str(refused.value)
