"""No import cycles between the files of wm_bench/ and tasks/: every import statement is an edge.

An edge runs from a module to each wm_bench or tasks module it imports, wherever the statement
stands (top level, inside a function, under `if TYPE_CHECKING`): a lazy import delays a cycle, it
does not remove it. `from pkg import name` is an edge to the submodule `pkg.name` when there is
one, else to `pkg` itself; relative imports are resolved against the importing file's package.
"""

from __future__ import annotations

import ast
from pathlib import Path

from source_modules import ROOT, module_files

# Cycles that are known and still to be broken, each as the sorted modules of one strongly
# connected component. Empty when the tree has none; an entry that is no longer a cycle fails
# `test_known_cycles_are_still_cycles`, so the list only shrinks.
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def imported_modules(module: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """{imported module: line of its first import} for the known modules `path` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:  # `import a.b.thing` where thing is no module
            target = target.rpartition(".")[0]
        if target and target != module:
            edges.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in known else source, node.lineno)
    return edges


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported module: line}} over every module of the packages."""
    known = module_files()
    return {m: imported_modules(m, p, known) for m, p in known.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(component: tuple[str, ...], graph: dict[str, dict[str, int]]) -> str:
    """The component's modules and the import lines that tie them together."""
    files = module_files()
    lines = [f"cycle among {', '.join(component)}:"]
    for m in component:
        for target, line in sorted(graph[m].items()):
            if target in component:
                where = files[m].relative_to(ROOT).as_posix()
                lines.append(f"  {where}:{line} imports {target}")
    return "\n".join(lines)


def test_the_graph_sees_lazy_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / "wm_bench" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("def f():\n    from wm_bench.pkg.b import g\n")
    (pkg / "b.py").write_text("from .a import f\nimport wm_bench.pkg.c.missing\n")
    (pkg / "c.py").write_text("")
    known = {
        "wm_bench.pkg": pkg / "__init__.py",
        **{f"wm_bench.pkg.{n}": pkg / f"{n}.py" for n in "abc"},
    }
    graph = {m: imported_modules(m, p, known) for m, p in known.items()}
    assert graph["wm_bench.pkg"] == {"wm_bench.pkg.a": 1}
    assert graph["wm_bench.pkg.a"] == {"wm_bench.pkg.b": 2}
    assert graph["wm_bench.pkg.b"] == {"wm_bench.pkg.a": 1, "wm_bench.pkg.c": 2}
    assert cycles(graph) == [("wm_bench.pkg.a", "wm_bench.pkg.b")]


def test_no_import_cycles_between_files():
    graph = import_graph()
    new = [c for c in cycles(graph) if c not in KNOWN_CYCLES]
    assert not new, "\n".join(describe(c, graph) for c in new)


def test_known_cycles_are_still_cycles():
    stale = KNOWN_CYCLES - set(cycles(import_graph()))
    assert not stale, f"no longer cycles, remove them from KNOWN_CYCLES: {sorted(stale)}"
