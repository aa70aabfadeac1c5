"""Trial checkpoints in the artifact store: a retry resumes from its predecessor's checkpoint with the same result,
ignores a damaged one with one warning, and no checkpoint outlives its trial."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import BinaryIO

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune import DQNConfig, train_seeds
from dqn_tune.dqn.checkpoint import Checkpointing
from dqn_tune.runner.attributes import FAIL_REASON
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_loop import INTERRUPTED
from dqn_tune.runner.trial_queue import ask_trial, fail_trials_of, first_try, process_name
from dqn_tune.tuning import records
from dqn_tune.tuning.artifacts import AtomicArtifactStore, make_artifact_store
from dqn_tune.tuning.checkpoints import TrialCheckpoints, retry_interrupted
from dqn_tune.tuning.objective import run_config
from dqn_tune.tuning.seeds import trial_seeds
from tests.tuning.test_faults import start, trials, wait_for

SEEDS = [5, 6]


@pytest.fixture
def config(tiny_config: DQNConfig) -> DQNConfig:
    return tiny_config.replace(total_timesteps=900, eval_freq=150)


def study_with_checkpoint(
    tmp_path: Path, config: DQNConfig, *, step: int, damage: bool = False, interrupted: bool = False
) -> tuple[optuna.Study, TrialCheckpoints, str]:
    """A study whose trial 0 left a checkpoint of step `step` of `config` on SEEDS (its first half only with
    `damage`): its worker died and its retry is queued, or with `interrupted` a stop signal failed it (no retry
    queued); (study, checkpoints, the checkpoint's artifact id)."""
    storage = open_storage(f"sqlite:///{tmp_path}/study.db", heartbeat_interval_s=1, grace_period_s=2)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    checkpoints = TrialCheckpoints(make_artifact_store(None, tmp_path / "artifacts"), every=300)
    first = ask_trial(study)
    written: dict[int, bytes] = {}
    train_seeds(
        config, SEEDS, checkpoints=Checkpointing(step, lambda path, at: written.setdefault(at, path.read_bytes()))
    )
    data = written[step][: len(written[step]) // 2] if damage else written[step]
    artifact = "checkpoint-of-trial-0"
    (tmp_path / "artifacts" / artifact).write_bytes(data)
    records.store_checkpoint(first, (artifact, step))
    if interrupted:
        first.set_user_attr(FAIL_REASON, INTERRUPTED)
        study.tell(first, state=TrialState.FAIL)
    else:
        [(failed, retry)] = fail_trials_of(study, process_name(), "its worker process was killed by SIGKILL")
        assert (failed, retry) == (0, 1)
    return study, checkpoints, artifact


def test_a_retry_resumes_from_its_predecessors_checkpoint_with_the_same_result(
    tmp_path: Path, config: DQNConfig
) -> None:
    study, checkpoints, artifact = study_with_checkpoint(tmp_path, config, step=450)
    retry = ask_trial(study)
    value = run_config(retry, config, SEEDS, checkpoints=checkpoints)
    never_killed = ask_trial(study)
    assert run_config(never_killed, config, SEEDS, checkpoints=checkpoints) == value
    resumed, unkilled = study.trials[1], study.trials[2]
    assert resumed.intermediate_values == unkilled.intermediate_values  # the checkpoint's evaluations reported too
    assert [(r.curve_returns, r.mean_return) for r in records.trial_runs(resumed)] == [
        (r.curve_returns, r.mean_return) for r in records.trial_runs(unkilled)
    ]
    resume = resumed.system_attrs[records.RESUME]
    assert resume["trial"] == 0 and resume["step"] == 450 and resume["env_steps_saved"] == 900
    assert resume["restarted_episodes"] == [] and resume["train_seconds_saved"] > 0
    assert resumed.user_attrs[records.RESUMED].startswith("from step 450 of trial 0: saved 900 env steps")
    assert records.RESUMED not in unkilled.user_attrs
    assert list((tmp_path / "artifacts").iterdir()) == []  # the predecessor's and its own, removed at the end
    assert records.trial_checkpoint(resumed) is not None and records.trial_checkpoint(resumed)[0] != artifact


def test_a_truncated_checkpoint_is_ignored_with_one_warning_and_the_retry_starts_from_step_0(
    tmp_path: Path, config: DQNConfig, caplog: pytest.LogCaptureFixture
) -> None:
    study, checkpoints, artifact = study_with_checkpoint(tmp_path, config, step=450, damage=True)
    with caplog.at_level(logging.WARNING):
        value = run_config(ask_trial(study), config, SEEDS, checkpoints=checkpoints)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.startswith(f"trial 1: checkpoint {artifact} of trial 0 ignored, training starts from step 0: ")
    assert "the file is not a readable dqn-tune checkpoint: it is not a torch zip archive (truncated" in warning
    assert "\n" not in warning
    retry = study.trials[1]
    assert retry.state == TrialState.RUNNING and retry.system_attrs[records.RESUME] is None
    assert retry.user_attrs[records.RESUMED].startswith("no, from step 0: ")
    assert value == run_config(ask_trial(study), config, SEEDS)  # as a run that never had a checkpoint
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_a_checkpoint_gone_from_the_artifact_store_is_ignored_with_one_warning(
    tmp_path: Path, config: DQNConfig, caplog: pytest.LogCaptureFixture
) -> None:
    study, checkpoints, artifact = study_with_checkpoint(tmp_path, config, step=300)
    (tmp_path / "artifacts" / artifact).unlink()  # the artifact store lost it
    with caplog.at_level(logging.WARNING):
        run_config(ask_trial(study), config, SEEDS, checkpoints=checkpoints)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.endswith("training starts from step 0: it is no longer in the artifact store")


def test_the_next_command_retries_a_trial_a_stop_signal_ended_and_it_resumes(tmp_path: Path, config: DQNConfig) -> None:
    study, checkpoints, _ = study_with_checkpoint(tmp_path, config, step=300, interrupted=True)
    assert retry_interrupted(study) == [0]
    assert retry_interrupted(study) == []  # queued once
    retry = ask_trial(study)
    assert retry.number == 1 and first_try(retry) == 0
    run_config(retry, config, SEEDS, checkpoints=checkpoints)
    assert study.trials[1].system_attrs[records.RESUME]["step"] == 300
    assert retry_interrupted(study) == []  # the interrupted trial is retried already


class DiesAt(AtomicArtifactStore):
    """The artifact store of a worker killed on its `at`-th checkpoint: once the new file is written, or while it
    removes the previous one (a KeyboardInterrupt, which keeps the trial's checkpoints for a retry, as a kill would)."""

    def __init__(self, directory: Path, point: str, at: int = 2) -> None:
        super().__init__(directory)
        self.point, self.at, self.writes = point, at, 0

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        super().write(artifact_id, content_body)
        self.writes += 1
        if self.point == "written" and self.writes == self.at:
            raise KeyboardInterrupt

    def remove(self, artifact_id: str) -> None:
        if self.point == "removing":
            raise KeyboardInterrupt
        super().remove(artifact_id)


@pytest.mark.parametrize(("point", "resumed_at"), [("written", 300), ("removing", 600)])
def test_a_retry_removes_every_checkpoint_a_worker_killed_mid_save_left(
    tmp_path: Path, config: DQNConfig, point: str, resumed_at: int
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/study.db", heartbeat_interval_s=1, grace_period_s=2)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    (tmp_path / "artifacts").mkdir()
    dying = TrialCheckpoints(DiesAt(tmp_path / "artifacts", point), every=300)
    with pytest.raises(KeyboardInterrupt):
        run_config(ask_trial(study), config, SEEDS, checkpoints=dying)
    assert len(list((tmp_path / "artifacts").iterdir())) == 2  # the checkpoints of steps 300 and 600
    [(_, retry)] = fail_trials_of(study, process_name(), "its worker process was killed by SIGKILL")
    assert retry == 1
    checkpoints = TrialCheckpoints(make_artifact_store(None, tmp_path / "artifacts"), every=300)
    run_config(ask_trial(study), config, SEEDS, checkpoints=checkpoints)
    assert study.trials[1].system_attrs[records.RESUME]["step"] == resumed_at
    assert list((tmp_path / "artifacts").iterdir()) == []


def test_a_trial_stopped_while_it_wrote_its_first_checkpoint_is_retried_and_the_file_removed(
    tmp_path: Path, config: DQNConfig
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path}/study.db", heartbeat_interval_s=1, grace_period_s=2)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    (tmp_path / "artifacts").mkdir()
    first = ask_trial(study)
    with pytest.raises(KeyboardInterrupt):
        run_config(
            first, config, SEEDS, checkpoints=TrialCheckpoints(DiesAt(tmp_path / "artifacts", "written", 1), 300)
        )
    first.set_user_attr(FAIL_REASON, INTERRUPTED)
    study.tell(first, state=TrialState.FAIL)
    assert records.trial_checkpoint(study.trials[0]) is None  # nothing to resume from, but a file to remove
    assert retry_interrupted(study) == [0]
    checkpoints = TrialCheckpoints(make_artifact_store(None, tmp_path / "artifacts"), every=300)
    run_config(ask_trial(study), config, SEEDS, checkpoints=checkpoints)
    assert study.trials[1].user_attrs[records.RESUMED].startswith("no, from step 0: ")
    assert list((tmp_path / "artifacts").iterdir()) == []


@pytest.mark.slow
def test_a_trial_whose_worker_is_sigkilled_at_60_percent_resumes_and_ends_as_if_never_killed(tmp_path: Path) -> None:
    # two workers for one trial: the parent sees the trial's worker die, fails the trial and queues its retry,
    # which a replacement worker runs
    process = start(
        tmp_path,
        "--trials",
        "1",
        "--workers",
        "2",
        "--timesteps",
        "8000",
        "--checkpoint-every",
        "800",
        "--eval-freq",
        "800",
        "--grace-period",
        "600",
        "--trial-seeds",
        "2",
    )

    def checkpoint_step() -> int:
        running = [t for t in trials(tmp_path) if t.state == TrialState.RUNNING]
        stored = records.trial_checkpoint(running[0]) if running else None
        return 0 if stored is None else stored[1]

    # 3,200 steps left after the kill point, so that a polling test starved by a loaded machine still kills the
    # worker mid-trial (1,600 were too few: the trial had ended when the kill came)
    wait_for(lambda: checkpoint_step() >= 4800, process)
    victim = int(trials(tmp_path)[0].system_attrs["worker"].rsplit(":", 1)[1])
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr  # the command reports the death
    killed, retry = trials(tmp_path)
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE, stdout
    resume = retry.system_attrs[records.RESUME]
    assert resume["trial"] == 0 and 4800 <= resume["step"] < 8000 and resume["env_steps_saved"] == 2 * resume["step"]
    # the same run never killed, here: the retry's stored config on trial 0's seeds
    config = records.trial_config(retry)
    seeds = trial_seeds(0, 0, 2)
    unkilled = train_seeds(config, seeds)
    assert retry.value == sum(result.mean_return for result in unkilled) / 2
    assert [(r.curve_steps, r.curve_returns, r.mean_return, r.selected_step) for r in records.trial_runs(retry)] == [
        (tuple(p.step for p in u.curve), tuple(p.mean_return for p in u.curve), u.mean_return, u.selected_step)
        for u in unkilled
    ]
    assert not any((tmp_path / "studies" / "artifacts").iterdir())
