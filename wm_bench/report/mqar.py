"""The MQAR report: accuracy grid beside the paper's, claim C2 verdict, failures, timing, figure."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from wm_bench import stats
from wm_bench.report import common as c
from wm_bench.report import verdicts as vd
from wm_bench.report.mqar_grid import (
    Cell,
    Row,
    Run,
    aggregate,
    fmt_gain,
    gain,
    parse_runs,
    task_module,
)

EXPERIMENT = "mqar"


def grid_section(
    rows: list[Row],
    grid: dict[Row, dict[str, Cell]],
    has_runs: set[tuple],
    paper: dict[Row, dict[str, float]],
    layout: Any,
) -> list[str]:
    """The accuracy table: ours (best LR) beside the paper's value per mixer."""
    labels, d = dict(layout.column_labels), layout.digits
    headers = [*layout.row_labels]
    for m in layout.columns:
        headers += [labels[m], "(paper)"]
    body = []
    for row in rows:
        cells = grid.get(row, {})
        shown = {m: round(cells[m].mean, d) for m in layout.columns if m in cells}
        top = max(shown.values()) if shown else None
        line: list[Any] = [*row]
        for m in layout.columns:
            if m in cells:
                text = c.fmt_mean_std(cells[m].mean, cells[m].std, cells[m].n, d)
                line.append(f"**{text}**" if shown[m] == top else text)
            else:
                line.append("failed" if (row, m) in has_runs else "—")
            p = paper.get(row, {}).get(m)
            line.append(c.fmt_num(p, d) if p is not None else "—")
        body.append(line)
    return [
        *c.md_table(headers, body, "rrr" + "rr" * len(layout.columns)),
        "",
        "Ours: test accuracy at the cell's best learning rate (the LR with the highest mean over "
        "seeds), mean ± sample std (number of seeds); **bold** = best of ours in the row; "
        '"failed" = every run of the cell failed. (paper): digitised from the paper\'s figure, '
        "±0.01, shown where the paper has the same (L, d, kv); — = no value. " + layout.note,
    ]


def lr_section(rows: list[Row], grid: dict[Row, dict[str, Cell]], layout: Any) -> list[str]:
    """Best learning rate per cell (and how many LRs had a result)."""
    labels = dict(layout.column_labels)
    body = []
    for row in rows:
        cells = grid.get(row, {})
        body.append(
            [*row]
            + [
                f"{c.fmt_lr(cells[m].best_lr)} (of {cells[m].n_lrs})" if m in cells else "—"
                for m in layout.columns
            ]
        )
    headers = [*layout.row_labels, *(labels[m] for m in layout.columns)]
    return c.md_table(headers, body, "rrr" + "r" * len(layout.columns))


C2_RULE = (
    "C2 holds in a cell when (a) DMA's accuracy is 100 %, read as: the 95 % interval of its test "
    "accuracy (Wilson over the pooled test queries, widened to the across-seed t interval when "
    "there are several seeds) lies above 0.99 (the early-stop level, and the ±0.01 of the "
    "paper's digitised 1.00), and (b) its gain acc_DMA / acc_x − 1 over QCAttn and over SSD "
    "exceeds +150 %: the interval [low_DMA / high_x − 1, high_DMA / low_x − 1] lies above 1.5. "
    "It is refuted when either part is (its interval wholly on the wrong side), else "
    "inconclusive. +150 % is reachable only where the baseline's accuracy is at most 0.40 (an "
    "accuracy of at most 1 cannot be 2.5 times a larger one); where it is not, the cell does not "
    "test that part. Judged at the scale's largest cell with DMA, QCAttn and SSD results (the "
    "paper states C2 at L = 2048, d = 256), each mixer at the cell's best LR."
)
REACH = 0.4  # the largest baseline accuracy a +150 % gain can be measured against


