"""Variants of the built-in `fashion_mnist` study that `search_efficiency.py` runs beside
the shipped default, so a change of default is a measured choice (issue 13).

    python -m optimizer run --study benchmarks.variants:PREVIOUS
"""

from dataclasses import replace

from studies.base import DEFAULT_REFERENCE_POINTS
from studies.fashion_mnist import STUDY as DEFAULT

#: The default before multi-objective successive halving: every candidate fine-tuned for
#: the same 3 epochs, none stopped early (and the three width-1 reference points it had).
PREVIOUS = replace(DEFAULT, name="fashion_mnist_previous",
                   reference_points=DEFAULT_REFERENCE_POINTS,
                   budget=replace(DEFAULT.budget, epochs=3, rungs=(), eta=3))

#: Successive halving by MO-ASHA's rule alone (`Budget.keep_front` off): a trial trains on
#: only when it ranks in the best ⌊n/η⌋ at its rung (with the three width-1 reference
#: points it was measured with).
RANK_ONLY = replace(DEFAULT, name="fashion_mnist_rank_only",
                    reference_points=DEFAULT_REFERENCE_POINTS,
                    budget=replace(DEFAULT.budget, keep_front=False))

#: The default before its two small-end reference points: only width 1 at λ 0, 2, 10.
THREE_REFERENCES = replace(DEFAULT, name="fashion_mnist_three_references",
                           reference_points=DEFAULT_REFERENCE_POINTS)

#: The default without distillation (issue 30): children learn from the labels alone.
NO_DISTILL = replace(DEFAULT, name="fashion_mnist_no_distill",
                     budget=replace(DEFAULT.budget, distill_weight=0.0))
