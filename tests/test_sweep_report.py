"""Sweep reports from an exported study and its run records (no training): the tables, the best
configuration, importances and plots, byte-identical when rebuilt, and their place in the PDF."""

from __future__ import annotations

import json
from pathlib import Path

from optuna.distributions import CategoricalDistribution, FloatDistribution, distribution_to_json

from wm_bench.report.pdf import render_html
from wm_bench.report.sweeps import best_trial, build_sweep_report

SPACE = {
    "model.blocks.M.mixer.window": CategoricalDistribution((4, 8, 16)),
    "optim.lr": FloatDistribution(1e-4, 1e-2, log=True),
}


def _trial(n: int, state: str, window: int, lr: float, value: float | None, **attrs) -> dict:
    return {
        "number": n,
        "state": state,
        "value": value,
        "intermediate": attrs.pop("inter", {}),
        "params": {"model.blocks.M.mixer.window": window, "optim.lr": lr},
        "user_attrs": {"run_id": f"dma__{n:016x}", **attrs},
        "started": None,
        "completed": None,
    }


def _write_sweep(results: Path) -> list[dict]:
    trials = [
        _trial(0, "COMPLETE", 4, 1e-3, 0.50, status="ok", inter={"20": 0.3, "40": 0.5}),
        _trial(1, "COMPLETE", 8, 3e-3, 0.75, status="ok", inter={"20": 0.4, "40": 0.75}),
        _trial(2, "COMPLETE", 16, 1e-3, 0.60, status="ok", inter={"20": 0.35, "40": 0.6}),
        _trial(3, "COMPLETE", 8, 1e-4, 0.55, status="ok", inter={"20": 0.3, "40": 0.55}),
        _trial(4, "PRUNED", 16, 1e-2, None, status="pruned", pruned_at_step=20,
               inter={"20": 0.1}),
        _trial(5, "FAIL", 4, 1e-2, None, status="failed", error="RuntimeError: boom\n  trace"),
        _trial(6, "FAIL", 4, 3e-3, None),  # its worker died
    ]  # fmt: skip
    doc = {
        "kind": "wm_bench sweep study",
        "schema_version": 1,
        "sweep": "demo",
        "file": "sweeps/demo.yaml",
        "description": "demo sweep",
        "experiment": "sweeps/demo",
        "scale": "smoke",
        "base": "task mqar @ smoke, variant dma",
        "base_config_hash": "0" * 16,
        "objective": {"metric": "valid/accuracy", "direction": "maximize"},
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "median"},
        "budget": 7,
        "storage": "sqlite",
        "study": "demo-abc",
        "space": [
            {"path": k, "values": "…", "distribution": distribution_to_json(d)}
            for k, d in SPACE.items()
        ],
        "trials": trials,
    }
    folder = results / "sweeps/demo/smoke"
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps(doc))
    recs = []
    for t in trials[:4]:
        rec = {
            "schema_version": 1,
            "run_id": t["user_attrs"]["run_id"],
            "experiment": "sweeps/demo",
            "variant": "dma",
            "seed": 0,
            "scale": "smoke",
            "status": "ok",
            "config": {},
            "config_hash": t["user_attrs"]["run_id"][5:],
            "metrics": {"valid/accuracy": t["value"]},
            "higher_is_better": {"valid/accuracy": True},
            "timing": {"wall_s": 2.5, "steps": 40},
            "provenance": {
                "git_commit": "abcdef1234567890",
                "git_dirty": False,
                "versions": {"torch": "2"},
                "device": {"type": "cpu"},
            },
            "started_at": "2026-01-01T00:00:00+00:00",
            "finished_at": "2026-01-01T00:00:01+00:00",
        }
        (folder / f"{rec['run_id']}.json").write_text(json.dumps(rec))
        recs.append(rec)
    return trials


def test_sweep_report_tables_plots_rebuild_identically_and_join_the_pdf(tmp_path: Path) -> None:
    _write_sweep(tmp_path / "res")
    written = build_sweep_report("demo", tmp_path / "res", tmp_path / "rep")
    md = (tmp_path / "rep/sweeps/demo.md").read_text()
    assert written[0] == tmp_path / "rep/sweeps/demo.md"
    assert "Trial 1: `valid/accuracy` = 0.75" in md  # the best configuration
    assert "| `model.blocks.M.mixer.window` | 8 |" in md
    assert "one seed): this ranks configurations for a follow-up, it is not a verdict" in md
    assert "| 1 | complete | 8 | 0.003 | **0.75** | ok | 40 | 2.5 | dma__0000000000000001 |" in md
    assert "pruned at step 20 with valid/accuracy 0.1 (" in md and "RuntimeError: boom" in md
    assert "| 4 | pruned | 16 | 0.01 | (0.1 at 20) | pruned | 20 |" in md  # where it stood
    assert "its worker stopped beating" in md
    assert "### Parameter importances" in md and "| `optim.lr` |" in md
    assert "- trials: 4 complete, 1 pruned, 2 fail" in md and "commits: abcdef123456" in md
    kinds = {"importances", "slice", "parallel", "intermediate"}
    assert {p.name for p in written[1:]} == {f"demo-smoke-{k}.png" for k in kinds}
    before = {p.name: p.read_bytes() for p in written}
    again = build_sweep_report("demo", tmp_path / "res", tmp_path / "rep")
    assert {p.name: p.read_bytes() for p in again} == before  # deterministic
    (tmp_path / "rep/other.md").write_text("# Other\n")
    html = render_html(tmp_path / "rep")
    assert html.index("<h1>Other</h1>") < html.index("Sweep <code>demo</code>")
    assert 'src="sweeps/demo-smoke-slice.png"' in html and "figure missing" not in html


def test_the_best_trial_follows_the_direction_and_ties_go_to_the_first() -> None:
    doc = {
        "objective": {"direction": "minimize"},
        "trials": [
            {"number": 0, "state": "COMPLETE", "value": 2.0},
            {"number": 1, "state": "COMPLETE", "value": 1.0},
            {"number": 2, "state": "COMPLETE", "value": 1.0},
            {"number": 3, "state": "PRUNED", "value": None},
        ],
    }
    assert best_trial(doc)["number"] == 1
    doc["objective"]["direction"] = "maximize"
    assert best_trial(doc)["number"] == 0
