"""`export --ota`: the update a device receives (`model.update`, `objectives.ota`) for the
exported device file, and the C decoder beside it.

Written into the export's folder: `model.update`, checked by decoding it again before it
is written; `model_update.c` / `model_update.h`, the decoder a microcontroller build
compiles; `ota_decode.c`, the host program that decodes an update into a file, to check
one before sending it. The card's `ota` section names them, `ota_bytes` (what the device
receives) against the device file's bytes and gzip -9 of them, the decoder's work buffer,
and how to build and run the check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from objectives import ota
from objectives.files import write_atomically
from objectives.size import gzip_size

#: Every file `write_update` writes (an export that does not write them removes them).
FILES: tuple[str, ...] = (ota.UPDATE_FILE, *ota.DECODER_FILES)
CHECK = ("cc -std=c99 -O2 -o ota_decode ota_decode.c model_update.c && "
         "./ota_decode model.update {file}.check && cmp {file} {file}.check")


def write_update(device_file: Path, *, out: Path) -> dict[str, Any]:
    """Writes `model.update` for `device_file` (a `.tflite` in `out`) and the decoder's
    sources into `out`; returns the card's `ota` section."""
    data = Path(device_file).read_bytes()
    update = ota.encode_update(data, verify=True)
    write_atomically(Path(out) / ota.UPDATE_FILE, update)
    decoder = ota.write_decoder_sources(out)
    return {
        "file": ota.UPDATE_FILE,
        "ota_bytes": len(update),
        "device_file": Path(device_file).name,
        "device_bytes": len(data),
        "device_gzip_bytes": gzip_size(data),
        "format_version": ota.FORMAT_VERSION,
        "work_buffer_bytes": ota.read_header(update).work_bytes,
        "decoder": decoder,
        "check": CHECK.format(file=Path(device_file).name),
        "note": "a device writes the decoded chunks to a staging area and uses them only "
                "once mu_finish returns MU_OK (the file's SHA-256 matched); "
                "docs/ota-format.md is the format",
    }
