"""The passkey report: key accuracy per (length, depth) per model, one heat map per model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from wm_bench.metric_names import passkey_cell_of
from wm_bench.report import common as c

EXPERIMENT = "passkey"


def _task() -> Any:
    import wm_bench_tasks.passkey as task  # model order and labels (no torch at import)

    return task


def grids(records: Sequence[dict[str, Any]]) -> dict[str, tuple[pd.Series, int]]:
    """Per model: (mean key accuracy over its ok runs, indexed by (length, depth); the number of
    its ok runs)."""
    rows = [
        (str(rec.get("variant")), *cell, float(v))
        for rec in records
        if c.is_ok(rec)
        for k, v in (rec.get("metrics") or {}).items()
        if (cell := passkey_cell_of(k)) is not None and c.finite(v)
    ]
    acc = pd.DataFrame(rows, columns=["model", "length", "depth", "accuracy"])
    means = acc.groupby(["model", "length", "depth"])["accuracy"].mean()
    runs = pd.Series([str(r.get("variant")) for r in records if c.is_ok(r)]).value_counts()
    return {
        str(m): (grid.droplevel("model"), int(runs[m])) for m, grid in means.groupby(level="model")
    }


def _order(models: set[str]) -> list[str]:
    task = _task()
    return [m for m in task.MODELS if m in models] + sorted(models - set(task.MODELS))


def _label(m: str) -> str:
    return _task().LABELS.get(m, m)


def model_table(grid: pd.Series, train_len: int | None) -> list[str]:
    """One model's grid: a row per length (marked train / extrap.), a column per depth."""
    table = grid.unstack("depth").sort_index().sort_index(axis=1)
    cells = table.apply(lambda col: col.map(lambda x: None if pd.isna(x) else c.fmt_num(x, 2)))
    marks = {
        n: ""
        if train_len is None
        else " (train)"
        if n == train_len
        else " (extrap.)"
        if n > train_len
        else ""
        for n in table.index
    }
    cells.columns = [f"{d:g}" for d in table.columns]
    cells.insert(0, "length \\ depth", [f"{n}{marks[n]}" for n in table.index])
    return c.frame_table(cells, "l" + "r" * len(table.columns))


def summary_table(by_model: dict[str, tuple[pd.Series, int]], train_len: int | None) -> list[str]:
    """Per model: runs, mean accuracy over the grid, at the training length and beyond it."""

    def mean(xs: pd.Series) -> str | None:
        return c.fmt_num(xs.mean(), 2) if len(xs) else None

    rows = []
    for m in _order(set(by_model)):
        grid, n = by_model[m]
        length = grid.index.get_level_values("length")
        longer = grid[length > train_len] if train_len is not None else grid.iloc[:0]
        rows.append([_label(m), n, mean(grid), mean(grid[length == train_len]), mean(longer)])
    head = ["model", "runs", "mean over the grid", "at the training length", "beyond it"]
    return c.frame_table(pd.DataFrame(rows, columns=head, dtype=object), "lrrrr")


def _train_len(records: Sequence[dict[str, Any]]) -> int | None:
    for rec in records:
        n = (((rec.get("config") or {}).get("data")) or {}).get("seq_len")
        if isinstance(n, int):
            return n
    return None


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    """The whole Markdown report from result records (pure)."""
    figures = figures or {}

    def section(scale: str, recs: list[dict[str, Any]]) -> list[str]:
        train_len = _train_len(recs)
        by_model = grids(recs)
        n_ok = sum(c.is_ok(r) for r in recs)
        out = ["", f"{len(recs)} run(s), {n_ok} ok; training length {train_len or '—'}."]
        out += ["", "### Summary", "", *summary_table(by_model, train_len)]
        if scale in figures:
            out += ["", f"![Passkey key accuracy, {scale} scale]({figures[scale]})"]
        for m in _order(set(by_model)):
            grid, n = by_model[m]
            out += ["", f"### {_label(m)} ({n} run(s))", "", *model_table(grid, train_len)]
        if not c.judged(scale):
            out += ["", c.NOT_JUDGED]
        return out + c.runs_sections(recs)

    return c.render_by_scale(
        EXPERIMENT,
        records,
        section,
        title="Passkey retrieval: a needle in a haystack",
        about="Key accuracy (every key token right, i.e. greedy decoding writes the whole key) per "
        "haystack length and key depth (0 = the key at the start, 1 = just before the "
        "question), for QCAttn, DMA without and with a window, the Cheems SSD and the Cheems "
        "hybrid. ",
        empty=c.no_results(EXPERIMENT, "smoke|cpu"),
    )


def plot_scale(scale: str, records: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """One heat map per model (length × depth, colour = key accuracy), side by side in one PNG."""
    by_model = grids(records)
    if not by_model:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = _order(set(by_model))
    fig = Figure(figsize=(2.6 * len(models) + 0.8, 2.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    image = None
    for ax, m in zip(axes, models):
        table = by_model[m][0].unstack("depth").sort_index().sort_index(axis=1)
        lengths, depths = list(table.index), list(table.columns)
        data = table.to_numpy(dtype=float).tolist()
        image = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", origin="lower")
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if v > 0.6 else "white",
                    )
        ax.set_xticks(range(len(depths)), [f"{d:g}" for d in depths], fontsize=7)
        ax.set_yticks(range(len(lengths)), [str(n) for n in lengths], fontsize=7)
        ax.set_xlabel("key depth", fontsize=8)
        ax.set_title(_label(m), fontsize=8)
    axes[0].set_ylabel("length", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="key accuracy")
    return c.save_figure(fig, path, f"Passkey key accuracy, {scale} scale")


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/passkey.md and one reports/passkey-<scale>.png per scale with results."""
    return c.build_with_figures(records, reports_dir, EXPERIMENT, plot_scale, render)
