"""Writes Keras models with *today's* Keras: run by the second virtualenv's Python
(Keras 3 on TensorFlow 2.21, and tf_keras 2.21), never by the tool's own.

    KERAS_BACKEND=tensorflow .venv-keras3/bin/python tests/keras_today/write_models.py OUT \
        [--digits DIGITS.npz]

For every architecture below and every writer (`keras3`: Keras 3; `tf_keras`: the Keras 2
API on today's TensorFlow) it saves `<writer>-<arch>.keras` and `.h5`, with random but
non-trivial weights (BatchNorm statistics included), and `<writer>-<arch>.npz` holding fixed
inputs `x` and the model's own predictions `y` on them: the files the tool must read, and
what its translation must predict. With `--digits` it also trains a small residual CNN
on that `.npz` (`<writer>-digits.*`), a parent that can teach. It also writes a serving
SavedModel (`model.export`), a Keras 3 model with a Lambda layer, and one with a layer the
tool has no translation for.

With `--check keras3|tf_keras MODEL.keras INPUTS.npz [MODEL INPUTS …]` it instead loads each
`.keras` file (as a user of that Keras would) and prints, as a JSON list, the largest difference
between its predictions on `x` and `y` in the npz: how the tests check an exported model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def architectures(keras):
    """name -> a function building the model with the `keras` module given (Keras 3 and
    tf_keras share this API)."""
    layers = keras.layers

    def residual():
        inputs = keras.Input((28, 28, 1))
        x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        y = layers.DepthwiseConv2D(3, padding="same")(x)
        y = layers.BatchNormalization()(y)
        x = layers.Add()([x, y])
        x = layers.MaxPooling2D()(x)
        x = layers.SeparableConv2D(32, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(0.25)(x)
        outputs = layers.Dense(10, activation="softmax")(x)
        return keras.Model(inputs, outputs, name="residual")

    def zoo():
        inputs = keras.Input((12, 12, 3))
        x = layers.Rescaling(1 / 2.0, offset=-0.25)(inputs)
        x = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 0.5])(x)
        x = layers.ZeroPadding2D(1)(x)
        x = layers.Conv2D(8, 3, kernel_regularizer=keras.regularizers.L2(1e-4),
                          kernel_initializer=keras.initializers.HeNormal(seed=1),
                          kernel_constraint=keras.constraints.MaxNorm(3.0))(x)
        x = layers.LeakyReLU(0.1)(x)
        block = keras.Sequential([
            layers.Conv2D(8, 3, padding="same", activation="relu6"),
            layers.BatchNormalization(),
            layers.SpatialDropout2D(0.1),
        ], name="block")
        a = block(x)
        b = layers.Conv2D(8, 1, activation="swish")(x)
        x = layers.Multiply()([a, b])
        c = layers.Conv2D(4, 1, activation="gelu")(x)
        d = layers.Conv2D(4, 1, activation="elu")(x)
        x = layers.Concatenate()([c, d])
        x = layers.Activation("tanh")(x)
        x = layers.ELU()(x)
        x = layers.PReLU(shared_axes=[1, 2])(x)
        x = layers.AveragePooling2D(2)(x)
        x = layers.Conv2D(6, 2, activation="sigmoid")(x)
        m = layers.GlobalMaxPooling2D()(x)
        f = layers.Flatten()(x)
        f = layers.Reshape((-1,))(f)
        x = layers.Concatenate()([m, f])
        x = layers.Dense(12, activation="relu")(x)
        x = layers.Dense(5)(x)
        outputs = layers.Softmax()(x)
        return keras.Model(inputs, outputs, name="zoo")

    def sequential():
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            layers.Conv2D(6, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(16, activation="relu"),
            layers.Dense(10),
        ], name="plain")

    return {"residual": residual, "zoo": zoo, "sequential": sequential}


def randomized(model, seed: int):
    """`model` with every weight drawn at random (variances kept positive), so a weight
    read into the wrong place shows in the predictions."""
    rng = np.random.default_rng(seed)
    weights = []
    for variable in model.weights:
        value = rng.normal(0.0, 0.3, size=tuple(variable.shape)).astype("float32")
        if "variance" in getattr(variable, "path", variable.name):
            value = np.abs(value) + 0.5
        weights.append(value)
    model.set_weights(weights)
    return model


def digits_model(keras):
    """A small residual CNN for 8×8×1 digits (BatchNorm, a residual Add, a depthwise and
    a separable conv, global pooling, dropout, softmax)."""
    layers = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Add()([x, y])
    x = layers.SeparableConv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="digits_cnn")


def write_trained(out: Path, data: Path, *, name: str = "digits", epochs: int = 15) -> None:
    """`<writer>-<name>.keras` and `.h5`, trained on `data`'s `x_train` (uint8, scaled
    by 1/255 as the tool scales images) for `epochs`, with its predictions: `digits_model`
    for 8×8 images, else the `residual` architecture (28×28×1)."""
    import keras
    import tf_keras

    arrays = np.load(data)
    x = arrays["x_train"][..., None].astype("float32") / 255.0
    y = arrays["y_train"]
    for writer, module in (("keras3", keras), ("tf_keras", tf_keras)):
        module.utils.set_random_seed(0)
        model = (digits_model(module) if x.shape[1:] == (8, 8, 1)
                 else architectures(module)["residual"]())
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        np.savez(out / f"{writer}-{name}.npz", x=x[:64], y=model.predict(x[:64], verbose=0))
        model.save(out / f"{writer}-{name}.keras")
        model.save(out / f"{writer}-{name}.h5")


def write_all(out: Path) -> dict[str, str]:
    import keras
    import tf_keras

    out.mkdir(parents=True, exist_ok=True)
    versions = {"keras3": keras.__version__, "tf_keras": tf_keras.__version__}
    for writer, module in (("keras3", keras), ("tf_keras", tf_keras)):
        for name, build in architectures(module).items():
            model = randomized(build(), seed=len(name))
            shape = tuple(model.inputs[0].shape[1:])
            x = np.random.default_rng(7).uniform(0, 1, size=(16, *shape)).astype("float32")
            np.savez(out / f"{writer}-{name}.npz", x=x, y=model.predict(x, verbose=0))
            model.save(out / f"{writer}-{name}.keras")
            model.save(out / f"{writer}-{name}.h5")
    sequential = architectures(keras)["sequential"]()
    sequential.export(str(out / "keras3-exported"), verbose=False)
    inputs = keras.Input((8, 8, 1))
    lam = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(lam))).save(
        out / "keras3-lambda.keras")
    inputs = keras.Input((8, 8, 1))
    untranslated = keras.layers.RandomFlip()(inputs)
    keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(untranslated))).save(
        out / "keras3-untranslated.keras")
    (out / "versions.json").write_text(json.dumps(versions))
    return versions


def check(model_path: Path, inputs: Path, *, reader: str = "keras3") -> dict[str, float]:
    """Loads `model_path` as a user of `reader` (`keras3`: `keras.saving.load_model`;
    `tf_keras`: `tf_keras.models.load_model`) would, and compares its predictions on the
    npz's `x` with its `y`."""
    import keras
    import tf_keras

    if reader == "tf_keras":
        model = tf_keras.models.load_model(model_path)
    else:
        model = keras.saving.load_model(model_path)
    data = np.load(inputs)
    predicted = np.asarray(model.predict(data["x"], verbose=0))
    return {"max_abs_diff": float(np.abs(predicted - data["y"]).max()),
            "keras_version": (tf_keras if reader == "tf_keras" else keras).__version__}


