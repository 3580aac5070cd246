"""The command line: `python -m optimizer SUBCOMMAND ...`.

Thin by design (DESIGN §7.6): it parses arguments, configures logging, and calls
keyword-only library functions. TensorFlow is imported only by the subcommands that need
it, so `--help` stays fast. Bad input (unknown study, missing data, unreadable storage,
…) ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from definitions.errors import CheckFailed, OptimizerError, UsageError
from definitions.vocabulary import (
    BACKENDS,
    DEVICE_MODES,
    FORMATS,
    INITS,
    JOBS_AUTO,
    QUANTIZATION_MODES,
    SAMPLERS,
    SIZE_OBJECTIVES,
)
from optimizer.commands.dashboard import dashboard_command
from optimizer.commands.export import export_command
from optimizer.commands.inspect import inspect_command
from optimizer.commands.pareto import pareto_command
from optimizer.commands.report import report_command
from optimizer.commands.run_args import run_command
from optimizer.commands.tables import studies_command
from optimizer.engine.extension import EXTEND_EVERY
from optimizer.engine.finalists import FINALISTS
from optimizer.engine.patience import SILENCE_LIMIT
from optimizer.store.storage_failures import as_usage_error

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_study_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "--study", required=required,
        help="a study name (see `studies`; or the --name of a --model/--data study), "
        "pkg.module:NAME, or path/to/study.py",
    )
    p.add_argument(
        "--smoke", action="store_true", help="the study's tiny smoke budget (own study name)"
    )
    p.add_argument("--run-dir", type=Path, help="where runs are written (default runs/<study>)")
    p.add_argument(
        "--storage", help="Optuna storage URL (default: SQLite file in the run dir)"
    )


def _add_artifact_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--artifact-dir", type=Path,
        help="the study's artifact store (default <run dir>/artifact-store); drivers on "
        "several machines share one on a shared mount",
    )


def _add_trust_model_code(p: argparse.ArgumentParser) -> None:
    """`--trust-model-code`: without it a saved model holding Python code (a Lambda
    layer's bytecode, which runs when the file is loaded) is refused in one line."""
    p.add_argument(
        "--trust-model-code", action="store_true",
        help="load Lambda layers and other Python code stored in the model file; only for "
        "files you trust",
    )


def _jobs(text: str) -> int | str:
    """`--jobs`: `auto` or a whole number (its bounds are `RunSettings`')."""
    if text == JOBS_AUTO:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or {JOBS_AUTO}, got {text!r}"
                                         ) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (importing no TensorFlow)."""
    parser = _Parser(
        prog="optimizer",
        description="Compression-aware architecture search for Keras CNNs: width x "
        "factorization x entropy coding (EPR) x TFLite quantization, scored as a Pareto "
        "front of accuracy versus compressed bytes.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_run_command(sub)
    sub.add_parser("studies", help="list the studies and their budgets")
    _add_pareto_command(sub)
    _add_export_command(sub)
    _add_report_command(sub)
    _add_dashboard_command(sub)
    _add_inspect_command(sub)
    return parser


def _add_run_command(sub: argparse._SubParsersAction) -> None:
    """`run`: the study (or the user's model and data), how trials are proposed and run,
    the search space, the device budgets, and how the run is executed."""
    p = sub.add_parser("run", help="create or resume a study and run its trials")
    _add_study_args(p, required=False)
    _add_own_model_args(p)
    _add_trust_model_code(p)
    _add_trial_args(p)
    p.add_argument("--data-dir", type=Path, help="local dataset files (e.g. mnist.npz)")
    _add_artifact_dir(p)
    p.add_argument(
        "--size-objective", choices=tuple(SIZE_OBJECTIVES),
        help="the byte figure to minimize: payload (compressed parameters, the default), "
        "flash (the .tflite file a device runs), gzip (gzip -9 of the artifact) or ota "
        "(model.update, the bytes a device receives to rebuild its .tflite file); "
        "recorded on the study",
    )
    _add_search_space_args(p)
    _add_device_budget_args(p)
    _add_execution_args(p)


def _add_own_model_args(p: argparse.ArgumentParser) -> None:
    """`run --model --data --name`: a study made from the user's own files."""
    own = p.add_argument_group("your own model and data (instead of --study)")
    own.add_argument("--model", help="the parent: a saved Keras model (.keras, .h5, "
                     "SavedModel folder) or module:function / file.py:function")
    own.add_argument("--data", help="an .npz (x_train, y_train[, x_val, y_val, x_test, "
                     "y_test]), a folder of class subfolders, or module:function")
    own.add_argument("--name", help="the study's name (default: the model file's stem)")


def _add_trial_args(p: argparse.ArgumentParser) -> None:
    """`run`'s trials: the children's init, how many and how long, who proposes them
    (sampler or backend, the front's extension) and the seed."""
    p.add_argument(
        "--init", choices=INITS,
        help="children inherit the trained parent's weights (inherit) or start fresh "
        "(scratch); default: the study's (inherit for --model); recorded on the study",
    )
    p.add_argument("--n-trials", type=int, help="total finished trials to reach")
    p.add_argument("--timeout", type=float, help="stop starting trials after SEC seconds "
                   "(those in flight finish while their worker answers)")
    p.add_argument(
        "--sampler", choices=SAMPLERS, default="tpe", help="default: tpe"
    )
    p.add_argument(
        "--extend-every", type=int, default=EXTEND_EVERY, metavar="N",
        help="one trial in N steps one size below the front's smallest member (narrower, "
        f"larger λ, or one more conv factorized); 0: never (default {EXTEND_EVERY})",
    )
    p.add_argument(
        "--backend", choices=BACKENDS, default="optuna",
        help="who proposes trials: Optuna's --sampler (default), or KerasTuner's "
        "BayesianOptimization on accuracy - 0.02*log10(bytes), for comparison",
    )
    p.add_argument(
        "--seed", type=int,
        help="carves the data splits and seeds training and the sampler (default 0 for a new "
        "study; a stored study keeps its own)",
    )


def _add_search_space_args(p: argparse.ArgumentParser) -> None:
    """`run --quantization --width-range`: the search space of a new study."""
    space = p.add_argument_group("the search space (recorded on a new study)")
    space.add_argument(
        "--quantization", nargs="+", choices=QUANTIZATION_MODES, metavar="MODE",
        help=f"the storage modes to search, of {', '.join(QUANTIZATION_MODES)} (default: the "
        "study's; under --size-objective flash without epr, whose device file is the "
        "decoded model)",
    )
    space.add_argument(
        "--width-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
        help="the width multipliers to search (default: the study's)",
    )


def _add_device_budget_args(p: argparse.ArgumentParser) -> None:
    """`run`'s device budgets (flash, RAM, latency, accuracy) and whether a candidate is
    checked against them before training."""
    budgets = p.add_argument_group(
        "device budgets (Optuna constraints; a candidate over a flash or RAM budget is "
        "rejected before training, other over-budget trials stay, marked infeasible)"
    )
    budgets.add_argument("--max-flash-kb", type=float, help="the .tflite file, in KB")
    budgets.add_argument("--max-ram-kb", type=float,
                         help="peak activation memory (tensor arena), in KB")
    budgets.add_argument("--max-latency-ms", type=float,
                         help="median single-example inference on the host CPU, one thread")
    budgets.add_argument("--min-accuracy", type=float, help="validation accuracy")
    budgets.add_argument(
        "--no-check-before-training", action="store_true",
        help="train candidates over a flash or RAM budget and judge them after, as before "
        "the check existed (for comparison: benchmarks/device_search.py)",
    )


def _add_execution_args(p: argparse.ArgumentParser) -> None:
    """How `run` executes: workers at once, finalists after the search, isolation."""
    p.add_argument(
        "--jobs", type=_jobs, default=JOBS_AUTO, metavar="N",
        help="trials at once, each in a worker of its own with its share of the cores; "
        "auto (the default): one per core as memory allows (1.5 GiB a worker); this run's "
        "setting, not the study's",
    )
    p.add_argument(
        "--finalists", type=int, metavar="K",
        help="after the search, fine-tune the best front member of each size band (a "
        "factor of 4 in bytes), up to K, from their trial's weights on the whole training "
        "split, to the end of a decaying schedule, each stored as a trial of its own "
        f"(default {FINALISTS}; none for --smoke; 0: none)",
    )
    p.add_argument(
        "--silence-limit", type=float, default=SILENCE_LIMIT, metavar="SEC",
        help="end a trial whose worker reports no progress for SEC seconds, or for five "
        "times the run's longest such silence if longer (a stopped or deadlocked worker; "
        "the trial is retried once); past --timeout a stopped worker is ended within "
        f"seconds (default {SILENCE_LIMIT:.0f})",
    )
    p.add_argument(
        "--no-isolation", action="store_true",
        help="run trials in this process instead of in a worker process (for debugging)",
    )


def _add_pareto_command(sub: argparse._SubParsersAction) -> None:
    """`pareto`: the stored study and the output format."""
    p = sub.add_parser("pareto", help="print a study's Pareto front")
    _add_study_args(p)
    p.add_argument("--format", choices=FORMATS, default="table")


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    """`export`: the stored study, which front member, where to, and how."""
    p = sub.add_parser("export", help="export a front member as a deployable artifact")
    _add_study_args(p)
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--trial", type=int, help="trial number")
    pick.add_argument("--max-bytes", type=int,
                      help="most accurate with the study's byte objective <= B (payload "
                      "by default)")
    pick.add_argument("--min-accuracy", type=float, help="smallest with accuracy >= A")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--data-dir", type=Path, help="local dataset files, to re-check accuracy")
    p.add_argument(
        "--data", metavar="REF",
        help="the data loader (module:function / file.py:function) the study's record "
        "names, given again to allow running it: a stored study runs no code it names",
    )
    p.add_argument(
        "--device-mode", choices=DEVICE_MODES,
        help="for an epr trial: the TFLite mode the decoded model is converted to for the "
        "device (model_device.tflite); default int8, calibrated on the study's training split",
    )
    p.add_argument(
        "--keras-format", type=int, choices=(2, 3),
        help="the Keras of model.keras (the float model): 3 (Keras 3) or 2 (tf_keras, "
        "tf.keras <= 2.15); default: the Keras the parent was saved with, 3 for built-in "
        "families",
    )
    p.add_argument(
        "--ota", action="store_true",
        help="also write model.update, the device file entropy-coded as a device receives "
        "it, and its C decoder (model_update.c/.h, ota_decode.c; docs/ota-format.md)",
    )
    p.add_argument(
        "--base", type=Path, metavar="DIR",
        help="with --ota: an earlier export folder of the same architecture, whose device "
        "file the device runs; model.update is then relative to it when that is smaller",
    )
    _add_artifact_dir(p)


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    """`report`: the stored study and the output folder."""
    p = sub.add_parser("report", help="write trials.csv and front plots")
    _add_study_args(p)
    p.add_argument("--out", type=Path, help="output folder (default <run dir>/report)")


def _add_dashboard_command(sub: argparse._SubParsersAction) -> None:
    """`dashboard`: the stored study and where to serve it."""
    p = sub.add_parser("dashboard", help="start optuna-dashboard on a study's storage")
    _add_study_args(p)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    _add_artifact_dir(p)


def _add_inspect_command(sub: argparse._SubParsersAction) -> None:
    """`inspect`: a study or a model, the candidate's width and factorized layers."""
    p = sub.add_parser("inspect", help="per-layer table: factorization rule and capacity")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--study", help="inspect the study's family on its dataset's shape")
    target.add_argument("--model", help="inspect a family directly (e.g. mobilenet_v2)")
    p.add_argument("--input", help="input shape HxWxC with --model (default 28x28x1)")
    p.add_argument("--classes", type=int, default=10, help="classes with --model")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (default 1)")
    p.add_argument("--factorize", nargs="*", default=[], metavar="LAYER")
    p.add_argument("--no-device", action="store_true",
                   help="skip the flash / RAM / latency table of the TFLite modes")
    _add_trust_model_code(p)


#: What each subcommand runs.
HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "studies": studies_command, "inspect": inspect_command, "run": run_command,
    "pareto": pareto_command, "export": export_command, "report": report_command,
    "dashboard": dashboard_command,
}


