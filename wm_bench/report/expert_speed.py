"""The expert-speed report: our timings beside the paper's, method ratios, claim C3, a figure."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.report import common as c

EXPERIMENT = "expert_speed"
BANNERS = {
    "cpu": (
        "**CPU scale**: measured on a 2-core CPU (one process, fp32) at a reduced input; "
        "milliseconds are CPU milliseconds, not comparable with the paper's GPU figure — only "
        "the ratios between methods are."
    ),
    "smoke": "**smoke (plumbing only, numbers meaningless)**: a tiny input and grid.",
}


@dataclass(frozen=True)
class Point:
    """One result record placed on the grid."""

    method: str
    n: int
    k: int
    ratio: float
    ok: bool
    fwd: float | None
    fwd_bwd: float | None
    record: dict[str, Any]


def _task() -> Any:
    import tasks.expert_speed as task

    return task


def parse(records: Iterable[dict[str, Any]]) -> list[Point]:
    """Records → Points (records without the grid tags are left out)."""
    out = []
    for rec in records:
        tags = (rec.get("config") or {}).get("tags") or {}
        if not {"method", "num_experts", "top_k", "ratio"} <= set(tags):
            continue
        m = rec.get("metrics") or {}
        ok = rec.get("status") == "ok"
        out.append(
            Point(
                tags["method"], int(tags["num_experts"]), int(tags["top_k"]),
                float(tags["ratio"]), ok, m.get("fwd_ms") if ok else None,
                m.get("fwd_bwd_ms") if ok else None, rec,
            )
        )  # fmt: skip
    return out


def fmt_ms(x: float | None) -> str:
    if x is None or not c.finite(x):
        return "—"
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None or not c.finite(x) else f"{x:.1f}×"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b and c.finite(a) and c.finite(b) and b > 0 else None


def grid(points: list[Point]) -> dict[tuple[int, float], dict[str, Point]]:
    """(N, ratio) → method → Point."""
    out: dict[tuple[int, float], dict[str, Point]] = defaultdict(dict)
    for p in points:
        out[(p.n, p.ratio)][p.method] = p
    return dict(out)


def time_table(points: list[Point], methods: list[str], key: str) -> list[str]:
    """Rows (N, ratio, k), one column per method: forward or forward+backward ms."""
    task = _task()
    g = grid(points)
    rows = []
    for (n, ratio), by in sorted(g.items()):
        k = next(iter(by.values())).k
        rows.append([n, f"{ratio:g}", k, *(fmt_ms(getattr(by.get(m), key, None)) for m in methods)])
    heads = ["N", "ratio", "k", *(task.LABELS[m] for m in methods)]
    return c.md_table(heads, rows, "rrr" + "r" * len(methods))


def ratio_table(points: list[Point]) -> list[str]:
    """SEIMoE/CDMoE and MoE/CDMoE, forward and forward+backward, beside the paper's SEIMoE/CDMoE."""
    paper = _task().paper_points()
    g = grid(points)
    rows = []
    for (n, ratio), by in sorted(g.items()):
        cd = by.get("cdmoe")
        k = next(iter(by.values())).k
        row: list[Any] = [n, f"{ratio:g}", k]
        for base in ("seimoe", "moe"):
            b = by.get(base)
            for key in ("fwd", "fwd_bwd"):
                row.append(fmt_ratio(_ratio(getattr(b, key, None), getattr(cd, key, None))))
        row.append(
            fmt_ratio(_ratio(paper.get(("seimoe", n, ratio)), paper.get(("cdmoe", n, ratio))))
        )
        rows.append(row)
    heads = ["N", "ratio", "k", "SEIMoE/CDMoE fwd", "SEIMoE/CDMoE fwd+bwd", "MoE/CDMoE fwd",
             "MoE/CDMoE fwd+bwd", "paper SEIMoE/CDMoE"]  # fmt: skip
    return c.md_table(heads, rows, "rrrrrrrr")


def paper_table(points: list[Point], methods: list[str]) -> list[str]:
    """Where the paper has a value: ours (fwd / fwd+bwd) beside it, per method."""
    paper = _task().paper_points()
    g = grid(points)
    rows = []
    for (n, ratio), by in sorted(g.items()):
        row: list[Any] = [n, f"{ratio:g}"]
        have = False
        for m in methods:
            ref = paper.get((m, n, ratio))
            if ref is None:
                continue
            p = by.get(m)
            row.append(f"{fmt_ms(getattr(p, 'fwd', None))} / {fmt_ms(getattr(p, 'fwd_bwd', None))}"
                       f" ({ref:g})")  # fmt: skip
            have = True
        if have:
            rows.append(row)
    if not rows:
        return ["The paper's figure has no point at this scale's N values."]
    task = _task()
    cols = [m for m in methods if any(k[0] == m for k in paper)]
    return c.md_table(["N", "ratio", *(f"{task.LABELS[m]} ours (paper)" for m in cols)], rows)


