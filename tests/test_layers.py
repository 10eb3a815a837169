"""The package's layers, declared once below: no import cycle between its modules (imports inside
functions included) and no import from a lower layer to a higher one, the way
`tests/core/test_core_purity.py` keeps `core/` pure.

Three kinds of import are told apart: at a module's top level (run when it is imported), inside a
function (run when it is called: a cycle through one is still a cycle, it only fails later), and
under `if TYPE_CHECKING:` (never run). Cycles count the first two; layers count all three, since
a type named from a higher layer is still a dependency on it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "reportexport_async"
PACKAGE = PACKAGE_DIR.name

#: The layers from the bottom up: a module imports from its own layer and the ones below it.
LAYERS = (
    "core",  # pure: requests, answers, rules, the lifecycle table; the exceptions
    "machine",  # this machine: its clock and its durable files
    "ledger",  # durable state: records, rules-free stores
    "transport",  # the one session, its limiter and retries, the server's clock, postbacks
    "api",  # one call of the API at a time
    "destinations",  # output folders, canonical paths, manifests, merged files
    "jobs",  # the driver, the orchestrator, the planners (backfill and sync)
    "client",  # the product: one `Client`, several accounts, the package's front door
    "cli",  # the command line
)
#: Where each module sits, by its dotted path inside the package: the longest prefix given wins
#: ("" is the package's `__init__`, which re-exports the client's names lazily).
WHERE: Mapping[str, str] = {
    "": "client",
    "_version": "core",
    "core": "core",
    "errors": "core",
    "machine": "machine",
    "ledger": "ledger",
    "transport": "transport",
    "transport.api": "api",
    "destinations": "destinations",
    "jobs": "jobs",
    "client": "client",
    "accounts": "client",
    "cli": "cli",
    "dlt": "client",
}
#: The sandbox stands apart: the local fake of the API imports only itself and the pure core,
#: and only the product and the command line (which start one) import it.
SANDBOX = "sandbox"
SANDBOX_MAY_IMPORT = frozenset({"core"})
SANDBOX_USERS = frozenset({"client", "cli"})

#: Being restructured: cycles (as sets of modules) and upward imports (importer, imported) known
#: to go away once those files have settled. The main developer empties these.
BEING_RESTRUCTURED_CYCLES: frozenset[frozenset[str]] = frozenset()
BEING_RESTRUCTURED_UPWARD: frozenset[tuple[str, str]] = frozenset()
BEING_RESTRUCTURED_LONG: frozenset[str] = frozenset()

#: A module holds one concern and stays readable in one sitting (way 13, docs/guide.md).
MAX_LINES = 600

Kind = Literal["top", "function", "typing"]


@dataclass(frozen=True)
class Import:
    importer: str  # dotted paths inside the package ("" the package itself)
    imported: str
    kind: Kind
    line: int


def _dotted(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_dotted(path, root): path for path in sorted(root.rglob("*.py"))}


def _statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, Kind]]:
    """Every import statement with its kind: the innermost of `TYPE_CHECKING` or a function."""

    def walk(node: ast.AST, kind: Kind) -> Iterator[tuple[ast.Import | ast.ImportFrom, Kind]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, kind
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), "typing")
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), kind)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, "typing" if kind == "typing" else "function")
            else:
                yield from walk(child, kind)

    yield from walk(tree, "top")


def _targets(
    node: ast.Import | ast.ImportFrom, own: str, is_package: bool, modules: Mapping[str, Path]
) -> Iterator[str]:
    """The package's modules a statement imports, as dotted paths inside the package."""
    prefix = PACKAGE + "."
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            anchor = (f"{PACKAGE}.{own}" if own else PACKAGE).split(".")
            if not is_package:
                anchor.pop()
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # `from .x import y` imports the module x.y when there is one, else a name of x.
        names = [f"{base}.{alias.name}" for alias in node.names]
        names = [name if name.removeprefix(prefix) in modules else base for name in names]
    for name in names:
        if name == PACKAGE or name.startswith(prefix):
            dotted = "" if name == PACKAGE else name.removeprefix(prefix)
            # Importing a.b.c runs the packages a and a.b first.
            parts = dotted.split(".") if dotted else []
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                if candidate in modules:
                    yield candidate


def imports(root: Path = PACKAGE_DIR) -> list[Import]:
    """Every import of one of the package's modules by another, with its kind."""
    modules = _modules(root)
    found: set[Import] = set()
    for own, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, kind in _statements(tree):
            for target in _targets(node, own, path.name == "__init__.py", modules):
                # A module's own packages ran before it: importing them is no edge.
                if target != own and not (own + ".").startswith(target + ".") and target != "":
                    found.add(Import(own, target, kind, node.lineno))
    return sorted(found, key=lambda i: (i.importer, i.imported, i.line))


