"""Versions of the libraries a result depends on, recorded in saved agents and studies."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("dqn-tune", "torch", "gymnasium", "numpy", "optuna", "optuna-dashboard")


def library_versions() -> dict[str, str]:
    """Python's and each installed library's version (read from package metadata, nothing imported)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
