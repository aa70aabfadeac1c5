"""Storage URLs: the SQLite file a URL names, and a URL as the tool prints it (password hidden)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL (None for other backends or in-memory SQLite)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def public_url(url: str) -> str:
    """`url` with its password hidden, for everything the tool prints or stores."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy can parse (e.g. a port that is not a number)
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)
