"""rope and ffn reports from fixture results: tables, the C1 verdict, loss-curve figures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wm_bench.report import build_report
from wm_bench.results import make_result, write_result


def _write(results: Path, exp: str, variant: str, seed: int, ppl: dict[int, float] | None,
           params: tuple[int, int] = (1000, 1000)) -> None:  # fmt: skip
    h = hashlib.sha256(repr((exp, variant, seed)).encode()).hexdigest()[:16]
    ok = ppl is not None
    metrics = {f"test/ppl@{k}": v for k, v in (ppl or {}).items()}
    rec = make_result(
        experiment=exp, variant=variant, seed=seed, scale="cpu",
        config={"data": {"corpus": "debian", "seq_len": 128}, "tags": {"variant": variant}},
        config_hash=h, status="ok" if ok else "failed",
        error=None if ok else "RuntimeError: fixture", metrics=metrics,
        higher_is_better={k: False for k in metrics},
        params={"total": params[0], "active": params[1]},
        timing={"wall_s": 60.0, "tokens_per_s": 1234.0},
        extra={"train_loss_curve": [[0, 8.0], [10, 6.0], [20, 5.0 + seed / 10]]},
        device={"type": "cpu", "threads": 2},
    )  # fmt: skip
    write_result(rec, results)


@pytest.mark.parametrize(("norope", "word"), [(31.0, "holds"), (30.0, "does not hold")])
def test_rope_report_states_c1_from_the_hybrid_pair(tmp_path: Path, norope: float, word) -> None:
    res = tmp_path / "results"
    for seed in (0, 1, 2):
        _write(res, "rope", "hybrid_rope", seed, {128: 29.0 + seed * 0.1, 256: 35.0})
        _write(res, "rope", "hybrid_norope", seed, {128: norope, 256: 40.0})
        _write(res, "rope", "attn", seed, {128: 28.0, 256: 90.0})
    _write(res, "rope", "ssd_rope", 0, None)
    paths = build_report("rope", res, tmp_path / "rep")
    md = paths[0].read_text()
    assert f"C1 {word}" in md and "training length 128" in md
    assert "ppl @ 256 (2×)" in md and "29.10 ± 0.10 (3)" in md
    assert "RuntimeError: fixture" in md  # the failed run is listed
    assert [p.name for p in paths] == ["rope.md", "rope-cpu.png"]


def test_ffn_report_lists_parameters_and_perplexity(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _write(res, "ffn", "mlp", 0, {128: 30.0}, (2_000_000, 2_000_000))
    _write(res, "ffn", "cdmoe_1024", 0, {128: 28.5}, (3_100_000, 2_000_000))
    md = build_report("ffn", res, tmp_path / "rep")[0].read_text()
    assert "CDMoE (N = 1024)" in md and "3,100,000" in md and "28.50 (1)" in md
    assert md.index("MLP (dense)") < md.index("CDMoE (N = 1024)")


def test_ffn_report_compares_each_ffn_with_the_mlp_within_seed_noise(tmp_path: Path) -> None:
    res = tmp_path / "results"
    for seed, ppl in enumerate((30.0, 31.0, 32.0)):  # MLP: mean 31, std 1
        _write(res, "ffn", "mlp", seed, {128: ppl})
    _write(res, "ffn", "cdmoe_1024", 0, {128: 31.5})  # gap 0.5 < 2·SE (SE = √(1 + 1/3))
    _write(res, "ffn", "peer", 0, {128: 40.0})  # far worse
    md = build_report("ffn", res, tmp_path / "rep")[0].read_text()
    part = md.split("### Against the dense MLP")[1]
    assert "- PEER: 40.00 vs 31.00 (+29.0%): worse." in part
    assert "- CDMoE (N = 1024): 31.50 vs 31.00 (+1.6%): within noise." in part
    assert part.index("PEER") < part.index("CDMoE")
