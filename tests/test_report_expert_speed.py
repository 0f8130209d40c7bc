"""The expert-speed report from fixture results: tables, ratios, C3 verdict, figure, no torch."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from wm_bench.report import build_report
from wm_bench.results import make_result, write_result

PROV_DEVICE = {"type": "cpu", "threads": 2}
# fwd+bwd ms per method; SEIMoE grows with N, CDMoE slowly: SEIMoE/CDMoE = 10× at N = 1024.
FWD_BWD = {"seimoe": 100.0, "moe": 5.0, "pkm": 8.0, "peer": 6.0, "cdmoe": 10.0}


def _write(results: Path, scale: str, method: str, n: int, ratio: float, ms: float | None) -> None:
    k = max(1, round(ratio * int(n**0.5)))
    tags = {"method": method, "num_experts": n, "top_k": k, "ratio": ratio}
    point = {"method": method, "num_experts": n, "top_k": k, "ratio": ratio, "batch": 2,
             "seq_len": 256, "d_model": 64, "dtype": "float32", "device": "cpu"}  # fmt: skip
    h = hashlib.sha256(repr((scale, method, n, ratio)).encode()).hexdigest()[:16]
    ok = ms is not None
    rec = make_result(
        experiment="expert_speed", variant=method, seed=0, scale=scale,
        config={"point": point, "tags": tags}, config_hash=h,
        status="ok" if ok else "failed", error=None if ok else "OutOfMemoryError: fixture",
        metrics={"fwd_ms": ms / 3, "fwd_bwd_ms": ms} if ok else {},
        higher_is_better={"fwd_ms": False, "fwd_bwd_ms": False} if ok else {},
        timing={"wall_s": 1.5, "peak_mib": 12.0, "peak_kind": "fixture"}, device=PROV_DEVICE,
    )  # fmt: skip
    write_result(rec, results)


@pytest.fixture()
def built(tmp_path: Path) -> tuple[Path, list[Path]]:
    results = tmp_path / "results"
    for n, scale_up in ((256, 1.0), (1024, 4.0)):
        for ratio in (0.25, 1.0):
            for m, ms in FWD_BWD.items():
                grow = scale_up if m == "seimoe" else 1.0
                fail = n == 1024 and ratio == 1.0 and m == "pkm"
                _write(results, "cpu", m, n, ratio, None if fail else ms * grow * (1 + ratio))
    paths = build_report("expert_speed", results, tmp_path / "reports")
    return results, paths


def test_report_tables_ratios_and_verdict(built) -> None:
    _, paths = built
    md = paths[0].read_text()
    assert "## CPU scale" in md and "CPU milliseconds" in md
    assert "### Ratios to CDMoE" in md and "40.0×" in md  # SEIMoE/CDMoE at N = 1024
    assert "**holds** at the cpu scale" in md
    assert "0.5× to 0.5×" in md  # the grouped MoE is faster than CDMoE here
    assert "OutOfMemoryError: fixture" in md  # failed points listed
    assert "(1491)" in md  # the paper's SEIMoE value at N = 1024, ratio 1 beside ours


def test_verdict_fails_below_8x(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for m in ("seimoe", "cdmoe"):
        _write(results, "cpu", m, 4096, 0.5, 30.0 if m == "seimoe" else 10.0)
    md = build_report("expert_speed", results, tmp_path / "r")[0].read_text()
    assert "**does not hold** at the cpu scale" in md and "3.0× to 3.0×" in md


def test_figure_written_per_scale(built) -> None:
    _, paths = built
    assert [p.name for p in paths] == ["expert_speed.md", "expert_speed-cpu.png"]
    assert paths[1].stat().st_size > 10_000


def test_report_imports_no_torch(built, tmp_path: Path) -> None:
    code = (
        "import sys; from wm_bench.report import build_report; "
        f"build_report('expert_speed', {str(built[0])!r}, {str(tmp_path)!r}); "
        "bad = sorted(m for m in ('torch', 'lightning') if m in sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
