"""Writing a file so that it is whole or absent: the one atomic write of the project.

An artifact, an exported model or its card is written to a temp file in the target's own
folder, flushed and fsync'd, then renamed over the name (`os.replace`, atomic on POSIX): a
trial killed mid-write, or a full disk, never leaves a truncated file under the name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Writes `data` (text is encoded as UTF-8) to `path` atomically; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
