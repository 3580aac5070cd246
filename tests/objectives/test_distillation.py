"""Distillation from the trained parent (Hinton, Vinyals & Dean, 2015): the child's loss
mixes the labels with the parent's outputs softened at a temperature, and the parent's
outputs are computed once per study."""

from __future__ import annotations

import numpy as np
import pytest

from objectives.train import Distillation, train


def test_targets_carry_the_labels_then_the_parents_softened_outputs():
    logits = np.array([[2.0, 0.0, -2.0], [0.0, 0.0, 0.0]], np.float32)
    y = np.array([0, 2])
    cold = Distillation(outputs=logits, kind="logits", weight=0.5, temperature=1.0)
    hot = Distillation(outputs=logits, kind="logits", weight=0.5, temperature=4.0)
    targets = cold.targets(y)
    assert targets.shape == (2, 4) and targets.dtype == np.float32
    assert targets[:, 0].tolist() == [0.0, 2.0]
    np.testing.assert_allclose(targets[:, 1:].sum(axis=1), 1.0, rtol=1e-6)
    expected = np.exp([2.0, 0.0, -2.0]) / np.exp([2.0, 0.0, -2.0]).sum()
    np.testing.assert_allclose(targets[0, 1:], expected, rtol=1e-5)
    assert hot.targets(y)[0, 1] < targets[0, 1]  # a higher temperature softens
    # a softmax parent's probabilities give the same targets as its logits
    probs = Distillation(outputs=np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                         kind="probabilities", weight=0.5, temperature=4.0)
    np.testing.assert_allclose(probs.targets(y), hot.targets(y), rtol=1e-4)


def _problem(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])


@pytest.mark.parametrize("weight", [0.0, 0.95])
def test_a_child_learns_what_the_parent_says_in_proportion_to_the_weight(weight):
    """A parent that says the opposite of the labels: with a weight near 1 the child
    follows the parent (below chance on the labels), with 0 it follows the labels."""
    x, y = _problem()
    opposite = np.stack([x[:, 0], -x[:, 0]], axis=1) * 4.0  # logits for 1 - y
    distill = Distillation(outputs=opposite, kind="logits", weight=weight, temperature=2.0)
    model = _model()
    train(model, x=x, y=y, x_val=x, y_val=y, epochs=40, batch_size=8, accuracy_floor=0.0,
          seed=0, distill=distill)
    agree = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    if weight == 0.0:
        assert agree > 0.9
    else:
        assert agree < 0.1


def test_a_softmax_child_distills_without_a_second_softmax():
    import tensorflow as tf

    x, y = _problem()
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((4,)),
                                 tf.keras.layers.Dense(2, activation="softmax")])
    teacher = np.stack([-x[:, 0], x[:, 0]], axis=1) * 4.0
    record = train(model, x=x, y=y, x_val=x, y_val=y, epochs=40, batch_size=8,
                   accuracy_floor=0.0, seed=0, from_logits=False,
                   distill=Distillation(outputs=np.exp(teacher) / np.exp(teacher).sum(
                       1, keepdims=True), kind="probabilities", weight=0.5, temperature=2.0))
    assert record.losses[-1] < record.losses[0] and record.accuracies[-1] > 0.9
