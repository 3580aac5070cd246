"""`export --ota`: the update a device receives (`model.update`, `objectives.ota`) for the
exported device file, and the C decoder beside it.

Written into the export's folder: `model.update`, checked by decoding it again before it
is written; `model_update.c` / `model_update.h`, the decoder a microcontroller build
compiles; `ota_decode.c`, the host program that decodes an update into a file, to check
one before sending it. The card's `ota` section names them, `ota_bytes` (what the device
receives) against the device file's bytes and gzip -9 of them, the decoder's work buffer,
and how to build and run the check.

`export --ota --base DIR`: the device already runs the device file of an earlier export
(DIR, same architecture); `model.update` is then relative to it (`ota.encode_update`'s
`base`) when that is smaller than the plain update, and the card says which, with both
sizes and the base's SHA-256.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from definitions.errors import UsageError
from objectives import ota
from objectives.files import write_atomically
from objectives.size import gzip_size
from optimizer.commands.device_export import DEVICE_FILE

#: Every file `write_update` writes (an export that does not write them removes them).
FILES: tuple[str, ...] = (ota.UPDATE_FILE, *ota.DECODER_FILES)
CHECK = ("cc -std=c99 -O2 -o ota_decode ota_decode.c model_update.c && "
         "./ota_decode model.update {file}.check{base} && cmp {file} {file}.check")
#: An export folder's device file: an EPR trial's is model_device.tflite, a TFLite
#: trial's is its artifact, model.tflite (an export removes the other one).
BASE_FILES = (DEVICE_FILE, "model.tflite")


@dataclass(frozen=True)
class BaseFile:
    """The device file of an earlier export, which a device runs: an update may be
    relative to it."""

    path: Path
    data: bytes


def read_base(folder: Path, *, out: Path) -> BaseFile:
    """The device file of the export in `folder` (`BASE_FILES`); `UsageError` for a
    missing folder, one without a device file, or `out` itself (the export replaces it)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--base {folder}: no such folder; give an earlier export's folder")
    if folder.resolve() == Path(out).resolve():
        raise UsageError(f"--base {folder} is --out: the export replaces the base's files; "
                         "export into another folder")
    for name in BASE_FILES:
        path = folder / name
        if path.is_file() and path.stat().st_size:
            return BaseFile(path=path.resolve(), data=path.read_bytes())
    raise UsageError(f"--base {folder}: no device file ({' or '.join(BASE_FILES)}) in it; "
                     "give an earlier export's folder")


def write_update(device_file: Path, *, out: Path, base: BaseFile | None = None
                 ) -> dict[str, Any]:
    """Writes `model.update` for `device_file` (a `.tflite` in `out`), relative to `base`
    when that is smaller, and the decoder's sources into `out`; returns the card's `ota`
    section."""
    data = Path(device_file).read_bytes()
    update = plain = ota.encode_update(data, verify=True)
    relative = None if base is None else ota.encode_update(data, base=base.data, verify=True)
    if relative is not None and len(relative) < len(plain):
        update = relative
    write_atomically(Path(out) / ota.UPDATE_FILE, update)
    decoder = ota.write_decoder_sources(out)
    header = ota.read_header(update)
    base_arg = f" {shlex.quote(str(base.path))}" if base and header.relative else ""
    return {
        "file": ota.UPDATE_FILE,
        "ota_bytes": len(update),
        "device_file": Path(device_file).name,
        "device_bytes": len(data),
        "device_gzip_bytes": gzip_size(data),
        "format_version": ota.RELATIVE_VERSION if header.relative else ota.FORMAT_VERSION,
        "work_buffer_bytes": header.work_bytes,
        "base": None if base is None else {
            "file": str(base.path), "bytes": len(base.data),
            "sha256": hashlib.sha256(base.data).hexdigest(), "relative": header.relative,
            "plain_ota_bytes": len(plain), "relative_ota_bytes": len(relative or b""),
        },
        "decoder": decoder,
        "check": CHECK.format(file=Path(device_file).name, base=base_arg),
        "note": "a device writes the decoded chunks to a staging area and uses them only "
                "once mu_finish returns MU_OK (the file's SHA-256 matched); "
                "docs/ota-format.md is the format",
    }
