"""Fashion-MNIST (Debian's `dataset-fashion-mnist`, 70,000 images) with LeNet5-Caffe.

    python -m optimizer run --study fashion_mnist          # time here: `expected_runtime` below
    python -m optimizer run --study fashion_mnist --smoke
"""

from studies.base import Budget, Study

STUDY = Study(
    name="fashion_mnist",
    dataset="fashion_mnist",
    family="lenet5_caffe",
    budget=Budget(epochs=10, batch_size=64, n_trials=30, train_subset=20_000),
    smoke=Budget(epochs=3, batch_size=64, n_trials=4, train_subset=4_000),
    expected_runtime="21 min (full Debian data, 20,000-image training subset)",
)
