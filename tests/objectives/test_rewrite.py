"""Rewriting any Keras CNN: coupled channels stay consistent, shapes survive, weights carry over.

The parents are written like the Keras examples (a residual block, a depthwise-separable
block, the MNIST convnet, Keras' MobileNetV2) on tiny inputs; nothing here trains.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from definitions.errors import UsageError
from objectives.build import build_model
from objectives.rewrite import (
    RewriteError,
    analyze,
    factorize_kernel,
    offered_factorizations,
    transform,
)
from search_spaces import Candidate
from search_spaces.families import get_family
from search_spaces.rule import offered_layers

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def _residual():
    """conv→BN→relu→conv→BN plus a 1×1 shortcut conv, Add, relu, GAP, Dense(10)."""
    from tensorflow.keras import Input, Model, layers

    inputs = Input((8, 8, 3), name="image")
    x = layers.Conv2D(12, 3, padding="same", name="conv_a")(inputs)
    x = layers.BatchNormalization(name="bn_a")(x)
    x = layers.ReLU(name="relu_a")(x)
    x = layers.Conv2D(16, 3, padding="same", name="conv_b")(x)
    x = layers.BatchNormalization(name="bn_b")(x)
    shortcut = layers.Conv2D(16, 1, name="shortcut")(inputs)
    x = layers.Add(name="add")([x, shortcut])
    x = layers.ReLU(name="relu_out")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return Model(inputs, layers.Dense(10, name="logits")(x), name="residual")


def _separable():
    """A stem conv, then DepthwiseConv2D→BN→relu→Conv2D 1×1, GAP, Dense(10)."""
    from tensorflow.keras import Input, Model, layers

    inputs = Input((8, 8, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.Conv2D(16, 1, name="pointwise")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return Model(inputs, layers.Dense(10, name="logits")(x), name="separable")


def _mnist():
    """The Keras MNIST convnet example, as a Sequential model."""
    import tensorflow as tf
    from tensorflow.keras import layers

    return tf.keras.Sequential([
        tf.keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu", name="conv_1"),
        layers.MaxPooling2D(pool_size=(2, 2), name="pool_1"),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu", name="conv_2"),
        layers.MaxPooling2D(pool_size=(2, 2), name="pool_2"),
        layers.Flatten(name="flatten"),
        layers.Dropout(0.5, name="dropout"),
        layers.Dense(10, activation="softmax", name="output"),
    ], name="mnist")


def _inception():
    """Two branches (1×1 and 3×3) concatenated along channels, then a conv, GAP, Dense."""
    from tensorflow.keras import Input, Model, layers

    inputs = Input((8, 8, 3), name="image")
    a = layers.Conv2D(8, 1, activation="relu", name="branch_1x1")(inputs)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="branch_3x3")(inputs)
    x = layers.Concatenate(name="concat")([a, b])
    x = layers.Conv2D(6, 3, activation="relu", name="conv_c")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return Model(inputs, layers.Dense(10, name="logits")(x), name="inception")


PARENTS = {"residual": _residual, "separable": _separable, "mnist": _mnist,
           "inception": _inception}


def _images(model, n=2, seed=0):
    shape = tuple(int(d) for d in model.input_shape[1:])
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def _randomize(model, seed=0):
    """Non-trivial weights everywhere, BatchNorm moving statistics included."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            if "moving_variance" in weight.name:
                values.append(rng.uniform(0.5, 1.5, weight.shape))
            else:
                values.append(rng.normal(0.0, 0.5, weight.shape))
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])
    return model


def _run(model, x):
    return model(x, training=False).numpy()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("parent", list(PARENTS))
def test_the_output_shape_is_the_parents_at_every_width(parent, width):
    model = PARENTS[parent]()
    child = transform(model, width=width, inherit=False, seed=0)
    assert child.output_shape == model.output_shape
    assert _run(child, _images(model)).shape == (2, 10)


