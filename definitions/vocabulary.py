"""The words every layer checks against, defined once (DESIGN §7.4: one name per concept).

Each layer validates its input against these and the CLI offers them as `choices`, so a
word added here is known everywhere at once and no layer types the list out again.
"""

from __future__ import annotations

#: Storage formats a trial can be turned into (DESIGN §1). `epr` stores the entropy-coded
#: weights of Entropy Penalized Reparameterization (Oktay et al., ICLR 2020); the others are
#: TFLite flatbuffers (post-training quantization, seed 003).
QUANTIZATION_MODES: tuple[str, ...] = ("epr", "float32", "float16", "dynamic", "int8")
#: The TFLite ones among them.
TFLITE_MODES: tuple[str, ...] = ("float32", "float16", "dynamic", "int8")
#: The modes `export --device-mode` converts a decoded EPR model to (TFLM runs both).
DEVICE_MODES: tuple[str, ...] = ("int8", "float32")

#: Which convs are offered for factorization: where n×1 + 1×n pays (seed 002), or all n > 1.
FACTORIZE_MODES: tuple[str, ...] = ("guided", "unguided")

#: Where a study's parent comes from: a built-in family, a saved Keras model (`.keras`,
#: `.h5` or a SavedModel folder), a Python function (`module:fn` or `file.py:fn`), or the
#: `model` of a study defined in Python (`pkg.module:NAME` or `path/study.py`).
PARENT_KINDS: tuple[str, ...] = ("family", "file", "function", "study")
#: Children start from fresh weights, or inherit the trained parent's.
INITS: tuple[str, ...] = ("scratch", "inherit")
#: What the parent's last layer gives: told from the layer, logits or probabilities.
OUTPUTS: tuple[str, ...] = ("auto", "logits", "probabilities")
#: Learning-rate schedules of a trial's training.
SCHEDULES: tuple[str, ...] = ("cosine", "constant")

#: The byte figure a study minimizes, by name, and the trial attribute that holds it.
SIZE_OBJECTIVES: dict[str, str] = {
    "payload": "payload_bytes",
    "flash": "flash_bytes",
    "gzip": "artifact_gzip_bytes",
    "ota": "ota_bytes",
}

#: Optuna samplers the driver constructs (`optimizer.engine.sampling`).
SAMPLERS: tuple[str, ...] = ("tpe", "nsga2", "random", "gp")
#: Who proposes the trials: Optuna's sampler, or KerasTuner's Bayesian optimization on a
#: weighted sum of the objectives (`optimizer.engine.kerastuner_backend`).
BACKENDS: tuple[str, ...] = ("optuna", "kerastuner")
#: `pareto`'s output formats.
FORMATS: tuple[str, ...] = ("table", "csv", "json")

#: `run --jobs auto`: as many trials at once as the machine's cores and memory allow.
JOBS_AUTO = "auto"
