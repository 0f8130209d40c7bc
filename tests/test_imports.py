"""Import rules of docs/design.md §1, enforced: references never import triton, reports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "wm_bench"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_reference_files_never_import_triton():
    for ref in PKG.glob("kernels/*/reference.py"):
        assert not any(n.split(".")[0] == "triton" for n in _imports(ref)), ref


def test_triton_files_never_import_the_reference():
    for tri in PKG.glob("kernels/*/triton*.py"):
        assert not any(n.endswith(".reference") for n in _imports(tri)), tri


def test_layers_call_kernels_only_through_api():
    for f in PKG.glob("layers/**/*.py"):
        for n in _imports(f):
            if n.startswith("wm_bench.kernels."):
                parts = n.split(".")
                assert len(parts) <= 3 or parts[3] in ("api", "_impl"), f"{f}: imports {n}"


def test_results_and_report_import_no_torch():
    code = (
        "import sys, wm_bench.results, wm_bench.report; assert 'torch' not in sys.modules, 'torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_tasks_build_configs_without_running():
    for f in (ROOT / "tasks").rglob("*.py"):
        for n in _imports(f):
            assert not n.startswith("wm_bench.train"), f"{f} imports {n}: tasks only build configs"


def test_every_file_opens_with_a_docstring():
    for f in list(PKG.rglob("*.py")) + list((ROOT / "tasks").rglob("*.py")):
        tree = ast.parse(f.read_text())
        assert ast.get_docstring(tree), f"{f} has no module docstring"
