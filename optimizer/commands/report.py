"""`report`: trials.csv, the Pareto front (PNG and interactive HTML) and hypervolume over time.

The size axis is the study's byte objective (`payload_bytes` by default; `flash_bytes`,
`artifact_gzip_bytes` or `ota_bytes` by `run --size-objective`) and is labelled by what it
measures.
Where the dataset is MNIST and the objective is the payload, the published figures of
DESIGN §6 are drawn on the front as reference points (their payloads are compressed
weight bytes, like ours). The size axis is linear when the drawn sizes span less than
10×, else log, and is labelled in B/KB/MB either way; the legend sits beside the axes.

Under device budgets the front is the feasible front: completed trials over a budget are
drawn apart (red crosses, "over budget (N)"), the title names the budgets, and
trials.csv says of every trial whether it is `feasible` and which budgets it `violated`.
A hypermodel study's trials.csv has one `hp_<name>` column per hyperparameter, after the
compression axes (as `pareto` prints them).

Hypervolume counts feasible trials only and is measured in (accuracy, log10 bytes)
space, with the reference point at accuracy 0 and 10× the largest byte objective any
completed trial had: sizes span orders of magnitude, and a log axis keeps a 2 KB model
from counting for nothing.
"""

from __future__ import annotations

import argparse
import itertools
import math
import textwrap
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.attributes import CANDIDATE_ATTR
from definitions.errors import UsageError
from optimizer.commands.lookup import open_stored
from optimizer.store.constraints import is_feasible, violated
from optimizer.store.front import front_trials, hp_columns, hp_values
from optimizer.store.record import study_attribute, study_budgets, test_accuracies
from optimizer.store.retry import failure
from optimizer.store.storage import size_metric
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import plotly.graph_objects as go
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: DESIGN §6: LeNet5-Caffe on MNIST, compressed weight bytes and top-1 error.
PUBLISHED_MNIST = (
    ("Deep Compression (Han et al. 2016)", 44_000, 0.0074),
    ("Bayesian Compression (Louizos et al. 2017)", 2_300, 0.010),
    ("EPR (Oktay et al. 2020)", 2_840, 0.010),
    ("MIRACLE (Havasi et al. 2019)", 1_520, 0.0096),
)


#: How each byte objective is named on a size axis, and in a title.
SIZE_LABELS = {
    "payload_bytes": "payload: compressed parameter bytes",
    "flash_bytes": "flash: .tflite file bytes",
    "artifact_gzip_bytes": "gzip -9 of the artifact",
    "ota_bytes": "update: model.update bytes a device receives",
}
SIZE_TITLES = {
    "payload_bytes": "compressed payload",
    "flash_bytes": "flash (.tflite file)",
    "artifact_gzip_bytes": "gzipped artifact",
    "ota_bytes": "device update (model.update)",
}
#: The budgets' constraint names (`optimizer.store.constraints.violated`) as people say them.
BUDGET_LABELS = {
    "flash_bytes": "flash", "ram_bytes": "RAM", "latency_ms": "latency", "ota_bytes": "update",
    "accuracy": "accuracy",
}

#: Byte figures, from the trials' user attributes, as exact integers (empty where absent).
BYTE_COLUMNS = ("payload_bytes", "artifact_bytes", "artifact_gzip_bytes", "flash_bytes",
                "ota_bytes", "ram_bytes")
#: The columns every trial has in `trials_frame` (its other user attributes follow).
TRIAL_COLUMNS = (
    "trial", "state", "accuracy", *BYTE_COLUMNS, "latency_ms", "feasible", "violated",
    "test_accuracy", "on_front", "width", "factorize", "epr_lambda", "quantization",
    "started", "completed",
)


