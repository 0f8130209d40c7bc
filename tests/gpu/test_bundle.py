"""Device bundle builder: offline local wheels install, manifest hashes, the size limit holds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wm_bench.gpu import bundle as gb


def _package(root: Path, name: str, payload: int = 0) -> Path:
    """A trivial setuptools project `name` (optionally with `payload` bytes of random data)."""
    src = root / name
    (src / name).mkdir(parents=True)
    (src / name / "__init__.py").write_text("VALUE = 7\n")
    if payload:
        (src / name / "blob.bin").write_bytes(os.urandom(payload))
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "0.1"\n'
        f'[tool.setuptools.package-data]\n{name} = ["*.bin"]\n'
    )
    return src


def _here() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def test_local_wheel_bundle_installs_offline_and_the_manifest_checks_out(tmp_path):
    pkg = _package(tmp_path / "src", "wmtiny")
    data = tmp_path / "shared_data"
    (data / "eval").mkdir(parents=True)
    (data / "eval" / "copa.jsonl").write_text('{"query": "q", "gold": 0}\n')
    out = tmp_path / "bundle"
    item = gb.Item(str(pkg), how="local", group="anchor", install="always")
    man = gb.build_bundle(
        out, (item,), data_src=data, data_dirs=("eval",), python_version=_here(), progress=False
    )
    (entry,) = man["items"]
    assert entry["status"] == "ok" and entry["name"] == "wmtiny" and entry["version"] == "0.1"
    wheel = out / entry["file"]
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == entry["sha256"]
    assert man["data"][0]["path"] == "data/eval/copa.jsonl"
    assert (out / "data/eval/copa.jsonl").exists()
    assert man["total_bytes"] == entry["size"] + man["data"][0]["size"] <= man["limit_bytes"]
    assert json.loads((out / "manifest.json").read_text())["items"] == man["items"]

    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target"]
    subprocess.run([*pip, str(site), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    got = subprocess.run(
        [sys.executable, "-c", "import wmtiny; print(wmtiny.VALUE)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert got.stdout.strip() == "7"


def test_size_limit_drops_optional_items_first_and_fails_on_required_ones(tmp_path):
    small = gb.Item(str(_package(tmp_path / "src", "wmsmall")), how="local", group="anchor")
    big = gb.Item(str(_package(tmp_path / "src", "wmbig", 200_000)), how="local", group="optional")
    out = tmp_path / "bundle"
    man = gb.build_bundle(out, (big, small), limit_bytes=50_000, data_src=None, progress=False)
    status = {e["name"]: e["status"] for e in man["items"]}
    assert status == {"wmsmall": "ok", "wmbig": "skipped"}
    assert [p.name.split("-")[0] for p in (out / "wheels").glob("*.whl")] == ["wmsmall"]

    required_big = gb.Item(big.req, how="local", group="anchor")
    with pytest.raises(gb.BundleError, match=r"> the 0.0 MiB limit; largest: .*wmbig"):
        gb.build_bundle(out, (required_big,), limit_bytes=50_000, data_src=None, progress=False)


def test_a_failed_build_is_recorded_as_missing_not_fatal(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("this is not toml [")
    item = gb.Item(str(broken), how="local", group="anchor")
    man = gb.build_bundle(tmp_path / "b", (item,), data_src=None, progress=False)
    (entry,) = man["items"]
    assert entry["status"] == "missing" and entry["reason"].startswith("pip local failed")


def test_the_default_list_carries_every_anchor_pinned():
    reqs = {i.req for i in gb.ITEMS}
    for anchor in (
        "fla-core==0.6.0",
        "flash-linear-attention==0.6.0",
        "mamba_ssm==2.3.2.post1",
        "flash-dmattn==1.2.2",
        "PEER-pytorch==0.2.2",
    ):
        assert anchor in reqs
    assert {"einx", "frozendict", "einops", "optuna", "alembic", "sqlalchemy"} <= {
        i.name for i in gb.ITEMS
    }
    assert all("==" in i.req and i.group in gb.GROUPS for i in gb.ITEMS)
    builds = {i.name: i.env for i in gb.ITEMS if i.group == "anchor" and i.how == "build"}
    assert builds["mamba_ssm"]["MAMBA_SKIP_CUDA_BUILD"] == "TRUE"
    assert builds["flash_dmattn"]["FLASH_DMATTN_FORCE_BUILD"] == "TRUE"
