"""A KerasTuner hypermodel searched by an Optuna study: tiny Dense models, built, never trained."""

from __future__ import annotations

import math

import keras_tuner
import optuna
import pytest
from tensorflow import keras

from definitions.errors import UsageError
from objectives.parent import build_from_hypermodel, rebuild_from_params
from search_spaces.hypermodel import (
    HP_PREFIX,
    HypermodelError,
    OptunaHyperParameters,
    hypermodel_values,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_TRIALS = 10


def getting_started(hp):
    """KerasTuner's getting-started hypermodel, with the dropout rate conditional."""
    units = hp.Int("units", min_value=32, max_value=128, step=32)
    activation = hp.Choice("activation", ["relu", "tanh"])
    dropout = hp.Boolean("dropout")
    with hp.conditional_scope("dropout", [True]):
        rate = hp.Float("rate", 0.1, 0.5)
    lr = hp.Float("lr", min_value=1e-4, max_value=1e-2, sampling="log")
    inputs = keras.Input((8,), name="x")
    y = keras.layers.Dense(units, activation=activation, name="hidden")(inputs)
    if dropout:
        y = keras.layers.Dropout(rate, name="dropout")(y)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(y)
    model = keras.Model(inputs, outputs, name="mlp")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="mse")
    return model


class GettingStarted(keras_tuner.HyperModel):
    def build(self, hp):
        return getting_started(hp)


def run_study(hypermodel, n_trials=N_TRIALS):
    """A real study: each trial builds the model and scores its parameter count."""
    built = {}

    def objective(trial):
        model, values = build_from_hypermodel(hypermodel, trial)
        built[trial.number] = (model, values)
        return model.count_params()

    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(), sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(objective, n_trials=n_trials)
    return study, built


@pytest.fixture(scope="module")
def searched():
    return run_study(getting_started)


def test_every_hyperparameter_is_a_namespaced_trial_param_in_range(searched):
    study, _ = searched
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        params = trial.params
        assert {"hp_units", "hp_activation", "hp_dropout", "hp_lr"} <= params.keys()
        assert all(name.startswith(HP_PREFIX) for name in params)
        assert params["hp_units"] in {32, 64, 96, 128}
        assert params["hp_activation"] in {"relu", "tanh"}
        assert params["hp_dropout"] in {False, True}
        assert 1e-4 <= params["hp_lr"] <= 1e-2


def test_int_step_and_float_log_become_optuna_distributions(searched):
    study, _ = searched
    dists = study.trials[0].distributions
    assert dists["hp_units"] == optuna.distributions.IntDistribution(32, 128, step=32)
    assert dists["hp_lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["hp_activation"] == optuna.distributions.CategoricalDistribution(["relu", "tanh"])


def test_conditional_rate_is_suggested_only_when_dropout_is_on(searched):
    study, _ = searched
    dropout_on = [t for t in study.trials if t.params["hp_dropout"]]
    dropout_off = [t for t in study.trials if not t.params["hp_dropout"]]
    assert dropout_on and dropout_off  # seed 0 explores both branches
    assert all(0.1 <= t.params["hp_rate"] <= 0.5 for t in dropout_on)
    assert all("hp_rate" not in t.params for t in dropout_off)


def test_built_model_matches_the_chosen_values(searched):
    study, built = searched
    for trial in study.trials:
        model, values = built[trial.number]
        assert values == hypermodel_values(trial.params)
        hidden = model.get_layer("hidden")
        assert hidden.units == trial.params["hp_units"]
        assert hidden.activation.__name__ == trial.params["hp_activation"]
        dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
        if trial.params["hp_dropout"]:
            assert [d.rate for d in dropouts] == [trial.params["hp_rate"]]
        else:
            assert dropouts == []
        lr = float(keras.backend.get_value(model.optimizer.learning_rate))
        assert math.isclose(lr, trial.params["hp_lr"], rel_tol=1e-6)
        assert trial.value == model.count_params()


def test_keras_tuner_hypermodel_subclass_is_searched_the_same(searched):
    study, _ = searched
    subclass_study, built = run_study(GettingStarted(name="getting_started"))
    assert [t.params for t in subclass_study.trials] == [t.params for t in study.trials]
    assert [t.value for t in subclass_study.trials] == [t.value for t in study.trials]
    assert all(isinstance(model, keras.Model) for model, _ in built.values())


@pytest.mark.parametrize("with_dropout", [False, True])
def test_stored_params_rebuild_the_same_architecture(searched, with_dropout):
    study, built = searched
    trial = next(t for t in study.trials if t.params["hp_dropout"] is with_dropout)
    original, values = built[trial.number]
    # our own axes live beside the hypermodel's in the same trial params
    params = {**trial.params, "width": 0.5, "quantization": "int8"}
    rebuilt, rebuilt_values = rebuild_from_params(getting_started, params)
    assert rebuilt_values == values
    assert rebuilt.count_params() == original.count_params()
    assert rebuilt.get_config() == original.get_config()


def test_build_exception_becomes_a_one_line_hypermodel_error():
    def broken(hp):
        hp.Int("units", 1, 4)
        raise ValueError("boom")

    with pytest.raises(HypermodelError) as info:
        build_from_hypermodel(broken, optuna.trial.FixedTrial({"hp_units": 2}))
    message = str(info.value)
    assert "ValueError: boom" in message
    assert "broken" in message
    assert "\n" not in message
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value.__cause__, ValueError)


