"""Finalists (issue 24): the front's members trained again to the end, on the whole
training split, stored as trials of their own."""

from __future__ import annotations

import json

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from definitions.attributes import FINALIST_ATTR
from optimizer.engine.finalists import FINALIST_EPOCHS, choose_finalists, finalist_budget
from optimizer.store.retry import finished_count
from studies.base import Budget
from tests.conftest import run_cli


def test_a_finalist_fine_tunes_on_the_whole_split_to_the_end_of_a_decaying_schedule():
    budget = Budget(epochs=9, batch_size=64, n_trials=30, train_subset=20_000,
                    schedule="constant", rungs=(1, 3), eta=3)
    tuned = finalist_budget(budget, fine_tune=True)
    assert tuned.train_subset is None and tuned.schedule == "cosine" and tuned.rungs == ()
    assert (tuned.epochs, tuned.batch_size) == (FINALIST_EPOCHS, 64)
    # without its trial's trained weights, a finalist trains the budget's epochs from the start
    assert finalist_budget(budget, fine_tune=False).epochs == 9


def _study(points: list[tuple[float, float]], **attrs_by_number) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, (accuracy, payload) in enumerate(points):
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, values=[accuracy, payload], params={"width": 0.5},
            distributions={"width": FloatDistribution(0.25, 1.5)},
            user_attrs=attrs_by_number.get(f"t{number}", {})))
    return study


def test_each_size_band_of_the_front_gets_its_most_accurate_member_as_finalist():
    #            0: dominated     1: most accurate  2: middle     3: smallest  4: near 3
    study = _study([(0.80, 50_000), (0.92, 60_000), (0.88, 8_000), (0.80, 900),
                    (0.81, 1_000)])
    # bands of 4x from 900 bytes: {3, 4} (the small end), {2}, {1}
    assert sorted(t.number for t in choose_finalists(study, k=8)) == [1, 2, 4]
    chosen = [t.number for t in choose_finalists(study, k=2)]
    assert chosen == [1, 4]  # the most accurate, then the small end's best
    assert [t.number for t in choose_finalists(study, k=1)] == [1]
    assert choose_finalists(study, k=0) == []


def test_a_front_spread_over_many_sizes_gets_a_finalist_per_band():
    sizes = [600, 1_500, 3_000, 12_000, 40_000, 200_000, 900_000]  # 6 bands of 4x from 600
    study = _study([(0.80 + 0.01 * i, size) for i, size in enumerate(sizes)])
    chosen = sorted(t.number for t in choose_finalists(study, k=8))
    assert chosen == [1, 2, 3, 4, 5, 6]  # 600 and 1,500 share a band: its better, 1


def test_a_member_with_a_finalist_and_a_finalist_itself_are_not_chosen_again():
    study = _study([(0.92, 60_000), (0.80, 900), (0.93, 61_000)],
                   t2={FINALIST_ATTR: 0})
    chosen = [t.number for t in choose_finalists(study, k=5)]
    assert chosen == [1]  # 0 has its finalist (2), and 2 is one


SUBSET_STUDY = """
from dataclasses import replace

from studies import get_study
from studies.base import Budget

# digits whose trials train on 400 of the 1,151 training images
STUDY = replace(get_study("digits"), name="digits_subset",
                smoke=Budget(epochs=6, batch_size=32, n_trials=3, train_subset=400))
"""


def test_run_trains_finalists_as_trials_of_their_own_that_export_reads(tmp_path):
    study_file = tmp_path / "digits_subset.py"
    study_file.write_text(SUBSET_STUDY)
    out = run_cli("run", "--study", str(study_file), "--smoke", "--n-trials", "3",
                  "--finalists", "2", "--extend-every", "0", "--run-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="digits_subset-smoke",
                              storage=f"sqlite:///{tmp_path}/study.db")
    finalists = [t for t in study.trials if FINALIST_ATTR in t.user_attrs]
    assert 1 <= len(finalists) <= 2
    assert finished_count(study) == 3  # finalists are not new candidates
    by_number = {t.number: t for t in study.trials}
    train_split = 1151  # scikit-learn's digits: the whole training split of seed 0
    for final in finalists:
        source = by_number[final.user_attrs[FINALIST_ATTR]]
        assert final.params == source.params
        assert final.user_attrs["candidate"] == source.user_attrs["candidate"]
        assert source.user_attrs["train_examples"] == 400  # the smoke budget's subset
        if final.state == TrialState.COMPLETE:
            assert final.user_attrs["train_examples"] == train_split
            assert final.user_attrs["finalist_start"] == "the trained weights of its trial"
            assert len(final.user_attrs["losses"]) == FINALIST_EPOCHS
            # fine-tuned from its trial's trained weights, it starts where that one ended
            assert final.user_attrs["losses"][0] < source.user_attrs["losses"][0]
    kept = sorted(p.name for p in (tmp_path / "weights").glob("*.npz"))
    assert kept == sorted(f"trial-{t.number:05d}.npz" for t in study.best_trials)
    assert f"(finalist of trial {finalists[0].user_attrs[FINALIST_ATTR]})" in out.stderr
    done = [t for t in finalists if t.state == TrialState.COMPLETE]
    assert done, out.stderr[-3000:]
    front = run_cli("pareto", "--study", str(study_file), "--smoke", "--run-dir",
                    str(tmp_path), "--format", "json")
    assert front.returncode == 0, front.stderr[-2000:]
    marked = {row["trial"]: row["finalist_of"] for row in json.loads(front.stdout)}
    for final in done:
        if final.number in marked:  # a finalist on the front says where it came from
            assert marked[final.number] == final.user_attrs[FINALIST_ATTR]
    exported = run_cli("export", "--study", str(study_file), "--smoke",
                       "--run-dir", str(tmp_path),
                       "--trial", str(done[0].number), "--out", str(tmp_path / "exp"))
    assert exported.returncode == 0, exported.stderr[-2000:]


def test_a_smoke_run_has_no_finalists_unless_asked_and_a_negative_count_is_refused(tmp_path):
    out = run_cli("run", "--study", "digits", "--smoke", "--n-trials", "2",
                  "--run-dir", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="digits-smoke",
                              storage=f"sqlite:///{tmp_path}/a/study.db")
    assert not [t for t in study.trials if FINALIST_ATTR in t.user_attrs]
    out = run_cli("run", "--study", "digits", "--smoke", "--finalists", "-1",
                  "--run-dir", str(tmp_path / "b"))
    assert out.returncode == 2 and "--finalists must be 0" in out.stderr


def test_pareto_names_the_trial_a_finalist_came_from():
    from optimizer.commands.pareto import format_front, front_rows

    study = _study([(0.80, 900), (0.92, 60_000), (0.93, 59_000)], t2={FINALIST_ATTR: 1})
    rows = {row["trial"]: row for row in front_rows(study)}
    assert rows[2]["finalist_of"] == 1 and rows[0]["finalist_of"] is None
    assert 1 not in rows  # its finalist dominates it
    table = format_front(list(rows.values()), "table").splitlines()
    assert table[0].split()[-1] == "finalist_of"
    assert [line.split()[-1] for line in table[2:]] == ["-", "1"]
