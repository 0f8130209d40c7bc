"""The FFN report (Table 2): perplexity, total / active parameters and speed per FFN variant."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from wm_bench import stats
from wm_bench.metric_names import PPL_PREFIX
from wm_bench.report import common as c
from wm_bench.report import tuning as tune
from wm_bench.report import verdicts as vd
from wm_bench.report.rope import plot_curves

EXPERIMENT = "ffn"


def _task() -> Any:
    import wm_bench_tasks.ffn as task

    return task


def _ordered(variants: Any) -> list[str]:
    """Variants in report order: the base methods, then CDMoE by expert count."""
    base = list(_task().BASE_METHODS)

    def rank(v: str) -> tuple[int, int]:
        if v.startswith("cdmoe_"):
            return (len(base), int(v.split("_")[1]))
        return (base.index(v) if v in base else len(base) + 1, 0)

    return sorted(variants, key=rank)


def _ppl_key(records: list[dict[str, Any]]) -> str | None:
    keys = sorted(
        {k for r in records for k in (r.get("metrics") or {}) if k.startswith(PPL_PREFIX)}
    )
    return keys[0] if keys else None


def table(records: list[dict[str, Any]], choice: dict) -> list[str]:
    """Per FFN (report order): parameters (total, active), LR, test perplexity (mean ± std over
    its ok runs' seeds) and the mean training tokens/s."""
    task = _task()
    key = _ppl_key(records)
    runs = c.ok_frame(records, lambda k: k == key, ("tokens_per_s",))
    summary = c.mean_std_by(runs, "variant", [key or "test/ppl", "timing/tokens_per_s"])
    params: dict[str, dict] = {}
    for r in records:  # the first run of each variant
        params.setdefault(r["variant"], r.get("params") or {})
    order = _ordered(params)
    summary = summary.reindex(order)
    tps = summary[("timing/tokens_per_s", "mean")]
    out = pd.DataFrame(tune.leading_columns("FFN", order, task.label, params, choice), index=order)
    ppl_head = f"test ppl @ {key.split('@')[1]}" if key else "test ppl"
    out[ppl_head] = c.mean_std_cells(summary, key or "test/ppl", 2)
    out["train tokens/s"] = [None if pd.isna(x) else f"{x:,.0f}" for x in tps]
    return c.frame_table(out, "lrrlrr")


RULE = (
    "Each FFN against the dense MLP at equal active parameters: per seed (the two models of a "
    "seed see the same data stream, each at its own best LR), the relative test-perplexity "
    "difference (ppl_FFN − ppl_MLP) / ppl_MLP; better when its 95 % paired t interval lies "
    "wholly below 0, worse when wholly above 0, otherwise inconclusive. A variant with one seed "
    "in common with the MLP has no spread of its own: n = 1, inconclusive (it does not borrow "
    "the MLP's)."
)
WORDS = {"holds": "better", "refuted": "worse", "inconclusive": "inconclusive"}


def comparisons(records: list[dict[str, Any]]) -> dict[str, tuple[list[int], stats.Verdict]]:
    """variant → (seeds paired with the MLP, verdict of "lower perplexity than the MLP")."""
    key = _ppl_key(records)
    by_v: dict[str, dict[int, float]] = defaultdict(dict)
    for r in records:
        if key and c.is_ok(r) and c.finite(r["metrics"].get(key)):
            by_v[r["variant"]][int(r["seed"])] = float(r["metrics"][key])
    mlp = by_v.get("mlp")
    if not mlp:
        return {}
    out = {}
    for v in _ordered(by_v):
        seeds = sorted(set(by_v[v]) & set(mlp))
        if v == "mlp" or not seeds:
            continue
        iv = stats.mean_interval([(by_v[v][s] - mlp[s]) / mlp[s] for s in seeds])
        out[v] = (
            seeds,
            stats.threshold_verdict(iv, 0.0, direction="less", rule=RULE, fmt=_pct, units="seeds"),
        )
    return out


def _pct(x: float) -> str:
    return f"{100 * x:+.2f} %"


def versus_mlp(records: list[dict[str, Any]], scale: str) -> list[str]:
    """Each FFN's test perplexity against the dense MLP's, paired by seed (see RULE)."""
    head = ["", "### Against the dense MLP (test perplexity, equal active parameters)", ""]
    if not c.judged(scale):
        return [*head, c.NOT_JUDGED]
    comp = comparisons(records)
    if not comp:
        return []
    key = _ppl_key(records)
    per: dict[str, dict[int, float]] = defaultdict(dict)
    for r in records:
        if c.is_ok(r) and c.finite((r.get("metrics") or {}).get(key)):
            per[r["variant"]][int(r["seed"])] = float(r["metrics"][key])
    rows = []
    for v, (seeds, verdict) in comp.items():
        diffs = ", ".join(
            f"{100 * (per[v][s] - per['mlp'][s]) / per['mlp'][s]:+.2f}" for s in seeds
        )
        word = WORDS[verdict.verdict] + (f" (n = {verdict.n})" if verdict.n < 2 else "")
        rows.append(
            [
                _task().label(v),
                ", ".join(map(str, seeds)),
                diffs,
                _pct(verdict.estimate),
                vd.fmt_interval(verdict.ci_low, verdict.ci_high, _pct),
                word,
            ]
        )
    table = c.md_table(
        ["FFN", "seeds paired", "per-seed Δ vs MLP (%)", "mean Δ", "95 % interval", "verdict"],
        rows,
        "llrrrl",
    )
    return [*head, f"Rule: {RULE}", "", *table]


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    figures = figures or {}

    def section(scale: str, all_recs: list[dict[str, Any]]) -> list[str]:
        recs, old, choice, chosen = tune.scale_runs(all_recs)
        n_ok = sum(c.is_ok(r) for r in recs)
        out = [
            "",
            f"{len(recs)} run(s), {n_ok} ok; {c.corpus_sentence(recs, old)}. Each FFN at "
            "its chosen LR: mean ± std over seeds (number of seeds).",
            *c.superseded_note(old),
        ]
        out += ["", *table(chosen, choice)]
        out += tune.lr_grid_section(recs, choice, _task().label, _ordered(choice))
        out += versus_mlp(chosen, scale)
        return out + c.curve_line(scale, figures) + c.runs_sections(recs)

    return c.render_by_scale(
        EXPERIMENT,
        records,
        section,
        title="FFN comparison (Table 2): MLP, MoE, SEIMoE, PEER, CDMoE at matched active "
        "parameters",
        about="The same attention backbone with each FFN, trained on the same tokens; test "
        "perplexity (sliding window) at the training length, parameters (total and active per "
        "token) and training speed. ",
        after=" Settings: `tasks/ffn/__init__.py`. The paper's Table 2 values are not available.",
    )


def _plot(scale: str, recs: list[dict[str, Any]], path: Path) -> Path | None:
    labels = {v: _task().label(v) for v in sorted({r["variant"] for r in recs})}
    title = f"FFN comparison: training loss, {scale} scale"
    return plot_curves(scale, recs, path, labels=labels, title=title)


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/ffn.md and one reports/ffn-<scale>.png (loss curves) per scale."""
    return c.build_with_figures(records, reports_dir, EXPERIMENT, _plot, render)