def test_build_returning_a_non_model_is_a_hypermodel_error():
    with pytest.raises(HypermodelError, match=r"returned dict, not a keras\.Model"):
        build_from_hypermodel(
            lambda hp: {"units": hp.Int("units", 1, 4)}, optuna.trial.FixedTrial({"hp_units": 1})
        )


def test_hypermodel_that_is_not_callable_is_a_hypermodel_error():
    with pytest.raises(HypermodelError, match=r"neither a keras_tuner\.HyperModel nor a callable"):
        build_from_hypermodel(42, optuna.trial.FixedTrial({}))


@pytest.mark.parametrize(
    "declare",
    [
        lambda hp: hp.Int("units", 128, 32),
        lambda hp: hp.Float("lr", 1e-2, 1e-4, sampling="log"),
    ],
    ids=["int", "float"],
)
def test_min_above_max_is_a_hypermodel_error(declare):
    hp = OptunaHyperParameters(optuna.trial.FixedTrial({}))
    with pytest.raises(HypermodelError, match="is greater than the max_value"):
        declare(hp)

    def build(hp):
        declare(hp)
        return keras.Sequential()

    with pytest.raises(HypermodelError, match="hypermodel build") as info:
        build_from_hypermodel(build, optuna.trial.FixedTrial({}))
    assert "\n" not in str(info.value)


def test_inactive_hyperparameter_suggests_nothing_and_returns_none():
    trial = optuna.trial.FixedTrial({"hp_dropout": False})
    hp = OptunaHyperParameters(trial)
    assert hp.Boolean("dropout") is False
    with hp.conditional_scope("dropout", [True]):
        assert hp.Float("rate", 0.1, 0.5) is None
    assert hp.Int("units", 1, 4, parent_name="dropout", parent_values=True) is None
    assert trial.params == {"hp_dropout": False}
    assert hp.values == {"dropout": False}
    assert "rate" not in hp
    with pytest.raises(ValueError, match="inactive"):
        hp.get("rate")


def test_parent_name_argument_activates_like_a_conditional_scope():
    trial = optuna.trial.FixedTrial({"hp_model": "cnn", "hp_filters": 16, "hp_kernel": 3})
    hp = OptunaHyperParameters(trial)
    hp.Choice("model", ["mlp", "cnn"])
    assert hp.Int("units", 8, 64, parent_name="model", parent_values=["mlp"]) is None
    assert hp.Int("filters", 8, 64, step=8, parent_name="model", parent_values=["cnn"]) == 16
    with hp.conditional_scope("model", ["cnn"]), hp.conditional_scope("filters", [16]):
        assert hp.Choice("kernel", [3, 5]) == 3  # nested scopes: both hold
    assert hp.values == {"model": "cnn", "filters": 16, "kernel": 3}


def test_asking_the_same_name_twice_returns_the_same_value():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    hp = OptunaHyperParameters(trial)
    first = hp.Float("rate", 0.0, 1.0)
    assert hp.Float("rate", 0.0, 1.0) == first
    assert hp.get("rate") == hp["rate"] == first
    assert list(trial.params) == ["hp_rate"]


def test_log_sampling_with_a_step_searches_keras_tuner_multiplicative_grid():
    hp = OptunaHyperParameters(optuna.create_study().ask())
    value = hp.Int("batch", 2, 32, step=2, sampling="log")
    assert value in {2, 4, 8, 16, 32}
    trial = optuna.trial.FixedTrial({"hp_lr": 1e-3, "hp_x": 8})
    hp = OptunaHyperParameters(trial)
    assert hp.Float("lr", 1e-4, 1e-2, step=10, sampling="log") == 1e-3
    assert hp.Int("x", 1, 100, sampling="reverse_log") == 8


def test_linear_step_grid_drops_the_max_when_off_grid():
    study = optuna.create_study()
    trial = study.ask()
    hp = OptunaHyperParameters(trial)
    hp.Int("units", 32, 130, step=32)
    hp.Float("rate", 0.1, 0.55, step=0.1)
    assert trial.distributions["hp_units"].high == 128
    assert trial.distributions["hp_rate"].high == pytest.approx(0.5)


def test_our_axis_names_cannot_collide_with_hypermodel_names():
    names = ["width", "factorize_conv_1", "epr", "epr_lambda", "quantization"]
    trial = optuna.create_study().ask()
    hp = OptunaHyperParameters(trial)
    for name in names:
        hp.Boolean(name)
    assert set(trial.params) == {f"hp_{name}" for name in names}


def test_fixed_and_name_scope_follow_keras_tuner():
    trial = optuna.trial.FixedTrial({"hp_block/units": 4})
    hp = OptunaHyperParameters(trial)
    assert hp.Fixed("classes", 10) == 10
    with hp.name_scope("block"):
        assert hp.Int("units", 1, 8) == 4
    assert hp.values == {"classes": 10, "block/units": 4}


def test_conditional_scope_on_an_undeclared_parent_is_a_hypermodel_error():
    hp = OptunaHyperParameters(optuna.trial.FixedTrial({}))
    with pytest.raises(HypermodelError, match="'dropout' is not defined"):
        with hp.conditional_scope("dropout", [True]):
            pass


def test_non_tunable_hypermodel_gets_defaults_and_suggests_nothing():
    trial = optuna.create_study().ask()
    model, values = build_from_hypermodel(GettingStarted(tunable=False), trial)
    assert values == {}  # KerasTuner builds it on a copy of hp: nothing is chosen
    assert trial.params == {}
    assert model.get_layer("hidden").units == 32  # every hyperparameter at its default
    assert model.get_layer("hidden").activation.__name__ == "relu"
    assert "dropout" not in [layer.name for layer in model.layers]
