"""Compression-aware architecture search for Keras CNNs (`python -m optimizer`).

The Python API is `search` (and its `SearchResult`), from `optimizer.commands.api`; they are
imported when first used, so importing this package (and `--help`) stays free of
TensorFlow and Optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optimizer.commands.api import SearchResult, search

__all__ = ["SearchResult", "search"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from optimizer.commands import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
