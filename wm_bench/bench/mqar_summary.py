"""The MQAR benchmark's summary: tokens/s per variant with intervals, the ratio and its goal, and
the accuracy difference after the same tokens."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from wm_bench.bench.common import load_average, machine_line
from wm_bench.bench.mqar_config import (
    ANCHORS,
    DESIGN_POINTS,
    GOAL_RATIO,
    LABELS,
    LEVEL,
    SCHEMA_VERSION,
    ZOOLOGY_STYLE_DEVIATIONS,
    MqarBenchConfig,
)
from wm_bench.results import now_iso, provenance


def _interval(iv: Any) -> dict[str, Any]:
    """An stats.Interval as JSON: estimate, low, high (None when unbounded), level, n, method."""

    def num(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    return {
        "estimate": num(iv.estimate),
        "low": num(iv.low),
        "high": num(iv.high),
        "level": iv.level,
        "n": iv.n,
        "method": iv.method,
    }


def _median_interval(xs: Sequence[float]) -> dict[str, Any]:
    from wm_bench.stats import bootstrap_interval

    return _interval(
        bootstrap_interval(
            np.asarray(xs), lambda a: np.median(a, axis=-1), level=LEVEL, n_boot=2000
        )
    )


def accuracy_difference(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Ours − zoology-style pooled labelled-query accuracy over the repeats, with its interval."""
    from wm_bench.stats import two_proportions_interval

    # Lists, not nested generators: an inner generator consumed after the outer one is done
    # sees the last `v` only (both sides the zoology-style counts, a difference of 0).
    (ka, na), (kb, nb) = [
        [sum(rep["variants"][v]["accuracy"][f] for rep in reps) for f in ("hits", "n")]
        for v in ("ours", "zoology_style")
    ]
    return {
        "ours_minus_zoology_style": ka / na - kb / nb,
        "interval": _interval(two_proportions_interval(ka, na, kb, nb, LEVEL)),
        "note": "pooled labelled-query accuracy on the same test set after the same "
        "tokens; the queries of one example are not independent, so the interval is "
        "optimistic",
    }


def summarise(
    cfg: MqarBenchConfig,
    variants: Sequence[str],
    reps: list[dict[str, Any]],
    n_threads: int,
    started: str,
    load_before: float | None,
) -> dict[str, Any]:
    """The result dict: settings, per-variant speed and accuracy, ratio, goal, provenance."""
    from wm_bench.stats import (
        bootstrap_ratio_of_medians,
        threshold_verdict,
        wilson_interval,
    )

    timed = [c for rep in reps for c in rep["chunks"] if c["timed"]]
    per_step = {v: [c[f"{v}_s"] / c["steps"] for c in timed] for v in variants}  # seconds
    summary: dict[str, Any] = {}
    for v in variants:
        tps = [cfg.tokens_per_step / s for s in per_step[v]]
        accs = [rep["variants"][v]["accuracy"] for rep in reps]
        hits, n = sum(a["hits"] for a in accs), sum(a["n"] for a in accs)
        summary[v] = {
            "label": LABELS[v],
            "tokens_per_s": {
                "median": statistics.median(tps),
                "interval": _median_interval(tps),
                "min": min(tps),
                "max": max(tps),
                "n_chunks": len(tps),
            },
            "step_ms_median": 1e3 * statistics.median(per_step[v]),
            "tokens_trained_per_repeat": cfg.steps * cfg.tokens_per_step,
            "accuracy": {
                "mean_over_repeats": statistics.fmean(a["accuracy"] for a in accs),
                "pooled": _interval(wilson_interval(hits, n, LEVEL)),
                "per_repeat": [a["accuracy"] for a in accs],
            },
            "head_rows_per_step": [rep["variants"][v]["head_rows_per_step"] for rep in reps],
        }
    ratio = goal = acc_diff = None
    if len(variants) == 2:
        iv = bootstrap_ratio_of_medians(
            per_step["zoology_style"], per_step["ours"], paired=True, level=LEVEL, n_boot=2000
        )
        per_rep = []
        for rep in reps:
            t = [c for c in rep["chunks"] if c["timed"]]
            per_rep.append(
                statistics.median(c["zoology_style_s"] / c["steps"] for c in t)
                / statistics.median(c["ours_s"] / c["steps"] for c in t)
            )
        ratio = {
            "ours_over_zoology_style": iv.estimate,
            "interval": _interval(iv),
            "per_repeat": per_rep,
            "definition": "median zoology-style seconds/step ÷ median ours seconds/step "
            "over the timed chunks (paired by chunk, bootstrap BCa)",
        }
        verdict = threshold_verdict(
            iv,
            GOAL_RATIO,
            rule=f"ours/zoology-style tokens/s ≥ {GOAL_RATIO}: the interval lies above it",
            units="chunks",
        )
        goal = {
            "name": f"ours/zoology_style tokens/s >= {GOAL_RATIO}",
            "threshold": GOAL_RATIO,
            "ratio": iv.estimate,
            "met": iv.estimate >= GOAL_RATIO,
            "verdict": verdict.to_dict(),
            "note": "the suite's goal for its MQAR training speed, judged on this run's numbers",
        }
        acc_diff = accuracy_difference(reps)
    loads = [c["load_1min"] for c in timed if c["load_1min"] is not None]
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "mqar",
        "what": "MQAR training tokens/s and accuracy after the same tokens: "
        + " vs ".join(LABELS[v] for v in variants),
        "settings": {
            **asdict(cfg),
            "variants": list(variants),
            "repeats": len(reps),
            "threads": n_threads,
            "n_train": cfg.n_train,
            "steps_per_epoch": cfg.steps_per_epoch,
            "tokens_per_step": cfg.tokens_per_step,
            "chunk_sizes": cfg.chunk_sizes(),
            "dtype": "float32",
            "device": "cpu",
            "timing": "wall seconds per chunk of complete optimiser steps, the two variants "
            "alternating chunk by chunk; warm-up chunks untimed",
        },
        "variants": summary,
        "ratio": ratio,
        "goal": goal,
        "accuracy_difference": acc_diff,
        "repeats": reps,
        "design_points": [
            {
                "point": k,
                "zoology": z,
                "ours": o,
                "zoology_style": ZOOLOGY_STYLE_DEVIATIONS.get(k, "as Zoology"),
            }
            for k, (z, o) in DESIGN_POINTS.items()
        ],
        "anchors": ANCHORS,
        "machine": machine_line(n_threads),
        "load_average_1min": {
            "before": load_before,
            "after": load_average(),
            "timed_chunks_median": statistics.median(loads) if loads else None,
        },
        "provenance": provenance({"type": "cpu", "threads": n_threads, "torch": torch.__version__}),
        "started_at": started,
        "finished_at": now_iso(),
    }
