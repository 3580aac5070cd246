"""Device figures of a TFLite flatbuffer (DESIGN §2): flash, RAM and latency.

A study that ships to a microcontroller cares about three numbers besides accuracy and
payload, and this module measures them for one `.tflite` flatbuffer:

- `flash_bytes`: the deployable file, `len(flatbuffer)`; it is what the firmware stores.
- `ram_bytes`: the tensor arena a microcontroller runtime needs to run the model. Two
  methods, and the figure records which one produced it (`ram_method`):

  - `"tflite-micro"`: the model is loaded and invoked once by TensorFlow Lite Micro's own
    interpreter (the `tflite-micro` PyPI package) and the figure is the arena its
    `RecordingMicroAllocator` reports as "Arena allocation total": the *head* (the
    non-persistent section: every activation tensor, graph input and output included,
    placed by TFLM's `GreedyMemoryPlanner`, plus kernels' scratch buffers) plus the
    *tail* (the persistent section: interpreter bookkeeping — one `TfLiteEvalTensor` per
    tensor, one node-and-registration struct per operator, persistent `TfLiteTensor`s
    for the graph's inputs and outputs, and the kernels' op data such as the per-channel
    requantization multipliers of int8 convolutions). It is measured in an arena whose
    two ends are 16-byte aligned, so it holds no alignment padding. The `tensor_arena` a
    firmware declares is at least this; on small models TFLM needs a few hundred bytes
    more for a moment while it plans (measured by `objectives.micro.minimal_arena`, which
    `export` writes as `kTensorArenaSize`). Not counted: the model itself (flash), the
    interpreter object, the op resolver and the stack.
  - `"planner+float32-overhead"`: for a file TFLM does not run (float16, dynamic), the
    planner's figure below plus TFLM's overhead (arena total minus planned tensors)
    measured on the float32 file of the same model, so `ram_bytes` keeps its meaning.
  - `"greedy-planner"`: `plan_arena`, this module's re-implementation of TFLM's lifetimes
    and greedy planner on the flatbuffer's tensors. It counts the activations only —
    what TFLM places in the head, without kernels' scratch buffers and without the tail.
    On models whose kernels ask for no scratch buffer it equals TFLM's head exactly
    (the tests check this). A float16 model's weights count as activations here: its
    DEQUANTIZE operators write them, as float32, into non-constant tensors at run time.

  `ram_bytes` is the TFLM figure where TFLM runs the model, else the planner's; the
  planner's figure is always recorded too (`planner_ram_bytes`), so the two can be
  compared across trials. TFLM does not run every model the converter makes: it has no
  kernels for float16 models (their DEQUANTIZE ops read float16) nor for dynamic-range
  models (hybrid int8-weight / float-activation kernels), and then the planner's figure
  is used and `ram_note` says why.
- `latency_ms`: the median time of one inference, batch 1, in `tf.lite.Interpreter` with
  one thread on the *host CPU, not the device*: a relative figure for comparing trials on
  one machine, not a prediction of a microcontroller's latency.

TFLM runs in a child Python process, one per process that measures (`_TflmChild`: a
worker's trials share it, so a file costs an invoke, not an interpreter start of about
0.15 s): its diagnostics go to the C `stderr`, which the child sends back per model (the
parent's streams are left alone), the arena report is parsed from there, and a crash or
abort of the C++ runtime on an unusual model ends the child, not the trial (the next
model starts another). The flatbuffer is parsed with the maintained
`tflite` package (the TFLite schema as Python), not TensorFlow's private generated
schema. TensorFlow, `tflite` and `tflite-micro` are imported lazily, when a figure is
measured.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from definitions.errors import one_line
from objectives.flatbuffer import ParsedFlatbuffer, parse

#: Bytes each tensor type takes per element (the `tflite.TensorType` names).
_ELEMENT_BYTES: dict[str, int] = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "FLOAT64": 8,
    "INT8": 1,
    "UINT8": 1,
    "INT16": 2,
    "UINT16": 2,
    "INT32": 4,
    "UINT32": 4,
    "INT64": 8,
    "UINT64": 8,
    "BOOL": 1,
    "COMPLEX64": 8,
    "COMPLEX128": 16,
}

#: TFLM's `MicroArenaBufferAlignment()`: every arena buffer's size is rounded up to it.
TFLM_ALIGNMENT = 16

#: How `ram_bytes` was obtained: measured by TFLM; estimated for a file TFLM does not run
#: (its planned tensors plus the bookkeeping and scratch TFLM measured on the float32 file
#: of the same model); or the planned tensors alone (no float32 file to measure on).
ESTIMATED = "planner+float32-overhead"
RAM_METHODS: tuple[str, ...] = ("tflite-micro", ESTIMATED, "greedy-planner")

#: TFLite modes TFLM has no kernels for: float16 files (DEQUANTIZE from float16) and
#: dynamic-range ones (hybrid int8-weight / float-activation kernels).
NOT_ON_TFLM: tuple[str, ...] = ("float16", "dynamic")

#: Said of every float16 file's RAM figure, where it is shown.
FLOAT16_NOTE = ("float16 file: its DEQUANTIZE operators write every weight as float32 into "
                "the arena at run time, so the weights count as RAM here (a float32 file "
                "keeps them in flash)")

#: Warm-up inferences before the timed ones (first runs allocate and fill caches).
WARMUP_RUNS = 5

#: Seconds the TFLM child process may take to load and invoke the model once.
TFLM_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DeviceFigures:
    """The device figures of one TFLite flatbuffer, and how the RAM figure was obtained.

    `ram_bytes` means one thing for every mode: the tensor arena TFLM needs to run the file
    (activations, kernels' scratch and its own bookkeeping: TFLM's "arena allocation total"
    once allocated). A firmware declares a little more on small models, where TFLM needs
    free room for a moment while it plans (`objectives.micro.minimal_arena`, what `export`
    writes as `kTensorArenaSize`). Measured where TFLM runs the file (`ram_method ==
    "tflite-micro"`: float32, int8); for a file it does not run (float16, dynamic:
    `NOT_ON_TFLM`) estimated as the file's planned tensors plus the overhead TFLM measured
    on the float32 file of the same model (`ESTIMATED`); `"greedy-planner"` (the planned
    tensors alone) only where no such file was given. `planner_ram_bytes` is always the
    planned tensors alone, under its own name. `ram_note` says how an estimate was made, or
    why TFLM was not used; empty when it measured. `latency_ms` is the median of
    `latency_runs` timed inferences on the *host* CPU: it ranks files on this machine and
    says nothing of a microcontroller's latency (`objectives.capacity.macs` is the figure to
    budget compute on).
    """

    flash_bytes: int
    ram_bytes: int
    ram_method: str
    planner_ram_bytes: int
    latency_ms: float
    latency_runs: int
    ram_note: str = ""

    def __post_init__(self):
        if self.ram_method not in RAM_METHODS:
            raise ValueError(
                f"ram_method must be one of {', '.join(RAM_METHODS)}, not {self.ram_method!r}"
            )

    def as_attrs(self) -> dict[str, int | float | str]:
        """Flat mapping for Optuna trial user attributes and reports (the field names)."""
        return asdict(self)


def measure(flatbuffer: bytes | ParsedFlatbuffer, *, runs: int = 50, seed: int = 0,
            float32_file: bytes | None = None) -> DeviceFigures:
    """Flash, RAM and host latency of a TFLite flatbuffer (see the module docstring).

    `runs` timed inferences (after `WARMUP_RUNS` warm-up ones) give the median latency;
    `seed` draws the random input; `float32_file` as in `footprint`. Raises
    `ValueError` for an empty flatbuffer or `runs < 1`. The file is parsed once, or not at
    all when it comes parsed (`objectives.flatbuffer.parse`).
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    _check_flatbuffer(flatbuffer)
    parsed = parse(flatbuffer)
    return DeviceFigures(
        **footprint(parsed, float32_file=float32_file),
        latency_ms=median_latency_ms(parsed, runs=runs, seed=seed),
        latency_runs=runs,
    )


