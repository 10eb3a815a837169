"""The pure core imports no I/O library and reads no clock (way 1 of docs/guide.md)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "reportexport_async"
CORE_DIR = PACKAGE_DIR / "core"
FORBIDDEN = {"aiohttp", "anyio", "sqlite3", "socket", "asyncio", "time", "random", "os"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _module_file(dotted: str) -> Path | None:
    """The file of a module inside reportexport_async, or None if it is outside."""
    parts = dotted.split(".")
    if parts[0] != "reportexport_async":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if PACKAGE_DIR in path.parents:
        own = _dotted(path)
        package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    else:
        package = ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # "from . import x" may import submodule x
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _closure() -> dict[str, set[str]]:
    """Every module of ours reachable from core, with its imports. The package __init__ is left
    out: it re-exports the layers above lazily (its imports are for type checkers only), which
    the run-time test below checks."""
    todo = sorted(CORE_DIR.glob("*.py"))
    seen: dict[str, set[str]] = {}
    while todo:
        path = todo.pop()
        name = _dotted(path)
        if name in seen or name == "reportexport_async":
            continue
        seen[name] = _imports(path)
        for imported in seen[name]:
            target = _module_file(imported)
            if target is not None and _dotted(target) not in seen:
                todo.append(target)
    return seen


def test_core_closure_is_found() -> None:
    closure = _closure()
    assert "reportexport_async.core.models" in closure
    assert "reportexport_async.errors" in closure  # reached through core.policies


def test_core_imports_no_io_library() -> None:
    offenders = {
        (module, imported)
        for module, imports in _closure().items()
        for imported in imports
        if imported.split(".")[0] in FORBIDDEN
    }
    assert offenders == set()


def test_the_check_would_catch_an_io_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\n")
    assert {"time", "asyncio"} <= _imports(bad)


@pytest.mark.parametrize("path", sorted(CORE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_core_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    ]
    opens = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    assert calls == []
    assert opens == []


# Run in a fresh interpreter from the source tree: a meta-path finder refuses aiohttp, anyio and
# sqlite3 (as if they were not installed) and records every attempt, even one caught by an
# `except ImportError`.
RUNTIME_CHECK = """
import importlib, importlib.abc, json, pkgutil, sys

BLOCKED = {"aiohttp", "anyio", "sqlite3", "_sqlite3"}
# (not socket: the standard library's email.utils, for HTTP dates, imports it and opens nothing)
NOT_LOADED = BLOCKED | {"asyncio", "yarl", "multidict", "psycopg", "asyncpg"}
attempts = []

class Unavailable(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Unavailable())
already = sorted(m for m in sys.modules if m.split(".")[0] in NOT_LOADED)
core = importlib.import_module("reportexport_async.core")
imported = [core.__name__]
for info in pkgutil.walk_packages(core.__path__, core.__name__ + "."):
    importlib.import_module(info.name)
    imported.append(info.name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in NOT_LOADED)
try:
    import aiohttp  # the blocker works: this must fail
    blocker_works = False
except ImportError:
    blocker_works = True
    attempts.remove("aiohttp")
print(json.dumps({"already": already, "imported": imported, "loaded": loaded,
                  "attempts": attempts, "blocker_works": blocker_works}))
"""


def test_importing_core_needs_no_aiohttp_and_loads_no_io_library() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_CHECK],
        cwd=PACKAGE_DIR.parent,  # this source tree's package, through the real package __init__
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["already"] == []  # a clean interpreter: nothing was loaded before core
    assert found["blocker_works"]
    submodules = {path.stem for path in CORE_DIR.glob("*.py")} - {"__init__"}
    assert {f"reportexport_async.core.{name}" for name in submodules} <= set(found["imported"])
    assert found["attempts"] == []
    assert found["loaded"] == []
