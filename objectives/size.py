"""Byte accounting: the one definition every study and report uses (DESIGN §2).

Three figures per trial:

- `payload_bytes`: the parameters only, as stored by the quantization mode. For `epr`,
  the range-coded bit strings plus their side information (the float16 log step sizes);
  for TFLite modes, the parameter tensors' buffers in the flatbuffer, compressed
  losslessly with zlib level 9. This is the figure the compression papers report and the
  default objective.
- `artifact_bytes`: the exported file(s) as written.
- `artifact_gzip_bytes`: gzip -9 of those file(s), the TF Model Optimization convention.

`SIZE_DEFINITION` names this definition; each trial records it next to its figures so a
later change of definition can never be mixed up with old numbers.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

SIZE_DEFINITION = "size-v1"


@dataclass(frozen=True)
class ByteFigures:
    """The three byte figures of one artifact, and the definition that produced them."""

    payload_bytes: int
    artifact_bytes: int
    artifact_gzip_bytes: int
    definition: str = SIZE_DEFINITION

    def as_dict(self) -> dict[str, int | str]:
        """Flat mapping for trial user attributes and reports (`size_definition` key)."""
        data = asdict(self)
        data["size_definition"] = data.pop("definition")
        return data


def zlib_size(data: bytes) -> int:
    """Length of `data` compressed with zlib at level 9."""
    return len(zlib.compress(data, 9))


def gzip_size(data: bytes) -> int:
    """Length of `data` compressed with gzip at level 9 (mtime fixed for reproducibility)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def epr_payload_bytes(*, strings: Iterable[bytes], side_info_bytes: int) -> int:
    """EPR payload: the range-coded strings' lengths plus the side information's bytes."""
    return sum(len(s) for s in strings) + int(side_info_bytes)


def artifact_figures(paths: Iterable[Path], *, payload_bytes: int) -> ByteFigures:
    """`ByteFigures` for artifact file(s) on disk, given the mode's payload figure."""
    blobs = [Path(p).read_bytes() for p in paths]
    return ByteFigures(
        payload_bytes=int(payload_bytes),
        artifact_bytes=sum(len(b) for b in blobs),
        artifact_gzip_bytes=sum(gzip_size(b) for b in blobs),
    )