def footprint(flatbuffer: bytes | ParsedFlatbuffer, *, float32_file: bytes | None = None
              ) -> dict[str, int | str]:
    """Flash and RAM of a TFLite flatbuffer, without the latency: `flash_bytes`,
    `ram_bytes`, `ram_method`, `planner_ram_bytes` and `ram_note`, as in `DeviceFigures`.

    `float32_file`, the float32 file of the same model, is what a file TFLM does not
    run (float16, dynamic) is estimated with: TFLM's overhead on it (its arena minus its
    planned tensors) is added to this file's planned tensors.

    Both follow from the architecture and the storage mode, not from the weights' values,
    so an untrained candidate's file gives the trained one's figures: what lets a search
    reject a candidate over a flash or RAM budget before it trains it."""
    _check_flatbuffer(flatbuffer)
    parsed = parse(flatbuffer)
    planned = plan_arena(parsed)
    arena, note = _tflm_arena(parsed, arena_size=_generous_arena(parsed.data, planned))
    ram, method = (planned, "greedy-planner") if arena is None else (arena.total,
                                                                    "tflite-micro")
    if arena is None and float32_file is not None:
        float32 = parse(float32_file)
        float32_planned = plan_arena(float32)
        measured, _ = _tflm_arena(float32, arena_size=_generous_arena(
            float32.data, float32_planned))
        if measured is not None:
            ram, method = planned + measured.total - float32_planned, ESTIMATED
            note = (f"estimated: {planned} bytes of planned tensors plus the "
                    f"{measured.total - float32_planned} bytes of bookkeeping and scratch "
                    "TFLM measured on the float32 file of the same model; " + note)
    if _has_float16(parsed):  # said first: the bounded note keeps its start
        note = f"{FLOAT16_NOTE}; {note}" if note else FLOAT16_NOTE
    note = one_line(note)
    return {
        "flash_bytes": len(parsed.data),
        "ram_bytes": ram,
        "ram_method": method,
        "planner_ram_bytes": planned,
        "ram_note": note,
    }


