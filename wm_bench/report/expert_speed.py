"""The expert-speed report: our timings beside the paper's, method ratios, claim C3, a figure."""

from __future__ import annotations

import dataclasses
import math
import statistics
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wm_bench import stats
from wm_bench.report import common as c
from wm_bench.report import verdicts as vd
from wm_bench.report.expert_speed_points import (
    Point,
    current,
    fmt_ms,
    fmt_ratio,
    grid,
    parse,
    points_frame,
    task_module,
    time_ratio,
)

EXPERIMENT = "expert_speed"
BANNERS = {
    "cpu": (
        "**CPU scale**: measured on a 2-core CPU (one process, fp32) at a reduced input; "
        "milliseconds are CPU milliseconds, not comparable with the paper's GPU figure — only "
        "the ratios between methods are."
    ),
    "smoke": "**smoke (plumbing only, numbers meaningless)**: a tiny input and grid.",
}


def time_table(points: list[Point], methods: list[str], key: str) -> list[str]:
    """Rows (N, ratio, k), one column per method: forward or forward+backward ms."""
    task = task_module()
    frame = points_frame(points)
    times = frame.pivot(index=["n", "ratio"], columns="method", values=key)
    k = frame.groupby(["n", "ratio"])["k"].first()
    out = pd.DataFrame(
        {
            "N": times.index.get_level_values("n"),
            "ratio": [f"{r:g}" for r in times.index.get_level_values("ratio")],
            "k": k.reindex(times.index).to_numpy(),
        }
    )
    for m in methods:
        out[task.LABELS[m]] = [fmt_ms(x) for x in times.reindex(columns=methods)[m]]
    return c.frame_table(out, "rrr" + "r" * len(methods))


def ratio_table(points: list[Point]) -> list[str]:
    """SEIMoE/CDMoE and MoE/CDMoE, forward and forward+backward, beside the paper's SEIMoE/CDMoE."""
    paper = task_module().paper_points()
    g = grid(points)
    rows = []
    for (n, ratio), by in sorted(g.items()):
        cd = by.get("cdmoe")
        k = next(iter(by.values())).k
        row: list[Any] = [n, f"{ratio:g}", k]
        for base in ("seimoe", "moe"):
            b = by.get(base)
            for key in ("fwd", "fwd_bwd"):
                row.append(fmt_ratio(time_ratio(getattr(b, key, None), getattr(cd, key, None))))
        row.append(
            fmt_ratio(time_ratio(paper.get(("seimoe", n, ratio)), paper.get(("cdmoe", n, ratio))))
        )
        rows.append(row)
    heads = [
        "N",
        "ratio",
        "k",
        "SEIMoE/CDMoE fwd",
        "SEIMoE/CDMoE fwd+bwd",
        "MoE/CDMoE fwd",
        "MoE/CDMoE fwd+bwd",
        "paper SEIMoE/CDMoE",
    ]
    return c.md_table(heads, rows, "rrrrrrrr")


def paper_table(points: list[Point], methods: list[str]) -> list[str]:
    """Where the paper has a value: ours (fwd / fwd+bwd) beside it, per method."""
    paper = task_module().paper_points()
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
            row.append(
                f"{fmt_ms(getattr(p, 'fwd', None))} / {fmt_ms(getattr(p, 'fwd_bwd', None))}"
                f" ({ref:g})"
            )
            have = True
        if have:
            rows.append(row)
    if not rows:
        return ["The paper's figure has no point at this scale's N values."]
    task = task_module()
    cols = [m for m in methods if any(k[0] == m for k in paper)]
    return c.md_table(["N", "ratio", *(f"{task.LABELS[m]} ours (paper)" for m in cols)], rows)


def c3_rule() -> str:
    task = task_module()
    claim = task.CLAIM_C3
    return (
        f"C3 holds when the whole 95 % bootstrap interval of the forward+backward speed-up of "
        f"CDMoE over the paper's MoE (SEIMoE, a loop over experts), summarised as the geometric "
        f'mean over the points with N > {task.CLAIM_MIN_EXPERTS} ("more than 1024 experts") '
        f"of each point's ratio of median times, lies above {claim['min_speedup']:g}×; refuted "
        f"when it lies wholly below {claim['min_speedup']:g}×; otherwise inconclusive. The "
        f"interval resamples each point's round-robin repeats (paired by repeat within one "
        f"timing session), 4000 resamples, seed 0. A speed-up above the claim's 10× does not "
        f"refute it (faster than claimed). Points timed the old way (median of 3, no repeats) "
        f"give the estimate but no interval: inconclusive."
    )


