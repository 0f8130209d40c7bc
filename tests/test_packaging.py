"""What `pip install` ships: every package folder, the experiments under a name that cannot clash.

pyproject.toml lists the packages by hand because the top-level `tasks/` folder installs under
another name (`wm_bench_tasks`); a new subpackage missing from that list would be left out of a
wheel without any error, so the list is checked against the folders here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import tomllib
from source_modules import FOLDERS, ROOT

from wm_bench import TASKS_PACKAGE


def test_pyproject_lists_every_package_folder_under_its_import_name() -> None:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"][TASKS_PACKAGE] == "tasks"
    on_disk = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join([name, *parts]))
    listed = set(setup["packages"])
    assert on_disk - listed == set(), "package folders missing from pyproject's packages"
    assert listed - on_disk == set(), "pyproject lists packages that have no folder"
    assert "tasks" not in listed and not any(p.startswith("tasks.") for p in listed)


def test_a_checkout_binds_its_own_tasks_folder_and_no_generic_tasks_module(tmp_path) -> None:
    """From anywhere, with the checkout on PYTHONPATH: `wm_bench_tasks` is this checkout's tasks/
    (not another install's), and no module named plain `tasks` is created."""
    code = (
        "import sys, wm_bench, wm_bench_tasks.mqar as m; "
        "print(m.__file__); print('tasks' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    path, generic = out.stdout.split()
    assert path == str(ROOT / "tasks" / "mqar" / "__init__.py")
    assert generic == "False"