def test_residual_block_at_half_width_has_the_hand_counted_parameters():
    child = transform(_residual(), width=0.5, inherit=False)
    # conv_a 12→6 over 3 channels, conv_b and shortcut 16→8 (coupled by the Add).
    conv_a, bn_a = 3 * 3 * 3 * 6 + 6, 4 * 6
    conv_b, bn_b, shortcut = 3 * 3 * 6 * 8 + 8, 4 * 8, 3 * 8 + 8
    logits = 8 * 10 + 10
    assert child.count_params() == conv_a + bn_a + conv_b + bn_b + shortcut + logits == 786
    assert child.get_layer("add").input_shape == [(None, 8, 8, 8), (None, 8, 8, 8)]

    factorized = transform(_residual(), width=0.5, factorize=("conv_b",), inherit=False)
    # conv_b as 3×1 (6→8, no bias) then 1×3 (8→8, bias): r = min(m, c·n, n·m) = 8.
    assert factorized.count_params() == 786 - conv_b + (3 * 6 * 8) + (3 * 8 * 8 + 8)


def test_separable_block_at_half_width_has_the_hand_counted_parameters():
    child = transform(_separable(), width=0.5, inherit=False)
    stem, depthwise, bn = 3 * 3 * 3 * 4 + 4, 3 * 3 * 4 + 4, 4 * 4  # depthwise follows the stem
    pointwise, logits = 4 * 8 + 8, 8 * 10 + 10
    assert child.count_params() == stem + depthwise + bn + pointwise + logits == 298


def test_mnist_sequential_at_half_width_has_the_hand_counted_parameters():
    child = transform(_mnist(), width=0.5, inherit=False)
    conv_1, conv_2 = 3 * 3 * 1 * 16 + 16, 3 * 3 * 16 * 32 + 32
    output = 5 * 5 * 32 * 10 + 10  # Flatten of 5×5×32 into the softmax layer
    assert child.count_params() == conv_1 + conv_2 + output == 12_810


def test_concatenated_branches_at_half_width_have_the_hand_counted_parameters():
    child = transform(_inception(), width=0.5, inherit=False)
    branch_1, branch_3 = 3 * 4 + 4, 3 * 3 * 3 * 2 + 2
    conv_c = 3 * 3 * (4 + 2) * 3 + 3  # its input is the 4 + 2 concatenated channels
    assert child.count_params() == branch_1 + branch_3 + conv_c + 3 * 10 + 10 == 277


def test_the_analysis_couples_the_add_and_keeps_input_and_output_widths():
    analysis = analyze(_residual())
    layers = {p.name: p for p in analysis.prunable}
    assert layers["conv_b"].group == layers["shortcut"].group != layers["conv_a"].group
    group = analysis.groups[layers["conv_b"].group]
    assert group.scalable and set(group.producers) == {"conv_b", "shortcut"}
    assert not layers["logits"].scalable and analysis.outputs == ("logits",)
    assert analysis.groups[layers["logits"].group].reason == "model output"
    assert [(c.name, c.n, c.m, c.c) for c in analysis.factorizable] == [
        ("conv_a", 3, 12, 3), ("conv_b", 3, 16, 12)
    ]
    assert analysis.blocked == ()


@pytest.mark.parametrize("width", [1.0, 1.5])
@pytest.mark.parametrize("parent", list(PARENTS))
def test_inheriting_at_full_or_wider_width_reproduces_the_parent(parent, width):
    model = _randomize(PARENTS[parent]())
    x = _images(model)
    child = transform(model, width=width, inherit=True)
    np.testing.assert_allclose(_run(child, x), _run(model, x), atol=1e-5, rtol=1e-5)


def _weaken(model, name, channels):
    """Shrinks the filters `channels` of `name` 1000-fold: the lowest L1 norms."""
    layer = model.get_layer(name)
    weights = layer.get_weights()
    weights[0][..., channels] *= 1e-3
    layer.set_weights(weights)


def _ignore(model, name, rows):
    """Zeroes the input rows `rows` of `name`'s kernel: it no longer reads those channels."""
    layer = model.get_layer(name)
    weights = layer.get_weights()
    weights[0][..., rows, :] = 0.0
    layer.set_weights(weights)


