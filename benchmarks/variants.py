"""Variants of the built-in `fashion_mnist` study that `search_efficiency.py` runs beside
the shipped default, so a change of default is a measured choice (issue 13).

    python -m optimizer run --study benchmarks.variants:HALVING
"""

from dataclasses import replace

from studies.fashion_mnist import STUDY as DEFAULT

#: Multi-objective successive halving (`optimizer.halving`): every candidate is judged after
#: 1 and 3 epochs and only the best third at each rung trains on, to 9 epochs; the same
#: 30 trials as the default, whose 3 epochs each cost about as much in all.
HALVING = replace(DEFAULT, name="fashion_mnist_halving",
                  budget=replace(DEFAULT.budget, epochs=9, rungs=(1, 3), eta=3))