def trials_frame(opt_study: optuna.Study) -> pd.DataFrame:
    """All trials with named columns: state, objectives, feasibility, candidate and every
    figure.

    The byte columns are the trials' user attributes as exact integers (nullable, empty
    where a trial has none), whichever of them the study minimizes. `feasible` is whether
    a trial meets every budget its constraints record (one without constraints does:
    no budgets, or it did not complete); `violated` names the budgets it exceeds,
    comma-joined. A hypermodel study's `hp_<name>` values follow `quantization`."""
    import pandas as pd
    from optuna.trial import TrialState

    tests = test_accuracies(opt_study)
    front = {t.number for t in front_trials(opt_study)}
    trials = opt_study.get_trials(deepcopy=False)
    stored = [StoredTrial.from_trial(t) for t in trials]
    hp = hp_columns([hp_values(t) for t in stored])
    rows = []
    for t, s in zip(trials, stored, strict=True):
        attrs = {k: v for k, v in s.stored.items() if k not in (CANDIDATE_ATTR, "losses")}
        if t.state == TrialState.FAIL:
            attrs["failure_kind"], attrs["fail_reason"] = failure(opt_study, t)
        cand = s.candidate
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "accuracy": t.values[0] if t.values else None,
                **{name: attrs.pop(name, None) for name in BYTE_COLUMNS},
                "latency_ms": attrs.pop("latency_ms", None),
                "feasible": is_feasible(t),
                "violated": ",".join(violated(t)),
                "test_accuracy": tests.get(t.number),
                "on_front": t.number in front,
                "width": None if cand is None else cand.width,
                "factorize": "" if cand is None else ",".join(cand.factorize),
                "epr_lambda": None if cand is None else cand.epr_lambda,
                "quantization": s.quantization,
                **dict.fromkeys(hp), **hp_values(s),
                "started": t.datetime_start,
                "completed": t.datetime_complete,
                **attrs,
            }
        )
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(TRIAL_COLUMNS))
    for name in BYTE_COLUMNS:
        frame[name] = pd.array(
            [None if pd.isna(v) else round(float(v)) for v in frame[name]], dtype="Int64"
        )
    frame["latency_ms"] = frame["latency_ms"].astype("float64")
    frame["feasible"] = frame["feasible"].astype(bool)
    return frame


def hypervolume_2d(points: list[tuple[float, float]], *, ref_log_bytes: float,
                   ref_accuracy: float = 0.0) -> float:
    """Area dominated by (accuracy ↑, bytes ↓) points above `ref_accuracy` and below
    `ref_log_bytes`, in accuracy × log10 bytes."""
    pts = [(math.log10(b), a) for a, b in points if 0 < b and math.log10(b) < ref_log_bytes]
    # for each interval of log size, the best accuracy among points at most that large
    xs = sorted({x for x, _ in pts} | {ref_log_bytes})
    area = 0.0
    for left, right in itertools.pairwise(xs):
        best = max((a for x, a in pts if x <= left), default=ref_accuracy)
        area += (right - left) * max(0.0, best - ref_accuracy)
    return area