def _pair(a: Point, b: Point) -> np.ndarray | tuple[list[float], list[float]]:
    """Repeats of two methods at one point: [n, 2] rows when they were timed in one session
    (paired by repeat), else the two lists (resampled independently)."""
    ra, rb = a.repeats or [], b.repeats or []
    if a.session and a.session == b.session and len(ra) == len(rb):
        return np.stack([np.asarray(ra), np.asarray(rb)], axis=1)
    return ra, rb


def _log_ratio(x: Any) -> np.ndarray:
    if isinstance(x, list):  # unpaired: [num resampled, den resampled]
        return np.log(np.median(x[0], axis=-1) / np.median(x[1], axis=-1))
    return np.log(np.median(x[..., 0], axis=-1) / np.median(x[..., 1], axis=-1))


def speedup(
    points: list[Point], baseline: str, subject: str = "cdmoe", *, seed: int = 0
) -> tuple[stats.Interval | None, list[tuple[int, float, stats.Interval | None, float | None]]]:
    """Over the points with N > CLAIM_MIN_EXPERTS: the geometric-mean speed-up baseline/subject
    (forward+backward) with its stratified bootstrap interval, and per point (N, ratio, its
    bootstrap interval of the ratio of medians or None without repeats, its median ratio)."""
    task = task_module()
    g = grid(points)
    per: list[tuple[int, float, stats.Interval | None, float | None]] = []
    groups: list[Any] = []
    logs: list[float] = []
    complete = True
    for (n, ratio), by in sorted(g.items()):
        if n <= task.CLAIM_MIN_EXPERTS:
            continue
        b, sub = by.get(baseline), by.get(subject)
        med = time_ratio(getattr(b, "fwd_bwd", None), getattr(sub, "fwd_bwd", None))
        if med is None:
            per.append((n, ratio, None, None))
            complete = False
            continue
        logs.append(math.log(med))
        if b.repeats and sub.repeats and min(len(b.repeats), len(sub.repeats)) >= 2:
            pair = _pair(b, sub)
            if isinstance(pair, np.ndarray):
                iv = stats.bootstrap_ratio_of_medians(pair[:, 0], pair[:, 1], seed=seed)
                groups.append(pair)
            else:
                iv = stats.bootstrap_ratio_of_medians(*pair, paired=False, seed=seed)
                groups.append([np.asarray(pair[0]), np.asarray(pair[1])])
            per.append((n, ratio, iv, med))
        else:
            per.append((n, ratio, None, med))
            complete = False
    if not logs:
        return None, per
    est = math.exp(math.fsum(logs) / len(logs))
    if not complete or not groups:
        return stats.Interval(est, -math.inf, math.inf, stats.LEVEL, 1, "no repeats"), per
    iv = _stratified(groups, seed)
    return stats.Interval(est, iv.low, iv.high, iv.level, iv.n, iv.method), per


def _stratified(groups: list[Any], seed: int) -> stats.Interval:
    """Bootstrap of the geometric mean of per-point ratios, each point resampled on its own
    (paired rows together; unpaired sides separately)."""
    flat: list[np.ndarray] = []
    layout: list[tuple[int, bool]] = []  # (start index in flat, paired?)
    for grp in groups:
        layout.append((len(flat), isinstance(grp, np.ndarray)))
        flat.extend([grp] if isinstance(grp, np.ndarray) else grp)

    def geo(res: list[np.ndarray]) -> np.ndarray:
        parts = [
            _log_ratio(res[i]) if paired else _log_ratio([res[i], res[i + 1]])
            for i, paired in layout
        ]
        return np.exp(np.mean(parts, axis=0))

    return stats.stratified_bootstrap(flat, geo, seed=seed)


def _times(x: float) -> str:
    return f"{x:.2f}×"


def c3_verdict(points: list[Point]) -> stats.Verdict:
    task = task_module()
    claim = task.CLAIM_C3
    iv, per = speedup(points, claim["baseline"], claim["subject"])
    if iv is None:
        return vd.lacking(
            c3_rule(),
            f"no point with N > {task.CLAIM_MIN_EXPERTS} has both SEIMoE and CDMoE timings",
            threshold=claim["min_speedup"],
        )
    v = stats.threshold_verdict(
        iv, claim["min_speedup"], rule=c3_rule(), fmt=_times, units="repeats"
    )
    if not iv.bounded:
        missing = sum(1 for _, _, piv, _ in per if piv is None)
        return dataclasses.replace(
            v,
            reason=f"inconclusive: {missing} of {len(per)} point(s) "
            "have no per-repeat timings (old median-of-3 measurement, or "
            "a method missing), so there is no interval; rerun "
            "`wm-bench reproduce expert_speed`",
            n=len(per),
        )
    return v


