"""wm_bench: benchmarks and ablations for hybrid LMs (Wonderful Matrices, arXiv 2412.11834).

`wm_bench.from_pretrained(dir)` and `wm_bench.load_tokenizer(dir)` load a saved model directory
(docs/export.md); they are imported on first use, so `import wm_bench` stays light (no torch).

The experiments live in the top-level `tasks/` folder and are imported as the package
`wm_bench_tasks` (a name that cannot clash with another project's `tasks`): an installed wheel maps
the folder to that name, and in a checkout `import wm_bench` binds the `tasks/` beside this package
to it, so a worktree on PYTHONPATH runs its own experiments, not those of another install.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

__version__ = "0.1.0"
__all__ = ["TASKS_PACKAGE", "__version__", "from_pretrained", "load_tokenizer"]
TASKS_PACKAGE = "wm_bench_tasks"  # the import name of the top-level tasks/ folder

_LAZY = {
    "from_pretrained": "wm_bench.eval.checkpoint",
    "load_tokenizer": "wm_bench.eval.checkpoint",
}


def __getattr__(name: str) -> Any:
    """The lazily imported public functions (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wm_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _bind_checkout_tasks() -> None:
    """In a checkout, make the `tasks/` folder beside this package importable as TASKS_PACKAGE."""
    init = Path(__file__).resolve().parent.parent / "tasks" / "__init__.py"
    if TASKS_PACKAGE in sys.modules or not init.is_file():
        return  # already bound, or an installed wheel (its own wm_bench_tasks is found normally)
    spec = importlib.util.spec_from_file_location(
        TASKS_PACKAGE, init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[TASKS_PACKAGE] = module
    spec.loader.exec_module(module)


_bind_checkout_tasks()
