"""`report`: trials.csv, the Pareto front (PNG and interactive HTML) and hypervolume over time.

Where the dataset is MNIST, the published figures of DESIGN §6 are drawn on the front
as reference points (their payloads are compressed weight bytes, like ours). The payload
axis is linear when the drawn sizes span less than 10×, else log, and is labelled in
B/KB/MB either way; the legend sits beside the axes.

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


#: The columns every trial has in `trials_frame` (user attributes follow).
TRIAL_COLUMNS = (
    "trial", "state", "accuracy", "payload_bytes", "test_accuracy", "on_front", "width",
    "factorize", "epr_lambda", "quantization", "started", "completed",
)


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """All trials with named columns: state, objectives, candidate and every figure.

    `payload_bytes` is an exact integer (empty where a trial has no values)."""
    import pandas as pd
    from optuna.trial import TrialState

    from optimizer.pareto import front_trials, test_accuracies
    from optimizer.retry import failure

    tests = test_accuracies(study)
    front = {t.number for t in front_trials(study)}
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = dict(t.user_attrs)
        cand = attrs.pop("candidate", {})
        attrs.pop("losses", None)
        if t.state == TrialState.FAIL:
            attrs["failure_kind"], attrs["fail_reason"] = failure(study, t)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "accuracy": t.values[0] if t.values else None,
                "payload_bytes": round(t.values[1]) if t.values else None,
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
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(TRIAL_COLUMNS))
    frame["payload_bytes"] = frame["payload_bytes"].astype("Int64")
    return frame


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


#: 1 KB = 1024 bytes, as in the `pareto` table's `payload_kb`.
BYTE_UNITS = (("B", 1), ("KB", 1024), ("MB", 1024**2), ("GB", 1024**3))
#: Below this ratio of largest to smallest payload the size axis is linear, else log.
LOG_AXIS_SPAN = 10.0
MAX_SIZE_TICKS = 8
#: Tick mantissas per decade of a unit on a log size axis, finest first.
_LOG_SUBS = ((1, 2, 5), (1, 3), (1,))


def _unit_of(size: float) -> tuple[str, int]:
    """The largest unit that `size` bytes is at least one of (bytes below 1 KB)."""
    return next(((n, f) for n, f in reversed(BYTE_UNITS) if abs(size) >= f), BYTE_UNITS[0])


def _log_byte_ticks(lo: float, hi: float) -> list[float]:
    """m·10^k units in [lo, hi] (m·10^k < 1000 within each unit), at most
    `MAX_SIZE_TICKS`: the finest mantissa set that fits, else every n-th decade."""

    def ticks(subs: tuple[int, ...]) -> list[float]:
        values = {
            m * 10**k * factor
            for _, factor in BYTE_UNITS
            for k in range(3 if factor < BYTE_UNITS[-1][1] else 6)
            for m in subs
            if m * 10**k < 1000 or factor == BYTE_UNITS[-1][1]
        }
        return sorted(v for v in values if lo <= v <= hi)

    for subs in _LOG_SUBS:
        chosen = ticks(subs)
        if len(chosen) <= MAX_SIZE_TICKS:
            return chosen
    decades = ticks((1,))
    every = math.ceil(len(decades) / MAX_SIZE_TICKS)
    return decades[::every]


def _linear_byte_ticks(lo: float, hi: float) -> list[float]:
    """3–7 round steps (1, 2, 2.5, 5 × 10^k) of the unit of `hi`, within [lo, hi]."""
    from matplotlib.ticker import MaxNLocator

    _, factor = _unit_of(hi)
    locator = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], min_n_ticks=3)
    values = [v * factor for v in locator.tick_values(lo / factor, hi / factor)]
    return [v for v in values if lo - 1e-9 * hi <= v <= hi + 1e-9 * hi]


def _byte_locator_and_formatter(*, log: bool):
    """A tick locator and formatter for a payload axis drawn in bytes: labels such as
    `500 B`, `2 KB`, `1.5 MB`; 3–8 of them whatever the axis spans."""
    from matplotlib.ticker import Formatter, Locator

    class ByteLocator(Locator):
        def __call__(self):
            lo, hi = sorted(self.axis.get_view_interval())
            return self.tick_values(lo, hi)

        def tick_values(self, vmin, vmax):
            lo, hi = sorted((vmin, vmax))
            return _log_byte_ticks(lo, hi) if log else _linear_byte_ticks(lo, hi)

    class ByteFormatter(Formatter):
        """On a log axis each tick in its own unit; on a linear one all in the unit of
        the largest tick, with as few decimals as keep the labels exact."""

        def __call__(self, x, pos=None):
            if log:
                name, factor = _unit_of(x)
                return f"{x / factor:g} {name}"
            locs = list(self.locs) or [x]
            name, factor = _unit_of(max(abs(v) for v in locs))
            decimals = next(
                (d for d in range(5)
                 if all(abs(round(v / factor, d) - v / factor) < 1e-9 for v in locs)),
                4,
            )
            return f"{x / factor:.{decimals}f} {name}"

    return ByteLocator(), ByteFormatter()


def set_size_axis(ax, *, sizes: list[float]) -> None:
    """The x axis of payload bytes: linear when the sizes span less than 10×, else log;
    either way 3–8 labels in B/KB/MB and no labelled minor ticks."""
    from matplotlib.ticker import NullLocator

    lo, hi = min(sizes), max(sizes)
    log = lo > 0 and hi / lo >= LOG_AXIS_SPAN
    if log:
        ax.set_xscale("log")
        pad = (hi / lo) ** 0.05
        ax.set_xlim(lo / pad, hi * pad)
    else:
        if hi == lo:
            lo, hi = lo * 0.9, hi * 1.1
        pad = 0.06 * (hi - lo)
        ax.set_xlim(max(lo - pad, 0), hi + pad)
    locator, formatter = _byte_locator_and_formatter(log=log)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.xaxis.set_minor_locator(NullLocator())


def _new_figure(*, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def pareto_figure(*, study: optuna.Study, dataset: str):
    """The front over all completed trials, accuracy against payload bytes, as a
    matplotlib Figure. Published figures (test accuracy) are drawn where the dataset is
    MNIST; the legend sits beside the axes, never over the front."""
    from optuna.trial import TrialState

    from optimizer.pareto import front_trials

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    front = front_trials(study)
    references = PUBLISHED_MNIST if dataset == "mnist" else ()
    fig = _new_figure(width=9.5 if references else 8, height=4.5)
    ax = fig.add_subplot()
    ax.set_title(f"{study.study_name}: accuracy vs compressed payload")
    if not done:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    ax.scatter([t.values[1] for t in done], [t.values[0] for t in done], s=18,
               color="0.65", label=f"completed trials ({len(done)})")
    fx = [t.values[1] for t in front]
    fy = [t.values[0] for t in front]
    ax.step(fx, fy, where="post", color="C0", alpha=0.6)
    ax.scatter(fx, fy, s=30, color="C0", zorder=3, label=f"Pareto front ({len(front)})")
    for i, (label, size, err) in enumerate(references):
        ax.scatter([size], [1 - err], marker="*", s=140, zorder=4, color=f"C{i + 1}",
                   label=f"{label}\n{size:,} B, {100 * err:.2f}% test error")
    sizes = [t.values[1] for t in done] + [size for _, size, _ in references]
    set_size_axis(ax, sizes=sizes)
    scale = "log scale" if ax.get_xscale() == "log" else "linear scale"
    ax.set_xlabel(f"payload: compressed parameter bytes ({scale}; 1 KB = 1024 B)")
    ax.set_ylabel("accuracy (trials: validation; published: test)" if references
                  else "validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0,
              labelspacing=0.9, frameon=False)
    return fig


def hypervolume_figure(*, study: optuna.Study):
    """Hypervolume of the completed trials after each one, as a matplotlib Figure."""
    from matplotlib.ticker import MaxNLocator

    history = hypervolume_history(study)
    fig = _new_figure(width=6.5, height=3.5)
    ax = fig.add_subplot()
    ax.set_title(f"{study.study_name}: front hypervolume over trials")
    if not history:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    ax.plot([n for n, _ in history], [h for _, h in history], marker=".", drawstyle="steps-post")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 5, 10], integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel("hypervolume\n(accuracy × log10 bytes)")
    ax.grid(alpha=0.3)
    return fig


def write_report(*, study: optuna.Study, out: Path, dataset: str) -> list[Path]:
    """Writes trials.csv, pareto.png, pareto.html and hypervolume.png into `out`."""
    import plotly.graph_objects as go

    from optimizer.pareto import front_trials

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out} is not writable: {error.strerror}") from None
    frame = trials_frame(study)
    written = [out / "trials.csv"]
    frame.to_csv(written[0], index=False)

    written.append(out / "pareto.png")
    pareto_figure(study=study, dataset=dataset).savefig(written[-1])

    done = frame[frame["state"] == "COMPLETE"]
    front = front_trials(study)
    references = PUBLISHED_MNIST if dataset == "mnist" else ()
    hover = [
        f"trial {r.trial}<br>{r.quantization} width {r.width} λ {r.epr_lambda}"
        f"<br>{int(r.payload_bytes):,} payload bytes"
        for r in done.itertuples()
    ]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=done["payload_bytes"] / 1024, y=done["accuracy"],
                                mode="markers", name="trials", text=hover,
                                marker={"color": "lightgray"}))
    figure.add_trace(go.Scatter(x=[t.values[1] / 1024 for t in front],
                                y=[t.values[0] for t in front], mode="lines+markers",
                                name="Pareto front", line={"shape": "hv"}))
    for label, size, err in references:
        figure.add_trace(go.Scatter(x=[size / 1024], y=[1 - err], mode="markers",
                                    name=f"{label} (test)",
                                    marker={"symbol": "star", "size": 12}))
    figure.update_layout(
        title=f"{study.study_name}: accuracy vs compressed payload",
        xaxis={"type": "log", "title": "payload (KB, 1 KB = 1024 B)"},
        yaxis={"title": "accuracy (trials: validation; published: test)" if references
               else "validation accuracy"},
    )
    written.append(out / "pareto.html")
    figure.write_html(written[-1], include_plotlyjs=True)

    written.append(out / "hypervolume.png")
    hypervolume_figure(study=study).savefig(written[-1])
    return written


def report_command(args: argparse.Namespace) -> int:
    """CLI entry for `report`."""
    from optimizer.storage import open_stored

    definition, _, run_dir, study = open_stored(args)
    out = args.out or run_dir / "report"
    for path in write_report(study=study, out=out, dataset=definition.dataset):
        print(path)
    return 0
