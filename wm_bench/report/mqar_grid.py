"""The MQAR grid: result records placed on (L, d, kv) × mixer cells, each at its best LR."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from wm_bench.report import common as c

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


def task_module() -> Any:
    """wm_bench_tasks.mqar: the grid's layout, the paper's values and the claim's thresholds."""
    import wm_bench_tasks.mqar as task  # no torch at import

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
    acc = pd.DataFrame(
        [(r.row, r.mixer, r.lr, float(r.accuracy)) for r in runs if r.ok],
        columns=["row", "mixer", "lr", "acc"],
    )
    per_lr = acc.groupby(["row", "mixer", "lr"])["acc"].agg(mean="mean", std="std", n="count")
    per_lr = per_lr.reset_index()
    per_lr["n_lrs"] = per_lr.groupby(["row", "mixer"])["lr"].transform("size")
    best = per_lr.sort_values(["mean", "lr"], ascending=[False, True])
    grid: dict[Row, dict[str, Cell]] = {}
    for x in best.drop_duplicates(["row", "mixer"]).itertuples(index=False):
        std = None if pd.isna(x.std) else float(x.std)
        grid.setdefault(x.row, {})[x.mixer] = Cell(
            float(x.lr), float(x.mean), std, int(x.n), int(x.n_lrs)
        )
    return grid


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
