"""The one program that runs TensorFlow Lite for Microcontrollers (TFLM) for this tool.

TFLM's C++ runtime aborts the whole process on some models and arena sizes, so it runs in a
child interpreter, never in a worker or the driver:

    python -m objectives.tflm_child serve LOG
        A lasting child (`objectives.device`): for each request on stdin, a header of
        arena size, number of inputs and model length (three little-endian uint32) and
        the model, it loads the model, invokes it once on zeros and prints TFLM's
        RecordingMicroAllocator report. TFLM prints to C stderr, so during each request
        fd 2 is the file LOG, emptied first; the answer on the saved stdout is a status
        (0: ran; 1: a Python exception, whose traceback follows the report) and the log's
        text, length-prefixed. A crash ends the child, its last words in LOG.
    python -m objectives.tflm_child bisect STEP LOW HIGH TRY_HIGH N_INPUTS
        The smallest arena (`objectives.micro`): bisect, in units of STEP bytes, between
        LOW (known to fail) and HIGH (known to run, or tried first when TRY_HIGH is 1)
        for the smallest arena in which the model from stdin allocates and invokes on
        zeros. Before each try it prints "try N", after it "ok N" or "fail N", flushed,
        so that when TFLM crashes on a size the parent knows which and resumes above it.
    python -m objectives.tflm_child once ARENA N_INPUTS
        The model from stdin run once in ARENA bytes, its report on stderr (the child of
        one file that issue 24 replaced; `benchmarks/tflm_child.py` compares them).

It imports only numpy and `tflite_micro` (not TensorFlow, not this package's other
modules), so a child starts in a fraction of a second.
"""

from __future__ import annotations

import os
import struct
import sys
import traceback
from typing import Any

#: The header of a `serve` request: arena size, number of inputs, model length.
REQUEST = struct.Struct("<III")
#: The header of a `serve` answer: status, length of the log text that follows.
ANSWER = struct.Struct("<II")


def invoked(model: bytes, *, arena_size: int, n_inputs: int) -> Any:
    """A TFLM interpreter of `model` in `arena_size` bytes, invoked once on zeros (TFLM's
    `RuntimeError` when it cannot allocate or run)."""
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    for i in range(n_inputs):
        detail = interpreter.get_input_details(i)
        interpreter.set_input(np.zeros(detail["shape"], dtype=detail["dtype"]), i)
    interpreter.invoke()
    return interpreter


def serve(log_path: str) -> None:
    """The lasting child's loop (see the module doc)."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else prints goes to stderr, not into the answers
    saved_stderr = os.dup(2)
    requests = sys.stdin.buffer
    while True:
        head = requests.read(REQUEST.size)
        if len(head) < REQUEST.size:
            break
        arena_size, n_inputs, length = REQUEST.unpack(head)
        model = requests.read(length)
        status = 0
        with open(log_path, "w+b") as log:
            os.dup2(log.fileno(), 2)
            try:
                interpreter = invoked(model, arena_size=arena_size, n_inputs=n_inputs)
                interpreter.print_allocations()
                del interpreter
            except Exception:  # the model's failure is the answer, not the child's end
                status = 1
                sys.stderr.write("Traceback (most recent call last):\n"
                                 + traceback.format_exc())
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            log.seek(0)
            text = log.read()
        answers.write(ANSWER.pack(status, len(text)) + text)
        answers.flush()


def bisect(*, step: int, low: int, high: int, try_high: bool, n_inputs: int) -> None:
    """The arena search's loop (see the module doc)."""
    model = sys.stdin.buffer.read()

    def runs(units: int) -> bool:
        print("try", units, flush=True)
        try:
            invoked(model, arena_size=units * step, n_inputs=n_inputs)
        except RuntimeError:
            print("fail", units, flush=True)
            return False
        print("ok", units, flush=True)
        return True

    if try_high and not runs(high):
        return
    while high - low > 1:
        middle = (low + high) // 2
        if runs(middle):
            high = middle
        else:
            low = middle


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "serve":
        serve(args[0])
    elif mode == "bisect":
        step, low, high, try_high, n_inputs = (int(arg) for arg in args)
        bisect(step=step, low=low, high=high, try_high=bool(try_high), n_inputs=n_inputs)
    elif mode == "once":
        invoked(sys.stdin.buffer.read(), arena_size=int(args[0]),
                n_inputs=int(args[1])).print_allocations()
    else:
        print(f"tflm_child: unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
