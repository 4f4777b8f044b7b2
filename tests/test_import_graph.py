"""The map of the code holds: jiesu's modules import one another without a circle, and the import
rules of docs/architecture.md are kept.

The graph is read from the source (ast), not from `sys.modules`: every `import` and `from …
import` counts, at module level and inside functions alike (a lazy import is still a dependency;
it only hides the circle until the day both ends load), except those under `if TYPE_CHECKING:`,
which never run. `from jiesu.a import b` is an edge to `jiesu.a.b` when that is a module, else to
`jiesu.a`; importing a submodule also runs its package's `__init__`, so it is an edge to that too.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jiesu"

Graph = dict[str, set[str]]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere in the module, `if TYPE_CHECKING:` bodies
    left out (their `else:` runs)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph(package: Path) -> Graph:
    """Module → the package's modules it imports."""
    root = package.parent
    top = package.name
    files = {module_name(p, root): p for p in package.rglob("*.py")}
    graph: Graph = {name: set() for name in files}

    def add(source: str, target: str) -> None:
        # The deepest known module the dotted name starts with, and the packages above it.
        parts = target.split(".")
        while parts and ".".join(parts) not in files:
            parts.pop()
        while parts:
            name = ".".join(parts)
            if name != source:
                graph[source].add(name)
            parts.pop()

    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        add(name, alias.name)
                continue
            if node.level:  # relative: from . import x, from ..a import b
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module != top and not module.startswith(top + "."):
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                add(name, full if full in files else module)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One shortest circle through each strongly connected part of the graph (Tarjan), as the
    modules in import order, first repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    parts: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative: the graph is deep enough to matter
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    part = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        part.append(member)
                        if member == node:
                            break
                    if len(part) > 1:
                        parts.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_shortest_cycle(graph, set(part), part[0]) for part in sorted(parts)]


def _shortest_cycle(graph: Graph, part: set[str], start: str) -> list[str]:
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & part):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected part without a circle")


def describe(found: Iterable[list[str]]) -> str:
    return "\n".join(" → ".join(c) for c in found)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(PACKAGE)


def importers(graph: Graph, target: str) -> set[str]:
    return {m for m, deps in graph.items() if target in deps}


def inside(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


# ---- the finder itself -------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "pkg"


def test_a_lazy_import_closes_a_circle_and_the_finder_names_it(tmp_path: Path) -> None:
    pkg = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "",
            "pkg/a/one.py": "from pkg.b import two\n",
            "pkg/b/__init__.py": "",
            "pkg/b/two.py": "from ..c import three\n",
            "pkg/c/__init__.py": "",
            "pkg/c/three.py": """
                def later():
                    import pkg.a.one
            """,
        },
    )
    assert describe(cycles(import_graph(pkg))) == "pkg.a.one → pkg.b.two → pkg.c.three → pkg.a.one"