def _drop(channels, keep, rng):
    return np.sort(rng.permutation(channels)[: channels - keep])


def _prune_plan(parent, model, rng):
    """Makes half of each scalable group's channels both weakest and unread."""
    kept = {}
    if parent == "residual":
        dead_a, dead_b = _drop(12, 6, rng), _drop(16, 8, rng)
        _weaken(model, "conv_a", dead_a)
        _ignore(model, "conv_b", dead_a)
        _weaken(model, "conv_b", dead_b)
        _weaken(model, "shortcut", dead_b)
        _ignore(model, "logits", dead_b)
        kept_a, kept_b = np.setdiff1d(np.arange(12), dead_a), np.setdiff1d(np.arange(16), dead_b)
        kept = {"conv_a": (None, kept_a), "conv_b": (kept_a, kept_b), "shortcut": (None, kept_b)}
    elif parent == "separable":
        dead_stem, dead_pw = _drop(8, 4, rng), _drop(16, 8, rng)
        _weaken(model, "stem", dead_stem)
        _ignore(model, "pointwise", dead_stem)  # the depthwise conv keeps channels apart
        _weaken(model, "pointwise", dead_pw)
        _ignore(model, "logits", dead_pw)
        kept = {"stem": (None, np.setdiff1d(np.arange(8), dead_stem))}
    elif parent == "mnist":
        dead_1, dead_2 = _drop(32, 16, rng), _drop(64, 32, rng)
        _weaken(model, "conv_1", dead_1)
        _ignore(model, "conv_2", dead_1)
        _weaken(model, "conv_2", dead_2)
        _ignore(model, "output", [s * 64 + c for s in range(25) for c in dead_2])
        kept_2 = np.setdiff1d(np.arange(64), dead_2)
        kept = {"conv_1": (None, np.setdiff1d(np.arange(32), dead_1)),
                "output": ([s * 64 + c for s in range(25) for c in kept_2], np.arange(10))}
    else:
        dead_1, dead_3, dead_c = _drop(8, 4, rng), _drop(4, 2, rng), _drop(6, 3, rng)
        _weaken(model, "branch_1x1", dead_1)
        _weaken(model, "branch_3x3", dead_3)
        _ignore(model, "conv_c", np.concatenate([dead_1, 8 + dead_3]))
        _weaken(model, "conv_c", dead_c)
        _ignore(model, "logits", dead_c)
        kept_1, kept_3 = np.setdiff1d(np.arange(8), dead_1), np.setdiff1d(np.arange(4), dead_3)
        kept = {"conv_c": (np.concatenate([kept_1, 8 + kept_3]),
                           np.setdiff1d(np.arange(6), dead_c))}
    return kept


@pytest.mark.parametrize("parent", list(PARENTS))
def test_pruning_the_weakest_unread_channels_leaves_the_output_unchanged(parent):
    """L1 selection, consumers' input slices (conv, Flatten rows, concatenation offsets),
    BatchNorm statistics and depthwise kernels must all agree for this to hold."""
    model = _randomize(PARENTS[parent]())
    kept = _prune_plan(parent, model, np.random.default_rng(1))
    x = _images(model)
    child = transform(model, width=0.5, inherit=True)
    assert child.count_params() < model.count_params()
    np.testing.assert_allclose(_run(child, x), _run(model, x), atol=1e-5, rtol=1e-5)
    for name, (rows, channels) in kept.items():
        kernel = model.get_layer(name).kernel.numpy()
        if rows is not None:
            kernel = kernel[..., rows, :]
        np.testing.assert_array_equal(child.get_layer(name).kernel.numpy(), kernel[..., channels])


