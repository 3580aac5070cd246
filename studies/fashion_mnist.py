"""Fashion-MNIST (Debian's `dataset-fashion-mnist`, 70,000 images) with LeNet5-Caffe.

    python -m optimizer run --study fashion_mnist          # time here: `expected_runtime` below
    python -m optimizer run --study fashion_mnist --smoke

Warm start, chosen by measurement (`benchmarks/trial_recipe.py`, BENCHMARKS.md): the
parent is trained once (5 epochs on the whole training split, cosine schedule) and every
candidate inherits its weights and is fine-tuned on a 20,000-image subset, its learning
rate decayed to zero at its last step. One inherited float32 epoch scored 90.4% on test,
against 89.7% for 10 epochs from scratch, in a tenth of the time.

Multi-objective successive halving, chosen by measurement (`benchmarks/search_efficiency.py`,
BENCHMARKS.md "Search efficiency"): a candidate is judged after 1 and 3 epochs against the
earlier candidates at the same epoch and only the best third, and any on that rung's
front, trains on, to 9 epochs. EPR children need many steps to lower their code length,
which 3 epochs for every candidate did not give; halving gives them to the promising few.

Reference points, chosen by measurement (the same benchmark): besides the base model and
EPR at λ = 2 and 10 at full width, the study starts from two points at the small end of
the space, the low corner (the narrowest width at the smallest λ) and λ = 50 at full width.
With the three width-1 points alone, the small end of the front was left to the sampler
and on one seed of three it found nothing below 8.8 KB. After them `run` makes one trial in
four a small-end extension (`optimizer/engine/extension.py`), which walks the front's smallest
member down in width: it raised the front's hypervolume on each of 3 seeds.
"""

from search_spaces import Candidate
from studies.base import DEFAULT_REFERENCE_POINTS, Budget, Study

#: The search ranges, named once for the low-corner reference point.
WIDTH_RANGE = (0.25, 1.5)
EPR_LAMBDA_RANGE = (0.5, 100.0)

STUDY = Study(
    name="fashion_mnist",
    dataset="fashion_mnist",
    family="lenet5_caffe",
    budget=Budget(epochs=9, batch_size=64, n_trials=30, train_subset=20_000,
                  schedule="cosine", parent_epochs=5, rungs=(1, 3), eta=3),
    smoke=Budget(epochs=3, batch_size=64, n_trials=4, train_subset=4_000, schedule="cosine"),
    expected_runtime="8.7 min on the 2-core VM of BENCHMARKS.md issue 30 (machine C, "
                     "2026-12-06; full Debian data; the parent once, 30 fine-tunes two at "
                     "a time, most stopped after 1 or 3 of 9 epochs, then 5 finalists)",
    init="inherit",
    width_range=WIDTH_RANGE,
    epr_lambda_range=EPR_LAMBDA_RANGE,
    reference_points=(
        *DEFAULT_REFERENCE_POINTS,
        Candidate(width=WIDTH_RANGE[0], epr_lambda=EPR_LAMBDA_RANGE[0], quantization="epr"),
        Candidate(width=1.0, epr_lambda=50.0, quantization="epr"),
    ),
)