def acc_interval(runs: list[Run]) -> stats.Interval | None:
    """A cell's accuracy interval from its ok runs at one LR (see C2_RULE), None without runs.

    n is the number of seeds; the Wilson part needs the queries per run (n_test × kv from the
    record's data config) and is skipped when the record does not say."""
    ok = [r for r in runs if r.ok]
    if not ok:
        return None
    accs = [float(r.accuracy) for r in ok]
    seeds = stats.mean_interval(accs) if len(accs) >= 2 else None
    data = (ok[0].record.get("config") or {}).get("data") or {}
    q = int(data.get("n_test") or 0) * int(data.get("num_kv_pairs") or 0)
    lows, highs = [], []
    if q > 0:
        k = sum(round(a * q) for a in accs)
        w = stats.wilson_interval(min(k, q * len(accs)), q * len(accs))
        lows.append(w.low)
        highs.append(w.high)
    if seeds is not None:
        lows.append(seeds.low)
        highs.append(seeds.high)
    mean = math.fsum(accs) / len(accs)
    if not lows:
        return stats.Interval(mean, -math.inf, math.inf, stats.LEVEL, len(accs), "none")
    se, df, sd = (seeds.se, seeds.df, seeds.sd) if seeds is not None else (None, None, None)
    return stats.Interval(
        mean,
        max(0.0, min(lows)),
        min(1.0, max(highs)),
        stats.LEVEL,
        len(accs),
        "Wilson ∪ seed t",
        se,
        df,
        sd,
    )


def _cell_runs(runs: list[Run], row: Row, mixer: str, lr: float) -> list[Run]:
    return [r for r in runs if r.row == row and r.mixer == mixer and r.lr == lr]


def _fmt_acc(x: float) -> str:
    return f"{x:.3f}"


def c2_verdict(
    runs: list[Run], grid: dict[Row, dict[str, Cell]], task: Any
) -> tuple[Row | None, stats.Verdict, list[list[str]]]:
    """(the judged cell, the C2 verdict, its check rows) at one scale."""
    claim, labels = task.CLAIM_C2, dict(task.TABLE.column_labels)
    subject, baselines = claim["subject"], tuple(claim["baselines"])
    need = (subject, *baselines)
    complete = [r for r in grid if all(m in grid[r] for m in need)]
    if not complete:
        return (
            None,
            vd.lacking(
                C2_RULE,
                f"no cell has results for all of {list(need)}",
                threshold=claim["min_accuracy"],
            ),
            [],
        )
    row = max(complete)
    ivs = {m: acc_interval(_cell_runs(runs, row, m, grid[row][m].best_lr)) for m in need}
    acc_v = stats.threshold_verdict(
        ivs[subject], claim["min_accuracy"], rule=C2_RULE, fmt=_fmt_acc, units="seeds"
    )
    checks = [
        [
            f"{labels[subject]} accuracy",
            _fmt_acc(ivs[subject].estimate),
            vd.fmt_interval(ivs[subject].low, ivs[subject].high, _fmt_acc),
            f"> {claim['min_accuracy']:.2f}",
            acc_v.verdict,
        ]
    ]
    words = [acc_v.verdict]
    reasons = [f"{labels[subject]} accuracy: {acc_v.reason}"]
    d = ivs[subject]
    for b in baselines:
        bi = ivs[b]
        est = gain(d.estimate, bi.estimate)
        name = f"gain of {labels[subject]} over {labels[b]}"
        if bi.estimate > REACH:
            why = f"unreachable ({labels[b]} {bi.estimate:.2f} > {REACH:.2f})"
            checks.append([name, fmt_gain(est), "—", f"> {claim['min_gain'] * 100:+.0f} %", why])
            words.append("unreachable")
            reasons.append(
                f"+150 % over {labels[b]} is unreachable here ({labels[b]} reaches "
                f"{bi.estimate:.2f} > {REACH:.2f})"
            )
            continue
        if not (d.bounded and bi.bounded):
            checks.append(
                [
                    name,
                    fmt_gain(est),
                    "— (no spread)",
                    f"> {claim['min_gain'] * 100:+.0f} %",
                    "inconclusive",
                ]
            )
            words.append("inconclusive")
            reasons.append(f"gain over {labels[b]}: inconclusive (one seed, no interval)")
            continue
        lo = d.low / bi.high - 1 if bi.high > 0 else math.inf
        hi = d.high / bi.low - 1 if bi.low > 0 else math.inf
        word = (
            "holds"
            if lo > claim["min_gain"]
            else "refuted"
            if hi < claim["min_gain"]
            else "inconclusive"
        )
        span = f"[{fmt_gain(lo)}, {fmt_gain(hi)}]"
        checks.append([name, fmt_gain(est), span, f"> {claim['min_gain'] * 100:+.0f} %", word])
        words.append(word)
        reasons.append(f"gain over {labels[b]}: {word}, interval {span}")
    if "refuted" in words:
        verdict = "refuted"
    elif all(w == "holds" for w in words):
        verdict = "holds"
    else:
        verdict = "inconclusive"
    v = stats.Verdict(
        verdict,
        acc_v.estimate,
        acc_v.ci_low,
        acc_v.ci_high,
        acc_v.threshold,
        "greater",
        "threshold",
        acc_v.n,
        C2_RULE,
        "; ".join(reasons),
        acc_v.mde,
        acc_v.n_needed if verdict == "inconclusive" else None,
    )
    return row, v, checks


