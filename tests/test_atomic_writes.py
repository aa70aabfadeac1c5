"""Every file the package writes is replaced atomically: each call that writes a file writes the temporary file of an
enclosing `with replacing(...) as temporary` (dqn_tune/output_paths.py), never the target itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dqn_tune

PACKAGE = Path(dqn_tune.__file__).parent
WRITERS = {
    "write_text",
    "write_bytes",
    "savefig",
    "write_html",
    "write_image",
    "mimsave",
    "imwrite",
    "save",
    "to_csv",
    "to_json",
    "dump",
}
"""Names of calls that write a file given to them (as receiver or argument)."""
HELPER = PACKAGE / "output_paths.py"


def writes_outside_replacing(tree: ast.AST) -> list[str]:
    """'line: call' of each call in `tree` that writes a file (WRITERS, or open() / .open() for writing) and does
    not write the temporary file of an enclosing `with replacing(...) as name`."""
    found: list[str] = []

    def visit(node: ast.AST, temporaries: frozenset[str]) -> None:
        if isinstance(node, ast.With | ast.AsyncWith):
            bound = {
                item.optional_vars.id
                for item in node.items
                if isinstance(item.context_expr, ast.Call)
                and _name(item.context_expr.func) == "replacing"
                and isinstance(item.optional_vars, ast.Name)
            }
            temporaries = temporaries | bound
        if isinstance(node, ast.Call) and _writes(node):
            touched = [node.func.value] if isinstance(node.func, ast.Attribute) else []
            touched += [*node.args, *(keyword.value for keyword in node.keywords)]
            if not any(isinstance(value, ast.Name) and value.id in temporaries for value in touched):
                found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
        for child in ast.iter_child_nodes(node):
            visit(child, temporaries)

    visit(tree, frozenset())
    return found


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _writes(call: ast.Call) -> bool:
    """Whether `call` writes a file: a WRITERS method (json.dump writes to a file object, also counted), or
    open(...) / path.open(...) with a mode that writes or creates ('w', 'x')."""
    name = _name(call.func)
    if name in WRITERS and isinstance(call.func, ast.Attribute):
        return True
    if name != "open":
        return False
    modes = [arg for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    modes += [keyword.value for keyword in call.keywords if keyword.arg == "mode"]
    return any(isinstance(mode, ast.Constant) and set(str(mode.value)) & {"w", "x"} for mode in modes)


@pytest.mark.parametrize(
    "path", sorted(p for p in PACKAGE.rglob("*.py") if p != HELPER), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_every_file_is_written_through_replacing(path: Path) -> None:
    assert writes_outside_replacing(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_check_finds_a_direct_write() -> None:
    source = (
        "def f(path, figure):\n    path.write_text('x')\n    with replacing(path) as tmp:\n"
        "        figure.savefig(tmp)\n        figure.savefig(path)\n    open(path, 'w')\n"
    )
    assert writes_outside_replacing(ast.parse(source)) == [
        "2: path.write_text('x')",
        "5: figure.savefig(path)",
        "6: open(path, 'w')",
    ]
