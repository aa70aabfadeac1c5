"""Storage faults a shared study meets: a database restarted mid-trial, a moment of too many clients, a host that
accepts connections and never answers (issue 25, items 3 and 4), an answer to a tell lost after it was written."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage, _CachedStorage
from optuna.trial import TrialState

from dqn_tune.errors import StorageError
from dqn_tune.runner import attributes
from dqn_tune.runner.retry import RetryPolicy, cause, is_transient, retried
from dqn_tune.runner.shared_storage import SharedStorage
from dqn_tune.runner.storage import CONNECT_TIMEOUT_S, open_storage
from tests.runner.conftest import PrivateServer, free_port, tune


def refused() -> sqlalchemy.exc.OperationalError:
    """The real error of connecting to a port where nothing listens."""
    engine = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
            engine.connect()
    finally:
        engine.dispose()
    return caught.value


def test_connection_refused_is_transient_and_a_file_that_is_not_a_database_is_not(tmp_path: Path) -> None:
    error = refused()
    assert is_transient(error) and "Connection refused" in cause(error)
    (tmp_path / "bad.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StorageError) as caught:
        open_storage(f"sqlite:///{tmp_path}/bad.db")
    assert not is_transient(caught.value) and "file is not a database" in str(caught.value)


def test_a_transient_error_is_retried_with_a_line_then_given_up_naming_its_cause(
        caplog: pytest.LogCaptureFixture) -> None:
    tries = []

    def call() -> None:
        tries.append(time.monotonic())
        raise refused()

    with caplog.at_level(logging.WARNING), pytest.raises(StorageError) as caught:
        retried(call, policy=RetryPolicy(timeout_s=2), where="'db'")
    assert len(tries) == 3 and [round(b - a, 1) for a, b in zip(tries, tries[1:])] == [0.5, 1.0]
    assert str(caught.value).startswith("storage 'db': connection to server at \"127.0.0.1\"")
    assert "Connection refused (failing for 2s; --storage-retry-timeout 2 sets how long it is retried)" in str(
        caught.value)
    assert [record.getMessage().split(";")[1] for record in caplog.records] == [" retrying in 0.5s (gives up after 2s)",
                                                                               " retrying in 1.0s (gives up after 2s)"]


def test_a_call_that_recovers_returns_its_result_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    tries = []

    def call() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise refused()
        return "done"

    with caplog.at_level(logging.WARNING):
        assert retried(call, policy=RetryPolicy(timeout_s=10), where="'db'") == "done"
    assert caplog.records[-1].getMessage().startswith("storage 'db': answering again after 1.")


class AnswerLostOnce(_CachedStorage):
    """Optuna's storage of a database whose reply to the first tell is lost after the tell was written."""

    def __init__(self, url: str) -> None:
        super().__init__(RDBStorage(url))
        self.lose = True

    def set_trial_state_values(self, trial_id, state, values=None):  # type: ignore[no-untyped-def]
        written = super().set_trial_state_values(trial_id, state, values)
        if self.lose and state.is_finished():
            self.lose = False
            raise refused()  # the connection dropped before the reply came
        return written


def test_a_tell_whose_answer_was_lost_is_retried_and_counts_as_told_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    opened = open_storage(url)
    study = optuna.create_study(storage=SharedStorage(AnswerLostOnce(url), opened.coordinator, url=url,
                                                      retry=RetryPolicy(10)), direction="maximize")
    trial = study.ask()
    study.tell(trial, 1.0)  # the retry finds the trial COMPLETE, as asked: done, not an error
    [told] = study.trials
    assert told.state == TrialState.COMPLETE and told.value == 1.0
    with pytest.raises(ValueError, match="Cannot tell a COMPLETE trial"):  # a second tell is still refused
        study.tell(trial, 2.0)