def _has_float16(parsed: ParsedFlatbuffer) -> bool:
    """Whether any tensor of subgraph 0 is float16 (a float16-quantized file)."""
    from tflite.TensorType import TensorType

    graph = parsed.model.Subgraphs(0)
    return any(graph.Tensors(i).Type() == TensorType.FLOAT16
               for i in range(graph.TensorsLength()))


# -- the greedy planner -------------------------------------------------------------------


@dataclass(frozen=True)
class _Buffer:
    """One activation tensor to place: its size and its lifetime in operator steps."""

    tensor: int
    size: int
    first: int
    last: int


def plan_arena(flatbuffer: bytes | ParsedFlatbuffer, *, alignment: int = TFLM_ALIGNMENT
               ) -> int:
    """Peak activation bytes of subgraph 0, planned as TFLM's `GreedyMemoryPlanner` does.

    Buffers: the tensors of subgraph 0 that TFLM places in its arena's head — not the
    constants (their buffer holds data: they stay in flash), not the variable tensors
    (TFLM keeps them in the persistent tail), not empty ones. Each buffer's size is the
    product of its shape (a dynamic dimension, -1 in the shape signature, counts as 1:
    batch 1) times its element size, rounded up to `alignment` bytes — 16 by default, as
    TFLM rounds every arena buffer (`MicroArenaBufferAlignment()`); 1 gives the unaligned
    figure.

    Lifetimes, in TFLM's steps (step 0 is the start of the invocation, operator i runs at
    step i + 1): a graph input lives from step 0, an operator's output from its operator's
    step, each to the step of the last operator that reads it; a graph output to the last
    step.

    Placement: buffers sorted by size, largest first, equal sizes in reverse tensor order
    (TFLM fills its sort array from the end, then bubble-sorts it, which is stable); each
    goes to the lowest offset where it overlaps no placed buffer alive at the same time.
    The result is the high-water mark, the end of the highest placed buffer. Not planned:
    other subgraphs (control-flow bodies) and kernels' scratch buffers, which only the
    runtime knows.

    Raises `ValueError` for an empty flatbuffer, `alignment < 1`, or a tensor type whose
    element size is unknown (strings, int4).
    """
    _check_flatbuffer(flatbuffer)
    if alignment < 1:
        raise ValueError(f"alignment must be at least 1, not {alignment}")
    buffers = _activation_buffers(parse(flatbuffer), alignment=alignment)
    return _greedy_high_water(buffers)


