"""Build, train, compress and evaluate a `Candidate`.

TensorFlow is imported lazily inside functions so that `python -m optimizer --help`
and the search space stay fast. `tensorflow_compression` is imported in
`objectives.epr_maths` alone.
"""
