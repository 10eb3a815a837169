"""The command line's package stays a set of small rooms: no module over 600 lines, no module
reading another's private names, no import cycle among its modules (imports inside functions
included), and the console script where `pyproject.toml` says it is."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import reportexport_async.cli

CLI = Path(reportexport_async.cli.__file__).resolve().parent
ROOT = CLI.parent.parent
MODULES = sorted(CLI.glob("*.py"))


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(the cli module imported, the names taken from it, line) for every relative import of a
    module of this package, wherever it is (top level or inside a function)."""
    found: list[tuple[str, list[str], int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level != 1:
            continue
        names = [alias.name for alias in node.names]
        if node.module is None:  # `from . import accounts`: whole modules
            found += [(name, [], node.lineno) for name in names]
        else:
            found.append((node.module.split(".")[0], names, node.lineno))
    return found


def test_no_module_of_the_package_is_over_600_lines() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in MODULES}
    assert len(sizes) >= 10
    assert {name: n for name, n in sizes.items() if n > 600} == {}


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = [
        f"{path.name}:{line} {module}.{name}"
        for path in MODULES
        for module, names, line in _imports(path)
        for name in names
        if name.startswith("_")
    ]
    assert offenders == []


def test_the_modules_of_the_package_import_no_cycle() -> None:
    graph = {path.stem: {module for module, _, _ in _imports(path)} for path in MODULES}
    graph["__init__"].discard("app")  # the package's front door: nothing imports it back

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, " -> ".join((*trail, module))
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*trail, module))

    for module in graph:
        visit(module, ())
    assert all("__init__" not in imported for imported in graph.values())


def test_the_console_script_is_the_package_main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["reportexport"] == "reportexport_async.cli:main"
    done = subprocess.run(
        [sys.executable, "-m", "reportexport_async.cli", "--version"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reportexport, version ")