def hypervolume_history(opt_study: optuna.Study) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the feasible completed trials up to it), for every
    completed trial: one over a budget adds nothing."""
    from optuna.trial import TrialState

    done = sorted(
        (t for t in opt_study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
        key=lambda t: t.number,
    )
    if not done:
        return []
    ref = math.log10(max(t.values[1] for t in done) * 10)
    history, points = [], []
    for t in done:
        if is_feasible(t):
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

        def tick_values(self, vmin: float, vmax: float) -> list[float]:
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


def set_size_axis(ax: Axes, *, sizes: list[float]) -> None:
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


def _new_figure(*, width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _kb_text(size: float) -> str:
    name, factor = _unit_of(size)
    return f"{size / factor:,.4g} {name}"


def _over_budget_label(over: list[optuna.trial.FrozenTrial]) -> str:
    """`over budget (5)` and, beneath, how many exceed each budget: `RAM 4, latency 2`."""
    counts = Counter(name for t in over for name in violated(t))
    # no-break spaces keep each "RAM 4" on one line when the list wraps
    which = ", ".join(f"{BUDGET_LABELS.get(name, name)}\N{NO-BREAK SPACE}{n}"
                      for name, n in counts.most_common())
    return f"over budget ({len(over)})" + (
        "\n" + textwrap.fill(f"by budget: {which}", width=30, subsequent_indent="  ")
        if which else ""
    )


def _budget_lines(budgets, *, metric: str) -> tuple[float | None, float | None]:
    """(bytes on the size axis, accuracy) at which a budget bounds the drawn plane."""
    if budgets is None:
        return None, None
    flash = (1024 * budgets.max_flash_kb
             if metric == "flash_bytes" and budgets.max_flash_kb is not None else None)
    return flash, budgets.min_accuracy


def pareto_figure(*, opt_study: optuna.Study, dataset: str) -> Figure:
    """The feasible front over all completed trials, accuracy against the study's byte
    objective, as a matplotlib Figure. Trials over a budget are red crosses and the title
    names the budgets; a budget on an axis (flash on a flash axis, accuracy) is a dashed
    line. Published figures (test accuracy) are drawn where the dataset is MNIST and the
    axis is the payload; the legend sits beside the axes, never over the front."""
    from optuna.trial import TrialState

    metric = size_metric(opt_study)
    budgets = study_budgets(opt_study)
    done = [t for t in opt_study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    within = [t for t in done if is_feasible(t)]
    over = [t for t in done if not is_feasible(t)]
    front = front_trials(opt_study)
    published = PUBLISHED_MNIST if dataset == "mnist" and metric == "payload_bytes" else ()
    fig = _new_figure(width=9.5 if published else 8, height=4.5)
    ax = fig.add_subplot()
    title = f"{opt_study.study_name}: accuracy vs {SIZE_TITLES.get(metric, metric)}"
    if budgets is None:
        ax.set_title(title)
    else:  # over the whole figure: the budgets may be wider than the axes
        fig.suptitle(f"{title}\nbudgets: {budgets.describe()}", fontsize="large")
    if not done:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    label = "within budgets" if budgets is not None else "completed trials"
    ax.scatter([t.values[1] for t in within], [t.values[0] for t in within], s=18,
               color="0.65", label=f"{label} ({len(within)})")
    if over:
        ax.scatter([t.values[1] for t in over], [t.values[0] for t in over], s=26,
                   marker="x", linewidths=1.2, color="tab:red", alpha=0.8,
                   label=_over_budget_label(over))
    fx = [t.values[1] for t in front]
    fy = [t.values[0] for t in front]
    if front:
        ax.step(fx, fy, where="post", color="C0", alpha=0.6)
        ax.scatter(fx, fy, s=30, color="C0", zorder=3,
                   label=f"{'feasible' if budgets is not None else 'Pareto'} front "
                         f"({len(front)})")
    flash_limit, accuracy_limit = _budget_lines(budgets, metric=metric)
    if flash_limit is not None:
        ax.axvline(flash_limit, color="tab:red", ls="--", lw=0.9, alpha=0.7,
                   label=f"flash budget ({budgets.max_flash_kb:g} KB)")
    if accuracy_limit is not None:
        ax.axhline(accuracy_limit, color="tab:red", ls=":", lw=0.9, alpha=0.7,
                   label=f"accuracy budget (>= {accuracy_limit:g})")
    for i, (name, size, err) in enumerate(published):
        ax.scatter([size], [1 - err], marker="*", s=140, zorder=4, color=f"C{i + 1}",
                   label=f"{name}\n{size:,} B, {100 * err:.2f}% test error")
    sizes = [t.values[1] for t in done] + [size for _, size, _ in published]
    sizes += [flash_limit] if flash_limit is not None else []
    set_size_axis(ax, sizes=sizes)
    scale = "log scale" if ax.get_xscale() == "log" else "linear scale"
    ax.set_xlabel(f"{SIZE_LABELS.get(metric, metric)} ({scale}; 1 KB = 1024 B)")
    ax.set_ylabel("accuracy (trials: validation; published: test)" if published
                  else "validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0,
              labelspacing=0.9, frameon=False)
    return fig


def hypervolume_figure(*, opt_study: optuna.Study) -> Figure:
    """Hypervolume of the feasible completed trials after each one, as a matplotlib
    Figure."""
    from matplotlib.ticker import MaxNLocator

    history = hypervolume_history(opt_study)
    fig = _new_figure(width=6.5, height=3.5)
    ax = fig.add_subplot()
    which = "feasible front" if study_budgets(opt_study) is not None else "front"
    ax.set_title(f"{opt_study.study_name}: {which} hypervolume over trials")
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


def _hover(t: optuna.trial.FrozenTrial, *, metric: str) -> str:
    """A trial's hover text on the interactive front: candidate, figures, budgets."""
    s = StoredTrial.from_trial(t)
    cand = s.candidate
    lines = [
        f"trial {t.number}: accuracy {t.values[0]:.4f}",
        f"{s.quantization} width {None if cand is None else cand.width} "
        f"λ {None if cand is None else cand.epr_lambda}",
        f"{round(t.values[1]):,} {metric}",
    ]
    figures = {"flash_bytes": s.flash_bytes, "ota_bytes": s.ota_bytes,
               "ram_bytes": s.ram_bytes}
    device = [f"{BUDGET_LABELS[name]} {_kb_text(value)}"
              for name, value in figures.items() if name != metric and value is not None]
    if s.latency_ms is not None:
        device.append(f"latency {s.latency_ms:.3g} ms")
    if device:
        lines.append(", ".join(device))
    if over := violated(t):
        lines.append("over budget: " + ", ".join(BUDGET_LABELS.get(n, n) for n in over))
    return "<br>".join(lines)


