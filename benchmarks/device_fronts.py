"""The feasible flash front of a budgeted study next to the payload front of the same trials.

    .venv/bin/python -m optimizer run --study fashion_mnist --size-objective flash \\
        --max-ram-kb 64 --run-dir runs/fashion_mnist-flash
    .venv/bin/python benchmarks/device_fronts.py --run-dir runs/fashion_mnist-flash \\
        --study fashion_mnist

Prints markdown for BENCHMARKS.md: (1) the study's front (its second objective, feasible
trials only, test accuracy as scored after the search), (2) the Pareto front of the same
completed trials on payload bytes with no budget, as a payload-objective study would see
them, and (3) which widths, factorizations and modes each front is made of. Every trial
records all byte figures, so both fronts come from one set of trials: they differ only
in how the trials are ranked, not in what was trained.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from optimizer.store.record import stored_record, test_accuracies
from optimizer.store.trial import StoredTrial


def _front(points: list[tuple[float, float, object]]) -> list[tuple[float, float, object]]:
    """Non-dominated (accuracy ↑, size ↓) points, by size."""
    front = [p for p in points
             if not any(q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1])
                        for q in points)]
    return sorted(front, key=lambda p: p[1])


def _row(t: StoredTrial, tests: dict[int, float]) -> str:
    c = t.candidate
    test = tests.get(t.number)
    return (f"| {t.number} | {t.values[0]:.4f} | {'' if test is None else f'{test:.4f}'} "
            f"| {t.payload_bytes:,} | {t.flash_bytes:,} | {t.ram_bytes:,} "
            f"({t.ram_method}) | {t.latency_ms:.3f} | {c.width} "
            f"| {','.join(c.factorize) or '-'} | {c.epr_lambda:.3g} "
            f"| {c.quantization} |")


def _mix(trials: list[StoredTrial]) -> str:
    modes = Counter(t.quantization for t in trials)
    widths = sorted(t.candidate.width for t in trials)
    factorized = sum(1 for t in trials if t.candidate.factorize)
    return (f"modes {dict(modes)}, widths {widths[0]}–{widths[-1]} (median "
            f"{widths[len(widths) // 2]}), {factorized} of {len(trials)} factorized")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--study", required=True)
    args = parser.parse_args()

    import optuna

    from optimizer.store.constraints import infeasible_count, is_feasible

    study = optuna.load_study(study_name=args.study,
                              storage=f"sqlite:///{args.run_dir}/study.db")
    tests = test_accuracies(study)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    stored = {t.number: StoredTrial.from_trial(t) for t in done}
    header = ("| trial | val acc | test acc | payload B | flash B | RAM B | latency ms | width "
              "| factorize | λ | mode |\n|---|---|---|---|---|---|---|---|---|---|---|")
    metric = study.metric_names[1]
    budgets = stored_record(study)["device_budgets"]
    feasible_front = sorted(study.best_trials, key=lambda t: t.values[1])
    print(f"study {args.study}: {len(study.trials)} trials, {len(done)} completed, "
          f"{infeasible_count(study)} over the budgets {budgets}; objective {metric}\n")
    print(f"**Feasible front on {metric}** ({len(feasible_front)} points)\n\n{header}")
    for t in feasible_front:
        print(_row(stored[t.number], tests))
    by_payload = _front([(t.values[0], stored[t.number].payload_bytes, t) for t in done])
    print(f"\n**Payload front of the same completed trials, no budget** ({len(by_payload)} "
          f"points; test accuracy only where the trial is also on the feasible front)\n\n"
          f"{header}")
    for _, _, t in by_payload:
        print(_row(stored[t.number], tests))
    payload_trials = [t for _, _, t in by_payload]
    print(f"\nflash front: {_mix([stored[t.number] for t in feasible_front])}")
    print(f"payload front: {_mix([stored[t.number] for t in payload_trials])}")
    over = [t for t in payload_trials if not is_feasible(t)]
    print(f"payload-front points over the budgets: {len(over)} of {len(payload_trials)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
