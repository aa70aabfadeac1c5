"""Trial checkpoints in the study's artifact store: a retried trial resumes from its predecessor's latest checkpoint.

A trial's group run (`train_seeds`: the trial's seeds, or a validation batch whose seeds are trials
of their own) saves a checkpoint every `every` env steps (dqn/checkpoint.py). Each goes into the
artifact store under a fresh id, written whole by the store (the file-system store writes a temp
file and renames it), is recorded on the group's trials (records.CHECKPOINT), and only then is the
previous one removed: the store always holds one complete checkpoint per running group. The new id
is named on the trials before it is written, and the previous one until it is removed, so a worker
killed at any point leaves no file that its retry cannot find and remove.

A retry (the runner queues one when a worker dies or a heartbeat goes stale, naming the trial it
retries) reads its predecessor's CHECKPOINT as stored now, downloads it and resumes from it; a
damaged, truncated or foreign checkpoint is ignored with one warning line and the run starts from
step 0. The trial's RESUMED attributes say what happened. The checkpoint is removed when the
objective ends (a value, pruned, an error); a killed process or a stop signal keeps it for a retry:
the next command queues a retry of a trial that a stop signal ended (`retry_interrupted`).

Checkpoints are written with the store's own `write` rather than `optuna.artifacts.upload_artifact`:
that also lists each upload among the trial's artifacts (a system attribute per upload, which Optuna
cannot delete and which a retry inherits), so a trial would show a dead link per removed checkpoint.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from dqn_tune.dqn.checkpoint import Checkpoint, Checkpointing, read_checkpoint
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import CheckpointError
from dqn_tune.runner.attributes import FAIL_REASON
from dqn_tune.runner.storage import StorageSettings
from dqn_tune.runner.trial_loop import INTERRUPTED
from dqn_tune.runner.trial_queue import predecessor, queue_retry, retried_trials
from dqn_tune.tuning import records
from dqn_tune.tuning.artifacts import study_artifact_store

LOGGER = logging.getLogger(__name__)
R = TypeVar("R")
KEEP_ON = (KeyboardInterrupt, UpdateFinishedTrialError)
"""How an objective ends when a retry may follow: a stop signal, or another process failed the trial (a stale
heartbeat) and queued its retry, which may be resuming from the checkpoint already."""


@dataclass(frozen=True, slots=True)
class TrialCheckpoints:
    """Where a job's trials keep their checkpoints, and how often they write one (picklable)."""

    store: FileSystemArtifactStore
    every: int
    """Env steps between two checkpoints (0: none written; a retry still resumes from one it finds)."""


def retry_interrupted(study: optuna.Study) -> list[int]:
    """Queue a retry of each trial that a stop signal ended (Ctrl-C, SIGTERM: a cluster's time limit or preemption)
    and that left a checkpoint, unless one is queued already, so that this command resumes it; the numbers of the
    trials retried. Call under the study lock."""
    retried = retried_trials(study)
    interrupted = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if trial.user_attrs.get(FAIL_REASON) == INTERRUPTED
        and trial.number not in retried
        and records.checkpoint_artifacts(trial)
    ]
    for trial in interrupted:
        queue_retry(study, trial)
    return [trial.number for trial in interrupted]


def job_checkpoints(
    storage: StorageSettings, study_name: str, artifact_dir: str | None, *, every: int, artifacts: bool
) -> TrialCheckpoints | None:
    """A job's checkpoints, in the artifact store of the study `study_name` (`artifact_dir` if given); None when the
    job keeps no artifacts and writes no checkpoints."""
    if not artifacts and every == 0:
        return None
    return TrialCheckpoints(study_artifact_store(storage, study_name, artifact_dir), every)


def train_checkpointed(
    trials: Sequence[optuna.Trial],
    config: DQNConfig,
    seeds: Sequence[int],
    checkpoints: TrialCheckpoints | None,
    train: Callable[[Checkpointing | None], R],
    *,
    on_resume: Callable[[Checkpoint], None] | None = None,
) -> R:
    """`train(checkpointing)`: the group run of `trials` (`config` on `seeds`), resumed from the predecessors'
    checkpoint when there is one that fits (then `on_resume(checkpoint)` before the next step), saving checkpoints
    as it goes; they are removed afterwards unless the run ended in a way that a retry may follow (KEEP_ON)."""
    if checkpoints is None:
        return train(None)
    group = _Group(trials, config, seeds, checkpoints)
    try:
        resume = group.resume()
        try:
            result = train(group.checkpointing(resume, on_resume))
        except CheckpointError as exc:  # raised before the first step: it does not fit the run
            group.ignore(str(exc))
            result = train(group.checkpointing(None, None))
    except KEEP_ON:
        raise
    except BaseException:
        group.remove()
        raise
    group.remove()
    return result


