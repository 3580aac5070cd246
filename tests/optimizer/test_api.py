"""`from optimizer import search`: the Python API works from a script with or without a
`__main__` guard, from `python - < script.py`, from a notebook-style `exec` and in a real
Jupyter (IPython) kernel, never hangs on a dead worker, raises the CLI's error when
nothing is usable, and keeps the libraries' log lines off the caller's output.

Each runs a real interpreter under `subprocess.run(..., timeout=...)`, or a kernel whose
every wait has a timeout: a hang fails the test instead of hanging the suite. Each
searches `digits` with its smoke budget, one or two trials (the reference points:
float32, EPR at λ = 2), in seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from definitions.errors import NoUsableTrial
from tests.conftest import ROOT, run_cli

#: A hang shows as a timeout; each run here takes 10–30 s on 2 cores.
TIMEOUT = 180


def _readme_example() -> str:
    """The README's Python API example, as written there."""
    section = (ROOT / "README.md").read_text().split("\n## Python API\n", 1)[1]
    block: list[str] = []
    for line in section.splitlines():
        if line.startswith("    "):
            block.append(line[4:])
        elif block and line.strip():
            break
        elif block:
            block.append("")
    return "\n".join(block).strip() + "\n"


#: A Keras user's script: TensorFlow first, no `if __name__ == "__main__":` guard, then
#: the README's example.
SCRIPT = "import tensorflow as tf\n" + _readme_example()

#: Lines TensorFlow (C++ and Python), absl, TFLite and Optuna write when let through.
LIBRARY_LINE = re.compile(
    r"tensorflow/|W0000|I0000|WARNING:absl|WARNING:tensorflow|oneDNN|cuda|XNNPACK|"
    r"^\[[IWE] \d{4}-|Trial \d+ finished|A new study created|ExperimentalWarning",
    re.MULTILINE)


