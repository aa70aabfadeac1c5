"""Files the tool writes (agents, videos, reports): check a path is writable before any work."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from dqn_tune.errors import OutputPathError, shown


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Return `path` as a Path if a file can be created there; else raise OutputPathError.

    An existing path must be a regular file: writers replace the file atomically (temp file + rename),
    which would put a regular file in place of a device such as /dev/null, a pipe or a socket.
    """
    quoted = shown(str(path))
    if not str(path) or "\0" in str(path):
        raise OutputPathError(f"output path {quoted} is invalid; expected a file path such as model.pt")
    target = Path(path)
    try:
        if target.is_dir() or not target.name or str(path).endswith(os.sep):
            raise OutputPathError(f"output path {quoted} is a directory; expected a file path such as model.pt")
        if target.exists() and not target.is_file():
            raise OutputPathError(f"output path {quoted} exists and is not a regular file (a device, pipe or "
                                  "socket); expected a file path such as model.pt")
        parent = target.parent if str(target.parent) else Path(".")
        parent.mkdir(parents=True, exist_ok=True)
        # named as save_agent's temp file, so a name too long for the file system is refused here, before any work
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{target.name}.", suffix=".tmp", delete=True):
            pass
    except OSError as exc:  # also a name too long to stat, a parent that is a file
        raise OutputPathError(f"cannot write output path {quoted}: {exc.strerror or exc}") from None
    return target


SAFE_NAME_MAX = 100
"""Longest file or folder name `safe_name` returns (well under the usual 255-byte limit, room for suffixes)."""
_UNSAFE = re.compile(r"[^\w.+=-]|^[.]", flags=re.ASCII)


def safe_name(name: str) -> str:
    """`name` as one file or folder name: itself when safe (ASCII letters, digits and ._+=-, not starting
    with a dot, at most SAFE_NAME_MAX characters), else a cleaned, shortened form made unique by a hash.

    Study and env names become paths (e.g. studies/reports/<study name>/); a name such as
    'ALE/Pong-v5', '..', or one of 1000 characters stays inside its folder this way.
    """
    if name and not _UNSAFE.search(name) and len(name) <= SAFE_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    cleaned = _UNSAFE.sub("_", name)[:SAFE_NAME_MAX - len(digest) - 1]
    return f"{cleaned}-{digest}"
