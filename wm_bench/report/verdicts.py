"""Claim verdicts: Markdown blocks for the reports, reports/verdicts.json, the PDF's glance."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wm_bench.report import common as c
from wm_bench.stats import Verdict

FILE = "verdicts.json"
# claim id → (experiment that judges it, the claim in the abstract's words)
CLAIMS: dict[str, tuple[str, str]] = {
    "C1": ("rope", "RoPE inside SSD lowers the perplexity of the QCAttn+SSD hybrid by > 4 %"),
    "C2": (
        "mqar",
        "DMA keeps 100 % accuracy on the harder MQAR, > 150 % better than QCAttn and SSD",
    ),
    "C3": ("expert_speed", "CDMoE expert retrieval with > 1024 experts is 8–10× faster than MoE"),
    "C4": (
        "arch",
        "Cheems is competitive with / better than Llama3, Mamba2 and Jamba on most "
        "validation metrics",
    ),
}
KEYS: tuple[str, ...] = (
    "claim",
    "experiment",
    "scale",
    "verdict",
    "estimate",
    "ci_low",
    "ci_high",
    "threshold",
    "direction",
    "kind",
    "n",
    "rule",
    "reason",
    "mde",
    "n_needed",
    "level",
    "subject",
    "unit",
)


def _clean(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def entry(
    claim: str, scale: str, v: Verdict | None, *, subject: str, unit: str, reason: str = ""
) -> dict[str, Any]:
    """One verdicts.json entry. v None: no verdict at this scale (`reason` says why)."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; valid: {list(CLAIMS)}")
    base: dict[str, Any] = dict.fromkeys(KEYS)
    base.update(claim=claim, experiment=CLAIMS[claim][0], scale=scale, subject=subject, unit=unit)
    if v is None:
        base["reason"] = reason or "not judged"
        return base
    base.update({k: _clean(x) for k, x in v.to_dict().items() if k in KEYS})
    return base


def lacking(rule: str, reason: str, *, threshold: float | None, kind: str = "threshold") -> Verdict:
    """An inconclusive verdict for a judged scale whose results cannot feed the rule."""
    return Verdict("inconclusive", None, None, None, threshold, "greater", kind, 0, rule, reason)


def not_judged(
    claim: str, scale: str, *, subject: str, unit: str, rule: str | None = None
) -> dict[str, Any]:
    """The entry of a scale that carries no verdict (smoke)."""
    out = entry(claim, scale, None, subject=subject, unit=unit, reason=c.NOT_JUDGED)
    out["rule"] = rule
    return out


def load(reports_dir: Path | str) -> list[dict[str, Any]]:
    path = Path(reports_dir) / FILE
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return list(data.get("verdicts", [])) if isinstance(data, dict) else []


def _order(e: dict[str, Any]) -> tuple:
    scales = list(c.SCALE_ORDER)
    s = str(e.get("scale"))
    return (str(e.get("claim")), scales.index(s) if s in scales else len(scales), s)


def write(experiment: str, entries: Sequence[dict[str, Any]], reports_dir: Path | str) -> Path:
    """Replace `experiment`'s entries in reports/verdicts.json by `entries` (others kept)."""
    from wm_bench.results import write_json_atomic

    kept = [e for e in load(reports_dir) if e.get("experiment") != experiment]
    rows = sorted([*kept, *entries], key=_order)
    doc = {
        "about": "One entry per (claim, scale), written by `wm-bench report` from results/. "
        "verdict: holds | refuted | inconclusive, or null where a scale carries no verdict "
        "(smoke). estimate / ci_low / ci_high in `unit`; threshold is the claim's threshold or "
        "the non-inferiority margin; n: the units behind the interval; mde: the minimum "
        "detectable effect at that n (80 % power); n_needed: units that would decide an "
        "inconclusive verdict if the estimate were true.",
        "verdicts": rows,
    }
    return write_json_atomic(Path(reports_dir) / FILE, doc)


def fmt_interval(low: float | None, high: float | None, fmt: Callable[[float], str]) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "— (no spread)"
    return f"[{fmt(low)}, {fmt(high)}]"


def block(
    claim: str, scale: str, v: Verdict, fmt: Callable[[float], str], *, quantity: str
) -> list[str]:
    """Markdown: the rule, one table row (estimate, interval, n, threshold, MDE, n needed) and
    the verdict line with its reason."""
    thr = "margin" if v.kind in ("non-inferiority", "equivalence") else "threshold"
    mde = fmt(v.mde) if v.mde is not None and math.isfinite(v.mde) else "—"
    row = [
        quantity,
        fmt(v.estimate) if v.estimate is not None else "—",
        fmt_interval(v.ci_low, v.ci_high, fmt),
        v.n,
        ("> " if v.direction == "greater" else "< ") + fmt(v.threshold)
        if thr == "threshold" and v.threshold is not None
        else (fmt(v.threshold) if v.threshold is not None else "—"),
        mde,
        v.n_needed if v.n_needed is not None else "—",
    ]
    head = [
        "quantity",
        "estimate",
        f"{100 * v.level:g} % interval",
        "n",
        thr,
        "MDE (80 % power)",
        "n to decide",
    ]
    return [
        f"Rule: {v.rule}",
        "",
        *c.md_table(head, [row], "lrrrrrr"),
        "",
        f"**Verdict ({scale} scale): {claim} {v.verdict}** — {v.reason}.",
    ]


def glance_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """The PDF's opening section: one row per (claim, scale) from verdicts.json."""
    out = [
        "# Claims at a glance",
        "",
        "Each claim of the paper's abstract judged at each scale from `reports/verdicts.json` "
        "(built by `wm-bench report` from results/): **holds** when the whole interval lies on "
        "the claimed side of its threshold or margin, **refuted** when it lies wholly on the "
        "other side, **inconclusive** otherwise. The rules are printed in each report below.",
        "",
    ]
    if not entries:
        return "\n".join([*out, "No verdicts yet: run `wm-bench report`."]) + "\n"
    rows = []
    for e in entries:
        unit = e.get("unit") or ""

        def num(x: Any, unit: str = unit) -> str:
            if x is None:
                return "—"
            if unit == "%":
                return f"{100 * x:.2f} %"
            if unit == "×":
                return f"{x:.2f}×"
            return f"{x:.3g}"

        verdict = e.get("verdict") or "no verdict"
        ci = (
            "—"
            if e.get("ci_low") is None or e.get("ci_high") is None
            else f"[{num(e['ci_low'])}, {num(e['ci_high'])}]"
        )
        thr = e.get("threshold")
        rows.append(
            [
                e.get("claim"),
                CLAIMS.get(str(e.get("claim")), ("", ""))[1],
                e.get("scale"),
                f"**{verdict}**" if e.get("verdict") else verdict,
                num(e.get("estimate")),
                ci,
                num(thr) if thr is not None else "—",
                e.get("n") if e.get("n") is not None else "—",
                e.get("reason") or "",
            ]
        )
    head = [
        "claim",
        "in the paper's words",
        "scale",
        "verdict",
        "estimate",
        "95 % interval",
        "threshold / margin",
        "n",
        "why",
    ]
    return "\n".join([*out, *c.md_table(head, rows, "llllrrrrl")]) + "\n"


__all__ = [
    "CLAIMS",
    "FILE",
    "block",
    "entry",
    "glance_markdown",
    "lacking",
    "load",
    "not_judged",
    "write",
]
