"""`python -m optimizer`: checks the Python version, then hands over to
`optimizer.commands.cli.main`."""

import sys

if sys.version_info[:2] != (3, 11):
    print(
        f"optimizer: error: Python 3.11 is required (tensorflow-compression 2.14 supports no "
        f"newer Python); this is Python {sys.version_info[0]}.{sys.version_info[1]}",
        file=sys.stderr,
    )
    raise SystemExit(2)

from optimizer.commands.cli import main

if __name__ == "__main__":  # a spawned worker re-imports this module as __mp_main__
    raise SystemExit(main())
