"""The RoPE report (Table 1, claim C1): perplexity per variant and evaluation length; verdict."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from wm_bench import stats
from wm_bench.metric_names import PPL_PREFIX, ppl_at, ppl_length
from wm_bench.report import common as c
from wm_bench.report import tuning as tune
from wm_bench.report import verdicts as vd

EXPERIMENT = "rope"


def _task() -> Any:
    import wm_bench_tasks.rope as task

    return task


def lengths_of(records: list[dict[str, Any]]) -> list[int]:
    """Evaluation lengths present in the records' metrics, ascending."""
    return sorted(
        {n for r in records for k in r.get("metrics") or {} if (n := ppl_length(k)) is not None}
    )


def ppl_cells(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[int, float]]:
    """(variant, length) → {seed: test perplexity} of the ok runs given (one LR per variant)."""
    cells: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for r in records:
        if not c.is_ok(r):
            continue
        for k, v in (r.get("metrics") or {}).items():
            if (n := ppl_length(k)) is not None and c.finite(v):
                cells[(r["variant"], n)][int(r["seed"])] = float(v)
    return dict(cells)


def paired_gain(rope: dict[int, float], norope: dict[int, float]) -> stats.Interval | None:
    """The per-seed relative reduction (ppl_norope − ppl_rope) / ppl_norope over the seeds both
    ran (same seed: same data stream), as a paired t interval; None without a common seed."""
    seeds = sorted(set(rope) & set(norope))
    if not seeds:
        return None
    return stats.paired_interval(
        [norope[s] for s in seeds], [rope[s] for s in seeds], relative=True
    )


def table(
    records: list[dict[str, Any]], lengths: list[int], seq_len: int | None, choice: dict
) -> list[str]:
    """Per variant (task order): parameters, LR, test perplexity at each length (mean ± std over
    its ok runs' seeds) and the mean training tokens/s."""
    task = _task()
    ppl = [ppl_at(L) for L in lengths]
    runs = c.ok_frame(records, lambda k: k.startswith(PPL_PREFIX), ("tokens_per_s",))
    summary = c.mean_std_by(runs, "variant", [*ppl, "timing/tokens_per_s"])
    params = {r["variant"]: r.get("params") or {} for r in records}  # the last run of each
    order = [v for v in task.VARIANTS if v in summary.index or v in params]
    summary = summary.reindex(order)
    lead = tune.leading_columns(
        "variant", order, task.LABELS.get, params, choice, {"total": "params"}
    )
    out = pd.DataFrame(lead, index=order)
    for L, key in zip(lengths, ppl):
        out[f"ppl @ {L}" + (f" ({L // seq_len}×)" if seq_len else "")] = c.mean_std_cells(
            summary, key, 2
        )
    tps = summary[("timing/tokens_per_s", "mean")]
    out["train tokens/s"] = [None if pd.isna(x) else f"{x:,.0f}" for x in tps]
    return c.frame_table(out, "lrl" + "r" * (len(lengths) + 1))


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def c1_rule() -> str:
    """How claim C1 is judged, in words: the task's own rule (tasks/rope), one text for both."""
    return _task().c1_rule()


def c1_verdict(records: list[dict[str, Any]], lengths: list[int]) -> stats.Verdict:
    """C1 at one scale from its current records at each variant's chosen LR."""
    task = _task()
    need = task.CLAIM_C1["min_gain"]
    rope_v, norope_v = task.PAIRS[task.CLAIM_C1["pair"]]
    cells = ppl_cells(records)
    iv = (
        paired_gain(cells.get((rope_v, lengths[0]), {}), cells.get((norope_v, lengths[0]), {}))
        if lengths
        else None
    )
    if iv is None:
        return vd.lacking(
            c1_rule(), "the hybrid pair lacks results at a common seed", threshold=need
        )
    return stats.threshold_verdict(iv, need, rule=c1_rule(), fmt=_pct, units="seeds")


def c1_section(records: list[dict[str, Any]], lengths: list[int], scale: str) -> list[str]:
    if not c.judged(scale):
        return [c.NOT_JUDGED]
    task = _task()
    need = task.CLAIM_C1["min_gain"]
    cells = ppl_cells(records)
    rows = []
    for name, (a, b) in task.PAIRS.items():
        for L in lengths:
            ra, rb = cells.get((a, L), {}), cells.get((b, L), {})
            iv = paired_gain(ra, rb)
            if iv is None:
                rows.append([name, L, "—", 0, "—", "—", "—"])
                continue
            seeds = sorted(set(ra) & set(rb))
            per = ", ".join(f"{100 * (rb[s] - ra[s]) / rb[s]:.2f}" for s in seeds)
            word = stats.threshold_verdict(iv, need, rule="").verdict
            rows.append(
                [
                    name,
                    L,
                    per,
                    iv.n,
                    _pct(iv.estimate),
                    vd.fmt_interval(iv.low, iv.high, _pct),
                    word,
                ]
            )
    out = c.md_table(
        [
            "pair",
            "eval length",
            "per-seed gain (%)",
            "seeds",
            "mean gain",
            "95 % interval",
            f"vs > {100 * need:g} %",
        ],
        rows,
        "lrlrrrl",
    )
    v = c1_verdict(records, lengths)
    head = [
        "Gain = (ppl without RoPE − ppl with RoPE) / ppl without RoPE, per seed (the two models "
        "of a seed share its data stream), then its mean and paired t interval.",
        "",
    ]
    L = lengths[0] if lengths else None
    return [*head, *out, "", *vd.block("C1", scale, v, _pct, quantity=f"hybrid gain @ {L}")]


