"""The storage proxy: its study lock holds against direct clients too and ends with its holder's lease, heartbeats
through it fail a lost worker's trial, the first start of several commands through it is serialised, and workers
sharing a study through it wait for it to restart."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune.cli.storage_proxy import exposure
from dqn_tune.runner import attributes
from dqn_tune.runner.optuna_internals import fail_stale_trials
from dqn_tune.runner.proxy import LEASE_S, LeaseLocks, ProxyCoordinator, serve
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_queue import ask_trial, process_name
from dqn_tune.runner.workers import run_in_processes
from dqn_tune.tuning import records
from scripts.fleet import TINY, free_port, storage_proxy, tune
from tests.runner.conftest import wait_until_training
from tests.tuning.test_postgres import start_together

Proxy = Callable[..., str]


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    """`start(database_url, port=0) -> "grpc://127.0.0.1:PORT"`: a `dqn-tune storage-proxy` process; stopped after,
    when it must exit 0 without a traceback (`storage_proxy` raises otherwise)."""
    with ExitStack() as stack:

        def start(url: str, port: int = 0) -> str:
            return stack.enter_context(storage_proxy(url, port=port))[0]

        yield start


def stop(proxy_process_address: str) -> None:
    """SIGTERM the proxy listening at the address (found by its port among this test's children)."""
    port = proxy_process_address.rsplit(":", 1)[1]
    for pid in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
        if f"--port\0{port}\0".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(int(pid), signal.SIGTERM)


def test_the_host_warning_names_what_a_public_address_exposes() -> None:
    assert exposure("127.0.0.1") is None and exposure("::1") is None and exposure("localhost") is None
    assert "can read, change and delete every study" in exposure("0.0.0.0")  # type: ignore[operator]


def test_the_study_lock_through_the_proxy_holds_against_direct_clients_and_ends_with_its_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    database = open_storage(url)
    server, port, locks = serve(open_storage(url, pool_size=4), host="127.0.0.1", port=0)
    try:
        client = open_storage(f"grpc://127.0.0.1:{port}")
        with client.coordinator.lock("study"):
            assert database.coordinator.try_lock("study") is None  # a process using the database directly waits
        held = database.coordinator.try_lock("study")
        assert held is not None
        held.close()
        silent = ProxyCoordinator(
            "127.0.0.1", port, retry=RetryPolicy(), heartbeat_interval_s=None, grace_period_s=2, where="proxy"
        )
        assert silent._call("Acquire", name="study", holder="a process that dies now", lease_s=1.0) == -1
        started = time.monotonic()
        with client.coordinator.lock("study"):  # waits for the dead holder's lease to end
            waited = time.monotonic() - started
        assert 0.5 < waited < 1.0 + 3  # its lease, then the expiry sweep (every second)
        assert LEASE_S >= 4 * 2.5  # a live holder renews every LEASE_S / 4
    finally:
        server.stop(grace=None)
        locks.close()


def test_a_lock_through_the_proxy_goes_to_the_longest_waiting_client(tmp_path: Path) -> None:
    locks = LeaseLocks(open_storage(f"sqlite:///{tmp_path}/s.db").coordinator)  # type: ignore[arg-type]
    try:
        assert [locks.acquire("study", holder, 10) for holder in "abc"] == [-1, 0, 1]  # a holds it; b, c wait
        locks.release("study", "a")
        assert locks.acquire("study", "c", 10) == 1  # b asked first
        assert locks.acquire("study", "b", 10) == -1 and locks.acquire("study", "a", 10) == 1
    finally:
        locks.close()


def ask_and_die(address: str, study_name: str) -> None:
    """A worker on another machine: takes a trial through the proxy, records its first heartbeat, and is lost."""
    study = optuna.load_study(
        study_name=study_name, storage=open_storage(address, heartbeat_interval_s=1, grace_period_s=2)
    )
    trial = ask_trial(study)
    assert trial is not None
    trial.suggest_float("x", 0, 1)
    os.kill(os.getpid(), signal.SIGKILL)


def test_heartbeats_through_the_proxy_fail_a_lost_workers_trial_and_queue_its_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    server, port, locks = serve(open_storage(url, pool_size=4), host="127.0.0.1", port=0)
    try:
        address = f"grpc://127.0.0.1:{port}"
        study = optuna.create_study(
            study_name="s",
            direction="maximize",
            storage=open_storage(address, heartbeat_interval_s=1, grace_period_s=2),
        )
        run_in_processes(ask_and_die, [(address, "s")], on_death=lambda *_: None)
        [lost] = study.get_trials()
        assert lost.state == TrialState.RUNNING and lost.system_attrs[attributes.WORKER] != process_name()
        fail_stale_trials(study)
        assert study.get_trials()[0].state == TrialState.RUNNING  # within the grace period: maybe alive
        time.sleep(3)
        fail_stale_trials(study)
        failed, retry = study.get_trials()
        assert failed.state == TrialState.FAIL and failed.user_attrs[attributes.FAIL_REASON] == (
            "no heartbeat for over 2s: its worker process died or hung"
        )
        assert retry.state == TrialState.WAITING and retry.system_attrs[attributes.RETRY_OF] == 0
        assert retry.params == failed.params
    finally:
        server.stop(grace=None)
        locks.close()


@pytest.mark.slow
def test_the_first_start_of_three_commands_through_the_proxy_is_one_at_a_time(
    tmp_path: Path, proxy: Proxy, empty_database: str
) -> None:
    """Two budgets started at once on an empty database through the proxy: the study is created once, and the
    commands of the other budget are refused before writing anything (the proxy serves the study lock)."""
    address = proxy(empty_database)
    args = ["--storage", address, "--study-name", "fresh", "--trials", "1", *TINY]
    commands = [[*args, "--timesteps", "600"], [*args, "--timesteps", "600"], [*args, "--timesteps", "700"]]
    machines = start_together(commands, tmp_path)
    outputs = [machine.communicate(timeout=300) for machine in machines]
    codes = [machine.returncode for machine in machines]
    study = optuna.load_study(study_name="fresh", storage=empty_database)
    budget = study.user_attrs[records.SETTINGS_ATTR]["total_timesteps"]
    winners = [index for index, command in enumerate(commands) if command[-1] == str(budget)]
    assert [code == 0 for code in codes] == [index in winners for index in range(3)], outputs
    assert all("was run with total_timesteps = " in outputs[index][1] for index in range(3) if index not in winners)
    assert len(study.trials) == len(winners) == len(study.user_attrs[records.COMMANDS_ATTR])
    assert all(records.trial_config(t).total_timesteps == budget for t in study.trials)
    starts = sorted(
        re.search(r"^(created|resuming) study", outputs[index][0], re.MULTILINE).group(1)  # type: ignore[union-attr]
        for index in winners
    )
    assert starts == ["created", "resuming"][: len(winners)]


@pytest.mark.slow
def test_workers_share_a_study_through_the_proxy_and_wait_for_it_to_restart(tmp_path: Path, proxy: Proxy) -> None:
    database = f"sqlite:///{tmp_path}/s.db"
    port = free_port()
    address = proxy(database, port)
    process = tune(
        tmp_path,
        "--storage",
        address,
        "--study-name",
        "s",
        "--trials",
        "3",
        "--workers",
        "2",
        "--timesteps",
        "3000",
        "--eval-freq",
        "500",
    )
    wait_until_training(database, "s", process)
    stop(address)
    time.sleep(3)
    proxy(database, port)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"  # a string: pytest shows it whole
    assert "retrying in" in err and "answering again after" in err and "Traceback" not in err, err
    trials = optuna.load_study(study_name="s", storage=database).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({t.system_attrs[attributes.WORKER] for t in trials}) == 2
