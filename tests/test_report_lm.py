"""rope and ffn reports from fixture results: tables, the C1 verdict, loss-curve figures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from wm_bench.report import build_report
from wm_bench.results import make_result, write_result


def _write(
    results: Path,
    exp: str,
    variant: str,
    seed: int,
    ppl: dict[int, float] | None,
    params: tuple[int, int] = (1000, 1000),
    *,
    lr: float | None = None,
    valid: float | None = None,
    scale: str = "cpu",
    status: str | None = None,
) -> None:
    h = hashlib.sha256(repr((exp, variant, seed, lr, scale)).encode()).hexdigest()[:16]
    ok = ppl is not None
    metrics = {f"test/ppl@{k}": v for k, v in (ppl or {}).items()}
    if valid is not None:
        metrics["valid/ppl"] = valid
    config = {"data": {"corpus": "debian", "seq_len": 128}, "tags": {"variant": variant}}
    if lr is not None:
        config["optim"] = {"lr": lr}
    rec = make_result(
        experiment=exp,
        variant=variant,
        seed=seed,
        scale=scale,
        config=config,
        config_hash=h,
        status=status or ("ok" if ok else "failed"),
        error=None if ok else "RuntimeError: fixture",
        metrics=metrics,
        higher_is_better={k: False for k in metrics},
        params={"total": params[0], "active": params[1]},
        timing={"wall_s": 60.0, "tokens_per_s": 1234.0},
        extra={"train_loss_curve": [[0, 8.0], [10, 6.0], [20, 5.0 + seed / 10]]},
        device={"type": "cpu", "threads": 2},
    )
    write_result(rec, results)


# Per-seed gains (norope − rope) / norope: 31 → 6.5 / 6.1 / 5.8 % (interval above 4 %),
# 30 → 3.3 / 3.0 / 2.7 % (wholly below 4 %), 30.5 + seed → spread across 4 %.
@pytest.mark.parametrize(
    ("norope", "word"),
    [
        ((31.0, 31.0, 31.0), "holds"),
        ((30.0, 30.0, 30.0), "refuted"),
        ((30.0, 31.5, 30.2), "inconclusive"),
    ],
)
def test_rope_report_judges_c1_from_the_paired_gain(tmp_path: Path, norope, word: str) -> None:
    res = tmp_path / "results"
    for seed in (0, 1, 2):
        _write(res, "rope", "hybrid_rope", seed, {128: 29.0 + seed * 0.1, 256: 35.0})
        _write(res, "rope", "hybrid_norope", seed, {128: norope[seed], 256: 40.0})
        _write(res, "rope", "attn", seed, {128: 28.0, 256: 90.0})
    _write(res, "rope", "ssd_rope", 0, None)
    paths = build_report("rope", res, tmp_path / "rep")
    md = paths[0].read_text()
    assert f"**Verdict (cpu scale): C1 {word}**" in md and "training length 128" in md
    assert "Rule: C1 holds when the whole 95 % t interval" in md
    assert "ppl @ 256 (2×)" in md and "29.10 ± 0.10 (3)" in md
    assert "RuntimeError: fixture" in md  # the failed run is listed
    assert [p.name for p in paths] == ["rope.md", "rope-cpu.png", "verdicts.json"]
    entry = json.loads(paths[2].read_text())["verdicts"][0]
    assert (entry["claim"], entry["scale"], entry["verdict"], entry["n"]) == ("C1", "cpu", word, 3)
    assert entry["threshold"] == 0.04 and entry["direction"] == "greater"
    assert entry["ci_low"] < entry["estimate"] < entry["ci_high"] and entry["rule"]


def test_rope_smoke_gives_no_verdict_and_says_why(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _write(res, "rope", "hybrid_rope", 0, {128: 29.0}, scale="smoke")
    _write(res, "rope", "hybrid_norope", 0, {128: 35.0}, scale="smoke")
    paths = build_report("rope", res, tmp_path / "rep")
    part = paths[0].read_text().split("### Claim C1 at this scale")[1]
    assert "No verdict at the smoke scale" in part and "Verdict" not in part
    entry = json.loads(paths[-1].read_text())["verdicts"][0]
    assert entry["scale"] == "smoke" and entry["verdict"] is None and "smoke" in entry["reason"]


def test_lr_grid_picks_each_variants_best_lr_and_diverged_counts_as_worst(tmp_path: Path) -> None:
    res = tmp_path / "results"
    for lr, valid in ((1e-3, 50.0), (3e-3, 45.0), (1e-2, None)):  # 1e-2 diverged
        status = "diverged" if valid is None else None
        ppl = None if valid is None else {128: valid + 10}
        _write(res, "rope", "hybrid_rope", 0, ppl, lr=lr, valid=valid, status=status)
        _write(
            res, "rope", "hybrid_norope", 0, {128: 70.0 - 1000 * lr}, lr=lr, valid=60.0 - 1000 * lr
        )  # best at the largest LR (grid edge)
    for seed in (1, 2):
        _write(res, "rope", "hybrid_rope", seed, {128: 55.0 + seed}, lr=3e-3, valid=45.0)
        _write(res, "rope", "hybrid_norope", seed, {128: 60.0 + seed}, lr=1e-2, valid=50.0)
    md = build_report("rope", res, tmp_path / "rep")[0].read_text()
    assert "### Learning rate per variant" in md and "failed / diverged" in md
    assert "0.003 (of 3)" in md and "0.01 (of 3) (grid edge)" in md
    assert "56.00 ± 1.00 (3)" in md  # hybrid_rope at 3e-3 only: 55, 56, 57
    assert "| hybrid_rope | 0.01 | 0 | diverged |" in md  # listed with the failed runs
    c1 = md.split("### Claim C1 at this scale")[1]
    assert "| hybrid | 128 | " in c1 and "| 3 |" in c1  # paired over seeds 0, 1, 2 across LRs


def test_ffn_report_lists_parameters_and_perplexity(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _write(res, "ffn", "mlp", 0, {128: 30.0}, (2_000_000, 2_000_000))
    _write(res, "ffn", "cdmoe_1024", 0, {128: 28.5}, (3_100_000, 2_000_000))
    md = build_report("ffn", res, tmp_path / "rep")[0].read_text()
    assert "CDMoE (N = 1024)" in md and "3,100,000" in md and "28.50 (1)" in md
    assert md.index("MLP (dense)") < md.index("CDMoE (N = 1024)")


def test_ffn_report_pairs_each_ffn_with_the_mlp_by_seed(tmp_path: Path) -> None:
    res = tmp_path / "results"
    for seed, ppl in enumerate((30.0, 33.0, 36.0)):  # MLP: a large spread between seeds
        _write(res, "ffn", "mlp", seed, {128: ppl})
        _write(res, "ffn", "cdmoe_1024", seed, {128: ppl * 0.97 + 0.01 * seed})  # 3 % better
    _write(res, "ffn", "peer", 0, {128: 40.0})  # one seed: no spread of its own
    md = build_report("ffn", res, tmp_path / "rep")[0].read_text()
    part = md.split("### Against the dense MLP")[1]
    # Paired by seed, CDMoE's 3 % gain is clear although the MLP's seeds spread by ±10 %.
    assert "| CDMoE (N = 1024) | 0, 1, 2 | -3.00, -2.97, -2.94 |" in part
    assert part.split("| CDMoE (N = 1024)")[1].split("\n")[0].endswith("| better |")
    assert "| PEER | 0 | +33.33 | +33.33 % | — (no spread) | inconclusive (n = 1) |" in part
    assert part.index("PEER") < part.index("CDMoE")


def test_ffn_smoke_gives_no_comparison_verdict(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _write(res, "ffn", "mlp", 0, {128: 30.0}, scale="smoke")
    _write(res, "ffn", "cdmoe_256", 0, {128: 28.5}, scale="smoke")
    md = build_report("ffn", res, tmp_path / "rep")[0].read_text()
    assert "No verdict at the smoke scale" in md.split("### Against the dense MLP")[1]


def test_lm_reports_import_no_torch(tmp_path: Path, report_imports_none) -> None:
    res = tmp_path / "results"
    for exp, variant in (("rope", "hybrid_rope"), ("ffn", "mlp"), ("arch", "llama")):
        _write(res, exp, variant, 0, {128: 30.0}, lr=3e-3, valid=25.0)
    report_imports_none(["rope", "ffn", "arch"], res, tmp_path / "rep")