def cycles(edges: list[Import]) -> list[list[str]]:
    """The groups of modules that import each other (at the top or inside functions), found as
    strongly connected components (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.kind != "typing":
            graph.setdefault(edge.importer, set()).add(edge.imported)
            graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def layer_of(module: str, where: Mapping[str, str] = WHERE) -> str | None:
    """The layer of a module: its longest dotted prefix in `where`; the sandbox's own name."""
    if not module:
        return where.get("")
    parts = module.split(".")
    if parts[0] == SANDBOX:
        return SANDBOX
    for end in range(len(parts), 0, -1):  # ("" names the package itself, not its modules)
        key = ".".join(parts[:end])
        if key in where:
            return where[key]
    return None


def upward(edges: list[Import], where: Mapping[str, str] = WHERE) -> list[str]:
    """Imports against the layers, one line each: `importer -> imported (line, kind): why`."""
    rank = {name: n for n, name in enumerate(LAYERS)}
    found = []
    for edge in edges:
        low, high = layer_of(edge.importer, where), layer_of(edge.imported, where)
        assert low is not None, edge.importer
        assert high is not None, edge.imported
        if low == SANDBOX:
            wrong = high not in SANDBOX_MAY_IMPORT | {SANDBOX}
        elif high == SANDBOX:
            wrong = low not in SANDBOX_USERS
        else:
            wrong = rank[low] < rank[high]
        if wrong and (edge.importer, edge.imported) not in BEING_RESTRUCTURED_UPWARD:
            found.append(
                f"{edge.importer or PACKAGE} ({low}) -> {edge.imported} ({high}), "
                f"line {edge.line}, {edge.kind}"
            )
    return found


EDGES = imports()


def test_the_import_graph_is_found() -> None:
    pairs = {(edge.importer, edge.imported, edge.kind) for edge in EDGES}
    assert ("client", "core.fingerprint", "top") in pairs
    assert ("core.requests", "errors", "top") in pairs
    assert any(kind == "function" for _, _, kind in pairs)
    assert any(kind == "typing" for _, _, kind in pairs)


def test_every_module_has_a_layer() -> None:
    assert set(WHERE.values()) <= set(LAYERS)
    missing = sorted(m for m in _modules(PACKAGE_DIR) if layer_of(m) is None)
    assert missing == [], "declare their layer in WHERE"


def test_no_import_cycle() -> None:
    found = [group for group in cycles(EDGES) if frozenset(group) not in BEING_RESTRUCTURED_CYCLES]
    assert found == []


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    assert upward(EDGES) == []


def test_the_allowances_are_still_needed() -> None:
    """A restructured part that settled takes its entry out of the lists above."""
    found = {frozenset(group) for group in cycles(EDGES)}
    assert {c for c in BEING_RESTRUCTURED_CYCLES if not any(c <= group for group in found)} == set()
    pairs = {(edge.importer, edge.imported) for edge in EDGES}
    assert pairs >= BEING_RESTRUCTURED_UPWARD
    assert {name for name in BEING_RESTRUCTURED_LONG if _length(name) <= MAX_LINES} == set()


def _length(module: str) -> int:
    return len(_modules(PACKAGE_DIR)[module].read_text(encoding="utf-8").splitlines())


def test_no_module_is_over_the_limit() -> None:
    long = {
        name: _length(name)
        for name in _modules(PACKAGE_DIR)
        if _length(name) > MAX_LINES and name not in BEING_RESTRUCTURED_LONG
    }
    assert long == {}


def test_the_sandbox_stands_apart() -> None:
    sandbox = [edge for edge in EDGES if layer_of(edge.importer) == SANDBOX]
    assert sandbox  # its modules import each other: the check sees them
    assert {layer_of(edge.imported) for edge in sandbox} <= SANDBOX_MAY_IMPORT | {SANDBOX}


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_checks_would_catch_a_cycle_through_a_function(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import x\n",
            "b.py": "def f():\n    from . import a\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n",
            "d/__init__.py": "from . import e\n",
            "d/e.py": f"from {PACKAGE}.c import z\n",
            "f.py": "from .d.e import w\n",
        },
    )
    edges = imports(root)
    kinds = {(e.importer, e.imported): e.kind for e in edges}
    assert kinds == {
        ("a", "b"): "top",
        ("b", "a"): "function",
        ("c", "a"): "typing",
        ("d", "d.e"): "top",
        ("d.e", "c"): "top",
        ("f", "d"): "top",  # importing d.e runs the package d first
        ("f", "d.e"): "top",
    }
    assert cycles(edges) == [["a", "b"]]


@pytest.mark.parametrize("kind", ["top", "function", "typing"])
def test_the_checks_would_catch_an_upward_import(tmp_path: Path, kind: str) -> None:
    statement = {
        "top": "from ..cli import main\n",
        "function": "def f():\n    from ..cli import main\n",
        "typing": "import typing\nif typing.TYPE_CHECKING:\n    from ..cli import main\n",
    }[kind]
    root = _tree(tmp_path, {"__init__.py": "", "cli.py": "", "core/x.py": statement})
    found = upward(imports(root), {"": "client", "core": "core", "cli": "cli"})
    assert found == [f"core.x (core) -> cli (cli), line {statement.count(chr(10))}, {kind}"]
