"""Learning-rate choice for the language-model reports: each variant at its own best LR, the LR
grid table, and the cells that say which LR a table used."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from wm_bench.report.common import current_records, fmt_lr, fmt_num, md_table, run_lr


def lr_choice(records: Sequence[dict[str, Any]]) -> dict[str, tuple[float | None, dict]]:
    """Per variant: (the LR its tables use, {lr: score}) by `wm_bench_tasks._lm.choose_lr` (lowest
    validation perplexity at the seeds every LR has; failed or diverged runs count as worst)."""
    from wm_bench_tasks._lm import choose_lr, record_value

    points: dict[str, list[tuple[float | None, int, float | None]]] = {}
    for r in records:
        points.setdefault(str(r.get("variant")), []).append(
            (run_lr(r), int(r.get("seed") or 0), record_value(r))
        )
    return {v: choose_lr(p) for v, p in points.items()}


def at_chosen_lr(
    records: Sequence[dict[str, Any]], choice: dict[str, tuple[float | None, dict]]
) -> list[dict[str, Any]]:
    """The records run at their variant's chosen LR (all seeds, any status)."""
    return [
        r
        for r in records
        if str(r.get("variant")) in choice and choice[str(r.get("variant"))][0] == run_lr(r)
    ]


def scale_runs(records: Sequence[dict[str, Any]]) -> tuple[list, list, dict, list]:
    """A scale's runs as the language-model tables use them: (the records of its current
    configuration, the superseded ones, the LR choice, the current records at each variant's
    chosen LR)."""
    recs, old = current_records(records)
    choice = lr_choice(recs)
    return recs, old, choice, at_chosen_lr(recs, choice)


def lr_cell(choice: tuple[float | None, dict]) -> str:
    """'3e-3 (of 3)', 'one LR: 3e-3', or '— (every LR failed)'."""
    best, scores = choice
    if len(scores) <= 1:
        return f"one LR: {fmt_lr(best)}" if best is not None else "—"
    if best is None:
        return "— (every LR failed)"
    edge = " (grid edge)" if best in (min(scores), max(scores)) else ""
    return f"{fmt_lr(best)} (of {len(scores)}){edge}"


def lr_score_cells(
    choice: tuple[float | None, dict], lrs: Sequence[float], digits: int
) -> list[str]:
    """One table row's cells: the tune score at each LR of `lrs` ("—" where not run, "failed /
    diverged" where not finite), the chosen LR's in bold."""
    best, scores = choice
    cells = []
    for lr in lrs:
        if lr not in scores:
            cells.append("—")
            continue
        x = scores[lr]
        text = fmt_num(x, digits) if math.isfinite(x) else "failed / diverged"
        cells.append(f"**{text}**" if lr == best else text)
    return cells


def lr_grid_section(
    records: Sequence[dict[str, Any]],
    choice: dict[str, tuple[float | None, dict]],
    label: Any,
    order: Sequence[str],
) -> list[str]:
    """ "### Learning rate per variant": the tune score (validation perplexity) at each LR, the
    chosen one in bold; a line saying so when no variant was tuned."""
    lrs = sorted({lr for _, scores in choice.values() for lr in scores if lr is not None})
    tuned = any(len(scores) > 1 for _, scores in choice.values())
    out = ["", "### Learning rate per variant", ""]
    if not tuned:
        one = ", ".join(fmt_lr(x) for x in lrs) or "—"
        return [*out, f"Not tuned at this scale: every variant ran at one LR ({one})."]
    rows = []
    for v in [v for v in order if v in choice]:
        rows.append([label(v), *lr_score_cells(choice[v], lrs, 2), lr_cell(choice[v])])
    head = ["variant", *(f"valid ppl @ LR {fmt_lr(x)}" for x in lrs), "chosen LR"]
    return [
        *out,
        *md_table(head, rows, "l" + "r" * (len(lrs) + 1)),
        "",
        "Each variant's LR: the lowest validation perplexity at the tune seed (seed 0, the "
        "seed every LR ran); a failed or diverged run counts as the worst value; its tables "
        "and verdicts use the runs at that LR only. (grid edge): the best LR is the "
        "smallest or largest tried, so a better one may lie outside the grid.",
    ]


PARAM_COLUMNS = {"total": "total params", "active": "active params"}


def leading_columns(
    head: str,
    order: Sequence[str],
    label: Any,
    params: dict[str, dict[str, Any]],
    choice: dict[str, tuple[float | None, dict]],
    counts: dict[str, str] | None = None,
) -> dict[str, list[str | None]]:
    """The columns a language-model report's model table opens with, one cell per variant of
    `order`: its label (column `head`), its parameter counts and the LR its row uses.

    Args:
        label: variant → its label.
        params: variant → its "params" record field (total, active, ...); missing: no cells.
        choice: as `lr_choice`; a variant without a choice gets no LR cell.
        counts: parameter field → its column header (default: total and active parameters).
    """
    cols: dict[str, list[str | None]] = {head: [label(v) for v in order]}
    for field, name in (counts or PARAM_COLUMNS).items():
        cols[name] = [f"{n:,}" if (n := params.get(v, {}).get(field)) else None for v in order]
    cols["LR"] = [lr_cell(choice[v]) if v in choice else None for v in order]
    return cols
