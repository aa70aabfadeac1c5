"""TOML files the user names (`train --config`, `tune --search-space`): read within bounds, errors as one line.

The path may name anything: a device that never ends (/dev/zero), a FIFO that waits for a writer,
a file of gigabytes, or 100,000 nested brackets, on which the parser recurses until Python's limit.
Only a regular file of at most MAX_TOML_BYTES is read, and every parser error is a ConfigError.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

from dqn_tune.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MAX_TOML_BYTES = 1_000_000
"""The largest TOML file read (a full config or search space takes about 1 kB)."""


def read_toml(path: str | os.PathLike[str], *, what: str) -> dict[str, Any]:
    """The table of the TOML file at `path`; ConfigError beginning with `what` (e.g. "config file 'best.toml'")
    for what is not a regular file, is larger than MAX_TOML_BYTES, cannot be read, is not UTF-8 or not TOML."""
    cannot = f"cannot read {what}"
    try:  # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer (it is refused below)
        descriptor = os.open(Path(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{cannot}: {exc.strerror}; expected a TOML file") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket, not a regular file"
            raise ConfigError(f"{cannot}: it is {kind}; expected a TOML file")
        with open(descriptor, "rb", closefd=False) as handle:
            content = handle.read(MAX_TOML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{cannot}: {exc.strerror}; expected a TOML file") from None
    finally:
        os.close(descriptor)
    if len(content) > MAX_TOML_BYTES:
        raise ConfigError(f"{what} is larger than {MAX_TOML_BYTES} bytes; expected a TOML file of a few kB")
    try:
        data: dict[str, Any] = tomllib.loads(content.decode("utf-8"))
        return data
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{cannot}: it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} is not valid TOML: its arrays or tables nest too deeply") from None
