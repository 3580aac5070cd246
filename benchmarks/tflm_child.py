"""TFLM's arena figure: a child interpreter per file against the lasting child (issue 24).

    .venv/bin/python benchmarks/tflm_child.py

The float32 file of `lenet5_caffe` at width 0.5, measured 10 times each way in one run:
`objectives.device._tflm_arena` (one lasting child per process, `_TflmChild`) against a
fresh `python -c` child per file (the code before issue 24). Prints seconds per file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: The child of the code before issue 24: one interpreter per measured file.
CHILD_PER_FILE = (sys.executable, "-m", "objectives.tflm_child", "once")
RUNS = 10


def main() -> int:
    from objectives import device, tflite
    from objectives.build import build_model
    from search_spaces import Candidate
    from search_spaces.families import FAMILIES

    model = build_model(family=FAMILIES["lenet5_caffe"], candidate=Candidate(width=0.5),
                        input_shape=(28, 28, 1), num_classes=10, seed=0)
    flatbuffer = tflite.convert(model, quantization="float32")
    arena = device._generous_arena(flatbuffer, device.plan_arena(flatbuffer))
    device._tflm_arena(flatbuffer, arena_size=arena)  # the lasting child's one start
    start = time.perf_counter()
    for _ in range(RUNS):
        lasting, _ = device._tflm_arena(flatbuffer, arena_size=arena)
    per_file_lasting = (time.perf_counter() - start) / RUNS
    start = time.perf_counter()
    for _ in range(RUNS):
        subprocess.run([*CHILD_PER_FILE, str(arena), "1"],
                       input=flatbuffer, capture_output=True, check=True)
    per_file_fresh = (time.perf_counter() - start) / RUNS
    print(f"per file: a child per file {per_file_fresh:.3f} s, the lasting child "
          f"{per_file_lasting:.3f} s; arena {lasting}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
