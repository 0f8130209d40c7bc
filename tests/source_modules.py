"""The suite's own modules by dotted name, for the tests that read the import graph from source.

`wm_bench/` is the package `wm_bench`; the top-level `tasks/` folder is imported as
`wm_bench_tasks` (wm_bench.TASKS_PACKAGE), so its files get that name here too.
"""

from __future__ import annotations

from pathlib import Path

from wm_bench import TASKS_PACKAGE

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"wm_bench": "wm_bench", TASKS_PACKAGE: "tasks"}  # import name → folder


def module_files() -> dict[str, Path]:
    """{dotted module name: file} for every .py file of the packages, in path order."""
    out = {}
    for name, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [name, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out
