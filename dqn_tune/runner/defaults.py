"""The runner's defaults that users see (storage URL, heartbeat timing), importable without optuna or SQLAlchemy,
so that the CLI can show them in its help without loading either."""

from __future__ import annotations

DEFAULT_STORAGE = "sqlite:///studies/dqn_tune.db"
HEARTBEAT_INTERVAL_S = 5
"""Seconds between a running trial's heartbeats."""
GRACE_PERIOD_S = 20
"""Seconds without a heartbeat after which a RUNNING trial counts as dead (its worker was killed)."""
RETRY_TIMEOUT_S = 120
"""How long a transient storage error may last before a command gives up (--storage-retry-timeout)."""