def verdicts_of_scale(scale: str, records: list[dict[str, Any]]) -> stats.Verdict | None:
    """C1 at a judged scale (None at smoke), from the current records at the chosen LRs."""
    if not c.judged(scale):
        return None
    chosen = tune.scale_runs(records)[3]
    return c1_verdict(chosen, lengths_of(chosen))


def verdicts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """reports/verdicts.json entries: C1 per scale."""
    subject = "hybrid_rope vs hybrid_norope (test ppl at T, paired by seed)"
    out = []
    for scale, recs in c.by_scale(records).items():
        v = verdicts_of_scale(scale, recs)
        if v is None:
            out.append(vd.not_judged("C1", scale, subject=subject, unit="%", rule=c1_rule()))
        else:
            out.append(vd.entry("C1", scale, v, subject=subject, unit="%"))
    return out


def plot_curves(
    scale: str,
    records: list[dict[str, Any]],
    path: Path,
    *,
    labels: dict[str, str] | None = None,
    title: str | None = None,
) -> Path | None:
    """Training-loss curves (mean over seeds per step) per variant (shared with the ffn report)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = labels or _task().LABELS
    curves: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        for step, loss in (r.get("extra") or {}).get("train_loss_curve") or []:
            curves[r["variant"]][int(step)].append(float(loss))
    if not curves:
        return None
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, v in enumerate([v for v in labels if v in curves]):
        steps = sorted(curves[v])
        ys = [sum(curves[v][s]) / len(curves[v][s]) for s in steps]
        ax.plot(
            steps,
            ys,
            label=labels[v],
            color=f"C{i}",
            lw=1.2,
            ls="--" if v.endswith("norope") else "-",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over seeds)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return c.save_figure(fig, path, title or f"RoPE in SSD: training loss, {scale} scale")


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    figures = figures or {}

    def section(scale: str, all_recs: list[dict[str, Any]]) -> list[str]:
        recs, old, choice, chosen = tune.scale_runs(all_recs)
        lengths = lengths_of(chosen)
        datas = [
            r["config"]["data"] for r in recs if isinstance(r.get("config", {}).get("data"), dict)
        ]
        seq = datas[0].get("seq_len") if datas else None
        n_ok = sum(c.is_ok(r) for r in recs)
        corpus = c.corpus_sentence(recs, old)
        out = ["", f"{len(recs)} run(s), {n_ok} ok; {corpus}, training length {seq}."]
        out += c.superseded_note(old)
        out += ["", "### Test perplexity", ""]
        out += ["Each variant at its chosen LR: mean ± std over seeds (number of seeds).", ""]
        out += table(chosen, lengths, seq, choice)
        label = lambda v: _task().LABELS.get(v, v)  # noqa: E731
        out += tune.lr_grid_section(recs, choice, label, _task().VARIANTS)
        out += c.curve_line(scale, figures)
        out += ["", "### Claim C1 at this scale", "", *c1_section(chosen, lengths, scale)]
        return out + c.runs_sections(recs)

    return c.render_by_scale(
        EXPERIMENT,
        records,
        section,
        title="RoPE inside SSD (Table 1, claim C1)",
        about="Test perplexity (sliding window, stride L/2) of language models trained on the "
        "same tokens, at 1×, 2× and 4× the training length; SSD-only and hybrid models with and "
        "without RoPE in the SSD, the attention-only model as reference (parameter-matched). ",
        after=" Settings: `tasks/rope/__init__.py`. The paper's Table 1 values are not available "
        "(docs/spec.md §1: only the abstract's claim is known).",
        notes=[
            'Claim C1 (paper): "RoPE inside SSD lowers the perplexity of the QCAttn+SSD hybrid '
            'by more than 4 %".'
        ],
    )


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/rope.md and one reports/rope-<scale>.png (loss curves) per scale."""
    return c.build_with_figures(records, reports_dir, EXPERIMENT, plot_curves, render)