def c3_section(points: list[Point], scale: str) -> list[str]:
    """Claim C3 at this scale: the rule, per-point speed-ups with intervals, the verdict."""
    task = task_module()
    text = task.load_paper()["claim_c3"]["text"]
    out = [f'Claim C3 (paper): "{text}".', ""]
    if not c.judged(scale):
        return [*out, c.NOT_JUDGED]
    if not any(p.n > task.CLAIM_MIN_EXPERTS for p in points):
        return [
            *out,
            f"Not testable at the {scale} scale: no point with N > {task.CLAIM_MIN_EXPERTS}.",
        ]
    rows = []
    for base in (task.CLAIM_C3["baseline"], "moe"):
        _, per = speedup(points, base)
        for n, ratio, iv, med in per:
            rows.append(
                [
                    task.LABELS[base],
                    n,
                    f"{ratio:g}",
                    _times(med) if med else "—",
                    vd.fmt_interval(iv.low, iv.high, _times) if iv else "— (no repeats)",
                    iv.n if iv else "—",
                ]
            )
    v = c3_verdict(points)
    iv_moe, _ = speedup(points, "moe")
    out += [
        "Per point with N > 1024: the baseline's forward+backward time over CDMoE's (ratio of "
        "the medians), with its bootstrap interval over the repeats.",
        "",
        *c.md_table(
            [
                "baseline",
                "N",
                "ratio",
                "baseline / CDMoE (medians)",
                "95 % bootstrap interval",
                "repeats",
            ],
            rows,
            "lrrrrr",
        ),
        "",
        *vd.block(
            "C3",
            scale,
            v,
            _times,
            quantity=f"SEIMoE / CDMoE, N > {task.CLAIM_MIN_EXPERTS} (geo. mean)",
        ),
    ]
    if iv_moe is not None:
        out += [
            "",
            f"Against the fair grouped MoE (no verdict: not the paper's baseline) the "
            f"same points give a geometric-mean MoE / CDMoE of {_times(iv_moe.estimate)}, "
            f"95 % interval {vd.fmt_interval(iv_moe.low, iv_moe.high, _times)} (below 1: "
            "the grouped MoE is faster).",
        ]
    return out


def load_section(points: list[Point]) -> list[str]:
    """The load averages recorded around the round-robin sessions (other work on the machine)."""
    loads = [
        x
        for p in points
        for key in ("loadavg_before", "loadavg_after")
        if (x := (p.record.get("timing") or {}).get(key))
    ]
    if not loads:
        return []
    one = [float(x[0]) for x in loads]
    return [
        "",
        f"Load average (1 min) around the timing sessions: {min(one):.2f} to "
        f"{max(one):.2f} (median {statistics.median(one):.2f}); the round-robin order "
        "makes such load hit every method of a point alike.",
    ]


def verdicts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """reports/verdicts.json entries: C3 per scale."""
    subject = "SEIMoE / CDMoE forward+backward time, N > 1024 (geometric mean over points)"
    out = []
    for scale, recs in c.by_scale(records).items():
        if not c.judged(scale):
            out.append(vd.not_judged("C3", scale, subject=subject, unit="×", rule=c3_rule()))
            continue
        points, _ = current(parse(recs))
        out.append(vd.entry("C3", scale, c3_verdict(points), subject=subject, unit="×"))
    return out


def memory_section(points: list[Point], methods: list[str]) -> list[str]:
    """Peak memory per method at each N (the largest over its ratios)."""
    task = task_module()
    kind = next((p.record.get("timing", {}).get("peak_kind") for p in points if p.ok), None)
    frame = points_frame(points)
    ns = sorted(frame["n"].unique())
    peaks = frame.pivot_table(index="method", columns="n", values="peak_mib", aggfunc="max")
    peaks = peaks.reindex(index=methods, columns=ns)
    out = pd.DataFrame({"method": [task.LABELS[m] for m in methods]}, index=methods)
    for n in ns:
        out[f"N={n} MiB"] = [None if pd.isna(x) else f"{x:,.0f}" for x in peaks[n]]
    table = c.frame_table(out, "l" + "r" * len(ns))
    return [f"Peak memory ({kind or 'unknown kind'}):", "", *table]


