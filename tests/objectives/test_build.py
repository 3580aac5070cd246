"""Built models: parameter counts equal the formulas and Keras', shapes survive factorization."""

from __future__ import annotations

import pytest

from objectives import capacity
from objectives.build import build_model
from search_spaces import Candidate, InvalidCandidateError
from search_spaces.families import FAMILIES
from search_spaces.rule import conv_table


def _expected_params(family, *, width, factorize, input_shape, dense_inputs, num_classes=10):
    """Parameters from the formulas: P0 or P1 per conv, o·(i+1) per dense."""
    total = 0
    for row in conv_table(family, input_shape=input_shape, width=width):
        total += row.p1 if row.name in factorize else row.p0
    units = [i for i in dense_inputs]
    for i, o in units:
        total += o * (i + 1)
    return total


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0, 1.5])
@pytest.mark.parametrize("factorize", [(), ("conv_2",)])
def test_lenet5_caffe_params_match_formulas_and_keras(width, factorize):
    family = FAMILIES["lenet5_caffe"]
    model = build_model(
        family=family, candidate=Candidate(width=width, factorize=factorize),
        input_shape=(28, 28, 1), num_classes=10,
    )
    c2 = max(1, int(50 * width + 0.5))
    d1 = max(1, int(500 * width + 0.5))
    expected = _expected_params(
        family, width=width, factorize=factorize, input_shape=(28, 28, 1),
        dense_inputs=[(4 * 4 * c2, d1), (d1, 10)],
    )
    assert model.count_params() == expected


def test_lenet5_caffe_at_width_one_has_the_papers_431080_parameters():
    model = build_model(
        family=FAMILIES["lenet5_caffe"], candidate=Candidate(), input_shape=(28, 28, 1),
        num_classes=10,
    )
    assert model.count_params() == 431_080


@pytest.mark.parametrize("layer", ["conv_1", "conv_2", "conv_3"])
@pytest.mark.parametrize("width", [0.5, 1.0])
def test_factorized_seed_cnn_keeps_output_shape_and_counts(layer, width):
    family = FAMILIES["seed_cnn"]
    plain = build_model(family=family, candidate=Candidate(width=width), input_shape=(28, 28, 1),
                        num_classes=10)
    fact = build_model(family=family, candidate=Candidate(width=width, factorize=(layer,)),
                       input_shape=(28, 28, 1), num_classes=10)
    assert fact.output_shape == plain.output_shape
    assert plain.get_layer(layer).output_shape == fact.get_layer(f"{layer}_1x3").output_shape
    row = next(r for r in conv_table(family, input_shape=(28, 28, 1), width=width)
               if r.name == layer)
    assert plain.count_params() - fact.count_params() == row.p0 - row.p1


def test_tiny_cnn_same_padding_factorization_keeps_shape():
    family = FAMILIES["tiny_cnn"]
    fact = build_model(family=family, candidate=Candidate(factorize=("conv_3",)),
                       input_shape=(8, 8, 1), num_classes=10)
    plain = build_model(family=family, candidate=Candidate(), input_shape=(8, 8, 1),
                        num_classes=10)
    assert fact.get_layer("conv_3_1x3").output_shape == plain.get_layer("conv_3").output_shape


def test_mobilenet_v2_capacity_matches_seeds_000_and_001():
    model = build_model(family=FAMILIES["mobilenet_v2"], candidate=Candidate(),
                        input_shape=(224, 224, 3), num_classes=1000)
    assert model.count_params() == 3_538_984  # Keras' MobileNetV2(alpha=1.0)
    assert capacity.embedding_dims(model) == 1280
    assert capacity.feature_compression_ratio(model) == pytest.approx(117.6)
    assert capacity.head_mec_bits(model) == 1_281_000


def test_small_inputs_are_resized_for_mobilenet_v2():
    model = build_model(family=FAMILIES["mobilenet_v2"], candidate=Candidate(width=0.35),
                        input_shape=(8, 8, 1), num_classes=10)
    assert model.get_layer("resize").output_shape == (None, 32, 32, 1)
    assert model.output_shape == (None, 10)


def test_head_mec_caps_a_layer_by_the_previous_layers_outputs():
    model = build_model(family=FAMILIES["lenet5_caffe"], candidate=Candidate(),
                        input_shape=(28, 28, 1), num_classes=10)
    # dense_1: 500·(800+1) bits; output: 10·501 = 5010 bits, capped by dense_1's 500 outputs.
    assert capacity.head_mec_bits(model) == 500 * 801 + 500
    assert capacity.feature_compression_ratio(model) == pytest.approx(784 / 800)


def test_layer_rows_mark_factorized_pairs():
    model = build_model(family=FAMILIES["seed_cnn"], candidate=Candidate(factorize=("conv_3",)),
                        input_shape=(28, 28, 1), num_classes=10)
    rows = {r.name: r for r in capacity.layer_rows(model)}
    assert rows["conv_3"].factorized and rows["conv_3"].params == 24704
    assert rows["conv_3"].pays and rows["conv_3"].rule
    assert not rows["conv_2"].factorized and rows["conv_2"].pays is False
    assert sum(r.params for r in rows.values()) == model.count_params()


@pytest.mark.parametrize(
    ("family", "factorize", "message"),
    [
        ("lenet5_caffe", ("conv_9",), "no conv layer 'conv_9'"),
        ("lenet5_caffe", ("dense_1",), "no conv layer"),
        ("mobilenet_v2", ("Conv1",), "no factorizable layers"),
    ],
)
def test_bad_factorization_is_refused(family, factorize, message):
    with pytest.raises(InvalidCandidateError, match=message):
        build_model(family=FAMILIES[family], candidate=Candidate(factorize=factorize),
                    input_shape=(28, 28, 1), num_classes=10)


def test_factorizing_a_1x1_conv_is_refused():
    from objectives.build import check_factorize
    from search_spaces.families import ConvSpec, Family

    family = Family(name="pointwise", description="", layers=(ConvSpec("mix", 8, 1),))
    with pytest.raises(InvalidCandidateError, match="1x1 conv"):
        check_factorize(family, ("mix",))


def test_macs_count_every_conv_kind_and_dense_by_output_positions():
    import tensorflow as tf

    from objectives.capacity import macs

    layers = tf.keras.layers
    inputs = tf.keras.Input((28, 28, 1))
    x = layers.Conv2D(8, 3)(inputs)              # 26×26 positions, 3·3·1 → 8
    x = layers.DepthwiseConv2D(3)(x)             # 24×24, 3·3 per channel, 8 channels
    x = layers.SeparableConv2D(4, 3)(x)          # 22×22, depthwise 3·3·8 + pointwise 8 → 4
    x = layers.BatchNormalization()(x)           # folded by the converter: no MACs
    x = layers.Flatten()(x)
    outputs = layers.Dense(10)(x)                # 22·22·4 → 10
    model = tf.keras.Model(inputs, outputs)
    expected = (26 * 26 * 9 * 8 + 24 * 24 * 9 * 8 + 22 * 22 * (9 * 8 + 8 * 4)
                + 22 * 22 * 4 * 10)
    assert macs(model) == expected


def test_lenet5_caffe_macs_follow_from_its_layer_shapes():
    from objectives.capacity import macs

    model = build_model(family=FAMILIES["lenet5_caffe"], candidate=Candidate(),
                        input_shape=(28, 28, 1), num_classes=10)
    # conv1 24·24·25·20, conv2 8·8·(25·20)·50, dense 800·500 and 500·10
    assert macs(model) == 24 * 24 * 25 * 20 + 8 * 8 * 25 * 20 * 50 + 800 * 500 + 500 * 10
