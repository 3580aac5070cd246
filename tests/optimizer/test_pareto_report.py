"""`pareto`'s machine formats carry exact figures; `report`'s figures read well at any span
and keep trials over a device budget apart from the feasible front."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict

import optuna
import pandas as pd
import pytest

from definitions.attributes import RECORD_ATTR
from definitions.errors import UsageError
from optimizer.commands.pareto import format_front, front_rows
from optimizer.commands.report import (
    hypervolume_figure,
    hypervolume_history,
    pareto_figure,
    pareto_html_figure,
    trials_frame,
    write_report,
)
from optimizer.store.constraints import set_constraints
from studies.base import DeviceBudgets

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

CANDIDATE = {"width": 1.0, "factorize": [], "epr_lambda": 2.0, "quantization": "epr"}


def _study(points, *, name="front"):
    """An in-memory study of COMPLETE trials (accuracy, payload_bytes, artifact_bytes) with
    the user attributes the runner writes."""
    study = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "payload_bytes"])
    for accuracy, payload, artifact in points:
        study.add_trial(
            optuna.trial.create_trial(
                values=[accuracy, payload],
                user_attrs={
                    "candidate": CANDIDATE,
                    "payload_bytes": payload,
                    "artifact_bytes": artifact,
                    "artifact_gzip_bytes": artifact - 1,
                    "size_definition": "test",
                },
            )
        )
    return study


EXACT = [(0.912345678901, 12345, 20_011), (0.987654321012, 1_234_567, 1_300_003)]


def test_json_carries_exact_byte_integers_and_unrounded_accuracy():
    rows = json.loads(format_front(front_rows(_study(EXACT)), "json"))
    assert [r["payload_bytes"] for r in rows] == [12345, 1_234_567]
    assert [r["artifact_bytes"] for r in rows] == [20_011, 1_300_003]
    assert all(type(r["payload_bytes"]) is int and type(r["artifact_bytes"]) is int
               for r in rows)
    assert [r["accuracy"] for r in rows] == [0.912345678901, 0.987654321012]
    assert not {"payload_kb", "artifact_kb"} & set(rows[0])
    assert rows[0]["factorize"] == [] and rows[0]["epr_lambda"] == 2.0


def test_csv_carries_exact_byte_integers_under_the_trial_attribute_names():
    text = format_front(front_rows(_study(EXACT)), "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["payload_bytes"] for r in rows] == ["12345", "1234567"]
    assert [r["artifact_bytes"] for r in rows] == ["20011", "1300003"]
    assert [float(r["accuracy"]) for r in rows] == [0.912345678901, 0.987654321012]
    assert "payload_kb" not in rows[0] and "artifact_kb" not in rows[0]


def test_table_shows_rounded_kb_for_people():
    table = format_front(front_rows(_study(EXACT)), "table").splitlines()
    assert table[0].split()[:5] == [
        "trial", "accuracy", "test_accuracy", "payload_kb", "artifact_kb"
    ]
    assert table[2].split()[:4] == ["0", "0.9123", "12.06", "19.54"]


def _small_study():
    """3 trials whose payloads span 1.5×."""
    return _study([(0.90, 10_000, 12_000), (0.93, 12_500, 14_000), (0.95, 15_000, 17_000)],
                  name="small")


def _large_study():
    """40 trials from 2 KB to 2 MB (1000×), a front and dominated trials."""
    points = []
    for i in range(40):
        size = round(2048 * 1000 ** (i / 39))
        points.append((0.55 + 0.4 * i / 39 - 0.05 * (i % 3), size, size + 300))
    return _study(points, name="large")


def _visible_x_labels(fig):
    ax = fig.axes[0]
    lo, hi = sorted(ax.get_xlim())
    return [t for t in ax.get_xticklabels()
            if t.get_visible() and lo <= t.get_position()[0] <= hi]


def _assert_readable_x_ticks(fig):
    fig.canvas.draw()
    labels = _visible_x_labels(fig)
    texts = [t.get_text() for t in labels]
    assert 3 <= len(texts) <= 10, texts
    assert all(texts) and len(set(texts)) == len(texts), texts
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), texts
    return texts


@pytest.mark.parametrize("make", [_small_study, _large_study], ids=["span-1.5x", "span-1000x"])
@pytest.mark.parametrize("dataset", ["digits", "mnist"])
def test_pareto_figure_has_readable_size_ticks_and_a_legend_beside_the_front(make, dataset):
    fig = pareto_figure(opt_study=make(), dataset=dataset)
    texts = _assert_readable_x_ticks(fig)
    assert all(t.endswith((" B", " KB", " MB")) for t in texts), texts
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    data_area = ax.get_window_extent(renderer)
    assert legend.x0 >= data_area.x1 and not legend.overlaps(data_area)  # beside it
    # the legend is drawn inside the figure, not cut off
    assert fig.bbox.contains(legend.x1 - 1, legend.y0 + 1)
    ylabel = ax.get_ylabel()
    if dataset == "mnist":
        assert "published: test" in ylabel
    else:
        assert ylabel == "validation accuracy"


def test_hypervolume_figure_has_integer_trial_ticks():
    for study in (_small_study(), _large_study()):
        fig = hypervolume_figure(opt_study=study)
        texts = _assert_readable_x_ticks(fig)
        assert all(t.lstrip("−-").isdigit() for t in texts), texts


def test_write_report_writes_every_file(tmp_path):
    written = write_report(opt_study=_small_study(), out=tmp_path / "report", dataset="digits")
    assert [p.name for p in written] == [
        "trials.csv", "pareto.png", "pareto.html", "hypervolume.png"
    ]
    trials = list(csv.DictReader(io.StringIO(written[0].read_text())))
    assert [r["payload_bytes"] for r in trials] == ["10000", "12500", "15000"]
    assert all(p.stat().st_size > 10_000 for p in written[1:])  # real images and page


def test_write_report_with_no_completed_trials(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    written = write_report(opt_study=study, out=tmp_path / "report", dataset="mnist")
    assert len(written) == 4 and all(p.stat().st_size > 0 for p in written)
    assert written[0].read_text().splitlines()[1].split(",")[:2] == ["0", "FAIL"]


def test_smoke_study_name_is_refused_with_the_working_spelling():
    from optimizer.commands.lookup import check_study_arg

    with pytest.raises(UsageError, match="use --study digits --smoke"):
        check_study_arg("digits-smoke")
    check_study_arg("digits")  # a registered study passes
    check_study_arg("nosuch-smoke")  # left to get_study's own message


# Under device budgets: RAM <= 8 KB and latency <= 2 ms. Trial 2 would dominate trial 1
# and trial 3 would top the front, but both are over a budget.
BUDGETS = DeviceBudgets(max_ram_kb=8, max_latency_ms=2.0)
#: (accuracy, payload_bytes, ram_bytes, latency_ms); flash_bytes is 3 × payload + 1000.
BUDGET_POINTS = [
    (0.80, 2_000, 6_000, 1.0),
    (0.90, 5_000, 7_000, 1.5),
    (0.95, 3_000, 12_000, 1.0),  # RAM over
    (0.97, 20_000, 9_000, 3.0),  # RAM and latency over
    (0.93, 10_000, 8_192, 1.9),  # exactly at the RAM budget: within
]
OVER_BUDGET = {2: "ram_bytes", 3: "latency_ms,ram_bytes"}


def _budget_study(*, metric="payload_bytes", budgets=BUDGETS):
    """A study of `metric` with `budgets` recorded as the runner records them, each
    trial's constraints written through `set_constraints`, and one failed trial."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="budgets", storage=storage,
                                directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", metric])
    study.set_user_attr(RECORD_ATTR, {"device_budgets": asdict(budgets)})
    for accuracy, payload, ram, latency in BUDGET_POINTS:
        attrs = {"candidate": CANDIDATE, "payload_bytes": payload,
                 "artifact_bytes": 3 * payload + 1000, "artifact_gzip_bytes": 2 * payload,
                 "flash_bytes": 3 * payload + 1000, "ram_bytes": ram, "latency_ms": latency,
                 "ram_method": "test", "device_format": "tflite"}
        trial = study.ask()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        set_constraints(trial, budgets.constraints(accuracy=accuracy, attrs=attrs),
                        storage=storage)
        study.tell(trial, [accuracy, float(attrs[metric])])
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    return study


