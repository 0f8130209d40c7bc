"""The RoPE report (Table 1, claim C1): perplexity per variant and evaluation length; verdict."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from wm_bench.report import common as c

EXPERIMENT = "rope"


def _task() -> Any:
    import tasks.rope as task

    return task


def lengths_of(records: list[dict[str, Any]]) -> list[int]:
    """Evaluation lengths present in the records' metrics, ascending."""
    task = _task()
    out = set()
    for r in records:
        for k in r.get("metrics") or {}:
            if k.startswith(task.METRIC_PREFIX):
                out.add(int(k[len(task.METRIC_PREFIX) :]))
    return sorted(out)


def ppl_cells(records: list[dict[str, Any]]) -> dict[tuple[str, int], list[float]]:
    """(variant, length) → test perplexities of the ok runs (one per seed)."""
    task = _task()
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in records:
        if r.get("status") != "ok":
            continue
        for k, v in (r.get("metrics") or {}).items():
            if k.startswith(task.METRIC_PREFIX) and c.finite(v):
                cells[(r["variant"], int(k[len(task.METRIC_PREFIX) :]))].append(float(v))
    return dict(cells)


def gain(rope: list[float], norope: list[float]) -> float | None:
    """(mean ppl without RoPE − mean ppl with RoPE) / mean ppl without RoPE."""
    if not rope or not norope:
        return None
    a, b = c.mean_std(rope)[0], c.mean_std(norope)[0]
    return (b - a) / b if b > 0 else None


def table(records: list[dict[str, Any]], lengths: list[int], seq_len: int | None) -> list[str]:
    task = _task()
    cells = ppl_cells(records)
    params = {r["variant"]: (r.get("params") or {}).get("total") for r in records}
    tps: dict[str, list[float]] = defaultdict(list)
    for r in records:
        t = (r.get("timing") or {}).get("tokens_per_s")
        if r.get("status") == "ok" and c.finite(t):
            tps[r["variant"]].append(float(t))
    heads = ["variant", "params"]
    heads += [f"ppl @ {L}" + (f" ({L // seq_len}×)" if seq_len else "") for L in lengths]
    heads += ["train tokens/s"]
    rows = []
    for v in task.VARIANTS:
        if not any(k[0] == v for k in cells) and v not in params:
            continue
        row: list[Any] = [task.LABELS[v], f"{params.get(v):,}" if params.get(v) else "—"]
        for L in lengths:
            vals = cells.get((v, L), [])
            row.append(c.fmt_mean_std(*c.mean_std(vals), digits=2) if vals else "—")
        row.append(f"{c.mean_std(tps[v])[0]:,.0f}" if tps.get(v) else "—")
        rows.append(row)
    return c.md_table(heads, rows, "lr" + "r" * (len(lengths) + 1))


def c1_section(records: list[dict[str, Any]], lengths: list[int], scale: str) -> list[str]:
    task = _task()
    cells = ppl_cells(records)
    need = task.CLAIM_C1["min_gain"]
    rows, head_verdict = [], None
    for name, (a, b) in task.PAIRS.items():
        for i, L in enumerate(lengths):
            g = gain(cells.get((a, L), []), cells.get((b, L), []))
            n = min(len(cells.get((a, L), [])), len(cells.get((b, L), [])))
            met = None if g is None else g > need
            rows.append([name, L, "—" if g is None else f"{100 * g:+.1f} %", n,
                         {True: "yes", False: "no", None: "—"}[met]])  # fmt: skip
            if name == task.CLAIM_C1["pair"] and i == 0:
                head_verdict = (L, g, met)
    out = c.md_table(["pair", "eval length", "ppl reduction by RoPE", "seeds", f"> {need:.0%}"],
                     rows, "lrrrl")  # fmt: skip
    if head_verdict is None or head_verdict[2] is None:
        verdict = f"**Verdict ({scale} scale): not decided** — the hybrid pair lacks results."
    else:
        L, g, met = head_verdict
        word = "holds" if met else "does not hold"
        verdict = (f"**Verdict ({scale} scale, training length {L}): C1 {word}** — RoPE in the "
                   f"SSD changes the hybrid's test perplexity by {100 * g:+.1f} % (needed > "
                   f"{need:.0%}).")  # fmt: skip
    return ["Gain = (ppl without RoPE − ppl with RoPE) / ppl without RoPE, means over seeds.",
            "", *out, "", verdict]  # fmt: skip


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
        ax.plot(steps, ys, label=labels[v], color=f"C{i}", lw=1.2,
                ls="--" if v.endswith("norope") else "-")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over seeds)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.suptitle(title or f"RoPE in SSD: training loss, {scale} scale", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    figures = figures or {}
    groups = c.by_scale(records)
    out = [
        "# RoPE inside SSD (Table 1, claim C1)",
        "",
        "Test perplexity (sliding window, stride L/2) of language models trained on the same "
        "tokens, at 1×, 2× and 4× the training length; SSD-only and hybrid models with and "
        "without RoPE in the SSD, the attention-only model as reference (parameter-matched). "
        f"Generated by `wm_bench.report` from {len(records)} result file(s) in `results/rope/`; "
        "do not edit by hand. Settings: `tasks/rope/__init__.py`. The paper's Table 1 values "
        "are not available (SPEC: only the abstract's claim is known).",
        "",
        'Claim C1 (paper): "RoPE inside SSD lowers the perplexity of the QCAttn+SSD hybrid by '
        'more than 4 %".',
    ]
    if not records:
        out += ["", "No results yet: run `wm-bench reproduce rope --scale smoke|cpu|small`."]
    for scale, recs in groups.items():
        lengths = lengths_of(recs)
        seq = next((r["config"]["data"].get("seq_len") for r in recs
                    if isinstance(r.get("config", {}).get("data"), dict)), None)  # fmt: skip
        corpus = next((r["config"]["data"].get("corpus") for r in recs
                       if isinstance(r.get("config", {}).get("data"), dict)), None)  # fmt: skip
        n_ok = sum(r.get("status") == "ok" for r in recs)
        out += ["", f"## {c.scale_title(scale)}", "", c.scale_banner(scale), ""]
        out.append(f"{len(recs)} run(s), {n_ok} ok; corpus `{corpus}`, training length {seq}.")
        out += ["", "### Test perplexity", "", *table(recs, lengths, seq)]
        if scale in figures:
            out += ["", f"![Training loss, {scale} scale]({figures[scale]})"]
        out += ["", "### Claim C1 at this scale", "", *c1_section(recs, lengths, scale)]
        out += c.failed_runs_section(recs) + c.timing_section(recs)
    out += c.provenance_section(groups)
    return "\n".join(out) + "\n"


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/rope.md and one reports/rope-<scale>.png (loss curves) per scale."""
    return c.build_with_figures(records, reports_dir, EXPERIMENT, plot_curves, render)
