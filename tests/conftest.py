"""Shared fixtures."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from dqn_tune.dqn.config import DQNConfig

POSTGRES_URL = os.environ.get("DQN_TUNE_TEST_POSTGRES_URL")
"""The test suite's shared PostgreSQL server (.ci/run starts it); tests that need it skip without it."""

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # A non-interactive shell starts background jobs (`.ci/run &`) with SIGINT ignored, and every command
    # these tests start would inherit that, so the tests of Ctrl-C would fail. exec resets a caught signal
    # to its default: catching it here gives the commands Python's usual KeyboardInterrupt again.
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def tiny_config() -> DQNConfig:
    """A CartPole config that trains in well under a second."""
    return DQNConfig(
        total_timesteps=600,
        learning_starts=100,
        batch_size=32,
        buffer_size=1_000,
        hidden_sizes=(16,),
        target_update_interval=50,
        eval_freq=200,
        eval_curve_episodes=2,
        eval_episodes=2,
    )


@pytest.fixture
def empty_database() -> Iterator[str]:
    """The URL of a new, empty database on the shared test server, dropped afterwards."""
    if POSTGRES_URL is None:
        pytest.skip("DQN_TUNE_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    name = f"dqn_tune_test_{uuid.uuid4().hex}"
    server = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
    with server.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()
