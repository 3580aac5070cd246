"""Where trial artifacts live: the study's Optuna artifact store, found from anywhere.

Every trial uploads the artifact it was scored on (the `.tflite` or `.epr` file) to an
Optuna `FileSystemArtifactStore` and records the returned `artifact_id` and the file's
SHA-256; nothing records a local path. `export`, test scoring and `dashboard` read the
artifact back from the store, so a moved or copied run directory keeps working, and
drivers on several machines that share one store (`--artifact-dir` on a shared mount)
can export each other's trials.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from definitions.attributes import (
    ARTIFACT_ID_ATTR,
    FLOAT_MODEL_ID_ATTR,
    FLOAT_MODEL_SHA256_ATTR,
)
from definitions.errors import UsageError
from objectives.pipeline import FLOAT_MODEL_SUFFIX, artifact_suffix, sha256_file
from optimizer.store.trial import StoredTrial

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

STORE_DIR = "artifact-store"
ARTIFACT_SHA256_ATTR = "artifact_sha256"
#: The ids Optuna's `upload_artifact` gives (`str(uuid.uuid4())`): a recorded id of any
#: other form (`../../etc/passwd`, an absolute path, a number) no upload wrote.
ARTIFACT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class StoredFile:
    """A file a trial keeps in the store: the attributes naming its id and SHA-256 (also
    `StoredTrial`'s fields), and what it is called in messages."""

    id_attr: str
    sha256_attr: str
    label: str


#: The file a trial was scored on (`.tflite` or `.epr`).
ARTIFACT = StoredFile(ARTIFACT_ID_ATTR, ARTIFACT_SHA256_ATTR, "artifact")
#: A TFLite trial's float Keras model (`objectives.pipeline.FLOAT_MODEL_SUFFIX`).
FLOAT_MODEL = StoredFile(FLOAT_MODEL_ID_ATTR, FLOAT_MODEL_SHA256_ATTR, "float model")


def kept(trial: optuna.trial.FrozenTrial, stored: StoredFile) -> bool:
    """Whether `trial` recorded a `stored` file (trials before it existed did not)."""
    return bool(getattr(StoredTrial.from_trial(trial), stored.id_attr))


def store_dir_for(run_dir: Path, *, artifact_dir: Path | None) -> Path:
    """`--artifact-dir`, or `<run dir>/artifact-store`."""
    return Path(artifact_dir) if artifact_dir is not None else Path(run_dir) / STORE_DIR


def open_store(directory: Path, *, create: bool) -> FileSystemArtifactStore:
    """The artifact store in `directory`; `UsageError` if it cannot be used."""
    from optuna.artifacts import FileSystemArtifactStore

    directory = Path(directory)
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"--artifact-dir {directory} cannot be created: {error.strerror}"
            ) from None
    elif not directory.is_dir():
        raise UsageError(
            f"no artifact store at {directory}; pass --artifact-dir with the folder the "
            "study's drivers wrote their artifacts to"
        )
    return FileSystemArtifactStore(str(directory))


def fetch(
    trial: optuna.trial.FrozenTrial, *, store: FileSystemArtifactStore, store_dir: Path,
    into: Path, stored: StoredFile = ARTIFACT,
) -> Path:
    """Downloads `trial`'s artifact (or another `stored` file) into the folder `into`
    and checks its SHA-256.

    Returns the file's path (named `trial-NNNNN<suffix>`, the suffix of its format).
    `UsageError` when the store lacks it or the bytes do not match the record."""
    from optuna.artifacts import download_artifact
    from optuna.artifacts.exceptions import ArtifactNotFound

    artifact_id = stored_artifact_id(trial, store_dir=store_dir, stored=stored)
    typed = StoredTrial.from_trial(trial)
    suffix = (FLOAT_MODEL_SUFFIX if stored == FLOAT_MODEL
              else artifact_suffix(str(typed.quantization)))
    target = Path(into) / f"trial-{trial.number:05d}{suffix}"
    target.unlink(missing_ok=True)
    try:
        download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(target))
    except ArtifactNotFound:
        raise UsageError(
            f"trial {trial.number}'s {stored.label} {artifact_id} is not in the store at "
            f"{store_dir}; pass --artifact-dir with the folder the study's drivers wrote to"
        ) from None
    if sha256_file(target) != getattr(typed, stored.sha256_attr):
        target.unlink()
        raise UsageError(
            f"trial {trial.number}'s {stored.label} {artifact_id} in {store_dir} does not "
            "match its checksum"
        )
    return target


def stored_artifact_id(trial: optuna.trial.FrozenTrial, *, store_dir: Path,
                       stored: StoredFile = ARTIFACT) -> str:
    """`trial`'s recorded `artifact_id`, checked to name a file inside the store before
    anything is opened: the database may have been edited, and an id like
    `../../etc/passwd` (or one whose file in the store is a link leading out of it) would
    read another file. `UsageError` in one line naming the trial otherwise."""
    artifact_id = getattr(StoredTrial.from_trial(trial), stored.id_attr)
    if not artifact_id:
        raise UsageError(f"trial {trial.number} recorded no {stored.label} in the study's "
                         "store")
    if not isinstance(artifact_id, str) or not ARTIFACT_ID.match(artifact_id):
        raise UsageError(
            f"trial {trial.number}'s {stored.id_attr} {artifact_id!r} is not an id the "
            "artifact store gives (a UUID): the study's database was edited; nothing was read")
    store = Path(store_dir).resolve()
    if (store / artifact_id).resolve().parent != store:
        raise UsageError(
            f"trial {trial.number}'s {stored.label} {artifact_id} in {store_dir} leads outside "
            "the store (a link); nothing was read")
    return artifact_id
