"""scikit-learn's 8×8 digits with a small same-padded CNN (`tiny_cnn`): the smoke-test study.

    python -m optimizer run --study digits --smoke   # seconds; used by the CI tests
"""

from studies.base import Budget, Study

STUDY = Study(
    name="digits",
    dataset="digits",
    family="tiny_cnn",
    budget=Budget(epochs=30, batch_size=32, n_trials=12),
    smoke=Budget(epochs=10, batch_size=32, n_trials=3),
    expected_runtime="1.6 min (smoke 0.4 min) on the 2-core VM of BENCHMARKS.md's sections "
                     "before issue 24",
    width_range=(0.25, 1.0),
    # No early stop: an epoch here is 36 steps, too few for EPR's penalty to let the
    # weights go, so EPR trials sit at chance after the first epoch and recover later.
    accuracy_floor=0.0,
)
