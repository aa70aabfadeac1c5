"""Storage faults a shared study meets: a database restarted mid-trial, a moment of too many clients, a host that
accepts connections and never answers (issue 25, items 3 and 4), an answer to a tell lost after it was written."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from itertools import pairwise
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
from scripts.fleet import PostgresServer, free_port, tune
from tests.runner.conftest import SilentHost, stored_trials, wait_until_training


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
    caplog: pytest.LogCaptureFixture,
) -> None:
    tries = []

    def call() -> None:
        tries.append(time.monotonic())
        raise refused()

    with caplog.at_level(logging.WARNING), pytest.raises(StorageError) as caught:
        retried(call, policy=RetryPolicy(timeout_s=2), where="'db'")
    gaps = [b - a for a, b in pairwise(tries)]
    assert len(tries) == 3 and gaps[0] >= 0.5 and gaps[1] >= 1.0, gaps  # each wait as announced (a loaded CPU: later)
    assert str(caught.value).startswith("storage 'db': connection to server at \"127.0.0.1\"")
    assert "Connection refused (failing for 2s; --storage-retry-timeout 2 sets how long it is retried)" in str(
        caught.value
    )
    assert [record.getMessage().split(";")[1] for record in caplog.records] == [
        " retrying in 0.5s (gives up after 2s)",
        " retrying in 1.0s (gives up after 2s)",
    ]


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
    """Optuna's storage of a database whose replies to the first tell, the first parameter, the first trial asked
    and the first trial queued are lost after they were written."""

    def __init__(self, url: str) -> None:
        super().__init__(RDBStorage(url))
        self.lose = {"tell", "param", "create RUNNING", "create WAITING"}

    def lost(self, call: str) -> None:
        if call in self.lose:
            self.lose.remove(call)
            raise refused()  # the connection dropped before the reply came

    def set_trial_state_values(self, trial_id, state, values=None):  # type: ignore[no-untyped-def]
        written = super().set_trial_state_values(trial_id, state, values)
        if state.is_finished():
            self.lost("tell")
        return written

    def set_trial_param(self, trial_id, param_name, param_value_internal, distribution):  # type: ignore[no-untyped-def]
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self.lost("param")

    def create_new_trial(self, study_id, template_trial=None):  # type: ignore[no-untyped-def]
        created = super().create_new_trial(study_id, template_trial)
        self.lost(f"create {self.get_trial(created).state.name}")
        return created


def test_a_call_whose_answer_was_lost_is_retried_and_counts_as_carried_out_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    opened = open_storage(url)
    study = optuna.create_study(
        storage=SharedStorage(AnswerLostOnce(url), opened.coordinator, url=url, retry=RetryPolicy(10)),
        direction="maximize",
    )
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)  # its retry writes x again: Optuna ignores the duplicate row
    study.tell(trial, 1.0)  # the retry finds the trial COMPLETE, as asked: done, not an error
    [told] = study.trials
    assert told.state == TrialState.COMPLETE and told.value == 1.0 and told.params == {"x": x}
    with pytest.raises(ValueError, match="Cannot tell a COMPLETE trial"):  # a second tell is still refused
        study.tell(trial, 2.0)
    study.enqueue_trial({"x": 0.5})  # its retry finds the trial the lost call queued
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.WAITING]
    assert study.ask().number == 1 and len(study.trials) == 2  # the queued one, not a third


@pytest.mark.slow
def test_postgres_down_for_5s_mid_trial_is_waited_for_and_the_study_completes(
    tmp_path: Path, private_postgres: PostgresServer
) -> None:
    """Issue 25 item 3: `pg_ctl -m fast stop; sleep 5; pg_ctl start` while a trial trains."""
    url, name = private_postgres.url, "restart"
    process = tune(
        tmp_path,
        "--storage",
        url,
        "--study-name",
        name,
        "--trials",
        "2",
        "--workers",
        "1",
        "--timesteps",
        "6000",
        "--eval-freq",
        "500",
        "--heartbeat-interval",
        "1",
        "--grace-period",
        "3",
    )
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
        (t.state, t.user_attrs.get(attributes.FAIL_REASON)) for t in trials
    ]


def test_too_many_clients_for_a_while_is_waited_for(
    private_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sqlalchemy.create_engine(private_postgres.url, poolclass=sqlalchemy.NullPool)
    crowd = []
    try:
        while True:  # every slot of the server, as a crowd of other clients would
            crowd.append(engine.connect())
    except sqlalchemy.exc.OperationalError as full:
        assert "too many clients" in str(full)
    leave = threading.Timer(2.0, lambda: [connection.close() for connection in crowd])
    leave.start()
    with caplog.at_level(logging.WARNING):
        storage = open_storage(private_postgres.url)
    leave.join()
    engine.dispose()
    assert optuna.get_all_study_names(storage) is not None
    storage.close()
    assert "FATAL:  sorry, too many clients already; retrying in 0.5s" in caplog.records[0].getMessage()
    assert caplog.records[-1].getMessage().startswith(f"storage {private_postgres.url!r}: answering again after ")


@pytest.mark.slow
def test_a_host_that_never_answers_is_given_up_naming_the_timeout(silent_host: SilentHost) -> None:
    """Issue 25 item 4: each connection attempt ends after the connect timeout; the retries after their bound."""
    url = f"postgresql+psycopg2://u@127.0.0.1:{silent_host.port}/db"
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        open_storage(url, retry=RetryPolicy(timeout_s=6))
    assert str(caught.value).startswith(
        f'storage {url!r}: connection to server at "127.0.0.1", port {silent_host.port} '
        "failed: timeout expired (failing for 1"
    )  # two tries of 5 s
    assert str(caught.value).endswith("s; --storage-retry-timeout 6 sets how long it is retried)")
    assert 2 * CONNECT_TIMEOUT_S <= time.monotonic() - started < 2 * CONNECT_TIMEOUT_S + 5


@pytest.mark.slow
def test_sigterm_is_honoured_while_the_host_never_answers(tmp_path: Path, silent_host: SilentHost) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dqn_tune",
            "report",
            "--storage",
            f"postgresql+psycopg2://u@127.0.0.1:{silent_host.port}/db",
        ],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not silent_host.accepted:  # until it waits for the host's answer
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(1)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    # within the connect attempt, not the 120 s retry budget; the slack is for exiting on a loaded machine
    assert time.monotonic() - sent <= CONNECT_TIMEOUT_S + 10
    assert process.returncode == 130 and err.endswith("dqn-tune: interrupted\n") and "Traceback" not in err, err
