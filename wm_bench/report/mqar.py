"""The MQAR report: accuracy grid beside the paper's, claim C2 verdict, failures, timing, figure."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.report import common as c

EXPERIMENT = "mqar"
Row = tuple[int, int, int]  # (L, d, kv)


@dataclass(frozen=True)
class Run:
    """One result record placed on the grid."""

    row: Row
    mixer: str
    lr: float
    seed: int
    ok: bool
    accuracy: float | None
    record: dict[str, Any]


@dataclass(frozen=True)
class Cell:
    """A (row, mixer) cell at its best LR: mean ± std over that LR's seeds."""

    best_lr: float
    mean: float
    std: float | None
    n: int
    n_lrs: int


def _task() -> Any:
    import tasks.mqar as task  # layout, paper values, claim thresholds (no torch at import)

    return task


def parse_runs(records: Iterable[dict[str, Any]], metric: str) -> tuple[list[Run], int]:
    """Place records on the grid by their tags; returns (runs, number of records without tags)."""
    runs, skipped = [], 0
    for rec in records:
        tags = (rec.get("config") or {}).get("tags") or {}
        try:
            row = (int(tags["seq_len"]), int(tags["d_model"]), int(tags["num_kv_pairs"]))
            mixer, lr = str(tags["mixer"]), float(tags["lr"])
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        acc = (rec.get("metrics") or {}).get(metric)
        ok = rec.get("status") == "ok" and c.finite(acc)
        runs.append(Run(row, mixer, lr, int(rec.get("seed", 0)), ok, acc if ok else None, rec))
    return runs, skipped


