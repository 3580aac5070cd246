"""One trial's work, independent of Optuna: build → train → compress → evaluate the artifact.

The accuracy returned is always the artifact's: the TFLite interpreter running the
flatbuffer, or the model decoded from the EPR file, never the float training model
(DESIGN §1). Byte figures come from `objectives.size`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from definitions.budgets import Budget, DeviceBudgets
from objectives import capacity, device, ota, size, tflite
from objectives.errors import DivergedError, HopelessTrial, OverBudget, TrialFailure
from objectives.files import write_atomically
from objectives.flatbuffer import ParsedFlatbuffer, parse
from objectives.parent import candidate_model
from objectives.stopping import StopRule
from objectives.train import Distillation, accuracy, train
from search_spaces.candidate import Candidate
from studies.datasets import Splits
from studies.references import ParentSource

if TYPE_CHECKING:
    from tensorflow import keras

REPRESENTATIVE_EXAMPLES = 200
#: Calibration examples of the untrained conversion behind the flash and RAM check before
#: training: calibration sets an int8 file's scales, not its size or its arena.
FOOTPRINT_EXAMPLES = 16
#: Timed single-example inferences behind each trial's `latency_ms` (median).
LATENCY_RUNS = 50
ARTIFACT_SUFFIX = {"epr": ".epr"}  # every other mode writes a .tflite flatbuffer
#: A TFLite trial's float Keras model is kept beside its artifact under this suffix.
FLOAT_MODEL_SUFFIX = "-float.keras"


@dataclass(frozen=True)
class TrialResult:
    """Everything a trial measured; `as_attrs` is what the study stores per trial."""

    accuracy: float
    payload_bytes: int
    artifact_bytes: int
    artifact_gzip_bytes: int
    size_definition: str
    artifact_path: str
    artifact_sha256: str
    #: The model's parameter count (stored as `params`, the name trials have always had).
    params: int
    float32_bytes: int
    keras_accuracy: float
    first_epoch_accuracy: float
    #: Successive halving (`optimizer.engine.halving`): [epoch, validation accuracy, estimated
    #: bytes] at each rung reached, and the rung where training stopped (None: all epochs).
    rungs: tuple[tuple[int, float, float], ...]
    stopped_at_epoch: int | None
    head_mec_bits: int | None
    feature_compression_ratio: float | None
    embedding_dims: int | None
    train_seconds: float
    eval_seconds: float
    #: Training examples the candidate was trained on (`Budget.train_subset`, or all).
    train_examples: int | None = None
    losses: tuple[float, ...] = field(default=())
    #: `objectives.device` figures (flash_bytes, ram_bytes, ram_method, latency_ms, …) of
    #: the TFLite file a device would run, and which file that is (`device_format`).
    device: dict[str, object] = field(default_factory=dict)
    #: Multiply-accumulates per inference (`objectives.capacity.macs`): the compute a
    #: device user budgets on; `latency_ms` is the host's.
    macs: int | None = None
    #: Flash and RAM of the untrained candidate's file, measured before training when a
    #: flash or RAM budget is set (`footprint_before_training`), else empty.
    footprint_before_training: dict[str, object] = field(default_factory=dict)
    #: Where the worker's time went, in seconds by phase (`PHASES`); stored with the
    #: driver's own phases under `phase_seconds`, not flattened into the figures.
    phase_seconds: dict[str, float] = field(default_factory=dict)
    #: The float Keras model the artifact was converted from (a TFLite mode's; an `.epr`
    #: decodes to it), kept so `export` can give it back as a `.keras` file; its SHA-256.
    float_model_path: str | None = None
    float_model_sha256: str | None = None

    def as_attrs(self) -> dict[str, object]:
        """The figures to store per trial, device figures flattened in; the local artifact
        path is not one of them (the artifact goes to the study's artifact store)."""
        attrs = asdict(self)
        del attrs["artifact_path"], attrs["phase_seconds"], attrs["float_model_path"]
        attrs.update(attrs.pop("device"))
        attrs["losses"] = list(self.losses)
        attrs["rungs"] = [list(score) for score in self.rungs]
        return attrs


#: The phases of a trial's work in a worker, in the order they run: the TensorFlow import
#: (a new worker's first trial only), building the candidate (and its EPR wrapper), the
#: untrained footprint check (under a flash or RAM budget), training, evaluating (the
#: Keras model and the artifact), compressing and converting, and the device figures.
PHASES = ("import", "build", "footprint", "train", "evaluate", "compress", "device")


class _PhaseClock:
    """Adds the wall time of each `with clock(phase):` block to `seconds[phase]`, and
    calls `progress` (when given) as each block begins and ends."""

    def __init__(self, progress: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        self.tick()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
            self.tick()

    def tick(self) -> None:
        if self.progress is not None:
            self.progress()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, recorded on the trial and checked by `export`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_suffix(quantization: str) -> str:
    """The file suffix of a quantization mode's artifact: `.epr` or `.tflite`."""
    return ARTIFACT_SUFFIX.get(quantization, ".tflite")


def artifact_path(artifact_dir: Path, *, trial_number: int, quantization: str) -> Path:
    """Where trial `trial_number`'s artifact is written before it goes to the store."""
    return Path(artifact_dir) / f"trial-{trial_number:05d}{artifact_suffix(quantization)}"


def representative_draw(y: np.ndarray, *, n: int, seed: int) -> np.ndarray:
    """Indices of `n` calibration examples for int8 conversion, drawn with `seed` from the
    whole training split and spread over the classes (round-robin over the classes, each
    one shuffled), so every class shapes the activation ranges the converter measures."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == label)) for label in np.unique(y)]
    rounds = -(-n // len(per_class))
    order = [int(idx[i]) for i in range(rounds) for idx in per_class if i < len(idx)]
    return np.asarray(order[:n], dtype=np.int64)


def evaluate_artifact(path: Path, *, quantization: str, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a stored artifact itself: TFLite interpreter or the decoded EPR model."""
    if quantization == "epr":
        from objectives import epr

        return accuracy(epr.load(path), x, y)
    return tflite.evaluate(Path(path).read_bytes(), x, y)


def evaluate_candidate(
    *,
    candidate: Candidate,
    parent: ParentSource,
    splits: Splits,
    budget: Budget,
    accuracy_floor: float,
    usable_accuracy: float,
    artifact_dir: Path,
    trial_number: int,
    seed: int,
    outputs: str = "logits",
    weights: str | None = None,
    hp_params: dict[str, object] | None = None,
    judge: StopRule | None = None,
    device_budgets: DeviceBudgets | None = None,
    measure_update: bool = False,
    keep_weights: Path | None = None,
    start_from: Path | None = None,
    teacher: np.ndarray | None = None,
    progress: Callable[[], None] | None = None,
) -> TrialResult:
    """Builds (the parent rewritten to `candidate`, inheriting `weights` when set), trains,
    compresses and evaluates one candidate; writes its artifact. `outputs` (`logits` or
    `probabilities`) chooses the loss; `hp_params` are a hypermodel's `hp_*` values.

    Where `device_budgets` set a flash or RAM limit, the candidate's untrained file is
    measured first and a candidate over either raises `OverBudget` before it trains.
    `measure_update`: also `ota_bytes`, the update a device receives for its file (under
    `--size-objective ota` only: the encoder takes up to 17.5 s on a 3.6 MB float32 file,
    more than such a trial's first epoch).

    `keep_weights`: where the trained model's weights are written (`save_weights`), so
    that a finalist can go on from them; `start_from`: such a file, whose weights the
    model starts from instead (the candidate's own trained weights: a fine-tune).

    `teacher`: the trained parent's outputs on the training split (`ParentInfo.teacher`),
    which the candidate distills at the budget's `distill_weight` (none at 0).

    `progress`: called as the work advances (each phase's start and end, each epoch's
    end), so that a worker's driver tells a slow trial from a stuck one
    (`optimizer.engine.patience`).

    Raises `TrialFailure` (trial FAIL, study goes on) or `HopelessTrial` (PRUNED): over a
    flash or RAM budget before training (`OverBudget`), below `accuracy_floor` after the
    first epoch, or an artifact below `usable_accuracy`.
    """
    clock = _PhaseClock(progress)
    with clock("import"):  # a new worker's first trial pays for TensorFlow here
        importlib.import_module("tensorflow")
    mode = device_mode(candidate.quantization)
    built = _build(candidate=candidate, parent=parent, splits=splits, seed=seed,
                   weights=weights, hp_params=hp_params, start_from=start_from, clock=clock,
                   device_budgets=device_budgets, mode=mode)
    trained = _train(built, candidate=candidate, splits=splits, budget=budget, seed=seed,
                     accuracy_floor=accuracy_floor, outputs=outputs, judge=judge,
                     keep_weights=keep_weights, clock=clock, teacher=teacher)
    path = artifact_path(artifact_dir, trial_number=trial_number,
                         quantization=candidate.quantization)
    path.parent.mkdir(parents=True, exist_ok=True)
    with clock("compress"):
        written = _write_artifact(built.model, candidate=candidate, path=path, splits=splits,
                                  seed=seed)
        figures = size.artifact_figures([path], payload_bytes=written.payload_bytes)
    judged = _judge_artifact(written, path=path, figures=figures, splits=splits,
                             usable_accuracy=usable_accuracy, clock=clock)
    with clock("device"):
        device_attrs = device_figures(written.flatbuffer, decoded=written.deployable,
                                      seed=seed, mode=mode, update=measure_update)
    return _result(built=built, trained=trained, written=written, path=path, figures=figures,
                   judged=judged, device_attrs=device_attrs, phase_seconds=clock.seconds)


@dataclass(frozen=True)
class _Built:
    """The built candidate.

    Attributes:
        plain: the candidate's plain Keras model (its parameters, capacity and MACs).
        model: what trains: `plain`, or its EPR wrapper when the candidate has a penalty.
        params: `plain`'s parameter count.
        footprint: the untrained file's flash and RAM (`check_footprint`), measured under a
            flash or RAM budget, else empty.
    """

    plain: Any
    model: Any
    params: int
    footprint: dict[str, object]


def _build(*, candidate: Candidate, parent: ParentSource, splits: Splits, seed: int,
           weights: str | None, hp_params: dict[str, object] | None, start_from: Path | None,
           device_budgets: DeviceBudgets | None, mode: str, clock: _PhaseClock) -> _Built:
    """The candidate built (`objectives.parent.candidate_model`), its untrained footprint
    checked against a flash or RAM budget (`OverBudget`), then wrapped for EPR and given
    the `start_from` weights when asked."""
    import tensorflow as tf

    with clock("build"):
        tf.keras.backend.clear_session()
        plain = candidate_model(
            source=parent, candidate=candidate, input_shape=splits.input_shape,
            num_classes=splits.num_classes, seed=seed, weights=weights, hp_params=hp_params,
        )
        params = plain.count_params()
    footprint: dict[str, object] = {}
    if device_budgets is not None and device_budgets.before_training:
        with clock("footprint"):
            footprint = check_footprint(plain, mode=mode, budgets=device_budgets,
                                        splits=splits, seed=seed)
    with clock("build"):
        model = plain
        if candidate.epr_lambda > 0:
            from objectives import epr

            model = epr.make_compressible(plain, epr_lambda=candidate.epr_lambda,
                                          steps_from_weights=weights is not None)
        if start_from is not None:
            load_weights(model, start_from)
    return _Built(plain=plain, model=model, params=params, footprint=footprint)


@dataclass(frozen=True)
class _Trained:
    """What training gave: its record (`objectives.train`), the trained Keras model's
    validation accuracy, and how many examples it trained on."""

    record: Any
    keras_accuracy: float
    train_examples: int


def _train(built: _Built, *, candidate: Candidate, splits: Splits, budget: Budget, seed: int,
           accuracy_floor: float, outputs: str, judge: StopRule | None,
           keep_weights: Path | None, clock: _PhaseClock,
           teacher: np.ndarray | None = None) -> _Trained:
    """`built.model` trained on the training split (its first `budget.train_subset`
    examples when set), distilling the parent's outputs on them where `teacher` is given
    and the budget asks; its weights kept when asked, and its own validation accuracy."""
    x, y = splits.x_train, splits.y_train
    if budget.train_subset is not None:
        x, y = x[: budget.train_subset], y[: budget.train_subset]
    distill = None
    if teacher is not None and budget.distill_weight > 0:
        distill = Distillation(outputs=teacher[: len(x)], kind=outputs,
                               weight=budget.distill_weight,
                               temperature=budget.distill_temperature)
    with clock("train"):
        record = train(
            built.model, x=x, y=y, x_val=splits.x_val, y_val=splits.y_val,
            epochs=budget.epochs, batch_size=budget.batch_size, accuracy_floor=accuracy_floor,
            seed=seed, from_logits=outputs == "logits", schedule=budget.schedule,
            judge=judge, rung_payload=_rung_payload(candidate, param_count=built.params),
            distill=distill, progress=clock.tick,
        )
    if keep_weights is not None:
        save_weights(built.model, keep_weights)
    with clock("evaluate"):
        keras_accuracy = accuracy(built.model, splits.x_val, splits.y_val)
    return _Trained(record=record, keras_accuracy=keras_accuracy, train_examples=len(x))


@dataclass(frozen=True)
class _Written:
    """What `_write_artifact` wrote and what the later steps use.

    Attributes:
        deployable: the plain Keras model the artifact holds (EPR's decoded weights, or
            the trained model itself).
        flatbuffer: the TFLite file written, parsed once for every step that reads it
            (None for `epr`, whose file no interpreter runs).
        payload_bytes: the artifact's parameter bytes (`objectives.size`).
        float_model: where `deployable` was saved beside a TFLite artifact (None for
            `epr`, whose `.epr` decodes to it), for `export`'s `model.keras`.
    """

    deployable: Any
    flatbuffer: ParsedFlatbuffer | None
    payload_bytes: int
    float_model: Path | None


def _write_artifact(model: Any, *, candidate: Candidate, path: Path, splits: Splits,
                    seed: int) -> _Written:
    """The trained `model` compressed (EPR when the candidate has a penalty) and written to
    `path` in the candidate's storage mode; a TFLite mode's float model beside it."""
    deployable = model
    if candidate.epr_lambda > 0:
        from objectives import epr

        compressed = epr.compress(model)
        deployable = epr.decompress(compressed)
        if candidate.quantization == "epr":  # a Candidate's `epr` always has a penalty
            epr.save(compressed, path)
            return _Written(deployable, None, epr.payload_bytes(compressed), None)
    flatbuffer = tflite.convert_for_device(
        deployable, quantization=candidate.quantization,
        representative_x=splits.x_train[
            representative_draw(splits.y_train, n=REPRESENTATIVE_EXAMPLES, seed=seed)],
    )
    tflite.save(flatbuffer, path)
    float_model = path.with_name(path.stem + FLOAT_MODEL_SUFFIX)
    deployable.save(float_model)
    parsed = parse(flatbuffer)
    return _Written(deployable, parsed, size.tflite_payload_bytes(parsed), float_model)


@dataclass(frozen=True)
class _Judged:
    """The artifact's own validation accuracy and the seconds its evaluation took."""

    accuracy: float
    eval_seconds: float


def _judge_artifact(written: _Written, *, path: Path, figures: size.ByteFigures,
                    splits: Splits, usable_accuracy: float, clock: _PhaseClock) -> _Judged:
    """The artifact's validation accuracy: the interpreter running the TFLite file written,
    or the model decoded from the `.epr` file. `DivergedError` for one not finite,
    `HopelessTrial` (artifact and float model deleted) below `usable_accuracy`,
    `TrialFailure` for an artifact without payload."""
    start = time.perf_counter()
    with clock("evaluate"):
        if written.flatbuffer is None:
            artifact_accuracy = evaluate_artifact(path, quantization="epr", x=splits.x_val,
                                                  y=splits.y_val)
        else:
            artifact_accuracy = tflite.evaluate(written.flatbuffer, splits.x_val, splits.y_val)
    eval_seconds = time.perf_counter() - start
    if not math.isfinite(artifact_accuracy):
        raise DivergedError(f"artifact accuracy is {artifact_accuracy}")
    if artifact_accuracy < usable_accuracy:
        path.unlink(missing_ok=True)
        if written.float_model is not None:
            written.float_model.unlink(missing_ok=True)
        raise HopelessTrial(
            f"the artifact's validation accuracy {artifact_accuracy:.3f} is below the "
            f"study's usable_accuracy {usable_accuracy}"
        )
    if figures.payload_bytes <= 0:
        raise TrialFailure(f"artifact has a payload of {figures.payload_bytes} bytes")
    return _Judged(accuracy=artifact_accuracy, eval_seconds=eval_seconds)


def _result(*, built: _Built, trained: _Trained, written: _Written, path: Path,
            figures: size.ByteFigures, judged: _Judged, device_attrs: dict[str, object],
            phase_seconds: dict[str, float]) -> TrialResult:
    """The trial's figures gathered: what each step measured, the artifact's and float
    model's SHA-256, and the plain model's capacity."""
    record = trained.record
    return TrialResult(
        accuracy=judged.accuracy,
        payload_bytes=figures.payload_bytes,
        artifact_bytes=figures.artifact_bytes,
        artifact_gzip_bytes=figures.artifact_gzip_bytes,
        size_definition=figures.definition,
        artifact_path=str(path),
        artifact_sha256=sha256_file(path),
        float_model_path=None if written.float_model is None else str(written.float_model),
        float_model_sha256=(None if written.float_model is None
                            else sha256_file(written.float_model)),
        params=built.params,
        float32_bytes=4 * built.params,
        keras_accuracy=trained.keras_accuracy,
        first_epoch_accuracy=record.first_epoch_accuracy,
        rungs=record.rungs,
        stopped_at_epoch=record.stopped_at,
        **capacity.summary(built.plain),
        train_seconds=record.seconds,
        eval_seconds=judged.eval_seconds,
        losses=record.losses,
        device=device_attrs,
        macs=capacity.macs(built.plain),
        footprint_before_training=built.footprint,
        phase_seconds=phase_seconds,
        train_examples=trained.train_examples,
    )


def save_weights(model: keras.Model, path: Path) -> None:
    """`model`'s weights, in order, as one `.npz` (written atomically): any Keras model,
    the EPR wrapper included, whose twin built from the same candidate reads them back
    (`load_weights`)."""
    buffer = io.BytesIO()
    np.savez(buffer, *model.get_weights())
    write_atomically(Path(path), buffer.getvalue())


def load_weights(model: keras.Model, path: Path) -> None:
    """Sets `model`'s weights from a `save_weights` file of a model built the same way;
    `TrialFailure` names a file that does not fit."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    try:
        model.set_weights(arrays)
    except ValueError as error:
        raise TrialFailure(f"the weights in {path} do not fit this candidate: {error}"
                           ) from None


def _rung_payload(candidate: Candidate, *, param_count: int):
    """Bytes to judge a trial by at a rung: EPR's own estimate of its coded length (the
    penalty in bits / 8, `epr.estimated_bits`) for `epr`, the mode's bytes per value
    otherwise (`size.estimated_tflite_payload`)."""
    if candidate.quantization == "epr":
        from objectives import epr

        return lambda model: epr.estimated_bits(model) / 8
    estimate = size.estimated_tflite_payload(param_count, quantization=candidate.quantization)
    return lambda model: estimate


def device_mode(quantization: str) -> str:
    """The TFLite mode of the file a device runs for a storage mode: the mode itself, and
    for `epr` (whose entropy-coded file no interpreter runs) float32 of the decoded model."""
    return "float32" if quantization == "epr" else quantization


def footprint_before_training(model: keras.Model, *, mode: str, splits: Splits, seed: int
                              ) -> dict[str, object]:
    """Flash and RAM (`objectives.device.footprint`) of the file a device would run for
    `model` (a `mode` file: `device_mode` of its storage mode), from the model as built,
    before any training: both follow from the architecture and the storage mode alone
    (DESIGN §2), so a candidate over a flash or RAM budget need not be trained to be known
    infeasible. int8 is calibrated on a few training examples, which sets its scales, not
    its sizes."""
    calibration = splits.x_train[representative_draw(
        splits.y_train, n=FOOTPRINT_EXAMPLES, seed=seed)] if mode == "int8" else None
    with distinct_weights(model, seed=seed):
        flatbuffer = tflite.convert_for_device(model, quantization=mode,
                                               representative_x=calibration)
        float32 = float32_file(model, quantization=mode)
    return device.footprint(flatbuffer, float32_file=float32)


@contextlib.contextmanager
def distinct_weights(model: keras.Model, *, seed: int) -> Iterator[None]:
    """`model` with every float weight nudged to values of its own, restored after.

    Freshly initialized weights are degenerate (zero biases, equal BatchNorm statistics)
    and the TFLite converter stores equal constants once, so an untrained model's file
    would be smaller than the trained one's; nudged by 0.1% of each tensor's mean
    magnitude, it has the trained file's size and arena exactly (measured on every trial
    of the tests: `footprint_before_training` equals the artifact's figures)."""
    weights = model.get_weights()
    rng = np.random.default_rng(seed)
    try:
        model.set_weights([w + (1e-3 * np.abs(w).mean() + 1e-6) * rng.standard_normal(
            w.shape).astype(w.dtype) if w.dtype.kind == "f" else w for w in weights])
        yield
    finally:
        model.set_weights(weights)


def float32_file(model: keras.Model, *, quantization: str) -> bytes | None:
    """The float32 file of `model` where its `quantization` file is one TFLM does not run
    (float16, dynamic): what that file's arena is estimated with (`device.footprint`)."""
    if quantization not in device.NOT_ON_TFLM:
        return None
    return tflite.convert(model, quantization="float32")


def check_footprint(model: keras.Model, *, mode: str, budgets: DeviceBudgets, splits: Splits,
                    seed: int) -> dict[str, object]:
    """The untrained footprint of `model`'s `mode` file (see `footprint_before_training`);
    raises `OverBudget` (the trial is rejected, untrained) when it breaks a flash or RAM
    budget."""
    figures = footprint_before_training(model, mode=mode, splits=splits, seed=seed)
    constraints = budgets.footprint_constraints(figures)
    over = {name: value for name, value in constraints.items() if value > 0}
    if over:
        limits = {"flash_bytes": ("flash", budgets.max_flash_kb),
                  "ram_bytes": ("RAM", budgets.max_ram_kb)}
        said = ", ".join(
            f"{limits[name][0]} {float(figures[name]) / 1024:.1f} KB > {limits[name][1]:g} KB"
            for name in over)
        raise OverBudget(f"over budget before training: {said}; not trained", figures,
                         constraints)
    return figures


def device_figures(flatbuffer: bytes | ParsedFlatbuffer | None, *, decoded: keras.Model,
                   seed: int, mode: str, update: bool = False) -> dict[str, object]:
    """Flash, RAM and host latency of the TFLite file a device runs, a `mode` file
    (`device_mode`): the artifact itself, or for `epr` (whose entropy-coded file no
    interpreter runs; `flatbuffer` None) the `mode` TFLite conversion of the decoded
    model. `device_format` says which. A float16 or dynamic file's arena is estimated on
    the float32 file of `decoded` (`device.footprint`). With `update`, `ota_bytes`: the
    update a device receives to rebuild that file (`objectives.ota`, what `export --ota`
    writes)."""
    device_format = "artifact"
    if flatbuffer is None:
        flatbuffer = tflite.convert(decoded, quantization=mode)
        device_format = f"{mode} TFLite of the decoded EPR model"
    parsed = parse(flatbuffer)
    figures = device.measure(
        parsed, runs=LATENCY_RUNS, seed=seed,
        float32_file=float32_file(decoded, quantization=mode),
    ).as_attrs()
    if update:
        figures["ota_bytes"] = ota.ota_bytes(parsed.data)
    return {**figures, "device_format": device_format}