def pareto_html_figure(*, opt_study: optuna.Study, dataset: str) -> go.Figure:
    """The front of `pareto_figure` as an interactive plotly Figure (sizes in KB)."""
    import plotly.graph_objects as go
    from optuna.trial import TrialState

    metric = size_metric(opt_study)
    budgets = study_budgets(opt_study)
    done = [t for t in opt_study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    front = front_trials(opt_study)
    published = PUBLISHED_MNIST if dataset == "mnist" and metric == "payload_bytes" else ()
    figure = go.Figure()
    groups = [
        ("within budgets" if budgets is not None else "trials",
         [t for t in done if is_feasible(t)], {"color": "lightgray"}),
        ("over budget", [t for t in done if not is_feasible(t)],
         {"color": "crimson", "symbol": "x-thin-open", "size": 8, "line": {"width": 1.5}}),
    ]
    for name, trials, marker in groups:
        if trials or name != "over budget":
            figure.add_trace(go.Scatter(
                x=[t.values[1] / 1024 for t in trials], y=[t.values[0] for t in trials],
                mode="markers", name=f"{name} ({len(trials)})", marker=marker,
                text=[_hover(t, metric=metric) for t in trials], hoverinfo="text",
            ))
    figure.add_trace(go.Scatter(
        x=[t.values[1] / 1024 for t in front], y=[t.values[0] for t in front],
        mode="lines+markers", line={"shape": "hv"}, hoverinfo="text",
        name=f"{'feasible' if budgets is not None else 'Pareto'} front ({len(front)})",
        text=[_hover(t, metric=metric) for t in front],
    ))
    flash_limit, accuracy_limit = _budget_lines(budgets, metric=metric)
    if flash_limit is not None:
        figure.add_vline(x=flash_limit / 1024, line={"color": "crimson", "dash": "dash"})
    if accuracy_limit is not None:
        figure.add_hline(y=accuracy_limit, line={"color": "crimson", "dash": "dot"})
    for name, size, err in published:
        figure.add_trace(go.Scatter(x=[size / 1024], y=[1 - err], mode="markers",
                                    name=f"{name} (test)",
                                    marker={"symbol": "star", "size": 12}))
    title = f"{opt_study.study_name}: accuracy vs {SIZE_TITLES.get(metric, metric)}"
    if budgets is not None:
        title += f"<br><sub>budgets: {budgets.describe()}</sub>"
    figure.update_layout(
        title=title,
        xaxis={"type": "log",
               "title": f"{SIZE_LABELS.get(metric, metric)} (KB, 1 KB = 1024 B)"},
        yaxis={"title": "accuracy (trials: validation; published: test)" if published
               else "validation accuracy"},
    )
    return figure


def write_report(*, opt_study: optuna.Study, out: Path, dataset: str) -> list[Path]:
    """Writes trials.csv, pareto.png, pareto.html and hypervolume.png into `out`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out} is not writable: {error.strerror}") from None
    written = [out / "trials.csv"]
    trials_frame(opt_study).to_csv(written[0], index=False)

    written.append(out / "pareto.png")
    pareto_figure(opt_study=opt_study, dataset=dataset).savefig(written[-1])

    written.append(out / "pareto.html")
    pareto_html_figure(opt_study=opt_study, dataset=dataset).write_html(written[-1],
                                                               include_plotlyjs=True)

    written.append(out / "hypervolume.png")
    hypervolume_figure(opt_study=opt_study).savefig(written[-1])
    return written


def report_command(args: argparse.Namespace) -> int:
    """CLI entry for `report`."""
    _, run_dir, opt_study = open_stored(args)
    out = args.out or run_dir / "report"
    dataset = str(study_attribute(opt_study, "dataset") or "")
    for path in write_report(opt_study=opt_study, out=out, dataset=dataset):
        print(path)
    return 0