def _divert_native_stderr() -> None:
    """Keeps native chatter (the TFLite converter's `fully_quantize: 0, …`, the
    interpreter's `Created TensorFlow Lite XNNPACK delegate`, TensorFlow's C++ logs) off
    the user's terminal: file descriptor 2 goes to /dev/null for this process and its
    workers, while Python's `sys.stderr` (our messages, logs, the progress bar) keeps
    writing to the original stream. `--verbose` skips this."""
    original = os.dup(2)
    sys.stderr.flush()
    sys.stderr = os.fdopen(original, "w", buffering=1, encoding="utf-8", errors="replace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _quiet_optuna(verbose: bool) -> None:
    """Optuna logs every failed trial with a traceback; our own one line per trial says it
    (the log level is set after import: Optuna resets its logger when first imported)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if not args.verbose and args.command in ("run", "export", "inspect"):
        _divert_native_stderr()
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for package in ("optimizer", "objectives", "studies", "search_spaces"):
        logging.getLogger(package).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ start-up noise
    if not args.verbose:
        # the TFLite converter and Optuna's experimental flags warn on every trial
        warnings.filterwarnings("ignore", category=UserWarning, module=r"tensorflow\.lite")
        warnings.filterwarnings("ignore", module=r"optuna\._experimental")
    try:
        if args.command not in ("studies", "inspect"):
            _quiet_optuna(args.verbose)
        return HANDLERS[args.command](args)
    except UsageError as error:
        print(f"optimizer {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CheckFailed as error:
        print(f"optimizer {args.command}: check failed: {error}", file=sys.stderr)
        return 1
    except OptimizerError as error:
        print(f"optimizer {args.command}: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a storage failing mid-command is one line; a bug is not

        failure = as_usage_error(error)
        if failure is None:
            raise
        print(f"optimizer {args.command}: error: {failure}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        resume = "; run it again to resume (the interrupted trial is retried)"
        print(f"optimizer {args.command}: interrupted{resume if args.command == 'run' else ''}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
