"""Learning-curve artifacts uploaded to a real study in a tmp SQLite file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound

from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.errors import StorageError
from dqn_tune.runner.storage import open_storage
from dqn_tune.tuning.artifacts import (
    LEARNING_CURVE_PNG,
    make_artifact_store,
    upload_learning_curve,
)

RECORDS = [
    RunRecord(0, 20.0, (100, 200), (10.0, 20.0), 900.0, 0.5),
    RunRecord(1, 30.0, (100, 200), (15.0, 30.0), 950.0, 0.4),
]


def test_upload_learning_curve_attaches_a_png_to_the_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    store = make_artifact_store(url)
    assert (tmp_path / "artifacts").is_dir()
    study = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat=False))
    trial = study.ask()
    upload_learning_curve(trial, RECORDS, store)
    study.tell(trial, 25.0)

    [meta] = get_all_artifact_meta(study.trials[0], storage=study._storage)
    assert meta.filename == LEARNING_CURVE_PNG and meta.mimetype == "image/png"
    out = tmp_path / "downloaded.png"
    download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_make_artifact_store_reports_an_uncreatable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match=r"cannot create artifact directory .*file/artifacts"):
        make_artifact_store(f"sqlite:///{blocker / 'study.db'}")


WRITER = """
import os, sys, time
from pathlib import Path
from dqn_tune.tuning.artifacts import AtomicArtifactStore

class Endless:
    def read(self, size=-1):
        time.sleep(0.01)
        return b"x" * 4096

AtomicArtifactStore(Path(sys.argv[1])).write("checkpoint-1", Endless())
"""


def test_removing_an_artifact_removes_the_partial_copy_of_a_writer_killed_mid_write(tmp_path: Path) -> None:
    store = make_artifact_store(None, tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    try:
        deadline = time.monotonic() + 60
        while not any(path.stat().st_size for path in tmp_path.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.kill()  # SIGKILL mid-write: the writer's cleanup never runs
        writer.wait()
    assert [path.name.startswith(".checkpoint-1.") for path in tmp_path.iterdir()] == [True]
    with pytest.raises(ArtifactNotFound):  # the artifact itself was never published
        store.remove("checkpoint-1")
    assert list(tmp_path.iterdir()) == []