def stored_trials(url: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read over one connection closed afterwards (the server has few)."""
    storage = RDBStorage(url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool})
    try:
        if study_name not in optuna.get_all_study_names(storage):
            return []
        return optuna.load_study(study_name=study_name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def wait_until_training(url: str, study_name: str, process: object, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not any(t.state == TrialState.RUNNING and t.intermediate_values for t in stored_trials(url, study_name)):
        assert process.poll() is None, process.communicate()  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "no trial started training"
        time.sleep(0.2)


@pytest.mark.slow
def test_postgres_down_for_5s_mid_trial_is_waited_for_and_the_study_completes(
        tmp_path: Path, private_postgres: PrivateServer) -> None:
    """Issue 25 item 3: `pg_ctl -m fast stop; sleep 5; pg_ctl start` while a trial trains."""
    url, name = private_postgres.url, "restart"
    process = tune(tmp_path, "--storage", url, "--study-name", name, "--trials", "2", "--workers", "1",
                   "--timesteps", "6000", "--eval-freq", "500", "--heartbeat-interval", "1", "--grace-period", "3")
    wait_until_training(url, name, process)
    private_postgres.stop()
    time.sleep(5)
    private_postgres.start()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "retrying in" in err and "answering again after" in err, err
    assert "study 'restart': 2 trials run" in out
    trials = stored_trials(url, name)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE], [
        (t.state, t.user_attrs.get(attributes.FAIL_REASON)) for t in trials]


@pytest.mark.slow
def test_too_many_clients_for_a_while_is_waited_for(tmp_path: Path, private_postgres: PrivateServer) -> None:
    engine = sqlalchemy.create_engine(private_postgres.url, poolclass=sqlalchemy.NullPool)
    hogs = []
    try:
        while True:  # every slot of the server, as a crowd of other clients would
            hogs.append(engine.connect())
    except sqlalchemy.exc.OperationalError as full:
        assert "too many clients" in str(full)
    process = tune(tmp_path, "--storage", private_postgres.url, "--study-name", "crowd", "--trials", "1",
                   "--timesteps", "600")
    time.sleep(12)  # past the start: the command waits for a free connection
    for hog in hogs:
        hog.close()
    engine.dispose()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "too many clients already; retrying in" in err and "Traceback" not in err, err
    assert [t.state for t in stored_trials(private_postgres.url, "crowd")] == [TrialState.COMPLETE]


@pytest.mark.slow
def test_a_host_that_never_answers_is_given_up_with_one_line(tmp_path: Path, silent_host: int) -> None:
    """Issue 25 item 4: each connection attempt ends after the connect timeout; the retries after the bound."""
    started = time.monotonic()
    process = tune(tmp_path, "--storage", f"postgresql+psycopg2://u@127.0.0.1:{silent_host}/db", "--trials", "1",
                   "--storage-retry-timeout", "6")
    out, err = process.communicate(timeout=120)
    *waits, error = err.splitlines()
    assert process.returncode == 2 and waits and all("timeout expired; retrying in" in line for line in waits), err
    assert error.startswith(f"dqn-tune: error: storage 'postgresql+psycopg2://u@127.0.0.1:{silent_host}/db': "
                            f"connection to server at \"127.0.0.1\", port {silent_host} failed: timeout expired "
                            "(failing for 1"), error  # two tries of 5 s
    assert error.endswith("s; --storage-retry-timeout 6 sets how long it is retried)")
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_sigterm_is_honoured_while_the_host_never_answers(tmp_path: Path, silent_host: int) -> None:
    process = tune(tmp_path, "--storage", f"postgresql+psycopg2://u@127.0.0.1:{silent_host}/db", "--trials", "1")
    time.sleep(8)  # the command is connecting by now (the first attempt ends after 5 s, then it retries)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert time.monotonic() - sent <= CONNECT_TIMEOUT_S + 2
    assert process.returncode == 130 and err.endswith("dqn-tune: interrupted\n") and "Traceback" not in err, err
