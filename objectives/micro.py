"""What TensorFlow Lite for Microcontrollers (TFLM) needs to run a TFLite flatbuffer: the
operators to register, and the tensor arena to give it.

- Operators. A firmware registers exactly the kernels the model needs in a
  `tflite::MicroMutableOpResolver<N>` (linking every kernel would not fit in flash):
  `resolver.AddConv2D();` for a `CONV_2D` operator, and so on. `operators` reads the
  model's operator codes with the `tflite` package (`objectives.flatbuffer.read_model`)
  and names, for each distinct operator in the order of the model's operator-code table,
  its builtin name and the resolver method: `Add` + the builtin name in CamelCase
  (`FULLY_CONNECTED` → `AddFullyConnected`, `MAX_POOL_2D` → `AddMaxPool2D`), except for
  the few methods TFLM spells otherwise (`RESOLVER_EXCEPTIONS`). A custom operator is
  registered with `AddCustom(name, registration)`.
- Arena. `minimal_arena` is the smallest `tensor_arena` (a multiple of 16 bytes) in which
  TFLM's own interpreter (the `tflite-micro` package) allocates and invokes the model,
  found by bisection in a child process. It is larger than the arena total TFLM reports
  once allocation is done (`objectives.device`, `ram_bytes`): while it plans, TFLM also
  takes the free head of the arena for the planner's bookkeeping and for temporary
  tensor structs, so on small models an arena of the reported total fails to allocate
  (measured: 3,744 bytes needed where the report says 3,392, for an int8 `tiny_cnn` at
  width 0.5 on 8×8 digits). It is measured on this 64-bit host; a 32-bit
  microcontroller's structs are smaller, so it needs at most this.

`tflite` and `tflite-micro` are imported lazily (the latter only in the child).
"""

from __future__ import annotations

import subprocess
import sys

#: TFLM `MicroMutableOpResolver` methods that are not `Add` + CamelCase of the builtin.
RESOLVER_EXCEPTIONS: dict[str, str] = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


def resolver_method(builtin: str) -> str:
    """The `MicroMutableOpResolver` method registering builtin operator `builtin`
    (a `tflite.BuiltinOperator` name): `CONV_2D` → `AddConv2D`."""
    if builtin in RESOLVER_EXCEPTIONS:
        return RESOLVER_EXCEPTIONS[builtin]
    words = (word if word[:1].isdigit() else word.capitalize()
             for word in builtin.split("_") if word)
    return "Add" + "".join(words)


def operators(flatbuffer: bytes) -> list[dict[str, str]]:
    """The distinct operators of the model, in its operator-code order, each as
    {"builtin": name, "resolver": method} (JSON-ready); a custom operator as
    {"builtin": "CUSTOM", "custom_code": its name, "resolver": "AddCustom"}."""
    import tflite

    from objectives.flatbuffer import read_model

    model = read_model(bytes(flatbuffer))
    found: list[dict[str, str]] = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        # schema v3a: codes above 127 live in BuiltinCode, older ones in the deprecated field
        builtin = tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if builtin == "CUSTOM":
            entry = {"builtin": builtin, "custom_code": (code.CustomCode() or b"").decode(),
                     "resolver": "AddCustom"}
        else:
            entry = {"builtin": builtin, "resolver": resolver_method(builtin)}
        if entry not in found:
            found.append(entry)
    return found


#: Arena sizes are searched in steps of TFLM's buffer alignment.
ARENA_STEP = 16
#: Seconds one child may take (each try builds one interpreter, a few milliseconds).
ARENA_TIMEOUT_S = 120.0
#: Children one search may start (one more after each crash) before it gives up.
MAX_CHILDREN = 40

def minimal_arena(flatbuffer: bytes, *, upper: int | None = None) -> int | None:
    """The smallest arena, a multiple of `ARENA_STEP` bytes, in which TFLM allocates and
    invokes the model (see the module docstring); None when TFLM cannot run it in `upper`
    bytes (default: 4× the model plus 1 MiB) or `tflite-micro` is not installed.

    Bisection, assuming that an arena which suffices stays sufficient when it grows; a
    size on which TFLM crashes counts as too small, and the search goes on above it."""
    from objectives.flatbuffer import read_model

    flatbuffer = bytes(flatbuffer)
    if not flatbuffer:
        raise ValueError("flatbuffer is empty")
    if upper is None:
        upper = 4 * len(flatbuffer) + (1 << 20)
    n_inputs = read_model(flatbuffer).Subgraphs(0).InputsLength()
    low, high, high_known = 0, -(-upper // ARENA_STEP), False
    for _ in range(MAX_CHILDREN):
        if high_known and high - low <= 1:
            return high * ARENA_STEP
        outcome = _bisect_in_child(flatbuffer, low=low, high=high, try_high=not high_known,
                                   n_inputs=n_inputs)
        if outcome is None:
            return None
        ran, failed = outcome
        if not high_known and high not in ran:
            return None  # not even the upper bound runs
        high_known = True
        high = min([high, *ran])
        low = max([low, *(size for size in failed if size < high)])
    return None  # crashed on every other size: give up rather than spin


def _bisect_in_child(flatbuffer: bytes, *, low: int, high: int, try_high: bool,
                     n_inputs: int) -> tuple[list[int], list[int]] | None:
    """The sizes (in `ARENA_STEP` units) one child found to run and to fail, a crash
    counting as a failure of the size it was trying; None when the child could not start
    (no `tflite-micro`) or hung."""
    try:
        child = subprocess.run(
            [sys.executable, "-m", "objectives.tflm_child", "bisect", str(ARENA_STEP),
             str(low), str(high), str(int(try_high)), str(n_inputs)],
            input=flatbuffer, capture_output=True, timeout=ARENA_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    ran, failed, trying = [], [], None
    for line in child.stdout.decode(errors="replace").splitlines():
        word, _, units = line.partition(" ")
        if word == "try":
            trying = int(units)
        elif word in ("ok", "fail"):
            (ran if word == "ok" else failed).append(int(units))
            trying = None
    if child.returncode != 0 and trying is not None:
        failed.append(trying)
    if not ran and not failed:
        return None  # it died before trying anything: no tflite-micro, or a bug
    return ran, failed
