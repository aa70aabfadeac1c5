"""Trial artifacts: the learning-curve PNG of each trial, in a file-system store beside the storage."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.errors import StorageError
from dqn_tune.output_paths import leftover_temporaries, replacing
from dqn_tune.plots import learning_curve_figure, save_figure
from dqn_tune.runner.storage import StorageSettings, artifact_dir
from dqn_tune.tuning import records

LEARNING_CURVE_PNG = "learning_curve.png"
"""File name of a trial's learning-curve artifact."""


def chosen_artifact_dir(given: str | None, stored: str | None, storage_url: str | None) -> str:
    """The artifact directory as an absolute path: the one given, else the study's stored one, else the
    default beside the storage (relative to the current directory)."""
    return str(Path(given or stored or artifact_dir(storage_url)).expanduser().absolute())


class AtomicArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store, writing each file atomically: an artifact cut short (disk full) leaves
    no partial file behind, and its space is free again at once for the trial's failed state."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self._directory = directory

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Write the artifact `artifact_id` (a file name in the store's directory) from `content_body`."""
        if Path(artifact_id).name != artifact_id:
            raise ValueError(f"invalid artifact id {artifact_id!r}: expected a file name")
        with replacing(self._directory / artifact_id) as temporary, temporary.open("wb") as handle:
            shutil.copyfileobj(content_body, handle)

    def remove(self, artifact_id: str) -> None:
        """Remove the artifact `artifact_id`, and the partial copy of a write that a kill cut short; ArtifactNotFound
        if the artifact itself is not there."""
        for partial in leftover_temporaries(self._directory / artifact_id):
            partial.unlink(missing_ok=True)
        super().remove(artifact_id)


def make_artifact_store(storage_url: str | None, directory: str | Path | None = None) -> FileSystemArtifactStore:
    """The artifact store in `directory` (default: beside the storage), creating the directory; StorageError
    if it cannot be made."""
    directory = Path(directory) if directory is not None else artifact_dir(storage_url)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create artifact directory {str(directory)!r}: {exc.strerror}") from None
    return AtomicArtifactStore(directory)


def study_artifact_store(storage: StorageSettings, study_name: str, given: str | None) -> FileSystemArtifactStore:
    """The artifact store of a study that exists: `given`, else the directory stored on the study (or the default)."""
    opened = storage.open()
    try:
        stored = records.stored_artifact_dir(optuna.load_study(study_name=study_name, storage=opened))
    finally:
        opened.close()  # a worker keeps one connection: its study's
    return make_artifact_store(storage.url, chosen_artifact_dir(given, stored, storage.url))


def upload_learning_curve(
    trial: optuna.Trial, records: Sequence[RunRecord], artifact_store: FileSystemArtifactStore
) -> None:
    """Render the trial's per-seed learning curves to a PNG and attach it to the trial as an artifact."""
    figure = learning_curve_figure(records, title=f"trial {trial.number}: evaluation return")
    with tempfile.TemporaryDirectory(prefix="dqn_tune_artifact_") as tmp:
        path = save_figure(figure, Path(tmp) / LEARNING_CURVE_PNG)
        upload_artifact(artifact_store=artifact_store, file_path=str(path), study_or_trial=trial)
