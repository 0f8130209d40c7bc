"""The expert-speed report from fixture results: tables, ratios, C3 verdict, figure, no torch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from wm_bench.report import build_report
from wm_bench.results import make_result, write_result

PROV_DEVICE = {"type": "cpu", "threads": 2}
# fwd+bwd ms per method; SEIMoE grows with N, CDMoE slowly: SEIMoE/CDMoE = 10× at N = 1024.
FWD_BWD = {"seimoe": 100.0, "moe": 5.0, "pkm": 8.0, "peer": 6.0, "cdmoe": 10.0}


def _write(
    results: Path,
    scale: str,
    method: str,
    n: int,
    ratio: float,
    ms: float | None,
    reps: list[float] | None = None,
    session: str = "s1",
) -> None:
    k = max(1, round(ratio * int(n**0.5)))
    tags = {"method": method, "num_experts": n, "top_k": k, "ratio": ratio}
    point = {
        "method": method,
        "num_experts": n,
        "top_k": k,
        "ratio": ratio,
        "batch": 2,
        "seq_len": 256,
        "d_model": 64,
        "dtype": "float32",
        "device": "cpu",
    }
    h = hashlib.sha256(repr((scale, method, n, ratio, reps is None)).encode()).hexdigest()[:16]
    ok = ms is not None
    extra = {}
    timing = {"wall_s": 1.5, "peak_mib": 12.0, "peak_kind": "fixture"}
    if reps is not None:
        ms = float(np.median(reps))
        extra = {
            "fwd_bwd_ms_repeats": reps,
            "fwd_ms_repeats": [x / 3 for x in reps],
            "session": session,
        }
        timing.update(loadavg_before=[1.5, 1.2, 1.0], loadavg_after=[2.5, 1.4, 1.1])
    rec = make_result(
        experiment="expert_speed",
        variant=method,
        seed=0,
        scale=scale,
        config={"point": point, "tags": tags},
        config_hash=h,
        status="ok" if ok else "failed",
        error=None if ok else "OutOfMemoryError: fixture",
        metrics={"fwd_ms": ms / 3, "fwd_bwd_ms": ms} if ok else {},
        higher_is_better={"fwd_ms": False, "fwd_bwd_ms": False} if ok else {},
        timing=timing,
        device=PROV_DEVICE,
        extra=extra,
    )
    write_result(rec, results)


def _round_robin(results: Path, speedup: float, noise: float = 0.05, seed: int = 0) -> None:
    """N ∈ {1024, 4096, 16384}, 12 repeats per point; SEIMoE `speedup`× slower than CDMoE at
    N > 1024 (and only 2× at N = 1024, which the claim leaves out), shared load per repeat."""
    rng = np.random.default_rng(seed)
    for n in (1024, 4096, 16384):
        for ratio in (0.5, 1.0):
            load = np.exp(0.3 * rng.standard_normal(12))  # both methods of a repeat alike
            for m, base in (
                ("cdmoe", 10.0),
                ("seimoe", 10.0 * (speedup if n > 1024 else 2)),
                ("moe", 20.0),
            ):
                reps = base * load * np.exp(noise * rng.standard_normal(12))
                _write(
                    results,
                    "cpu",
                    m,
                    n,
                    ratio,
                    0.0,
                    reps.round(4).tolist(),
                    session=f"s-{n}-{ratio}",
                )


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


def test_report_tables_and_ratios_without_points_above_1024(built) -> None:
    _, paths = built
    md = paths[0].read_text()
    assert "## CPU scale" in md and "CPU milliseconds" in md
    assert "### Ratios to CDMoE" in md and "40.0×" in md  # SEIMoE/CDMoE at N = 1024
    assert "Not testable at the cpu scale: no point with N > 1024" in md  # 1024 is not > 1024
    assert "OutOfMemoryError: fixture" in md  # failed points listed
    assert "(1491)" in md  # the paper's SEIMoE value at N = 1024, ratio 1 beside ours
    assert "median of 3, one method at a time" in md


@pytest.mark.parametrize(
    ("speedup", "word"), [(12.0, "holds"), (5.0, "refuted"), (8.0, "inconclusive")]
)
def test_c3_bootstraps_the_round_robin_repeats(tmp_path: Path, speedup: float, word: str) -> None:
    results = tmp_path / "results"
    _round_robin(results, speedup)
    paths = build_report("expert_speed", results, tmp_path / "r")
    md = paths[0].read_text()
    assert f"**Verdict (cpu scale): C3 {word}**" in md
    assert "round-robin, 12 repeats per point" in md and "Load average (1 min)" in md
    c3 = md.split("### Claim C3 at this scale")[1]
    assert "| SEIMoE | 4096 | 0.5 |" in c3 and "| SEIMoE | 1024 |" not in c3  # N > 1024 only
    entry = json.loads(paths[-1].read_text())["verdicts"][0]
    assert (entry["claim"], entry["verdict"], entry["threshold"]) == ("C3", word, 8.0)
    assert entry["ci_low"] < speedup < entry["ci_high"] or word != "inconclusive"
    assert abs(entry["estimate"] - speedup) / speedup < 0.05


def test_old_median_of_3_results_are_inconclusive_and_superseded(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for m in ("seimoe", "cdmoe"):
        _write(results, "cpu", m, 4096, 0.5, 130.0 if m == "seimoe" else 10.0)
    md = build_report("expert_speed", results, tmp_path / "r")[0].read_text()
    assert "C3 inconclusive** — inconclusive: 1 of 1 point(s) have no per-repeat timings" in md
    assert "13.00×" in md  # the estimate is still shown
    _round_robin(results, 12.0)  # new round-robin results of the same points replace them
    md = build_report("expert_speed", results, tmp_path / "r")[0].read_text()
    assert "C3 holds" in md and "superseded by round-robin ones" in md


def test_figure_written_per_scale(built) -> None:
    _, paths = built
    assert [p.name for p in paths] == ["expert_speed.md", "expert_speed-cpu.png", "verdicts.json"]
    assert paths[1].stat().st_size > 10_000


def test_report_imports_no_torch(built, tmp_path: Path, report_imports_none) -> None:
    report_imports_none(["expert_speed"], built[0], tmp_path)
