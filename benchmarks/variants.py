"""Variants of the built-in `fashion_mnist` study that `search_efficiency.py` runs beside
the shipped default, so a change of default is a measured choice (issue 13).

    python -m optimizer run --study benchmarks.variants:PREVIOUS
"""

from dataclasses import replace

from search_spaces import Candidate
from studies.base import DEFAULT_REFERENCES
from studies.fashion_mnist import STUDY as DEFAULT

#: The default before multi-objective successive halving: every candidate fine-tuned for
#: the same 3 epochs, none stopped early.
PREVIOUS = replace(DEFAULT, name="fashion_mnist_previous",
                   budget=replace(DEFAULT.budget, epochs=3, rungs=(), eta=3))

#: Successive halving by MO-ASHA's rule alone (`Budget.keep_front` off): a trial trains on
#: only when it ranks in the best ⌊n/η⌋ at its rung.
RANK_ONLY = replace(DEFAULT, name="fashion_mnist_rank_only",
                    budget=replace(DEFAULT.budget, keep_front=False))

#: Two more reference points, at the small end of the space, where the default ones
#: (width 1 at λ 0, 2, 10) leave the front to the sampler: the low corner (the narrowest
#: width at the smallest λ; KerasTuner's first proposal, 87% at 5.7 KB) and the seed
#: sweep's λ = 50 at full width (2.3 KB at 81%).
ANCHORED = replace(DEFAULT, name="fashion_mnist_anchored", references=(
    *DEFAULT_REFERENCES,
    Candidate(width=DEFAULT.width_range[0], epr_lambda=DEFAULT.epr_lambda_range[0],
              quantization="epr"),
    Candidate(width=1.0, epr_lambda=50.0, quantization="epr"),
))
