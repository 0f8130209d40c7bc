"""GPU suite driver on the CPU: "no CUDA" skips, fake-backend plumbing, time boxes, publishing."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from wm_bench.gpu import suite


def _argv(tmp: Path, *extra: str) -> list[str]:
    return [
        "--out-root",
        str(tmp / "runs"),
        "--results-root",
        str(tmp / "results"),
        "--site",
        str(tmp / "site"),
        "--bundle",
        str(tmp / "bundle"),
        *extra,
    ]


def _run_dir(tmp: Path) -> Path:
    (run,) = sorted((tmp / "runs").iterdir())
    return run


def _fake_bundle(bundle: Path) -> None:
    """A bundle holding one hand-made pure wheel `wmfake`, and its manifest."""
    files = {
        "wmfake/__init__.py": b"VALUE = 42\n",
        "wmfake-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: wmfake\nVersion: 0.1\n",
        "wmfake-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += "wmfake-0.1.dist-info/RECORD,,\n"
    wheel = bundle / "wheels" / "wmfake-0.1-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("wmfake-0.1.dist-info/RECORD", record)
    item = {"req": "wmfake", "name": "wmfake", "group": "anchor", "install": "always"}
    item |= {"status": "ok", "file": f"wheels/{wheel.name}", "size": wheel.stat().st_size}
    item["sha256"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    missing = {"req": "gone==1", "name": "gone", "group": "anchor", "install": "always"}
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    manifest = {"python_version": py, "items": [item, missing | {"status": "missing"}]}
    (bundle / "manifest.json").write_text(
        json.dumps(manifest | {"provenance": {"git_commit": "abc"}})
    )


@pytest.mark.usefixtures("no_cuda")
def test_without_cuda_every_gpu_section_is_skipped_and_it_exits_0(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WM_BENCH_FAKE_GPU", raising=False)
    assert suite.main(_argv(tmp_path)) == 0
    out = capsys.readouterr().out
    run = _run_dir(tmp_path)
    for name in suite.GPU_SECTIONS:
        rec = json.loads((run / f"{name.replace(':', '-')}.json").read_text())
        assert rec["status"] == "skipped" and rec["reason"].startswith("no CUDA")
    assert json.loads((run / "install.json").read_text())["status"] == "skipped"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ok"] and summary["provenance"]["versions"]["python"]
    assert "no CUDA" in out and out.rstrip().splitlines()[-1].startswith("total")
    assert not (tmp_path / "results").exists()  # nothing published without a GPU


def test_fake_backend_installs_the_bundle_runs_sections_and_publishes(tmp_path, capsys):
    _fake_bundle(tmp_path / "bundle")
    archive = tmp_path / "run.tar.gz"
    argv = _argv(tmp_path, "--fake", "--sections", "tests,bench:ssd", "--archive", str(archive))
    assert suite.main(argv) == 0
    run = _run_dir(tmp_path)
    install = json.loads((run / "install.json").read_text())
    assert install["status"] == "ok" and install["missing_in_bundle"] == ["gone==1"]
    assert (tmp_path / "site" / "wmfake" / "__init__.py").exists()
    for name, note in (("tests", "1 passed"), ("bench-ssd", "stub section")):
        rec = json.loads((run / f"{name}.json").read_text())
        assert rec["status"] == "ok" and note in rec["note"]
    assert "1 wheels into" in install["note"]
    assert not (run / "mqar-small.json").exists()  # not selected
    published = tmp_path / "results" / "bench" / "gpu" / "fake-gpu"
    assert {"env.json", "install.json", "tests.json", "bench-ssd.json", "summary.json"} <= {
        p.name for p in published.iterdir()
    }
    assert (tmp_path / "results" / "bench" / "fake" / "bench-ssd.json").exists()  # merged
    summary = json.loads((published / "summary.json").read_text())
    assert summary["fake"] and summary["bundle"] == {"git_commit": "abc"}
    with tarfile.open(archive) as tar:  # laid out like the checkout
        names = tar.getnames()
    assert "results/bench/gpu/fake-gpu/summary.json" in names
    assert "results/bench/fake/bench-ssd.json" in names
    assert f"outputs/gpu-suite/{run.name}/tests.log" in names


def test_a_section_past_its_time_box_is_killed_recorded_and_fails_the_run(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("WM_BENCH_FAKE_SLEEP", "tests=30")
    argv = _argv(tmp_path, "--fake", "--sections", "tests", "--budget", "tests=1")
    assert suite.main(argv) == 1
    rec = json.loads((_run_dir(tmp_path) / "tests.json").read_text())
    assert rec["status"] == "timeout" and rec["wall_s"] < 15
    assert "nothing published" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()


def test_sections_expand_and_unknown_names_are_rejected(tmp_path, capsys):
    assert suite.plan(["bench", "tests"]) == [
        "tests",
        "bench:ssd",
        "bench:attention",
        "bench:train",
    ]
    assert suite.plan(["mqar", "env"]) == ["mqar-small"]
    assert suite.plan([]) == list(suite.GPU_SECTIONS)
    with pytest.raises(ValueError, match="unknown section 'gpu'; valid: .*'bench'"):
        suite.plan(["gpu"])
    assert suite.main(_argv(tmp_path, "--sections", "nope")) == 2
    assert sum(suite.BUDGETS.values()) <= suite.TOTAL_BUDGET_S <= 540
