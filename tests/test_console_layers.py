"""The console reads through the same services as the API (docs/architecture.md,
principle 13): no module of the console package builds a query. A parallel query layer
there (the one ``console/queries.py`` was) fails this test."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import calnotify
from calnotify.db.base import Base

CONSOLE = Path(calnotify.__file__).parent / "console"
MODULES = sorted(CONSOLE.rglob("*.py"))

# Only the session's type may come from SQLAlchemy: a page passes its session on.
ALLOWED_SQLALCHEMY = {"sqlalchemy.ext.asyncio": {"AsyncSession"}}
# Calls that run a statement on a session.
QUERY_CALLS = {"execute", "scalars", "scalar", "stream", "stream_scalars"}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)
    return found


def _is_mapped(module: str, name: str) -> bool:
    value = getattr(importlib.import_module(module), name, None)
    return isinstance(value, type) and issubclass(value, Base)


def problems_of(path: Path) -> list[str]:
    where = str(path.relative_to(CONSOLE.parent.parent))
    return problems_in(path.read_text(encoding="utf-8"), where)


def problems_in(source: str, where: str) -> list[str]:
    tree = ast.parse(source, filename=where)
    found = []
    for node in _runtime_nodes(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy" or alias.name.startswith(
                    "calnotify.models"
                ):
                    found.append(f"{where}:{line} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            if node.module.split(".")[0] == "sqlalchemy":
                if not names <= ALLOWED_SQLALCHEMY.get(node.module, set()):
                    found.append(f"{where}:{line} imports {sorted(names)} from {node.module}")
            elif node.module == "calnotify" and "models" in names:
                found.append(f"{where}:{line} imports calnotify.models")
            elif node.module.startswith("calnotify.models"):
                mapped = sorted(n for n in names if _is_mapped(node.module, n))
                if mapped:
                    found.append(f"{where}:{line} imports the mapped classes {mapped}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in QUERY_CALLS
        ):
            found.append(f"{where}:{line} runs a statement (.{node.func.attr})")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_console_module_builds_no_query(path: Path) -> None:
    assert problems_of(path) == []


def test_the_check_finds_a_parallel_query_layer() -> None:
    """What the check looks for, on a module that queries the way the console did."""
    sample = (
        "from typing import TYPE_CHECKING\n"
        "from sqlalchemy import func, select\n"
        "from sqlalchemy.ext.asyncio import AsyncSession\n"
        "from calnotify.models import Calendar\n"
        "from calnotify.models.notification import Channel\n"
        "if TYPE_CHECKING:\n"
        "    from calnotify.models import User\n"
        "async def rows(session: AsyncSession) -> object:\n"
        "    return await session.scalars(select(Calendar))\n"
    )
    assert sorted(problems_in(sample, "sample.py")) == [
        "sample.py:2 imports ['func', 'select'] from sqlalchemy",
        "sample.py:4 imports the mapped classes ['Calendar']",
        "sample.py:9 runs a statement (.scalars)",
    ]


def test_the_console_has_no_query_module() -> None:
    assert not (CONSOLE / "queries.py").exists()