def settings(classes: list[str]) -> dict[str, list[str]]:
    """The settings each Keras 3 layer class's constructor takes (its and its bases'
    named parameters, and what `Layer` pops from `**kwargs`): what a config written for
    Keras 3 may hold (`objectives/keras3_settings.json` is this, checked in)."""
    import inspect

    import keras

    out = {}
    for name in classes:
        names: set[str] = set()
        for base in getattr(keras.layers, name).__mro__:
            init = base.__dict__.get("__init__")
            if init is None:
                continue
            parameters = inspect.signature(init).parameters.values()
            names |= {p.name for p in parameters
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if base is keras.layers.Layer:
                names |= {"input_dim", "input_shape"}  # what Layer pops from **kwargs
            if not any(p.kind == p.VAR_KEYWORD for p in parameters):
                break  # a constructor without **kwargs passes nothing more up
        out[name] = sorted(names - {"self"})
    return out


if __name__ == "__main__":
    if sys.argv[1] == "--settings":
        rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(keys)}"
                          for name, keys in sorted(settings(sys.argv[2:]).items()))
        version = json.dumps(__import__("keras").__version__)
        print(f'{{"keras_version": {version},\n "settings": {{\n{rows}\n}}}}')
    elif sys.argv[1] == "--train":  # --train DATA.npz NAME EPOCHS OUT
        write_trained(Path(sys.argv[5]), Path(sys.argv[2]), name=sys.argv[3],
                      epochs=int(sys.argv[4]))
    elif sys.argv[1] == "--check":
        reader, pairs = sys.argv[2], sys.argv[3:]
        print(json.dumps([check(Path(model), Path(inputs), reader=reader)
                          for model, inputs in zip(pairs[::2], pairs[1::2], strict=True)]))
    else:
        written = write_all(Path(sys.argv[1]))
        if len(sys.argv) > 3 and sys.argv[2] == "--digits":
            write_trained(Path(sys.argv[1]), Path(sys.argv[3]))
        print(json.dumps(written))