def test_coupled_layers_keep_the_channels_with_the_largest_summed_l1_norm():
    model = _randomize(_residual())
    # Per-filter L1 norms. conv_b (3·3·12 weights each): 108 for 0-7, 97.2 for 8-15, 0 for 12;
    # alone it keeps 0-7. shortcut (3 weights each): 0.3 for 0-7, 30 for 8-15, 60 for 3 and
    # 33 for 12; alone it keeps 3, 12 and six of 8-15. The sums (168 for 3, 127.2 for 8-15
    # but 33 for 12, 108.3 for the rest) keep 3, 8-11 and 13-15 in both layers.
    conv_b = model.get_layer("conv_b").get_weights()
    values = np.where(np.arange(16) < 8, 1.0, 0.9)
    values[12] = 0.0
    conv_b[0] = np.ones_like(conv_b[0]) * values
    model.get_layer("conv_b").set_weights(conv_b)
    scores = np.where(np.arange(16) < 8, 0.1, 10.0)
    scores[3], scores[12] = 20.0, 11.0
    shortcut = model.get_layer("shortcut").get_weights()
    shortcut[0] = np.ones_like(shortcut[0]) * scores
    model.get_layer("shortcut").set_weights(shortcut)
    expected = np.array([3, 8, 9, 10, 11, 13, 14, 15])

    conv_a_l1 = np.abs(model.get_layer("conv_a").kernel.numpy()).sum(axis=(0, 1, 2))
    kept_a = np.sort(np.argsort(-conv_a_l1)[:6])  # conv_a alone: its own top 6

    child = transform(model, width=0.5, inherit=True)
    np.testing.assert_array_equal(child.get_layer("conv_a").kernel.numpy(),
                                  model.get_layer("conv_a").kernel.numpy()[..., kept_a])
    conv_b = model.get_layer("conv_b").kernel.numpy()
    np.testing.assert_array_equal(child.get_layer("conv_b").kernel.numpy(),
                                  conv_b[:, :, kept_a][..., expected])
    np.testing.assert_array_equal(child.get_layer("shortcut").kernel.numpy(),
                                  model.get_layer("shortcut").kernel.numpy()[..., expected])
    for old, new in zip(model.get_layer("bn_b").get_weights(),
                        child.get_layer("bn_b").get_weights(), strict=True):
        np.testing.assert_array_equal(new, old[expected])  # gamma, beta, moving mean, var
    np.testing.assert_array_equal(
        child.get_layer("logits").kernel.numpy(), model.get_layer("logits").kernel.numpy()[expected]
    )


def _single_conv(*, c, m, n, strides=1, padding="same", dilation=1, size=7):
    from tensorflow.keras import Input, Model, layers

    inputs = Input((size, size, c), name="image")
    conv = layers.Conv2D(m, n, strides=strides, padding=padding, dilation_rate=dilation,
                         activation="relu", name="conv")
    return Model(inputs, conv(inputs), name="single")


@pytest.mark.parametrize(
    "strides, padding, dilation",
    [(1, "same", 1), (2, "valid", 1), ((2, 1), "same", 1), (1, "valid", 2), (1, "same", 2)],
)
def test_a_full_rank_factorized_conv_reproduces_the_layer(strides, padding, dilation):
    # c = 1, n = 3, m = 4: M is 3×12, full rank c·n = 3 ≤ m, so r = 3 is exact.
    model = _randomize(_single_conv(c=1, m=4, n=3, strides=strides, padding=padding,
                                    dilation=dilation))
    child = transform(model, width=1.0, factorize=("conv",))
    first, second = child.get_layer("conv_3x1"), child.get_layer("conv_1x3")
    assert first.filters == 3 and not first.use_bias
    assert first.get_config()["activation"] == "linear"
    assert second.use_bias and second.get_config()["activation"] == "relu"
    assert child.output_shape == model.output_shape
    x = _images(model)
    np.testing.assert_allclose(_run(child, x), _run(model, x), atol=1e-4)


def _compose(first, second):
    """The n×n kernel computed by an n×1 kernel followed by a 1×n kernel."""
    return np.einsum("hcr,wrm->hwcm", first[:, 0], second[0])


