"""`report`: trials.csv, the Pareto front (PNG and interactive HTML) and hypervolume over time.

Where the dataset is MNIST, the published figures of DESIGN §6 are drawn on the front
as reference points (their payloads are compressed weight bytes, like ours).

Hypervolume is measured in (accuracy, log10 payload bytes) space, with the reference
point at accuracy 0 and 10× the largest payload any completed trial had: sizes span
orders of magnitude, and a log axis keeps a 2 KB model from counting for nothing.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.errors import UsageError

if TYPE_CHECKING:
    import optuna
    import pandas as pd

#: DESIGN §6: LeNet5-Caffe on MNIST, compressed weight bytes and top-1 error.
PUBLISHED_MNIST = (
    ("Deep Compression (Han et al. 2016)", 44_000, 0.0074),
    ("Bayesian Compression (Louizos et al. 2017)", 2_300, 0.010),
    ("EPR (Oktay et al. 2020)", 2_840, 0.010),
    ("MIRACLE (Havasi et al. 2019)", 1_520, 0.0096),
)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """All trials with named columns: state, objectives, candidate and every figure."""
    import pandas as pd
    from optuna.trial import TrialState

    from optimizer.pareto import front_trials, test_accuracies
    from optimizer.retry import fail_reason

    tests = test_accuracies(study)
    front = {t.number for t in front_trials(study)}
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = dict(t.user_attrs)
        cand = attrs.pop("candidate", {})
        attrs.pop("losses", None)
        if t.state == TrialState.FAIL:
            attrs["fail_reason"] = fail_reason(study, t)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "accuracy": t.values[0] if t.values else None,
                "payload_bytes": t.values[1] if t.values else None,
                "test_accuracy": tests.get(t.number),
                "on_front": t.number in front,
                "width": cand.get("width"),
                "factorize": ",".join(cand.get("factorize", [])),
                "epr_lambda": cand.get("epr_lambda"),
                "quantization": cand.get("quantization"),
                "started": t.datetime_start,
                "completed": t.datetime_complete,
                **{k: v for k, v in attrs.items() if k not in ("payload_bytes",)},
            }
        )
    return pd.DataFrame(rows)


def hypervolume_2d(points: list[tuple[float, float]], *, ref_log_bytes: float) -> float:
    """Area dominated by (accuracy ↑, payload ↓) points above accuracy 0, in log10 bytes."""
    pts = [(math.log10(b), a) for a, b in points if 0 < b and math.log10(b) < ref_log_bytes]
    # for each interval of log size, the best accuracy among points at most that large
    xs = sorted({x for x, _ in pts} | {ref_log_bytes})
    area = 0.0
    for left, right in itertools.pairwise(xs):
        best = max((a for x, a in pts if x <= left), default=0.0)
        area += (right - left) * best
    return area


def hypervolume_history(study: optuna.Study) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the completed trials up to it)."""
    from optuna.trial import TrialState

    done = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
        key=lambda t: t.number,
    )
    if not done:
        return []
    ref = math.log10(max(t.values[1] for t in done) * 10)
    history, points = [], []
    for t in done:
        points.append((t.values[0], t.values[1]))
        history.append((t.number, hypervolume_2d(points, ref_log_bytes=ref)))
    return history


def write_report(*, study: optuna.Study, out: Path, dataset: str) -> list[Path]:
    """Writes trials.csv, pareto.png, pareto.html and hypervolume.png into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    from optimizer.pareto import front_trials

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out} is not writable: {error.strerror}") from None
    frame = trials_frame(study)
    written = [out / "trials.csv"]
    frame.to_csv(written[0], index=False)

    done = frame[frame["state"] == "COMPLETE"]
    front = front_trials(study)
    fx = [t.values[1] / 1024 for t in front]
    fy = [t.values[0] for t in front]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(done["payload_bytes"] / 1024, done["accuracy"], color="0.7", label="trials")
    ax.step(fx, fy, where="post", color="C0")
    ax.scatter(fx, fy, color="C0", zorder=3, label="Pareto front")
    references = PUBLISHED_MNIST if dataset == "mnist" else ()
    for label, size, err in references:
        ax.scatter([size / 1024], [1 - err], marker="*", s=120, zorder=4,
                   label=f"{label}: {size / 1000:g} KB, {100 * err:.2f}% err")
    ax.set_xscale("log")
    ax.set_xlabel("payload (KB, log scale)")
    ax.set_ylabel("accuracy (ours: validation; published: test)")
    ax.set_title(f"{study.study_name}: accuracy vs compressed bytes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    written.append(out / "pareto.png")
    fig.savefig(written[-1])
    plt.close(fig)

    hover = [
        f"trial {r.trial}<br>{r.quantization} width {r.width} λ {r.epr_lambda}"
        for r in done.itertuples()
    ]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=done["payload_bytes"] / 1024, y=done["accuracy"],
                                mode="markers", name="trials", text=hover,
                                marker={"color": "lightgray"}))
    figure.add_trace(go.Scatter(x=fx, y=fy, mode="lines+markers", name="Pareto front",
                                line={"shape": "hv"}))
    for label, size, err in references:
        figure.add_trace(go.Scatter(x=[size / 1024], y=[1 - err], mode="markers", name=label,
                                    marker={"symbol": "star", "size": 12}))
    figure.update_layout(title=f"{study.study_name}: accuracy vs compressed bytes",
                         xaxis={"type": "log", "title": "payload (KB)"},
                         yaxis={"title": "validation accuracy"})
    written.append(out / "pareto.html")
    figure.write_html(written[-1], include_plotlyjs=True)

    history = hypervolume_history(study)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot([n for n, _ in history], [h for _, h in history], marker=".")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (accuracy × log10 bytes)")
    ax.set_title(f"{study.study_name}: hypervolume over trials")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(out / "hypervolume.png")
    fig.savefig(written[-1])
    plt.close(fig)
    return written


def report_command(args: argparse.Namespace) -> int:
    """CLI entry for `report`."""
    from optimizer.storage import open_stored

    definition, _, run_dir, study = open_stored(args)
    out = args.out or run_dir / "report"
    for path in write_report(study=study, out=out, dataset=definition.dataset):
        print(path)
    return 0
