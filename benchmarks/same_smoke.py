"""Behaviour unchanged by a refactoring: the same smoke study, run by an earlier commit and
by this tree, gives the same trials (numbers, states, params, values, the attributes each
stores), the same front and the same progress lines (timings aside).

    python benchmarks/same_smoke.py --before 0621b4d            # issue 29's starting point

The earlier commit is checked out into a temporary git worktree and run from there (its
own code first on the path); both runs use this virtualenv. Prints a Markdown summary and
exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What differs between two runs of one study by nature: clock times, durations, paths.
_NOISE = [(re.compile(r"^\d\d:\d\d:\d\d "), ""), (re.compile(r"\(\d+ s\)"), "(N s)"),
          (re.compile(r"took \d+ s"), "took N s")]


def run_smoke(tree: Path, run_dir: Path, *, study: str, seed: int) -> list[str]:
    """Runs `run --study STUDY --smoke --seed SEED` with `tree`'s code; its output lines,
    the noise of clock times, durations and the run dir taken out."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-m", "optimizer", "run", "--study", study, "--smoke", "--seed",
         str(seed), "--run-dir", str(run_dir)],
        cwd=tree, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: run failed\n{out.stderr[-3000:]}")
    lines = []
    for line in (out.stderr + out.stdout).splitlines():
        for pattern, replacement in _NOISE:
            line = pattern.sub(replacement, line)
        lines.append(line.replace(str(run_dir), "RUN_DIR"))
    return lines


def stored_trials(run_dir: Path, *, study: str) -> dict[str, object]:
    """What the stored study holds that a refactoring must not change: each trial's
    number, state, params, values and attribute names, and the front."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    loaded = optuna.load_study(study_name=f"{study}-smoke",
                               storage=f"sqlite:///{run_dir / 'study.db'}")
    trials = [{"number": t.number, "state": t.state.name, "params": t.params,
               "values": t.values, "attributes": sorted(t.user_attrs)}
              for t in loaded.get_trials(deepcopy=False)]
    return {"trials": trials, "front": sorted(t.number for t in loaded.best_trials),
            "study_attributes": sorted(loaded.user_attrs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier commit")
    parser.add_argument("--study", default="digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before_tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), args.before],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            runs = {}
            for label, tree in (("before", before_tree), ("after", ROOT)):
                run_dir = Path(tmp) / f"run-{label}"
                lines = run_smoke(tree, run_dir, study=args.study, seed=args.seed)
                runs[label] = (lines, stored_trials(run_dir, study=args.study))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)],
                           cwd=ROOT, check=False, capture_output=True)
    (before_lines, before), (after_lines, after) = runs["before"], runs["after"]
    same_trials = before["trials"] == after["trials"]
    same_front = before["front"] == after["front"]
    same_lines = before_lines == after_lines
    print(f"| `run --study {args.study} --smoke --seed {args.seed}` | {args.before} | this tree |")
    print("|---|---|---|")
    print(f"| trials (states) | {_states(before)} | {_states(after)} |")
    print(f"| front | {before['front']} | {after['front']} |")
    print(f"| trials equal (numbers, states, params, values, attribute names) | "
          f"{'yes' if same_trials else 'NO'} | |")
    print(f"| output lines equal (times aside) | {'yes' if same_lines else 'NO'} | |")
    if not same_trials:
        print(json.dumps({"before": before, "after": after}, indent=1, default=str))
    return 0 if same_trials and same_front and same_lines else 1


def _states(stored: dict[str, object]) -> str:
    return ", ".join(f"{t['number']} {t['state']}" for t in stored["trials"])  # type: ignore[index]


if __name__ == "__main__":
    raise SystemExit(main())
