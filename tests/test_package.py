"""The package's front door: public names re-exported lazily, a small sorted and documented
`__all__`, what type checkers see agreeing with what is imported, and no import cycle."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import reportexport_async

PACKAGE_DIR = Path(reportexport_async.__file__).resolve().parent
INIT = PACKAGE_DIR / "__init__.py"


def run_fresh(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter on this source tree; it prints one JSON object."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE_DIR.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


HEAVY = ("aiohttp", "anyio", "asyncio", "sqlite3")
LOADED = f"sorted(m for m in {HEAVY!r} if m in sys.modules)"


def test_importing_the_package_loads_no_client_side_library() -> None:
    found = run_fresh(
        "import json, sys\n"
        "import reportexport_async\n"
        f"bare = {LOADED}\n"
        "version = reportexport_async.__version__\n"
        f"after_version = {LOADED}\n"
        "from reportexport_async import ReportExportClient\n"
        f"after_client = {LOADED}\n"
        "print(json.dumps({'bare': bare, 'version': version, 'after_version': after_version,\n"
        "    'after_client': after_client, 'client': ReportExportClient.__module__}))\n"
    )
    assert found["bare"] == []
    assert found["after_version"] == []
    assert found["version"] == reportexport_async.__version__
    assert found["client"] == "reportexport_async.transport.api"
    assert "aiohttp" in found["after_client"]  # the name works: importing it loads its module


def test_all_is_small_sorted_and_every_importable_name_resolves() -> None:
    names = reportexport_async.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names)) <= 30
    lazy = reportexport_async._LAZY
    assert set(names) <= set(lazy)
    for name, module in lazy.items():
        value = getattr(reportexport_async, name)
        assert value is getattr(importlib.import_module(module, "reportexport_async"), name)
        assert name in dir(reportexport_async)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = reportexport_async.Nope  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        from reportexport_async import Nope  # type: ignore[attr-defined]  # noqa: F401


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the imports under `if TYPE_CHECKING:` in the package __init__."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    assert alias.asname == alias.name  # `X as X`: re-exported for mypy --strict
                    found[alias.name] = "." * statement.level + (statement.module or "")
    return found


def test_type_checkers_see_exactly_the_lazy_names() -> None:
    assert _type_checking_imports() == reportexport_async._LAZY


def test_the_docstring_lists_every_public_name_once() -> None:
    doc = reportexport_async.__doc__ or ""
    listed = doc.split("Public names", 1)[1].split("\n\n", 2)[1]
    words = [word.strip(" ,()") for line in listed.splitlines() for word in line.split()]
    for name in reportexport_async.__all__:
        assert words.count(name) == 1, name
    for name, module in reportexport_async._LAZY.items():
        if name not in reportexport_async.__all__ and module != ".errors":
            assert name in doc, name  # named with its module (other exceptions as a group)


def test_no_module_imports_from_the_package_root() -> None:
    """Modules import what they need from its own module (`._version` for the version), never
    from the package `__init__`: that was an import cycle that worked only by line order."""
    submodules = {path.stem for path in PACKAGE_DIR.iterdir()}
    offenders = []
    for path in PACKAGE_DIR.rglob("*.py"):
        if path == INIT:
            continue
        depth = len(path.relative_to(PACKAGE_DIR).parts)  # 1 for a top-level module
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            root = (node.level == depth and node.module is None) or (
                node.level == 0 and node.module == "reportexport_async"
            )
            if root and any(alias.name not in submodules for alias in node.names):
                offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}")
    assert offenders == []