def c3_section(points: list[Point], scale: str) -> list[str]:
    """Claim C3 at this scale: CDMoE ≥ 8× faster than SEIMoE at every point with N ≥ 1024."""
    task = _task()
    claim = task.CLAIM_C3
    g = grid(points)
    vals, fair = [], []
    for (n, _), by in sorted(g.items()):
        if n < task.CLAIM_MIN_EXPERTS:
            continue
        cd, se, mo = by.get("cdmoe"), by.get("seimoe"), by.get("moe")
        vals.append(_ratio(getattr(se, "fwd_bwd", None), getattr(cd, "fwd_bwd", None)))
        fair.append(_ratio(getattr(mo, "fwd_bwd", None), getattr(cd, "fwd_bwd", None)))
    text = task.load_paper()["claim_c3"]["text"]
    out = [f'Claim C3 (paper): "{text}".', ""]
    if not vals:
        return [*out, f"Not testable at the {scale} scale: no point with N ≥ "
                f"{task.CLAIM_MIN_EXPERTS}."]  # fmt: skip
    got = [v for v in vals if v is not None]
    if len(got) < len(vals):
        verdict = "**not decided**: some points with N ≥ 1024 lack a SEIMoE or CDMoE timing"
    elif min(got) >= claim["min_speedup"]:
        verdict = f"**holds** at the {scale} scale"
    else:
        verdict = f"**does not hold** at the {scale} scale"
    lo = f"{min(got):.1f}×" if got else "—"
    hi = f"{max(got):.1f}×" if got else "—"
    fair_got = [v for v in fair if v is not None]
    out.append(
        f"Forward+backward SEIMoE/CDMoE over the {len(vals)} point(s) with N ≥ "
        f"{task.CLAIM_MIN_EXPERTS}: {lo} to {hi} (threshold {claim['min_speedup']:g}×): {verdict}."
    )
    if fair_got:
        lo_f, hi_f = min(fair_got), max(fair_got)
        out += ["", f"Against the fair grouped MoE the same points give {lo_f:.1f}× to "
                f"{hi_f:.1f}× (MoE/CDMoE; below 1 means the grouped MoE is faster)."]  # fmt: skip
    return out


def memory_section(points: list[Point], methods: list[str]) -> list[str]:
    """Peak memory per method at each N (the largest over its ratios)."""
    task = _task()
    ns = sorted({p.n for p in points})
    kind = next((p.record.get("timing", {}).get("peak_kind") for p in points if p.ok), None)
    rows = []
    for m in methods:
        row: list[Any] = [task.LABELS[m]]
        for n in ns:
            peaks = [p.record["timing"].get("peak_mib") for p in points
                     if p.method == m and p.n == n and p.ok]  # fmt: skip
            peaks = [x for x in peaks if c.finite(x)]
            row.append(f"{max(peaks):,.0f}" if peaks else "—")
        rows.append(row)
    lines = c.md_table(["method", *(f"N={n} MiB" for n in ns)], rows, "l" + "r" * len(ns))
    return [f"Peak memory ({kind or 'unknown kind'}):", "", *lines]


