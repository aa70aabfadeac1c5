"""Files the tool writes (agents, videos, reports, configs): check a path is writable before any work, and
replace a file atomically (`replacing`, `write_text`): every writer goes through them."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

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
            raise OutputPathError(
                f"output path {quoted} exists and is not a regular file (a device, pipe or "
                "socket); expected a file path such as model.pt"
            )
        parent = target.parent if str(target.parent) else Path(".")
        parent.mkdir(parents=True, exist_ok=True)
        # named as `replacing` names its temp file, so a name too long for the file system is refused here,
        # before any work
        descriptor, temporary = _temporary_file(parent, target)
        os.close(descriptor)
        os.unlink(temporary)
    except OSError as exc:  # also a name too long to stat, a parent that is a file
        raise OutputPathError(f"cannot write output path {quoted}: {exc.strerror or exc}") from None
    return target


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new temporary file beside `path` for the block to write; when the block succeeds, the file is
    flushed to disk and renamed over `path`, else removed. `path` thus holds its old content or the whole new
    content, never a part (disk full, a file size limit, a crash or Ctrl-C half-way).

    The temporary name ends with `path`'s suffix, for writers that choose a format by it (matplotlib, imageio).
    The file gets the mode of the file it replaces (a new one: rw-r--r--). An OSError is an OutputPathError
    naming `path` and the cause.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        descriptor, name = _temporary_file(parent, target)
    except OSError as exc:
        _refuse_write(target, exc)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        _flush_to_disk(temporary)
        temporary.chmod(target.stat().st_mode & 0o7777 if target.is_file() else 0o644)
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        _refuse_write(target, exc)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace the file at `path` by `text` (UTF-8) atomically, as `replacing` does; return the path."""
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def _temporary_file(parent: Path, target: Path) -> tuple[int, str]:
    """A new hidden file in `parent` named after `target` and ending with its suffix: (descriptor, path)."""
    return tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")


def leftover_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files `replacing` made for `path` and never renamed or removed: a writer killed mid-write
    (SIGKILL runs no cleanup) leaves one."""
    target = Path(path)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*.tmp{glob.escape(target.suffix)}"))


def _flush_to_disk(path: Path) -> None:
    """fsync `path`, so that the rename never publishes a file whose data is still only in the page cache."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _refuse_write(target: Path, exc: OSError) -> NoReturn:
    """Raise the one-line OutputPathError for an OSError met while writing `target`, caused by that OSError as
    about `target` (not the temporary file): callers can tell a full disk from other faults by its errno."""
    advice = {
        errno.ENOSPC: "disk full: free space there or choose another path",
        errno.EDQUOT: "disk quota exceeded: free space there or choose another path",
        errno.EFBIG: "the file size limit (ulimit -f) is too small for it",
    }.get(exc.errno or 0)
    raise OutputPathError(
        f"cannot write {shown(str(target))}: {exc.strerror or exc}"
        + (f" ({advice})" if advice else "")
        + "; the file there, if any, is unchanged"
    ) from OSError(exc.errno, exc.strerror, str(target))


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
    cleaned = _UNSAFE.sub("_", name)[: SAFE_NAME_MAX - len(digest) - 1]
    return f"{cleaned}-{digest}"