class _Group:
    """The checkpoints of one group run, whose members belong to `trials`."""

    def __init__(
        self, trials: Sequence[optuna.Trial], config: DQNConfig, seeds: Sequence[int], settings: TrialCheckpoints
    ) -> None:
        self.trials, self.config, self.seeds, self.settings = list(trials), config, list(seeds), settings
        # the predecessors' checkpoints become this group's: removed when it is done with them
        predecessors = [predecessor(trial) for trial in trials]
        self.retried = [None if before is None else before.number for before in predecessors]
        found = [None if before is None else records.trial_checkpoint(before) for before in predecessors]
        self.owned = {
            name for before in predecessors if before is not None for name in records.checkpoint_artifacts(before)
        }
        self.latest = found[0] if found[0] is not None and len(set(found)) == 1 else None
        """The one checkpoint every trial's predecessor holds (a group resumes only as the same group), until this
        group writes its own: (artifact id, step)."""
        self.source = None if self.latest is None else self.latest[0]

    def resume(self) -> Checkpoint | None:
        """The predecessors' checkpoint, read and checked, or None (with a warning if it could not be used)."""
        if self.source is None:
            if any(number is not None for number in self.retried):
                for trial in self.trials:
                    records.store_not_resumed(trial, "the trial it retries left no checkpoint for this group")
            return None
        try:
            with tempfile.TemporaryDirectory(prefix="dqn_tune_resume_") as directory:
                path = Path(directory) / "checkpoint.pt"
                download_artifact(artifact_store=self.settings.store, file_path=str(path), artifact_id=self.source)
                checkpoint = read_checkpoint(path, config=self.config.to_dict(), seeds=self.seeds, name="the file")
        except ArtifactNotFound:
            self.ignore("it is no longer in the artifact store")
            return None
        except (CheckpointError, OSError) as exc:
            self.ignore(str(exc))
            return None
        return checkpoint

    def ignore(self, reason: str) -> None:
        """Say once that the predecessors' checkpoint is not used, and why."""
        self.latest = None
        LOGGER.warning(
            "trial %s: checkpoint %s of trial %s ignored, training starts from step 0: %s",
            ", ".join(str(t.number) for t in self.trials),
            self.source,
            ", ".join(str(n) for n in self.retried if n is not None),
            reason,
        )
        for trial in self.trials:
            records.store_not_resumed(trial, reason)

    def checkpointing(self, resume: Checkpoint | None, then: Callable[[Checkpoint], None] | None) -> Checkpointing:
        """train_seeds' checkpoints: save into the store every `every` steps; resume from `resume`, record it on the
        trials and call `then`."""

        def resumed(checkpoint: Checkpoint) -> None:
            for trial, before in zip(self.trials, self.retried, strict=True):
                records.store_resume(
                    trial, trial_number=before, checkpoint=checkpoint, members=len(self.seeds) // len(self.trials)
                )
            if then is not None:
                then(checkpoint)

        return Checkpointing(self.settings.every, self.save, resume, resumed)

    def save(self, path: Path, step: int) -> None:
        """Put the checkpoint file in the store under a new id, record it on the trials, remove the previous ones."""
        artifact = f"checkpoint-{uuid.uuid4()}"
        self._record(self.owned | {artifact})
        with path.open("rb") as handle:  # a full disk fails the trial, as for its learning-curve PNG
            self.settings.store.write(artifact, handle)
        self.latest = (artifact, step)
        self._record(self.owned)
        self.remove()
        self.owned = {artifact}

    def _record(self, others: set[str]) -> None:
        """Record the latest checkpoint on the trials, with the other ids the store may hold for them."""
        for trial in self.trials:
            records.store_checkpoint(trial, self.latest, others)

    def remove(self) -> None:
        """Remove the checkpoints this group holds (a missing one is already gone)."""
        for artifact in sorted(self.owned):
            try:
                self.settings.store.remove(artifact)
            except ArtifactNotFound:
                pass
            except OSError as exc:
                LOGGER.warning("checkpoint %s not removed from the artifact store: %s", artifact, exc.strerror or exc)
        self.owned = set()
