"""arch report (Table 3) from fixture results: tables per shot, best marked, not-run tasks, C4."""

from __future__ import annotations

import hashlib
from pathlib import Path

from wm_bench.report import build_report
from wm_bench.results import make_result, write_result

TASKS = {"arc_easy": "acc", "arc_challenge": "acc_norm"}


def _write(res: Path, variant: str, seed: int, ppl: float, acc: dict[str, float]) -> None:
    h = hashlib.sha256(repr((variant, seed)).encode()).hexdigest()[:16]
    metrics = {"valid/ppl": ppl, "test/ppl@128": ppl + 1}
    for shot in (0, 5):
        for t, m in TASKS.items():
            metrics[f"downstream/{t}@{shot}shot/{m}"] = acc[t] + (0.01 if shot else 0.0)
    down = {"shots": [0, 5], "limit": 100, "n_samples": dict.fromkeys(TASKS, 100),
            "not_run": {"mmlu": "not run: no data (mmlu.jsonl not in /data)"},
            "versions": dict.fromkeys(TASKS, 1.0), "lm_eval_version": "0.4.13"}  # fmt: skip
    rec = make_result(
        experiment="arch", variant=variant, seed=seed, scale="cpu",
        config={"data": {"seq_len": 128}, "tags": {"variant": variant}}, config_hash=h,
        status="ok", metrics=metrics, higher_is_better={k: "ppl" not in k for k in metrics},
        params={"total": 900, "active": 800}, timing={"wall_s": 100.0, "tokens_per_s": 5000.0},
        extra={"downstream": down, "train_loss_curve": [[0, 8.0], [10, 6.0]]},
        device={"type": "cpu", "threads": 2},
    )  # fmt: skip
    write_result(rec, res)


def test_arch_report_marks_the_best_lists_missing_tasks_and_states_c4(tmp_path: Path) -> None:
    res = tmp_path / "results"
    for seed in (0, 1):
        _write(res, "llama", seed, 50.0, {"arc_easy": 0.30, "arc_challenge": 0.25})
        _write(res, "mamba2", seed, 52.0, {"arc_easy": 0.31, "arc_challenge": 0.25})
        _write(res, "jamba", seed, 51.0, {"arc_easy": 0.29, "arc_challenge": 0.25})
        _write(res, "cheems_mlp", seed, 49.0 + seed, {"arc_easy": 0.35, "arc_challenge": 0.25})
        _write(res, "cheems_cdmoe", seed, 55.0, {"arc_easy": 0.20, "arc_challenge": 0.25})
    paths = build_report("arch", res, tmp_path / "rep")
    md = paths[0].read_text()
    assert [p.name for p in paths] == ["arch.md", "arch-cpu.png"]
    assert "### Downstream, 0-shot" in md and "### Downstream, 5-shot" in md
    assert "**49.50 ± 0.71 (2)**" in md  # cheems_mlp's valid ppl: mean ± std, best in bold
    assert "ARC-E (acc)" in md and "ARC-C (acc_norm)" in md
    assert "**0.250" not in md  # a column where everyone ties marks no one
    assert "- mmlu: not run: no data" in md
    assert "lighteval" in md and "0.4.13" not in md.split("## Provenance")[0]
    c4 = md.split("### Claim C4")[1]
    # cheems_mlp: within noise of the best baseline everywhere (ties) → competitive on 4 of 4;
    # cheems_cdmoe: clearly worse on perplexity (no seed spread) and ARC-E → 0 of 4.
    assert "MLP): competitive with the best baseline on 4 of 4 columns (tie:" in c4
    assert "CDMoE): competitive with the best baseline on 0 of 4 columns (worse:" in c4
    assert "C4 **holds**" in c4 and "C4 **does not hold**" in c4
    assert "Left out (all four equal): arc_challenge@0shot, arc_challenge@5shot" in c4


def test_arch_report_without_results_says_how_to_make_them(tmp_path: Path) -> None:
    md = build_report("arch", tmp_path / "none", tmp_path / "rep")[0].read_text()
    assert "make reproduce-table3" in md