def _python(*args: str, cwd, stdin: str | None = None, quiet_tf: bool = True,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not quiet_tf:  # the test set-up's own TF_CPP_MIN_LOG_LEVEL would hide TF's lines
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def _front_and_export(out: subprocess.CompletedProcess, cwd) -> None:
    """What the README's example prints: the front (its two reference points, the
    smaller first), then the exported file and its re-checked accuracy."""
    assert out.returncode == 0, out.stderr[-3000:]
    header, *rows, exported = out.stdout.strip().splitlines()
    assert header.split() == ["trial", "accuracy", "payload_bytes", "quantization"]
    assert [row.split()[1] for row in rows] == ["1", "0"]
    assert exported.startswith("exported model.epr 0.")
    assert (cwd / "exported" / "model_card.json").exists()


def test_a_script_without_a_main_guard_that_imports_tensorflow_first_finishes(tmp_path):
    """The worker is spawned (TensorFlow is in the driver) and must not run the script
    again: before, it did, died on its parent's storage lock, and the driver waited
    forever."""
    (tmp_path / "script.py").write_text(SCRIPT)
    _front_and_export(_python("script.py", cwd=tmp_path), tmp_path)


def test_the_same_script_fed_on_stdin_finishes(tmp_path):
    """`python - < script.py`: its `__main__` names a file `<stdin>` that does not exist;
    a worker that tried to run it died before reading its start-up data, and the driver
    blocked writing them."""
    _front_and_export(_python("-", cwd=tmp_path, stdin=SCRIPT), tmp_path)


def test_a_notebook_style_exec_finishes(tmp_path):
    """A kernel runs cells with `exec` in a process that has imported TensorFlow first."""
    cell = textwrap.dedent("""
        from optimizer import search
        result = search(study="digits", smoke=True, n_trials=1, run_dir="runs/nb")
        print(len(result.front), result.study_name, result.note == "")
    """)
    driver = ("import tensorflow\n"
              f"exec(compile({cell!r}, '<cell>', 'exec'), {{'__name__': '__main__'}})\n")
    out = _python("-c", driver, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "1 digits-smoke True"


def test_the_readme_example_runs_in_a_real_jupyter_kernel(tmp_path):
    """An IPython kernel (ipykernel, started as Jupyter starts it: its own session, a
    connection file, messages over ZeroMQ) of this interpreter: one cell imports
    TensorFlow, the next is the README's example. Its output comes back as the kernel's
    iopub stream messages, which carry what the kernel process writes to its file
    descriptors as well (TensorFlow's C++ lines included)."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    # a kernel spec of this interpreter, seen by nothing but this test (not the user's)
    spec = tmp_path / "kernels" / "compression-search-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "compression-search test", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(spec.parent)], ensure_native_kernel=False)
    manager = KernelManager(kernel_name=spec.name, kernel_spec_manager=specs,
                            connection_file=str(tmp_path / "connection.json"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IPYTHONDIR": str(tmp_path / "ipython")}
    example = _readme_example().replace(
        "n_trials=2)", f"n_trials=2, run_dir={str(tmp_path / 'run')!r})")
    assert "run_dir=" in example

    began = time.monotonic()
    manager.start_kernel(cwd=str(tmp_path), env=env)
    client = None
    try:
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        for cell, timeout in (("import tensorflow", 60), (example, 120)):
            streams = {"stdout": "", "stderr": ""}
            errors: list[str] = []

            def collect(msg, streams=streams, errors=errors):
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    streams[content["name"]] += content["text"]
                elif kind == "error":
                    errors.append("\n".join(content["traceback"]))

            reply = client.execute_interactive(cell, timeout=timeout, output_hook=collect,
                                               allow_stdin=False)
            assert reply["content"]["status"] == "ok", (reply["content"], errors, streams)
            assert not errors
            assert not LIBRARY_LINE.search(streams["stdout"] + streams["stderr"]), streams
    finally:
        if client is not None:
            client.stop_channels()
        manager.shutdown_kernel(now=True)  # SIGKILL to its process group: workers too
    took = time.monotonic() - began

    # what the README's example prints (as `_front_and_export` checks for a script)
    header, *rows, exported = streams["stdout"].strip().splitlines()
    assert header.split() == ["trial", "accuracy", "payload_bytes", "quantization"]
    assert [row.split()[1] for row in rows] == ["1", "0"]
    assert exported.startswith("exported model.epr 0.")
    assert (tmp_path / "exported" / "model_card.json").exists()
    # on stderr, our line per trial and nothing else (not tqdm's IProgress warning, which
    # Optuna's import of tqdm.auto gives in a kernel without ipywidgets)
    lines = streams["stderr"].splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "[1/2] trial 0 COMPLETE", "[2/2] trial 1 COMPLETE"], streams
    assert took < TIMEOUT


#: One float32 epoch of the tiny CNN per trial, then the floor prunes it (no model here
#: reaches 99% after one epoch): nothing usable.
HOPELESS = '''
from studies import Budget, Study

STUDY = Study(name="hopeless", dataset="digits", family="tiny_cnn",
              budget=Budget(epochs=1, batch_size=64, n_trials=1),
              quantization_modes=("float32",), width_range=(0.25, 0.5),
              accuracy_floor=0.99, usable_accuracy=0.0)
'''


def test_a_search_with_no_usable_trial_raises_the_error_run_prints(tmp_path):
    (tmp_path / "hopeless.py").write_text(HOPELESS)
    script = textwrap.dedent("""
        import sys
        from definitions.errors import NoUsableTrial
        from optimizer import search
        try:
            search(study="hopeless.py", run_dir="run", progress=False)
        except NoUsableTrial as error:
            print(type(error).__name__, error, sep="|")
            sys.exit(1)
    """)
    out = _python("-c", script, cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-3000:]
    kind, message = out.stdout.strip().split("|")
    assert kind == NoUsableTrial.__name__
    assert message == ("no trial completed (1 PRUNED); each trial's line above says why "
                       "(its prune or fail reason)")
    # the CLI on the same stored study: nothing more to run, the same line
    cli = run_cli("run", "--study", "hopeless.py", "--run-dir", "run", cwd=tmp_path,
                  timeout=TIMEOUT)
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines()[-1] == f"optimizer run: error: {message}"


#: Kills every worker as soon as it appears (before it can answer), as an out-of-memory
#: killer or a crash at start would.
KILLER = """\
import os, signal, sys, threading, time
import tensorflow
from definitions.errors import OptimizerError
from optimizer import search

def kill_workers():
    me = str(os.getpid())
    while True:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
                with open(f"/proc/{pid}/cmdline") as f:
                    spawned = "spawn_main" in f.read()
            except OSError:
                continue
            if ppid == me and spawned:
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.01)

threading.Thread(target=kill_workers, daemon=True).start()
try:
    search(study="digits", smoke=True, n_trials=1, run_dir="runs/killed")
except OptimizerError as error:
    print(error, file=sys.stderr)
    sys.exit(1)
"""


def test_a_worker_killed_before_answering_is_reported_in_one_line_not_a_hang(tmp_path):
    began = time.monotonic()
    out = _python("-c", KILLER, cwd=tmp_path, timeout=120)
    took = time.monotonic() - began
    assert out.returncode == 1, out.stderr[-3000:]
    assert took < 60
    lines = out.stderr.strip().splitlines()
    # each try of the candidate says why in its line; the search ends in one line
    died = [line for line in lines if "worker process died without a result" in line]
    assert len(died) == 2 and all("signal 9" in line for line in died)
    assert lines[-1].startswith("2 rounds of trials in a row were all cut short (workers "
                                "died or were killed); 0 of 1 trials finished")
    assert "Traceback" not in out.stderr


def test_library_log_lines_stay_off_the_callers_output(tmp_path):
    """Without TensorFlow in the driver first (so whatever TensorFlow prints, it prints
    during the search) and without the test set-up's TF_CPP_MIN_LOG_LEVEL; what the
    search changed to keep the libraries quiet is back afterwards."""
    script = textwrap.dedent("""
        import logging, os, sys
        from optimizer import search
        stderr = sys.stderr
        result = search(study="digits", smoke=True, n_trials=1, run_dir="runs/quiet")
        import optuna
        print(len(result.front), sys.stderr is stderr, "TF_CPP_MIN_LOG_LEVEL" in os.environ,
              logging.getLogger("tensorflow").level, optuna.logging.get_verbosity())
        print("to stderr after", file=sys.stderr)
    """)
    out = _python("-c", script, cwd=tmp_path, quiet_tf=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "1 True False 0 20"  # 20: logging.INFO, Optuna's default
    assert not LIBRARY_LINE.search(out.stdout + out.stderr), out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert lines[-1] == "to stderr after"
    assert lines[0].startswith("[1/1] trial 0 COMPLETE")  # our own line per trial


def test_importing_the_api_imports_neither_tensorflow_nor_optuna():
    out = _python("-c", "import sys, optimizer\n"
                  "from optimizer import search, SearchResult\n"
                  "print(sorted({'tensorflow', 'optuna'} & set(sys.modules)))", cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"

    import optimizer

    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        optimizer.nothing  # noqa: B018
