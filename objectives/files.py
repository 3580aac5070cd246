"""Writing a file so that it is whole or absent: the one atomic write of the project.

An artifact, an exported model or its card is written to a temp file in the target's own
folder, flushed and fsync'd, then renamed over the name (`os.replace`, atomic on POSIX): a
trial killed mid-write, or a full disk, never leaves a truncated file under the name.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Writes `data` (text is encoded as UTF-8) to `path` atomically; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    # created as open() creates files (0o666 less the umask: the user's normal modes), not
    # mkstemp's 0o600; O_EXCL and a random name keep it the only writer of the temp file
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