def failures_section(points: list[Point]) -> list[str]:
    bad = [p for p in points if not p.ok]
    if not bad:
        return ["None."]
    rows = [(_task().LABELS.get(p.method, p.method), p.n, p.k,
             c.first_error_line(p.record.get("error"))) for p in bad]  # fmt: skip
    return c.failed_table(rows, ["method", "N", "k", "error"])


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    """The whole Markdown report from result records."""
    task = _task()
    figures = figures or {}
    src = task.load_paper()
    by_scale: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_scale[str(rec.get("scale"))].append(rec)
    out = [
        "# Expert-retrieval speed (claim C3)",
        "",
        "Time of one expert layer (forward, and forward + backward into the input and every "
        "parameter) for N experts and k = ratio·√N experts per token, per method (SPEC §6). "
        "Generated by `wm_bench.report` from "
        f"{len(records)} result file(s) in `results/expert_speed/`; do not edit by hand. "
        "Method settings are in `tasks/expert_speed/__init__.py`.",
        "",
        f"Paper values: {src['source']}. {src['note']}.",
    ]
    if not records:
        out += [
            "",
            "No results yet: run `wm-bench reproduce expert_speed --scale smoke|cpu|small`.",
        ]
    for scale in c.ordered_scales(by_scale):
        recs = by_scale[scale]
        points = parse(recs)
        methods = [m for m in task.METHODS if any(p.method == m for p in points)]
        cfg = next((r["config"]["point"] for r in recs if "point" in r.get("config", {})), {})
        out += ["", f"## {c.scale_title(scale)}", "", "> " + BANNERS.get(scale, c.SCALE_BANNERS.get(
            scale, f"**Scale {scale}**."))]  # fmt: skip
        out += ["", f"Input B = {cfg.get('batch')}, T = {cfg.get('seq_len')}, d = "
                f"{cfg.get('d_model')}, {cfg.get('dtype')} on {cfg.get('device')}; "
                f"{len(points)} point(s), {sum(p.ok for p in points)} ok."]  # fmt: skip
        impls = sorted(
            {f"{k}={v}" for p in points for k, v in (p.record.get("impls") or {}).items()}
        )
        if impls:
            out += ["", f"Implementations that ran: {', '.join(impls)}."]
        if scale in figures:
            out += ["", f"![Expert-layer time, {scale} scale]({figures[scale]})"]
        out += ["", "### Forward + backward (ms)", "", *time_table(points, methods, "fwd_bwd")]
        out += ["", "### Forward (ms)", "", *time_table(points, methods, "fwd")]
        out += ["", "### Ratios to CDMoE (higher = CDMoE faster)", "", *ratio_table(points)]
        out += ["", "### Beside the paper (ours fwd / fwd+bwd ms, paper ms in brackets)", ""]
        out += paper_table(points, methods)
        out += ["", "### Claim C3 at this scale", "", *c3_section(points, scale)]
        out += ["", "### Memory", "", *memory_section(points, methods)]
        out += ["", "### Failed points", "", *failures_section(points)]
        out += c.timing_section(recs, noun="point")
    out += c.provenance_section(c.by_scale(records))
    return "\n".join(out) + "\n"


def plot_scale(scale: str, points: list[Point], path: Path) -> Path:
    """The paper's layout: one panel per N, forward+backward time vs ratio (log y), one line per
    method, the paper's points as faint × (its pass is unpublished)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    task = _task()
    paper = task.paper_points()
    methods = [m for m in task.METHODS if any(p.method == m for p in points)]
    ns = sorted({p.n for p in points})
    fig = Figure(figsize=(max(6.5, 2.4 * len(ns) + 0.6), 3.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ns), squeeze=False)[0]
    colors = {m: f"C{i}" for i, m in enumerate(task.METHODS)}
    for ax, n in zip(axes, ns, strict=True):
        for m in methods:
            pts = sorted((p.ratio, p.fwd_bwd) for p in points if p.method == m and p.n == n
                         and p.fwd_bwd is not None)  # fmt: skip
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, color=colors[m], marker="o", ms=3)
            ref = sorted((r, ms) for (mm, nn, r), ms in paper.items() if mm == m and nn == n)
            if ref:
                xs, ys = zip(*ref, strict=True)
                ax.plot(xs, ys, ls="none", marker="x", ms=5, color=colors[m], alpha=0.35)
        ax.set_yscale("log")
        ax.set_title(f"N = {n}", fontsize=9)
        ax.set_xlabel("ratio (k = ratio·√N)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("ms (fwd+bwd)")
    handles = [Line2D([], [], color=colors[m], marker="o", ms=3, label=task.LABELS[m])
               for m in methods]  # fmt: skip
    handles.append(Line2D([], [], color="gray", ls="none", marker="x", alpha=0.5, label="paper"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7)
    fig.suptitle(f"Expert-layer time, {scale} scale", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/expert_speed.md and one reports/expert_speed-<scale>.png per scale."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    by_scale: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_scale[str(rec.get("scale"))].append(rec)
    figures, written = {}, []
    for scale in c.ordered_scales(by_scale):
        points = [p for p in parse(by_scale[scale]) if p.ok]
        if points and not all(math.isnan(p.fwd_bwd or math.nan) for p in points):
            name = f"{EXPERIMENT}-{scale}.png"
            written.append(plot_scale(scale, points, reports_dir / name))
            figures[scale] = name
    md = reports_dir / f"{EXPERIMENT}.md"
    md.write_text(render(records, figures))
    return [md, *written]
