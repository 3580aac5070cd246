"""Variants of the built-in `fashion_mnist` study that `search_efficiency.py` runs beside
the shipped default, so a change of default is a measured choice (issue 13).

    python -m optimizer run --study benchmarks.variants:PREVIOUS
"""

from dataclasses import replace

from studies.fashion_mnist import STUDY as DEFAULT

#: The default before multi-objective successive halving: every candidate fine-tuned for
#: the same 3 epochs, none stopped early.
PREVIOUS = replace(DEFAULT, name="fashion_mnist_previous",
                   budget=replace(DEFAULT.budget, epochs=3, rungs=(), eta=3))

#: Successive halving by MO-ASHA's rule alone (`Budget.keep_front` off): a trial trains on
#: only when it ranks in the best ⌊n/η⌋ at its rung.
RANK_ONLY = replace(DEFAULT, name="fashion_mnist_rank_only",
                    budget=replace(DEFAULT.budget, keep_front=False))
