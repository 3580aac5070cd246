"""The parent of a study: built-in families through the rewriter, a trained parent's
weights inherited, the loss following the output layer."""

from __future__ import annotations

import pytest
import tensorflow as tf

from objectives.build import build_model
from objectives.parent import (
    OutputError,
    ParentError,
    ParentSource,
    candidate_model,
    output_kind,
    prepare,
    width_grid,
)
from search_spaces.candidate import Candidate
from search_spaces.families import get_family
from search_spaces.rule import offered_layers
from studies.base import Budget
from studies.datasets import load_dataset

LENET = ParentSource(kind="family", target="lenet5_caffe")


@pytest.mark.parametrize("candidate", [
    Candidate(),
    Candidate(width=0.5, factorize=("conv_2",)),
    Candidate(width=1.25, factorize=("conv_1", "conv_2")),
])
def test_family_candidates_through_the_rewriter_equal_build_model(candidate):
    rewritten = candidate_model(source=LENET, candidate=candidate, input_shape=(28, 28, 1),
                                num_classes=10, seed=0)
    built = build_model(family=get_family("lenet5_caffe"), candidate=candidate,
                        input_shape=(28, 28, 1), num_classes=10)
    assert rewritten.count_params() == built.count_params()
    assert [w.shape for w in rewritten.weights] == [w.shape for w in built.weights]
    if candidate == Candidate():
        assert rewritten.count_params() == 431_080


def test_width_grid_is_the_grid_suggest_draws_from():
    assert width_grid(0.25, 1.5, 0.05)[:3] == (0.25, 0.3, 0.35)
    assert width_grid(0.25, 1.5, 0.05)[-1] == 1.5
    assert len(width_grid(0.25, 1.5, 0.05)) == 26
    assert width_grid(1.0, 1.0, 0.05) == (1.0,)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split_seed=0)


def test_prepare_offers_what_the_family_rule_offers(digits, tmp_path):
    widths = (0.5, 1.0)
    info = prepare(source=ParentSource(kind="family", target="tiny_cnn"), splits=digits,
                   budget=Budget(epochs=1, batch_size=64, n_trials=1), init="scratch",
                   outputs="auto", widths=widths, factorize_mode="guided", seed=0,
                   cache_dir=tmp_path)
    family = get_family("tiny_cnn")
    for w in widths:
        assert info.offered_at(w) == offered_layers(family, input_shape=(8, 8, 1), width=w,
                                                    mode="guided")
    assert info.outputs == "logits" and info.weights is None


def test_inherit_trains_the_parent_once_and_children_start_from_it(digits, tmp_path):
    source = ParentSource(kind="family", target="tiny_cnn")
    kwargs = dict(source=source, splits=digits, init="inherit", outputs="auto",
                  budget=Budget(epochs=10, batch_size=32, n_trials=1), widths=(1.0,),
                  factorize_mode="guided", seed=0, cache_dir=tmp_path)
    info = prepare(**kwargs)
    assert info.weights is not None and info.parent_accuracy > 0.8
    cached = list(tmp_path.glob("parent-*.weights.h5"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = prepare(**kwargs)
    assert cached[0].stat().st_mtime_ns == stamp  # the cache, not a second training
    assert again.parent_accuracy == pytest.approx(info.parent_accuracy)
    child = candidate_model(source=source, candidate=Candidate(), input_shape=(8, 8, 1),
                            num_classes=10, seed=1, weights=info.weights)
    from objectives.train import accuracy

    assert accuracy(child, digits.x_val, digits.y_val) == pytest.approx(info.parent_accuracy)
    fresh = candidate_model(source=source, candidate=Candidate(), input_shape=(8, 8, 1),
                            num_classes=10, seed=1)
    assert accuracy(fresh, digits.x_val, digits.y_val) < 0.5


def _ending(layer) -> tf.keras.Model:
    inputs = tf.keras.Input((4,))
    return tf.keras.Model(inputs, layer(tf.keras.layers.Dense(3)(inputs)))


def test_output_kind_tells_softmax_from_logits():
    assert output_kind(_ending(tf.keras.layers.Dense(3))) == "logits"
    assert output_kind(_ending(tf.keras.layers.Dense(3, activation="softmax"))) == \
        "probabilities"
    assert output_kind(_ending(tf.keras.layers.Softmax())) == "probabilities"
    seq = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3, "softmax")])
    assert output_kind(seq) == "probabilities"
    with pytest.raises(OutputError, match="sigmoid"):
        output_kind(_ending(tf.keras.layers.Dense(3, activation="sigmoid")))
    with pytest.raises(OutputError, match="declares logits"):
        output_kind(_ending(tf.keras.layers.Softmax()), declared="logits")


def test_a_softmax_model_is_trained_on_probabilities(digits):
    """The loss is told the output is probabilities (with from_logits=True a softmax
    output would be squashed twice), and the model learns digits on it."""
    from objectives.train import accuracy, train

    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Flatten()(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10, activation="softmax")(x))
    tf.keras.utils.set_random_seed(0)
    train(model, x=digits.x_train, y=digits.y_train, x_val=digits.x_val, y_val=digits.y_val,
          epochs=20, batch_size=32, accuracy_floor=0.0, seed=0,
          from_logits=output_kind(model) == "logits")
    assert model.loss.get_config()["from_logits"] is False
    assert accuracy(model, digits.x_val, digits.y_val) > 0.85


def test_a_model_for_other_shapes_is_refused_in_one_line(digits, tmp_path):
    inputs = tf.keras.Input((28, 28, 1))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(tf.keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "m.keras")
    with pytest.raises(ParentError, match=r"takes inputs of shape \(28, 28, 1\)"):
        prepare(source=ParentSource(kind="file", target=str(tmp_path / "m.keras")),
                splits=digits, budget=Budget(epochs=1, batch_size=8, n_trials=1),
                init="scratch", outputs="auto", widths=(1.0,), factorize_mode="guided",
                seed=0, cache_dir=tmp_path)