def c2_section(
    scale: str,
    rows: list[Row],
    grid: dict[Row, dict[str, Cell]],
    paper: dict[Row, dict[str, float]],
    task: Any,
    runs: list[Run],
) -> list[str]:
    """Claim C2: reachability of +150 % in every complete cell, then the verdict at the largest."""
    if not c.judged(scale):
        return [c.NOT_JUDGED]
    claim, labels = task.CLAIM_C2, dict(task.TABLE.column_labels)
    subject, baselines = claim["subject"], tuple(claim["baselines"])
    row, v, checks = c2_verdict(runs, grid, task)
    if row is None:
        return [f"Not computable at this scale: {v.reason}."]
    reach = []
    for r in sorted(x for x in grid if all(m in grid[x] for m in (subject, *baselines))):
        accs = [grid[r][b].mean for b in baselines]
        ok = [b for b, a in zip(baselines, accs, strict=True) if a <= REACH]
        if len(ok) == len(baselines):
            word = "yes"
        else:
            word = "no" if not ok else "over " + ", ".join(labels[b] for b in ok) + " only"
        reach.append([*r, *(_fmt_acc(a) for a in accs), word])
    ref = [r for r in paper if r[:2] == (2048, 256)]
    note = ""
    if ref:
        p = paper[ref[0]]
        vals = ", ".join(f"{labels[m]} {c.fmt_num(p[m], 2)}" for m in (subject, *baselines))
        note = f" The paper states C2 at L = 2048, d = 256 ({vals})."
    where = f"{scale} scale, L = {row[0]}, d = {row[1]}, kv = {row[2]}"
    return [
        f"Rule: {C2_RULE}{note}",
        "",
        "Is +150 % reachable? (it needs the baseline at ≤ 0.40)",
        "",
        *c.md_table(
            ["L", "d", "kv", *(labels[b] for b in baselines), "+150 % reachable"],
            reach,
            "rrr" + "r" * len(baselines) + "l",
        ),
        "",
        f"Checks at L = {row[0]}, d = {row[1]}, kv = {row[2]} (means at each mixer's best LR):",
        "",
        *c.md_table(["check", "ours", "95 % interval", "needed", "verdict"], checks, "lrrrl"),
        "",
        f"**Verdict ({where}): C2 {v.verdict}** — {v.reason}.",
    ]


