"""Files the tool writes (agents, videos, reports): check a path is writable before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dqn_tune.errors import OutputPathError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Return `path` as a Path if a file can be created there; else raise OutputPathError."""
    target = Path(path)
    if target.is_dir() or not target.name:
        raise OutputPathError(f"output path {str(target)!r} is a directory; expected a file path such as model.pt")
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=parent, prefix=".write-check-", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputPathError(f"cannot write output path {str(target)!r}: {exc.strerror or exc}") from exc
    return target
