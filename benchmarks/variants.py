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

#: The default with `Budget.keep_front`: a trial on its rung's first front trains on too.
KEEP_FRONT = replace(DEFAULT, name="fashion_mnist_keep_front",
                     budget=replace(DEFAULT.budget, keep_front=True))
