"""Fashion-MNIST (Debian's `dataset-fashion-mnist`, 70,000 images) with LeNet5-Caffe.

    python -m optimizer run --study fashion_mnist          # time here: `expected_runtime` below
    python -m optimizer run --study fashion_mnist --smoke

Warm start, chosen by measurement (`benchmarks/trial_recipe.py`, BENCHMARKS.md): the
parent is trained once (5 epochs on the whole training split, cosine schedule) and every
candidate inherits its weights and is fine-tuned for 3 epochs on a 20,000-image subset,
its learning rate decayed to zero at its last step. One inherited float32 epoch scored
90.4% on test, against 89.7% for 10 epochs from scratch, in a tenth of the time.
"""

from studies.base import Budget, Study

STUDY = Study(
    name="fashion_mnist",
    dataset="fashion_mnist",
    family="lenet5_caffe",
    budget=Budget(epochs=3, batch_size=64, n_trials=30, train_subset=20_000,
                  schedule="cosine", parent_epochs=5),
    smoke=Budget(epochs=3, batch_size=64, n_trials=4, train_subset=4_000, schedule="cosine"),
    expected_runtime="22.7 min (full Debian data; the parent once, then 30 fine-tunes)",
    init="inherit",
)