def test_type_checking_imports_are_no_edge_but_their_else_is(tmp_path: Path) -> None:
    pkg = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/x.py": "from pkg import y\n",
            "pkg/y.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from pkg.x import X
                else:
                    from pkg import z
            """,
            "pkg/z.py": "import typing\nif typing.TYPE_CHECKING:\n    import pkg.x\n",
        },
    )
    graph = import_graph(pkg)
    assert graph["pkg.x"] == {"pkg", "pkg.y"}
    assert graph["pkg.y"] == {"pkg", "pkg.z"}
    assert graph["pkg.z"] == set()
    assert cycles(graph) == []


def test_a_package_init_that_imports_its_module_closes_a_circle(tmp_path: Path) -> None:
    pkg = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a/__init__.py": "from pkg.a.inner import thing\n",
            "pkg/a/inner.py": "from pkg.b import other\n",
            "pkg/b/__init__.py": "",
            "pkg/b/other.py": "from pkg.a import inner\n",
        },
    )
    assert [set(c) for c in cycles(import_graph(pkg))] == [{"pkg.a", "pkg.a.inner", "pkg.b.other"}]


# ---- jiesu -----------------------------------------------------------------------------------


def test_the_graph_sees_the_lazy_imports_of_jiesu(graph: Graph) -> None:
    # A known in-function import (the CLI imports the server only when `serve` runs).
    assert "jiesu.web.serving" in graph["jiesu.cli"]
    assert len(graph) > 100


def test_jiesu_has_no_import_circle(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "import circles (break them by moving the code where it belongs):\n" + (
        describe(found)
    )


# The import rules of docs/architecture.md.

COMPOSITION_ROOTS = ("jiesu.cli", "jiesu.worker", "jiesu.web.app", "jiesu.web.asgi")
# What the ticket package may not know: the capabilities built on it.
ABOVE_TICKETS = (
    "jiesu.analysis", "jiesu.reports", "jiesu.dashboard", "jiesu.console", "jiesu.portal",
    "jiesu.demo", "jiesu.intel", "jiesu.delivery", "jiesu.notices", "jiesu.callbacks",
    "jiesu.calls", "jiesu.open311", "jiesu.imports", "jiesu.exports", "jiesu.knowledge",
    *COMPOSITION_ROOTS,
)  # fmt: skip
# Pure rules: plain values in, plain values out (tested without a database or a server).
PURE = (
    "jiesu.tickets.lifecycle", "jiesu.timelimits", "jiesu.taxonomy.routing",
    "jiesu.access.policy", "jiesu.auth.limits", "jiesu.org.names", "jiesu.assessment.facts",
    "jiesu.assessment.rates", "jiesu.assessment.ranking", "jiesu.analysis.detect",
    "jiesu.intel.text", "jiesu.intel.classify", "jiesu.intel.urgency",
    "jiesu.intel.duplicates", "jiesu.citypack.parse",
)  # fmt: skip
# (intel/address.py is pure but for its database-side builder, which imports the tables.)
# The one thing the ticket package takes from above: the shape of the intake advice it shows.
# And of the knowledge base, the door an answer's entry goes through (resolve, count the use).
TICKETS_MAY_IMPORT = frozenset(
    {"jiesu.intel", "jiesu.intel.shapes", "jiesu.knowledge", "jiesu.knowledge.uses"}
)
STORAGE_AND_WEB = ("jiesu.db", "jiesu.web", "jiesu.console", "jiesu.portal")


def test_the_composition_roots_are_imported_by_no_one_but_a_root(graph: Graph) -> None:
    wrong = {
        f"{m} imports {root}"
        for root in COMPOSITION_ROOTS
        for m in importers(graph, root)
        if not inside(m, *COMPOSITION_ROOTS)
    }
    assert not wrong, sorted(wrong)


def test_a_sub_command_never_imports_the_root_command(graph: Graph) -> None:
    subs = [m for m in graph if m.endswith(".cli") and m != "jiesu.cli"]
    assert "jiesu.intel.cli" in subs and "jiesu.reports.cli" in subs
    assert not [m for m in subs if "jiesu.cli" in graph[m]]


def test_the_ticket_package_knows_nothing_built_on_it(graph: Graph) -> None:
    wrong = sorted(
        f"{m} imports {dep}"
        for m, deps in graph.items()
        if inside(m, "jiesu.tickets") and m != "jiesu.tickets.views"
        for dep in deps
        if inside(dep, *ABOVE_TICKETS) and dep not in TICKETS_MAY_IMPORT
    )
    assert not wrong, wrong


def test_pure_rules_import_neither_storage_nor_web(graph: Graph) -> None:
    wrong = sorted(
        f"{m} imports {dep}"
        for m, deps in graph.items()
        if inside(m, *PURE)
        for dep in deps
        if inside(dep, *STORAGE_AND_WEB) or dep.endswith((".models", ".service", ".views"))
    )
    assert not wrong, wrong