def aggregate(runs: Iterable[Run]) -> dict[Row, dict[str, Cell]]:
    """Best-LR cells: the LR with the highest mean accuracy over seeds (ties → smaller LR)."""
    acc: dict[Row, dict[str, dict[float, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for r in runs:
        if r.ok:
            acc[r.row][r.mixer][r.lr].append(float(r.accuracy))
    grid: dict[Row, dict[str, Cell]] = {}
    for row, by_mixer in acc.items():
        for mixer, by_lr in by_mixer.items():
            stats = {lr: c.mean_std(v) for lr, v in by_lr.items()}
            best = min(stats, key=lambda lr: (-stats[lr][0], lr))
            mean, std, n = stats[best]
            grid.setdefault(row, {})[mixer] = Cell(best, mean, std, n, len(stats))
    return grid


def _rounded(x: float, digits: int) -> float:
    return round(x, digits)


def gain(subject: float, baseline: float) -> float | None:
    """acc_subject / acc_baseline − 1; +inf when only the baseline is 0, None when both are."""
    if baseline > 0:
        return subject / baseline - 1.0
    return math.inf if subject > 0 else None


def fmt_gain(g: float | None) -> str:
    if g is None:
        return "undefined (both 0)"
    if math.isinf(g):
        return "+∞ (baseline 0)"
    return f"{g * 100:+.0f} %"


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
        shown = {m: _rounded(cells[m].mean, d) for m in layout.columns if m in cells}
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


def c2_section(
    scale: str,
    rows: list[Row],
    grid: dict[Row, dict[str, Cell]],
    paper: dict[Row, dict[str, float]],
    task: Any,
) -> list[str]:
    """Claim C2 from our numbers at the largest (L, d) cell with DMA, QCAttn and SSD results."""
    claim, labels, d = task.CLAIM_C2, dict(task.TABLE.column_labels), task.TABLE.digits
    subject, baselines = claim["subject"], tuple(claim["baselines"])
    need = (subject, *baselines)
    complete = [r for r in rows if all(m in grid.get(r, {}) for m in need)]
    if not complete:
        return [f"Not computable at this scale: no cell has results for all of {list(need)}."]
    row = max(complete, key=lambda r: (r[0], r[1], r[2]))
    ours = {m: _rounded(grid[row][m].mean, d) for m in need}
    theirs = paper.get(row, {})
    checks: list[list[str]] = []
    failed: list[str] = []
    acc_ok = ours[subject] >= claim["min_accuracy"]
    checks.append(
        [
            f"{labels[subject]} accuracy",
            c.fmt_num(ours[subject], d),
            c.fmt_num(theirs[subject], d) if subject in theirs else "—",
            f"≥ {c.fmt_num(claim['min_accuracy'], d)}",
            "yes" if acc_ok else "no",
        ]
    )
    if not acc_ok:
        failed.append(f"{labels[subject]} accuracy below {c.fmt_num(claim['min_accuracy'], d)}")
    for b in baselines:
        g = gain(ours[subject], ours[b])
        g_ok = g is not None and g >= claim["min_gain"]
        pg = gain(theirs[subject], theirs[b]) if subject in theirs and b in theirs else "—"
        checks.append(
            [
                f"gain of {labels[subject]} over {labels[b]}",
                fmt_gain(g),
                pg if pg == "—" else fmt_gain(pg),
                f"≥ {claim['min_gain'] * 100:+.0f} %",
                "yes" if g_ok else "no",
            ]
        )
        if not g_ok:
            failed.append(f"gain over {labels[b]} below {claim['min_gain'] * 100:+.0f} %")
    where = f"{scale} scale, L = {row[0]}, d = {row[1]}, kv = {row[2]}"
    verdict = "holds" if not failed else "does not hold (" + "; ".join(failed) + ")"
    ref = [r for r in paper if r[:2] == (2048, 256)]
    paper_note = ""
    if ref:
        p = paper[ref[0]]
        vals = ", ".join(f"{labels[m]} {c.fmt_num(p[m], d)}" for m in need)
        paper_note = f" The paper states C2 at L = 2048, d = 256 ({vals})."
    return [
        f"Computed from our numbers (the table's rounded means) at the largest cell of this "
        f"scale with results for {', '.join(labels[m] for m in need)}: L = {row[0]}, "
        f"d = {row[1]}, kv = {row[2]}. Gain = acc_DMA / acc_x − 1.{paper_note}",
        "",
        *c.md_table(["check", "ours", "paper at this cell", "needed", "met"], checks, "lrrrl"),
        "",
        f"**Verdict ({where}): C2 {verdict}.**",
    ]


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
    """The whole Markdown report from result records (pure: no file access beyond tasks.mqar).

    Args:
        records: result records of experiment "mqar" (any scales).
        figures: scale → figure file name (relative to the report) to embed.
    Returns:
        Markdown text ending in a newline.
    """
    task = _task()
    layout, paper_src = task.TABLE, task.load_paper()
    paper = task.paper_grid()
    figures = figures or {}
    by_scale: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_scale[str(rec.get("scale"))].append(rec)
    out = [
        "# MQAR: multi-query associative recall (claim C2)",
        "",
        "Test accuracy on MQAR (SPEC §5) per sequence length L, model width d and number of "
        "key-value pairs kv, for four sequence mixers in a 2-layer model (mixer + MLP blocks), "
        "with the paper's figure beside ours. Generated by `wm_bench.report` from "
        f"{len(records)} result file(s) in `results/mqar/`; do not edit by hand.",
        "",
        f'Claim C2 (paper): "{paper_src["claim_c2"]["text"]}".',
        "",
        f"Paper values: {paper_src['source']}",
    ]
    if not records:
        out += ["", "No results yet: run `wm-bench reproduce mqar --scale smoke|cpu|small|paper`."]
    for scale in c.ordered_scales(by_scale):
        recs = by_scale[scale]
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
        out += ["", f"## {c.scale_title(scale)}", "", c.scale_banner(scale), ""]
        out.append(
            f"{len(runs)} run(s): {n_ok} ok, {len(runs) - n_ok} failed; "
            f"learning rates {lrs or '—'}; seeds {seeds or '—'}."
        )
        if skipped:
            out.append(f"{skipped} result(s) without grid tags were left out.")
        out += ["", "### Accuracy grid", ""]
        out += grid_section(rows, grid, has_runs, paper, layout)
        if scale in figures:
            out += ["", f"![MQAR accuracy, {scale} scale]({figures[scale]})"]
        out += ["", "### Best learning rate per cell", "", *lr_section(rows, grid, layout)]
        out += ["", "### Claim C2 at this scale", "", *c2_section(scale, rows, grid, paper, task)]
        out += ["", "### Failed runs", "", *failures_section(runs, layout)]
        out += ["", "### Timing", "", *timing_section(runs, layout)]
    if records:
        out += ["", "## Provenance", ""]
        for scale in c.ordered_scales(by_scale):
            out += [f"{c.scale_title(scale)}:", "", *c.provenance_lines(by_scale[scale]), ""]
        out.pop()
    return "\n".join(out) + "\n"


def plot_scale(scale: str, runs: list[Run], path: Path) -> Path:
    """Draw the paper's layout into a PNG.

    One panel per L, accuracy vs d on a log2 axis, one line per mixer (best LR, error bar = std
    over seeds), the paper's values as faint × where that (L, d, kv) exists.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    task = _task()
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
                ax.errorbar(xs, [p.mean for p in cells], yerr=[p.std or 0.0 for p in cells],
                            color=colors[m], marker="o", ms=4, capsize=2)  # fmt: skip
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
    handles = [Line2D([], [], color=colors[m], marker="o", ms=4, label=labels[m])
               for m in layout.columns]  # fmt: skip
    handles.append(Line2D([], [], color="gray", ls="none", marker="x", alpha=0.5, label="paper"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7)
    fig.suptitle(f"MQAR accuracy, {scale} scale (ours: best LR, mean ± std)", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/mqar.md and one reports/mqar-<scale>.png per scale with grid results.

    Args:
        records: result records of experiment "mqar".
        reports_dir: output folder (created).
    Returns:
        The written paths, Markdown first.
    """
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    metric = _task().TABLE.metric
    figures: dict[str, str] = {}
    written: list[Path] = []
    by_scale: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_scale[str(rec.get("scale"))].append(rec)
    for scale in c.ordered_scales(by_scale):
        runs, _ = parse_runs(by_scale[scale], metric)
        if runs:
            name = f"{EXPERIMENT}-{scale}.png"
            written.append(plot_scale(scale, runs, reports_dir / name))
            figures[scale] = name
    md = reports_dir / f"{EXPERIMENT}.md"
    md.write_text(render(records, figures))
    return [md, *written]