def failures_section(points: list[Point]) -> list[str]:
    bad = [p for p in points if not p.ok]
    if not bad:
        return ["None."]
    rows = [
        (
            task_module().LABELS.get(p.method, p.method),
            p.n,
            p.k,
            c.first_error_line(p.record.get("error")),
        )
        for p in bad
    ]
    return c.failed_table(rows, ["method", "N", "k", "error"])


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    """The whole Markdown report from result records."""
    task = task_module()
    figures = figures or {}
    src = task.load_paper()

    def section(scale: str, recs: list[dict[str, Any]]) -> list[str]:
        points, superseded = current(parse(recs))
        methods = [m for m in task.METHODS if any(p.method == m for p in points)]
        cfg = next((r["config"]["point"] for r in recs if "point" in r.get("config", {})), {})
        out = [
            "",
            f"Input B = {cfg.get('batch')}, T = {cfg.get('seq_len')}, d = {cfg.get('d_model')}, "
            f"{cfg.get('dtype')} on {cfg.get('device')}; "
            f"{len(points)} point(s), {sum(p.ok for p in points)} ok.",
        ]
        impls = sorted(
            {f"{k}={v}" for p in points for k, v in (p.record.get("impls") or {}).items()}
        )
        if impls:
            out += ["", f"Implementations that ran: {', '.join(impls)}."]
        out += ["", _timing_line(points, superseded)]
        out += load_section(points)
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
        return out + c.timing_section(recs, noun="point")

    return c.render_by_scale(
        EXPERIMENT,
        records,
        section,
        title="Expert-retrieval speed (claim C3)",
        about="Time of one expert layer (forward, and forward + backward into the input and every "
        "parameter) for N experts and k = ratio·√N experts per token, per method "
        "(docs/spec.md §6). ",
        after=" Method settings are in `tasks/expert_speed/__init__.py`.",
        notes=[f"Paper values: {src['source']}. {src['note']}."],
        banner=partial(c.scale_banner, banners=BANNERS),
    )


def _timing_line(points: list[Point], superseded: list[Any]) -> str:
    """How the points were timed: round-robin repeats or one method at a time."""
    reps = sorted({len(p.repeats) for p in points if p.repeats})
    if reps:
        how = f"round-robin, {'/'.join(map(str, reps))} repeats per point (medians shown)"
    else:
        how = "median of 3, one method at a time (no repeats kept)"
    old = (
        f" {len(superseded)} older result(s) of the same points are superseded by round-robin ones."
        if superseded
        else ""
    )
    return f"Timing: {how}.{old}"


def plot_scale(scale: str, points: list[Point], path: Path) -> Path:
    """The paper's layout: one panel per N, forward+backward time vs ratio (log y), one line per
    method, the paper's points as faint × (its pass is unpublished)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    task = task_module()
    paper = task.paper_points()
    methods = [m for m in task.METHODS if any(p.method == m for p in points)]
    ns = sorted({p.n for p in points})
    fig = Figure(figsize=(max(6.5, 2.4 * len(ns) + 0.6), 3.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ns), squeeze=False)[0]
    colors = {m: f"C{i}" for i, m in enumerate(task.METHODS)}
    for ax, n in zip(axes, ns, strict=True):
        for m in methods:
            pts = sorted(
                (p.ratio, p.fwd_bwd)
                for p in points
                if p.method == m and p.n == n and p.fwd_bwd is not None
            )
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
    handles = [
        Line2D([], [], color=colors[m], marker="o", ms=3, label=task.LABELS[m]) for m in methods
    ]
    handles.append(Line2D([], [], color="gray", ls="none", marker="x", alpha=0.5, label="paper"))
    return c.save_figure(fig, path, f"Expert-layer time, {scale} scale", handles)


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/expert_speed.md and one reports/expert_speed-<scale>.png per scale."""

    def plot(scale: str, recs: list[dict[str, Any]], path: Path) -> Path | None:
        points = [p for p in current(parse(recs))[0] if p.ok]
        if points and not all(math.isnan(p.fwd_bwd or math.nan) for p in points):
            return plot_scale(scale, points, path)
        return None

    return c.build_with_figures(records, reports_dir, EXPERIMENT, plot, render)
