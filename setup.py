"""Stops an install on any Python but 3.11 with one line, before pip resolves anything.

pyproject.toml says `requires-python = ">=3.11,<3.12"`, but pip before 26 does not check it
for the project it installs from a folder: on Python 3.12 it goes on to resolve the
dependencies and ends in `No matching distribution found for tensorflow==2.14.1`, with
nothing about Python. pip runs this file (through setuptools' build backend, with the
Python being installed into) before it resolves any dependency, so the check here is the
first thing an install on another Python meets, whatever pip the venv has. Everything
else about the package is in pyproject.toml.
"""

import sys

NEEDED = (3, 11)

if sys.version_info[:2] != NEEDED:
    sys.exit(
        f"compression-search needs Python {NEEDED[0]}.{NEEDED[1]}, not "
        f"{sys.version.split()[0]}: tensorflow-compression 2.14.1's compiled ops need exactly "
        "TensorFlow 2.14, which supports no newer Python; make the venv with python3.11 -m "
        "venv (README.md says how to get Python 3.11)"
    )

from setuptools import setup  # noqa: E402  (after the check: it is the point of this file)

setup()