def _point(number, metric="payload_bytes"):
    accuracy, payload, _, _ = BUDGET_POINTS[number]
    size = {"payload_bytes": payload, "flash_bytes": 3 * payload + 1000,
            "artifact_gzip_bytes": 2 * payload}[metric]
    return (size, accuracy)


def test_trials_csv_marks_exactly_the_over_budget_trials_infeasible(tmp_path):
    written = write_report(opt_study=_budget_study(), out=tmp_path, dataset="digits")
    rows = list(csv.DictReader(io.StringIO(written[0].read_text())))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 5 + ["FAIL"]
    assert {int(r["trial"]) for r in rows if r["feasible"] == "False"} == set(OVER_BUDGET)
    assert {int(r["trial"]): r["violated"] for r in rows if r["violated"]} == OVER_BUDGET
    assert {int(r["trial"]) for r in rows if r["on_front"] == "True"} == {0, 1, 4}
    assert [r["ram_bytes"] for r in rows] == ["6000", "7000", "12000", "9000", "8192", ""]
    assert [r["flash_bytes"] for r in rows][:2] == ["7000", "16000"]
    assert rows[3]["latency_ms"] == "3.0"


def test_trials_frame_takes_byte_columns_from_the_attributes_whatever_the_objective():
    frame = trials_frame(_budget_study(metric="flash_bytes")).set_index("trial")
    completed = frame[frame["state"] == "COMPLETE"]
    assert list(completed["payload_bytes"]) == [p for _, p, _, _ in BUDGET_POINTS]
    assert list(completed["flash_bytes"]) == [3 * p + 1000 for _, p, _, _ in BUDGET_POINTS]
    for name in ("payload_bytes", "artifact_bytes", "artifact_gzip_bytes", "flash_bytes",
                 "ram_bytes"):
        assert frame[name].dtype == "Int64", name
    assert frame["feasible"].dtype == bool
    assert frame.loc[5, "payload_bytes"] is pd.NA  # the failed trial measured nothing
    assert list(frame["feasible"]) == [True, True, False, False, True, True]