def _activation_buffers(parsed: ParsedFlatbuffer, *, alignment: int) -> list[_Buffer]:
    """The arena buffers of subgraph 0 with their aligned sizes and TFLM lifetimes."""
    from tflite.TensorType import TensorType

    type_names = {value: name for name, value in vars(TensorType).items()
                  if not name.startswith("_")}
    model = parsed.model
    if model.SubgraphsLength() == 0:
        raise ValueError("the flatbuffer has no subgraph")
    graph = model.Subgraphs(0)
    n_ops = graph.OperatorsLength()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for index in [graph.Inputs(k) for k in range(graph.InputsLength())] + [
        graph.Outputs(k) for k in range(graph.OutputsLength())
    ]:
        first[index] = last[index] = 0
    for step in range(1, n_ops + 1):
        op = graph.Operators(step - 1)
        outputs = [op.Outputs(k) for k in range(op.OutputsLength())]
        for index in outputs:
            first[index] = last[index] = step
        for index in [op.Inputs(k) for k in range(op.InputsLength())] + outputs:
            if index >= 0:  # -1 marks an omitted optional input
                last[index] = step
    for k in range(graph.OutputsLength()):
        last[graph.Outputs(k)] = n_ops

    buffers = []
    for index in range(graph.TensorsLength()):
        tensor = graph.Tensors(index)
        data = model.Buffers(tensor.Buffer())
        if data is not None and (data.DataLength() > 0 or data.Size() > 0):
            continue  # a constant: it lives in flash, not in the arena
        if tensor.IsVariable() or index not in first:
            continue  # persistent state, or never produced: not in the head
        type_name = type_names.get(tensor.Type(), str(tensor.Type()))
        if type_name not in _ELEMENT_BYTES:
            raise ValueError(
                f"tensor {index} ({(tensor.Name() or b'').decode(errors='replace')}) has type "
                f"{type_name}, whose element size is unknown to the planner"
            )
        size = _element_count(tensor) * _ELEMENT_BYTES[type_name]
        if size > 0:
            size = -(-size // alignment) * alignment
            buffers.append(_Buffer(tensor=index, size=size, first=first[index], last=last[index]))
    return buffers


def _element_count(tensor) -> int:
    """Product of the tensor's shape, a dynamic (-1) dimension counting as 1."""
    dims = [tensor.Shape(k) for k in range(tensor.ShapeLength())]
    signature = [tensor.ShapeSignature(k) for k in range(tensor.ShapeSignatureLength())]
    if len(signature) == len(dims):
        dims = [1 if s < 0 else d for d, s in zip(dims, signature, strict=True)]
    return int(np.prod([1 if d < 0 else d for d in dims], dtype=np.int64))


def _greedy_high_water(buffers: list[_Buffer]) -> int:
    """TFLM's greedy placement (largest first, lowest fitting offset) and its high water.

    Placed buffers are scanned in offset order; among those alive at the same time as the
    new one, the first gap below one of them that is big enough takes it, else it goes
    above the last.
    """
    placed: list[tuple[int, _Buffer]] = []  # (offset, buffer), kept sorted by offset
    high_water = 0
    for buffer in sorted(buffers, key=lambda b: (-b.size, -b.tensor)):
        offset = 0
        for other_offset, other in placed:
            if other.last < buffer.first or buffer.last < other.first:
                continue  # never alive at the same time: may share addresses
            if other_offset - offset >= buffer.size:
                break  # the gap below this one is big enough
            offset = max(offset, other_offset + other.size)
        placed.append((offset, buffer))
        placed.sort(key=lambda entry: entry[0])
        high_water = max(high_water, offset + buffer.size)
    return high_water


# -- TensorFlow Lite Micro ----------------------------------------------------------------


@dataclass(frozen=True)
class _TflmArena:
    """TFLM's arena report: `total` = `head` (activations, scratch) + `tail` (persistent)."""

    total: int
    head: int
    tail: int


class _TflmChild:
    """The one TFLM child of this process, started at its first request and kept for the
    next ones (a worker's trials share it: one interpreter start, about 0.15 s, instead of
    one per measured file); a new one after a crash, a hang or a fork."""

    process: subprocess.Popen | None = None
    pid: int | None = None  # the process that started it (a forked worker starts its own)
    log: str | None = None  # where the child's TFLM output of the current model goes
    #: The child's program (`objectives.tflm_child serve`), given the log file's path.
    program: tuple[str, ...] = (sys.executable, "-m", "objectives.tflm_child", "serve")

    @classmethod
    def run(cls, flatbuffer: bytes, *, arena_size: int, n_inputs: int,
            timeout: float) -> tuple[int, str]:
        """(status, TFLM's output) for one model: 0 ran; 1 raised (the traceback is in
        the output); negative or other: the child ended (`-signal`, or its exit status)."""
        from objectives.tflm_child import ANSWER, REQUEST

        if cls.process is None or cls.pid != os.getpid() or cls.process.poll() is not None:
            import atexit
            import tempfile

            if cls.log is None or cls.pid != os.getpid():
                handle, cls.log = tempfile.mkstemp(prefix="tflm-", suffix=".log")
                os.close(handle)
                atexit.register(Path(cls.log).unlink, missing_ok=True)
            cls.process = subprocess.Popen(
                [*cls.program, cls.log], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            cls.pid = os.getpid()
        child = cls.process
        answer: list[bytes] = []

        def exchange() -> None:
            child.stdin.write(REQUEST.pack(arena_size, n_inputs, len(flatbuffer)) + flatbuffer)
            child.stdin.flush()
            head = child.stdout.read(ANSWER.size)
            if len(head) == ANSWER.size:
                status, length = ANSWER.unpack(head)
                answer.append(bytes([status]) + child.stdout.read(length))

        talk = threading.Thread(target=exchange, daemon=True)
        talk.start()
        talk.join(timeout)
        if talk.is_alive():
            child.kill()
            child.wait()
            cls.process = None
            raise subprocess.TimeoutExpired(cmd="tflite-micro", timeout=timeout)
        if not answer:  # it died on this model: its log has TFLM's last words
            code = child.wait()
            cls.process = None
            with open(cls.log, "rb") as log:
                return (code if code != 0 else 1), log.read().decode(errors="replace")
        return answer[0][0], answer[0][1:].decode(errors="replace")


_REPORT = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def _tflm_available() -> bool:
    """Whether the `tflite-micro` package is installed (checked without importing it)."""
    try:
        return importlib.util.find_spec("tflite_micro") is not None
    except (ImportError, ValueError):
        return False


def _generous_arena(flatbuffer: bytes, planned: int) -> int:
    """An arena size TFLM will not run out of: the planned activations 4× plus room for
    the tail (which grows with the number of tensors, operators and quantized channels).
    Only the used part of it is touched. A whole number of 4 KiB pages, so that both ends
    of the (16-byte aligned) allocation are aligned and the report holds no padding.
    """
    size = 4 * planned + len(flatbuffer) + (1 << 20)
    return -(-size // 4096) * 4096


def _tflm_arena(flatbuffer: bytes | ParsedFlatbuffer, *, arena_size: int
                ) -> tuple[_TflmArena | None, str]:
    """TFLM's arena report for the model, or None and the reason TFLM could not run it."""
    if not _tflm_available():
        return None, "tflite-micro is not installed"
    try:
        parsed = parse(flatbuffer)
        n_inputs = parsed.model.Subgraphs(0).InputsLength()
        status, stderr = _TflmChild.run(parsed.data, arena_size=arena_size,
                                        n_inputs=n_inputs, timeout=TFLM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"tflite-micro took more than {TFLM_TIMEOUT_S:g} s to run the model once"
    except (BrokenPipeError, OSError) as error:  # it could not even be started
        return None, one_line(f"tflite-micro could not be started: {error}")
    if status != 0:
        return None, _failure_note(stderr, status)
    report = {name: int(value) for name, value in _REPORT.findall(stderr)}
    if set(report) != {"total", "head", "tail"}:
        return None, one_line("tflite-micro ran but printed no arena report: " + stderr.strip())
    return _TflmArena(**report), ""


def _failure_note(stderr: str, returncode: int) -> str:
    """One bounded line: TFLM's own diagnostics (what the child printed before a Python
    traceback), then the child's exception, or the signal or status it ended with.
    """
    before, _, traceback = stderr.partition("Traceback (most recent call last):")
    parts = [line.strip() for line in before.splitlines() if line.strip()][:3]
    last = [line.strip() for line in traceback.splitlines() if line.strip()][-1:]
    if last:
        parts += last
    elif returncode < 0:
        parts.append(f"killed by signal {-returncode}")
    else:
        parts.append(f"exit status {returncode}")
    return one_line("tflite-micro could not run the model: " + "; ".join(parts))


# -- host latency -------------------------------------------------------------------------


def median_latency_ms(
    flatbuffer: bytes | ParsedFlatbuffer, *, runs: int = 50, warmup: int = WARMUP_RUNS,
    seed: int = 0,
) -> float:
    """Median milliseconds of one batch-1 inference in `tf.lite.Interpreter`, one thread,
    on the host CPU, not the device.

    The interpreter is configured as `objectives.tflite` configures it to score the
    artifact (XNNPACK for float models, the builtin kernels for full-integer ones). Every
    input gets random values of its own dtype and shape (normal floats; uniform integers
    over the type's range, e.g. int8 for a full-integer model with `int8_io`), drawn
    once with `seed`. `warmup` untimed inferences, then `runs` timed ones, each timed
    around `invoke()` alone.
    """
    _check_flatbuffer(flatbuffer)
    if runs < 1:
        raise ValueError(f"runs must be at least 1, not {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must not be negative, not {warmup}")
    from objectives.tflite import make_interpreter

    interpreter = make_interpreter(parse(flatbuffer), num_threads=1)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random_input(rng, detail))
    for _ in range(warmup):
        interpreter.invoke()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e3)


def _random_input(rng: np.random.Generator, detail: dict) -> np.ndarray:
    """Random values shaped and typed like the input tensor (batch 1 for a dynamic batch)."""
    shape = [max(int(d), 1) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


def _check_flatbuffer(flatbuffer: bytes | ParsedFlatbuffer) -> None:
    """Raises `ValueError` for a flatbuffer that is no bytes or is empty."""
    if isinstance(flatbuffer, ParsedFlatbuffer):
        flatbuffer = flatbuffer.data
    if not isinstance(flatbuffer, bytes | bytearray | memoryview):
        raise ValueError(f"flatbuffer must be bytes, not {type(flatbuffer).__name__}")
    if len(flatbuffer) == 0:
        raise ValueError("flatbuffer is empty")
