"""`pareto`'s machine formats carry exact figures; `report`'s figures read well at any span."""

from __future__ import annotations

import csv
import io
import json

import optuna
import pytest

from optimizer.errors import UsageError
from optimizer.pareto import format_front, front_rows
from optimizer.report import hypervolume_figure, pareto_figure, write_report

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
    fig = pareto_figure(study=make(), dataset=dataset)
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
        fig = hypervolume_figure(study=study)
        texts = _assert_readable_x_ticks(fig)
        assert all(t.lstrip("−-").isdigit() for t in texts), texts


def test_write_report_writes_every_file(tmp_path):
    written = write_report(study=_small_study(), out=tmp_path / "report", dataset="digits")
    assert [p.name for p in written] == [
        "trials.csv", "pareto.png", "pareto.html", "hypervolume.png"
    ]
    trials = list(csv.DictReader(io.StringIO(written[0].read_text())))
    assert [r["payload_bytes"] for r in trials] == ["10000", "12500", "15000"]
    assert all(p.stat().st_size > 10_000 for p in written[1:])  # real images and page


def test_write_report_with_no_completed_trials(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    written = write_report(study=study, out=tmp_path / "report", dataset="mnist")
    assert len(written) == 4 and all(p.stat().st_size > 0 for p in written)
    assert written[0].read_text().splitlines()[1].split(",")[:2] == ["0", "FAIL"]


def test_smoke_study_name_is_refused_with_the_working_spelling():
    from optimizer.storage import check_study_arg

    with pytest.raises(UsageError, match="use --study digits --smoke"):
        check_study_arg("digits-smoke")
    check_study_arg("digits")  # a registered study passes
    check_study_arg("nosuch-smoke")  # left to get_study's own message