def verdicts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """reports/verdicts.json entries: C2 per scale."""
    task = task_module()
    subject = "DMA accuracy and its gain over QCAttn and SSD at the largest complete cell"
    by_scale = c.by_scale(records)
    out = []
    for scale in by_scale:
        if not c.judged(scale):
            out.append(vd.not_judged("C2", scale, subject=subject, unit="accuracy", rule=C2_RULE))
            continue
        runs, _ = parse_runs(by_scale[scale], task.TABLE.metric)
        _, v, _ = c2_verdict(runs, aggregate(runs), task)
        out.append(vd.entry("C2", scale, v, subject=subject, unit="accuracy"))
    return out


def timing_section(runs: list[Run], layout: Any) -> list[str]:
    """Total wall time of the scale's runs (sum of result timing.wall_s), also per mixer."""
    recs = [r.record for r in runs]
    total, timed, untimed = c.total_wall_s(recs)
    labels = dict(layout.column_labels)
    body = []
    mixers = [m for m in layout.columns if any(r.mixer == m for r in runs)]
    mixers += sorted({r.mixer for r in runs} - set(mixers))
    for m in mixers:
        t, n, _ = c.total_wall_s(r.record for r in runs if r.mixer == m)
        body.append([labels.get(m, m), n, f"{t / 60:.1f}"])
    line = f"Total wall time of the {timed} timed run(s): {c.fmt_minutes(total)}."
    if untimed:
        line += f" {untimed} run(s) carry no wall time."
    return [line, "", *c.md_table(["mixer", "timed runs", "wall time (min)"], body, "lrr")]


def failures_section(runs: list[Run], layout: Any) -> list[str]:
    labels = dict(layout.column_labels)
    bad = sorted(
        (r for r in runs if not r.ok),
        key=lambda r: (r.row, r.mixer, r.lr, r.seed, r.record.get("run_id", "")),
    )
    rows = []
    for r in bad:
        err = r.record.get("error") if r.record.get("status") != "ok" else "metric missing"
        rows.append(
            [
                r.record.get("run_id", "?"),
                *r.row,
                labels.get(r.mixer, r.mixer),
                c.fmt_lr(r.lr),
                r.seed,
                c.first_error_line(err),
            ]
        )
    return c.failed_table(rows, ["run", "L", "d", "kv", "mixer", "lr", "seed", "error"])


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    """The whole Markdown report from result records (pure: reads only wm_bench_tasks.mqar).

    Args:
        records: result records of experiment "mqar" (any scales).
        figures: scale → figure file name (relative to the report) to embed.
    Returns:
        Markdown text ending in a newline.
    """
    task = task_module()
    paper_src, paper = task.load_paper(), task.paper_grid()
    figures = figures or {}

    def section(scale: str, recs: list[dict[str, Any]]) -> list[str]:
        runs, skipped = parse_runs(recs, task.TABLE.metric)
        # Only the mixers this scale ran get columns (e.g. the second DMA tie rule runs at cpu).
        layout = dataclasses.replace(
            task.TABLE,
            columns=tuple(m for m in task.TABLE.columns if any(r.mixer == m for r in runs)),
        )
        grid = aggregate(runs)
        rows = sorted({r.row for r in runs})
        has_runs = {(r.row, r.mixer) for r in runs}
        n_ok = sum(r.ok for r in runs)
        lrs = ", ".join(c.fmt_lr(x) for x in sorted({r.lr for r in runs}))
        seeds = ", ".join(str(s) for s in sorted({r.seed for r in runs}))
        out = [
            "",
            f"{len(runs)} run(s): {n_ok} ok, {len(runs) - n_ok} failed; "
            f"learning rates {lrs or '—'}; seeds {seeds or '—'}.",
        ]
        if skipped:
            out.append(f"{skipped} result(s) without grid tags were left out.")
        out += ["", "### Accuracy grid", ""]
        out += grid_section(rows, grid, has_runs, paper, layout)
        if scale in figures:
            out += ["", f"![MQAR accuracy, {scale} scale]({figures[scale]})"]
        out += ["", "### Best learning rate per cell", "", *lr_section(rows, grid, layout)]
        out += ["", "### Claim C2 at this scale", ""]
        out += c2_section(scale, rows, grid, paper, task, runs)
        out += ["", "### Failed runs", "", *failures_section(runs, layout)]
        return [*out, "", "### Timing", "", *timing_section(runs, layout)]

    return c.render_by_scale(
        "mqar",
        records,
        section,
        title="MQAR: multi-query associative recall (claim C2)",
        about="Test accuracy on MQAR (docs/spec.md §5) per sequence length L, model width d and "
        "number of key-value pairs kv, for four sequence mixers in a 2-layer model (mixer + MLP "
        "blocks), with the paper's figure beside ours. ",
        notes=[
            f'Claim C2 (paper): "{paper_src["claim_c2"]["text"]}".',
            f"Paper values: {paper_src['source']}",
        ],
        empty=c.no_results("mqar", "smoke|cpu|small|paper"),
    )