def _collection(ax, label_start):
    found = [c for c in ax.collections if c.get_label().startswith(label_start)]
    assert len(found) == 1, [c.get_label() for c in ax.collections]
    return found[0]


def test_pareto_figure_draws_over_budget_trials_apart_from_the_feasible_front():
    fig = pareto_figure(opt_study=_budget_study(), dataset="mnist")
    ax = fig.axes[0]
    over = _collection(ax, "over budget (2)")
    assert sorted(map(tuple, over.get_offsets().tolist())) == sorted(
        _point(n) for n in OVER_BUDGET
    )
    assert "RAM\N{NO-BREAK SPACE}2, latency\N{NO-BREAK SPACE}1" in over.get_label()
    within = _collection(ax, "within budgets (3)")
    assert sorted(map(tuple, within.get_offsets().tolist())) == [_point(n) for n in (0, 1, 4)]
    front = _collection(ax, "feasible front (3)")
    assert front.get_offsets().tolist() == [list(_point(n)) for n in (0, 1, 4)]
    # the budgets are named above the axes, inside the figure
    assert f"budgets: {BUDGETS.describe()}" in fig.get_suptitle()
    _assert_readable_x_ticks(fig)
    renderer = fig.canvas.get_renderer()
    [title] = [t for t in fig.texts if t.get_text() == fig.get_suptitle()]
    box = title.get_window_extent(renderer)
    assert fig.bbox.contains(*box.p0) and fig.bbox.contains(*box.p1)
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # still beside the axes
    # published payloads are drawn on a payload axis
    assert any(c.get_label().startswith("EPR") for c in ax.collections)


@pytest.mark.parametrize(("metric", "label"), [
    ("payload_bytes", "payload: compressed parameter bytes"),
    ("flash_bytes", "flash: .tflite file bytes"),
    ("artifact_gzip_bytes", "gzip -9 of the artifact"),
])
def test_the_size_axis_is_the_study_objective_and_says_which(metric, label):
    fig = pareto_figure(opt_study=_budget_study(metric=metric), dataset="mnist")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith(label)
    assert sorted(map(tuple, _collection(ax, "over budget").get_offsets().tolist())) == sorted(
        _point(n, metric) for n in OVER_BUDGET
    )
    # published payloads are not flash or gzip sizes, so only a payload axis has them
    assert any(c.get_label().startswith("EPR") for c in ax.collections) == (
        metric == "payload_bytes"
    )


def test_a_flash_budget_on_a_flash_axis_and_an_accuracy_budget_are_drawn_as_lines():
    budgets = DeviceBudgets(max_flash_kb=20, min_accuracy=0.85)
    ax = pareto_figure(opt_study=_budget_study(metric="flash_bytes", budgets=budgets),
                       dataset="digits").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["flash budget (20 KB)"].get_xdata()[0] == 20 * 1024
    assert lines["accuracy budget (>= 0.85)"].get_ydata()[0] == 0.85


def test_hypervolume_counts_feasible_trials_only():
    history = dict(hypervolume_history(_budget_study()))
    assert list(history) == [0, 1, 2, 3, 4]
    assert history[2] == history[1] and history[3] == history[2]  # over budget: no gain
    assert history[4] > history[3]


def test_interactive_front_has_its_over_budget_trials_and_budgets():
    figure = pareto_html_figure(opt_study=_budget_study(metric="flash_bytes"), dataset="digits")
    traces = {t.name: t for t in figure.data}
    over = traces["over budget (2)"]
    assert sorted(zip(over.x, over.y, strict=True)) == sorted(
        (size / 1024, acc) for size, acc in (_point(n, "flash_bytes") for n in OVER_BUDGET)
    )
    assert "over budget: RAM" in over.text[0]
    assert len(traces["feasible front (3)"].x) == 3
    assert BUDGETS.describe() in figure.layout.title.text
    assert figure.layout.xaxis.title.text.startswith("flash: .tflite file bytes")
