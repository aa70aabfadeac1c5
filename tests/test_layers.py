"""The package's layers import only downwards: utilities <- dqn <- plots <- tuning <- results <- cli, and the
generic study runner (runner/) sits below tuning beside the core, knowing nothing of DQN. dqn-tune's own
gymnasium envs (envs/) are utilities: they import nothing of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dqn_tune

PACKAGE = Path(dqn_tune.__file__).parent
LAYERS = {"utilities": 0, "envs": 0, "dqn": 1, "runner": 1, "plots": 2, "tuning": 3, "results": 4, "cli": 5}
UTILITIES = {"errors", "versions", "output_paths", "toml_files"}


def layer_of(module: str) -> int | None:
    """The layer of a dqn_tune module name (None for the package root and __main__)."""
    parts = module.split(".")
    if parts[0] != "dqn_tune" or len(parts) < 2:
        return None
    if parts[1] in UTILITIES:
        return LAYERS["utilities"]
    return LAYERS.get(parts[1])


def imports(path: Path) -> set[str]:
    """Every module a source file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.stem not in ("__init__", "__main__") or p.parent != PACKAGE)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    module = "dqn_tune." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    own = layer_of(module)
    assert own is not None
    upward = sorted(name for name in imports(path) if (layer := layer_of(name)) is not None and layer > own)
    assert upward == [], f"{module} imports from a higher layer: {upward}"


def test_the_rl_core_never_imports_optuna() -> None:
    core = [p for p in SOURCES if p.relative_to(PACKAGE).parts[0] == "dqn"]  # networks/ included
    assert core and all(not any(name.split(".")[0] == "optuna" for name in imports(p)) for p in core)


def test_the_runner_knows_nothing_of_dqn() -> None:
    runner = [p for p in SOURCES if p.parent.name == "runner"]
    assert runner and all(
        layer_of(name) in (None, LAYERS["utilities"]) or name.startswith("dqn_tune.runner")
        for p in runner
        for name in imports(p)
    ), "runner/ imports DQN code"
