"""Open a storage that must already exist, for commands that only look at studies (dashboard, report)."""

from __future__ import annotations

from optuna.storages import RDBStorage

from dqn_tune.errors import StorageError
from dqn_tune.tuning.storage import open_storage, prepare_url, sqlite_path


def open_existing_storage(url: str | None) -> RDBStorage:
    """Open `url` without heartbeats; a SQLite file that does not exist is a StorageError, not a new database."""
    url = prepare_url(url)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StorageError(f"no SQLite database at {str(path)!r} (storage {url!r}); check --storage, "
                           "or create a study first with 'dqn-tune tune'")
    return open_storage(url, heartbeat=False)
