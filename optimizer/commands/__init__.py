"""The faces: the command line (argparse and `args.` live only here) and the Python API.

`cli` (the parser and `main`), `run_args` (arguments → a study and run settings), the
reading commands (`pareto`, `report`, `inspect`, `dashboard`, `studies`), `export` and its
device and Keras files, and `api` (`optimizer.search`). The top room: it calls the engine and
the store, and nothing below imports it.
"""