def plot_scale(scale: str, runs: list[Run], path: Path) -> Path:
    """Draw the paper's layout into a PNG.

    One panel per L, accuracy vs d on a log2 axis, one line per mixer (best LR, error bar = std
    over seeds), the paper's values as faint × where that (L, d, kv) exists.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    task = task_module()
    paper = task.paper_grid()
    layout = dataclasses.replace(
        task.TABLE, columns=tuple(m for m in task.TABLE.columns if any(r.mixer == m for r in runs))
    )
    labels = dict(layout.column_labels)
    grid = aggregate(runs)
    all_rows = sorted({r.row for r in runs})
    lengths = sorted({r[0] for r in all_rows})
    fig = Figure(figsize=(max(6.5, 2.9 * len(lengths) + 0.6), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(lengths), sharey=True, squeeze=False)[0]
    colors = {m: f"C{i}" for i, m in enumerate(layout.columns)}
    for ax, length in zip(axes, lengths):
        rows = [r for r in all_rows if r[0] == length]
        for m in layout.columns:
            pts = [(row[1], grid[row][m]) for row in rows if m in grid.get(row, {})]
            if pts:
                xs, cells = zip(*pts)
                ax.errorbar(
                    xs,
                    [p.mean for p in cells],
                    yerr=[p.std or 0.0 for p in cells],
                    color=colors[m],
                    marker="o",
                    ms=4,
                    capsize=2,
                )
            ref = [(row[1], paper[row][m]) for row in rows if m in paper.get(row, {})]
            if ref:
                xs, ys = zip(*ref)
                ax.plot(xs, ys, ls="none", marker="x", ms=6, color=colors[m], alpha=0.35)
        kv = "/".join(str(k) for k in sorted({r[2] for r in rows}))
        widths = sorted({r[1] for r in rows})
        ax.set_title(f"L = {length}, kv = {kv}", fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.margins(x=0.15)
        ax.set_xlabel("model width d")
        ax.set_ylim(-0.03, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    handles = [
        Line2D([], [], color=colors[m], marker="o", ms=4, label=labels[m]) for m in layout.columns
    ]
    handles.append(Line2D([], [], color="gray", ls="none", marker="x", alpha=0.5, label="paper"))
    title = f"MQAR accuracy, {scale} scale (ours: best LR, mean ± std)"
    return c.save_figure(fig, path, title, handles)


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/mqar.md and one reports/mqar-<scale>.png per scale with grid results.

    Args:
        records: result records of experiment "mqar".
        reports_dir: output folder (created).
    Returns:
        The written paths, Markdown first.
    """
    metric = task_module().TABLE.metric

    def plot(scale: str, recs: list[dict[str, Any]], path: Path) -> Path | None:
        runs, _ = parse_runs(recs, metric)
        return plot_scale(scale, runs, path) if runs else None

    return c.build_with_figures(records, reports_dir, EXPERIMENT, plot, render)