def test_a_low_rank_factorization_is_the_best_rank_r_approximation():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 2)).astype(np.float32)  # M is 12×6
    singular = np.linalg.svd(kernel.transpose(2, 0, 1, 3).reshape(12, 6), compute_uv=False)
    errors = []
    for rank in range(1, 7):
        first, second = factorize_kernel(kernel, rank=rank)
        assert first.shape == (3, 1, 4, rank) and second.shape == (1, 3, rank, 2)
        errors.append(np.linalg.norm(_compose(first, second) - kernel))
        # Eckart–Young: the error is the norm of the discarded singular values.
        assert errors[-1] == pytest.approx(np.sqrt(np.sum(singular[rank:] ** 2)), abs=1e-4)
    assert all(a > b for a, b in itertools.pairwise(errors)) and errors[-1] < 1e-4

    # In a model: m = 2 gives r = 2 < 6, an approximation equal to the rank-2 kernel's conv.
    model = _randomize(_single_conv(c=4, m=2, n=3))
    child = transform(model, width=1.0, factorize=("conv",))
    low = _single_conv(c=4, m=2, n=3)
    first, second = factorize_kernel(model.get_layer("conv").kernel.numpy(), rank=2)
    low.get_layer("conv").set_weights([_compose(first, second),
                                       model.get_layer("conv").bias.numpy()])
    x = _images(model)
    np.testing.assert_allclose(_run(child, x), _run(low, x), atol=1e-4)
    assert np.abs(_run(child, x) - _run(model, x)).max() > 1e-2


def _with_unknown(kind):
    import tensorflow as tf
    from tensorflow.keras import Input, Model, layers

    class Doubler(layers.Layer):
        def call(self, x):
            return 2.0 * x

    inputs = Input((8, 8, 3), name="image")
    x = layers.Conv2D(8, 3, name="conv_1")(inputs)
    if kind == "lambda":
        x = layers.Lambda(lambda t: tf.reverse(t, axis=[-1]), name="mystery")(x)
    else:
        x = Doubler(name="mystery")(x)
    x = layers.Conv2D(8, 3, name="conv_2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return Model(inputs, layers.Dense(10, name="logits")(x))


@pytest.mark.parametrize("kind", ["lambda", "custom"])
def test_an_unknown_layer_is_kept_reported_and_its_neighbours_keep_their_width(kind):
    model = _randomize(_with_unknown(kind))
    analysis = analyze(model)
    assert [name for name, _ in analysis.blocked] == ["mystery"]
    assert ("Lambda" if kind == "lambda" else "Doubler") in analysis.blocked[0][1]
    layers = {p.name: p for p in analysis.prunable}
    assert not layers["conv_1"].scalable and layers["conv_2"].scalable
    assert "mystery" in analysis.groups[layers["conv_1"].group].reason

    child = transform(analysis, width=0.5)
    assert child.get_layer("conv_1").filters == 8 and child.get_layer("conv_2").filters == 4
    x = _images(model)
    assert _run(child, x).shape == (2, 10)
    np.testing.assert_allclose(_run(transform(analysis, width=1.0), x), _run(model, x),
                               atol=1e-5)


def test_a_subclassed_model_without_a_graph_cannot_be_rewritten():
    import tensorflow as tf

    class TinyNet(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.head = tf.keras.layers.Dense(2)

        def call(self, x):
            return self.head(x)

    net = TinyNet()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(RewriteError, match="TinyNet"):
        analyze(net)
    assert issubclass(RewriteError, UsageError)


def test_what_is_not_a_built_keras_2_model_cannot_be_rewritten():
    import tensorflow as tf

    with pytest.raises(RewriteError, match="str"):
        analyze("model.keras")
    with pytest.raises(RewriteError, match="input shape"):
        analyze(tf.keras.Sequential([tf.keras.layers.Dense(2)]))


def test_a_layer_that_cannot_be_factorized_is_refused_with_the_choices():
    with pytest.raises(RewriteError, match="conv_a, conv_b"):
        transform(_residual(), width=1.0, factorize=("shortcut",))
    with pytest.raises(RewriteError, match="width"):
        transform(_residual(), width=0.0)


def test_guided_factorization_is_offered_where_it_saves_parameters():
    analysis = analyze(_residual())
    # At width 0.5: conv_a (n=3, m=6, c=3) P1 = 174 > P0 = 168; conv_b (m=8, c=6) 352 < 440.
    assert offered_factorizations(analysis, width=0.5, mode="guided") == ("conv_b",)
    assert offered_factorizations(analysis, width=0.5, mode="unguided") == ("conv_a", "conv_b")
    with pytest.raises(ValueError, match="guided"):
        offered_factorizations(analysis, width=0.5, mode="always")


def test_an_untrained_parent_gives_fresh_weights_from_the_seed():
    model = _residual()
    analysis = analyze(model, trained=False)
    a = transform(analysis, width=1.0, seed=3).get_layer("conv_a").kernel.numpy()
    b = transform(analysis, width=1.0, seed=3).get_layer("conv_a").kernel.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.get_layer("conv_a").kernel.numpy())


@pytest.fixture(scope="module")
def mobilenet():
    import tensorflow as tf

    return tf.keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)


