"""The rooms of docs/ARCHITECTURE.md: a module never imports from a room above its own.

Rooms are ranked in the order data flows (kernels → layers → data → config → model → train →
tasks / report → tools). An import from a higher room into a lower one is the first step to a
cycle and to a layer that knows about its users; the two listed exceptions are deliberate.
"""

from __future__ import annotations

import ast
from pathlib import Path

from source_modules import FOLDERS, ROOT, module_files

# (module prefix, room, rank); the longest matching prefix wins.
ROOMS: list[tuple[str, str, int]] = [
    ("wm_bench.config_fields", "config fields", 0),
    ("wm_bench.metric_names", "metric names", 0),  # what writers and readers of results share
    ("wm_bench.kernels", "kernels", 0),
    ("wm_bench.gpu.registry", "kernels", 0),  # the compile-spec types every specs.py names
    ("wm_bench.testing", "layers", 1),
    ("wm_bench.layers", "layers", 1),
    ("wm_bench.data", "data", 2),
    ("wm_bench.config", "config", 3),
    ("wm_bench.eval.catalog", "config", 3),  # the downstream task table a config names
    ("wm_bench.model", "model", 4),
    ("wm_bench.results", "results", 4),
    ("wm_bench.stats", "results", 4),
    ("wm_bench.migrate_paths", "results", 4),
    ("wm_bench.sequential", "results", 4),
    ("wm_bench.presets", "model", 5),
    ("wm_bench.flops", "model", 5),
    ("wm_bench.eval", "train", 6),
    ("wm_bench.preflight", "train", 6),
    ("wm_bench.train", "train", 6),
    ("wm_bench.export", "train", 6),
    ("wm_bench_tasks", "tasks", 7),  # the tasks/ folder
    ("wm_bench.report", "report", 7),
    ("wm_bench.bench", "tools", 8),
    ("wm_bench.gpu", "tools", 8),
    ("wm_bench.sweep", "tools", 8),
    ("wm_bench.sweeps", "tools", 8),
    ("wm_bench.cli", "tools", 8),
    ("wm_bench", "package", 0),  # wm_bench/__init__.py: __version__ and lazy re-exports only
]
# Deliberate upward imports: (importing module prefix, imported module prefix) → why.
ALLOWED = {
    ("wm_bench_tasks.expert_speed", "wm_bench.bench"): "the speed experiment times layers with the "
    "benchmark timers (one timing code for both)",
    ("wm_bench_tasks.expert_speed", "wm_bench.sweep"): "--only selection is one function for "
    "every task",
}


def room_of(module: str) -> tuple[str, int] | None:
    best = None
    for prefix, room, rank in ROOMS:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, room, rank)
    return None if best is None else (best[1], best[2])


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import of the packages in the file, in functions too."""
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found += [(t, node.lineno) for t in subs] or [(target, node.lineno)]
    return [(t, line) for t, line in found if t.split(".")[0] in FOLDERS]


def test_no_module_imports_from_a_room_above_its_own() -> None:
    mods = module_files()
    bad = []
    for module, path in sorted(mods.items()):
        src = room_of(module)
        assert src is not None, f"{module} belongs to no room: add it to ROOMS"
        for target, line in imports(module, path, set(mods)):
            dst = room_of(target)
            if dst is None or dst[1] <= src[1]:
                continue
            if any(module.startswith(a) and target.startswith(b) for a, b in ALLOWED):
                continue
            rel = path.relative_to(ROOT)
            bad.append(f"{rel}:{line}: {module} ({src[0]}) imports {target} ({dst[0]})")
    assert not bad, "imports from a higher room:\n" + "\n".join(bad)


def test_the_allowed_exceptions_are_still_needed() -> None:
    mods = module_files()
    for a, b in ALLOWED:
        uses = [
            t
            for m, p in mods.items()
            if m.startswith(a)
            for t, _ in imports(m, p, set(mods))
            if t.startswith(b)
        ]
        assert uses, f"ALLOWED ({a!r}, {b!r}) is no longer used: remove it"
