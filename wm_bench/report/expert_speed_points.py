"""The expert-speed points: records placed on the (method, N, ratio) grid, and their formats."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from wm_bench.report import common as c


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

    @property
    def repeats(self) -> list[float] | None:
        """Per-repeat forward+backward ms (round-robin results), None for the old protocol."""
        reps = (self.record.get("extra") or {}).get("fwd_bwd_ms_repeats")
        return [float(x) for x in reps] if self.ok and reps else None

    @property
    def session(self) -> str | None:
        return (self.record.get("extra") or {}).get("session")


def task_module() -> Any:
    """wm_bench_tasks.expert_speed: its methods, labels, paper points and claim thresholds."""
    import wm_bench_tasks.expert_speed as task

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
        method, n, k = tags["method"], int(tags["num_experts"]), int(tags["top_k"])
        fwd, fwd_bwd = (m.get(key) if ok else None for key in ("fwd_ms", "fwd_bwd_ms"))
        out.append(Point(method, n, k, float(tags["ratio"]), ok, fwd, fwd_bwd, rec))
    return out


def fmt_ms(x: float | None) -> str:
    if x is None or not c.finite(x):
        return "—"
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None or not c.finite(x) else f"{x:.1f}×"


def time_ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b and c.finite(a) and c.finite(b) and b > 0 else None


def _rank(p: Point) -> tuple:
    """Which result of a point the report uses: ok, round-robin (with repeats), newest."""
    return (p.ok, p.repeats is not None, str(p.record.get("finished_at") or ""))


def current(points: list[Point]) -> tuple[list[Point], list[Point]]:
    """(one Point per (method, N, ratio), the superseded ones): a round-robin result replaces
    one timed the old way (median of 3, no repeats)."""
    best: dict[tuple[str, int, float], Point] = {}
    for p in points:
        key = (p.method, p.n, p.ratio)
        if key not in best or _rank(p) > _rank(best[key]):
            best[key] = p
    keep = list(best.values())
    return keep, [p for p in points if all(p is not q for q in keep)]


def grid(points: list[Point]) -> dict[tuple[int, float], dict[str, Point]]:
    """(N, ratio) → method → Point."""
    out: dict[tuple[int, float], dict[str, Point]] = defaultdict(dict)
    for p in points:
        out[(p.n, p.ratio)][p.method] = p
    return dict(out)


def points_frame(points: list[Point]) -> pd.DataFrame:
    """One row per point: method, n, ratio, k, fwd and fwd_bwd (ms; NaN unless ok) and peak_mib
    (NaN unless ok with a finite peak)."""
    rows = [
        (
            p.method,
            p.n,
            p.ratio,
            p.k,
            p.fwd if p.ok and c.finite(p.fwd) else None,
            p.fwd_bwd if p.ok and c.finite(p.fwd_bwd) else None,
            peak
            if p.ok and c.finite(peak := (p.record.get("timing") or {}).get("peak_mib"))
            else None,
        )
        for p in points
    ]
    cols = ["method", "n", "ratio", "k", "fwd", "fwd_bwd", "peak_mib"]
    return pd.DataFrame(rows, columns=cols).astype({k: float for k in cols[4:]})
