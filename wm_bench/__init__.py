"""wm_bench: benchmarks and ablations for hybrid LMs (Wonderful Matrices, arXiv 2412.11834).

`wm_bench.from_pretrained(dir)` and `wm_bench.load_tokenizer(dir)` load a saved model directory
(docs/export.md); they are imported on first use, so `import wm_bench` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "from_pretrained", "load_tokenizer"]

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