def test_mobilenet_v2_is_rewritten_with_its_residual_adds_consistent(mobilenet):
    analysis = analyze(mobilenet)
    assert analysis.blocked == () and analysis.outputs == ("predictions",)
    half = transform(analysis, width=0.5, inherit=False)
    full = transform(analysis, width=1.0)
    for child in (half, full):
        assert child.output_shape == mobilenet.output_shape == (None, 10)
        adds = [la for la in child.layers if type(la).__name__ == "Add"]
        assert len(adds) == 10 and all(la.input_shape[0] == la.input_shape[1] for la in adds)
    assert full.count_params() == mobilenet.count_params()
    assert half.count_params() < 0.3 * mobilenet.count_params()
    assert half.get_layer("Conv1").filters == 16 and half.get_layer("Conv_1").filters == 640
    x = _images(mobilenet, n=1)
    np.testing.assert_allclose(_run(full, x), _run(mobilenet, x), atol=1e-5)


BUILT_IN = {"lenet5_caffe": (28, 28, 1), "seed_cnn": (28, 28, 1), "tiny_cnn": (8, 8, 1)}


@pytest.mark.parametrize("family_name", list(BUILT_IN))
def test_built_in_families_rewrite_exactly_as_build_model_builds_them(family_name):
    family, shape = get_family(family_name), BUILT_IN[family_name]
    parent = build_model(family=family, candidate=Candidate(width=1.0), input_shape=shape,
                         num_classes=10)
    analysis = analyze(parent, trained=False)
    for width in (*WIDTHS, 1.5):
        offered = {mode: offered_layers(family, input_shape=shape, width=width, mode=mode)
                   for mode in ("guided", "unguided")}
        for mode, names in offered.items():
            assert offered_factorizations(analysis, width=width, mode=mode) == names
        for factorize in ((), offered["guided"], offered["unguided"]):
            built = build_model(family=family, candidate=Candidate(width=width,
                                factorize=factorize), input_shape=shape, num_classes=10)
            rewritten = transform(analysis, width=width, factorize=factorize, inherit=False,
                                  activation_between=True)
            assert rewritten.count_params() == built.count_params()
            assert ({la.name: la.output_shape for la in rewritten.layers}
                    == {la.name: la.output_shape for la in built.layers})


def test_a_built_in_family_rewrite_draws_the_same_initial_weights_from_the_same_seed():
    family = get_family("tiny_cnn")
    parent = build_model(family=family, candidate=Candidate(), input_shape=(8, 8, 1),
                         num_classes=10)
    candidate = Candidate(width=0.5, factorize=("conv_3",))
    built = build_model(family=family, candidate=candidate, input_shape=(8, 8, 1),
                        num_classes=10, seed=7)
    rewritten = transform(analyze(parent, trained=False), width=0.5, factorize=("conv_3",),
                          activation_between=True, seed=7)
    for a, b in zip(built.get_weights(), rewritten.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
