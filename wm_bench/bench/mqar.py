"""`wm-bench bench mqar`: MQAR training speed at Zoology's CPU configuration, ours vs zoology-style.

The suite's goal: train MQAR at CPU speed, at least 1.5× the tokens/s of a zoology-style
trainer. Two ways of training the same MQAR task, interleaved in one process:

- "ours": the suite's real training path, `wm_bench.train.run` (Lightning, `LMModule`,
  `MqarDataModule`), on a 2-layer, 1-head attention model without FFN. MQAR labels only kv of the
  L positions, and `LMModule._steps` applies the LM head and the loss to those positions only.
- "zoology_style": our own re-implementation (not Zoology's code, which is not installed) of
  Zoology's MQAR trainer at HazyResearch/zoology d88d6f5 and its model at the Fig. 2 settings:
  learned positions, 1-head attention with biases and dropout, LayerNorm, no state mixer, a tied
  8192-way head and the loss over every position, AdamW on all parameters, cosine per epoch.

Both train on the same MQAR rows (`wm_bench.data.mqar`, one seed) for the same number of steps
and tokens. The "ours" run is driven by Lightning; a callback runs the zoology-style loop in
chunks of `chunk` steps between ours' chunks (order flipped on odd repeats), so load on a shared
machine hits both alike. Per chunk: wall seconds of `chunk` complete optimiser steps of each
(ours: everything Lightning does between them; zoology-style: its whole loop body). The first
`warmup_chunks` chunks of each are untimed. Afterwards both models are scored on the same test
set by one evaluator (Zoology's metric), and ours also by the suite's own validation.
What differs from real Zoology is listed in `DESIGN_POINTS` and in docs/bench_mqar.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wm_bench.bench.common import (
    add_output_options,
    load_average,
    print_and_exit,
    torch_threads,
)
from wm_bench.bench.mqar_config import (
    ANCHORS,
    DESIGN_POINTS,
    GOAL_RATIO,
    VARIANTS,
    MqarBenchConfig,
    parse_variants,
)
from wm_bench.bench.mqar_run import mqar_split, one_repeat, ours_run_config, same_rows
from wm_bench.bench.mqar_summary import accuracy_difference, summarise
from wm_bench.bench.mqar_zoology import ZoologyStyleLM, ZoologyStyleTrainer
from wm_bench.results import now_iso, repo_root, write_json_atomic

# The benchmark's public surface: what the command line, the tests and the docs name.
__all__ = [
    "ANCHORS",
    "DESIGN_POINTS",
    "GOAL_RATIO",
    "MqarBenchConfig",
    "ZoologyStyleLM",
    "ZoologyStyleTrainer",
    "accuracy_difference",
    "bench_mqar",
    "build_parser",
    "main",
    "mqar_split",
    "ours_run_config",
    "parse_variants",
    "same_rows",
]


def bench_mqar(
    cfg: MqarBenchConfig | None = None,
    *,
    variants: Sequence[str] = VARIANTS,
    repeats: int = 1,
    threads: int | None = 2,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ours and the zoology-style loop side by side; timings, ratio, goal, accuracy.

    Args:
        cfg: the configuration (default: Zoology's CPU configuration, 750 steps).
        variants: any of VARIANTS; the ratio and the goal need both.
        repeats: whole runs, each with fresh models and data seed cfg.seed + r; on odd repeats
            the zoology-style chunk of each pair runs first.
        threads: intra-op CPU threads (None: torch's current setting).
        out: write the JSON here (atomically); None writes nothing.
        progress: one line per chunk on stderr.
    Returns:
        the result dict (also written to `out`); its fields are described in docs/bench_mqar.md.
    """
    cfg = cfg or MqarBenchConfig()
    variants = parse_variants(variants)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be an integer ≥ 1")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    started, load_before = now_iso(), load_average()
    with torch_threads(threads) as n_threads:
        reps = [one_repeat(cfg, variants, r, repeats, n_threads, log) for r in range(repeats)]
    result = summarise(cfg, variants, reps, n_threads, started, load_before)
    if out is not None:
        write_json_atomic(out, result)
    return result


# ---- command line ------------------------------------------------------------------------------


def _fmt_iv(d: dict[str, Any], f: str) -> str:
    lo, hi = d["low"], d["high"]
    return "[—]" if lo is None or hi is None else f"[{lo:{f}}, {hi:{f}}]"


def print_result(result: dict[str, Any]) -> None:
    """Print a table per variant, the ratio, the goal, the accuracies and the anchors."""
    from wm_bench.bench.common import columns, print_table

    s = result["settings"]
    rows = []
    for d in result["variants"].values():
        t = d["tokens_per_s"]
        rows.append(
            {
                "variant": d["label"],
                "tps": t["median"],
                "ci": _fmt_iv(t["interval"], ",.0f"),
                "ms": d["step_ms_median"],
                "acc": d["accuracy"]["mean_over_repeats"],
                "rows": ",".join(str(x) for x in d["head_rows_per_step"]),
            }
        )
    print_table(
        rows,
        columns("variant tps ci ms acc rows"),
        title=f"MQAR training, V={s['vocab_size']} d={s['d_model']} layers={s['n_layers']}"
        f" L={s['seq_len']} kv={s['num_kv_pairs']} B={s['batch_size']}, {s['steps']} steps"
        f" × {s['repeats']} repeat(s), chunks of {s['chunk']}\n{result['machine']}",
    )
    if result["ratio"] is not None:
        r, g = result["ratio"], result["goal"]
        print(
            f"ratio ours/zoology-style tokens/s: {r['ours_over_zoology_style']:.2f} "
            f"{_fmt_iv(r['interval'], '.2f')}; goal ≥ {g['threshold']}: "
            f"{'met' if g['met'] else 'NOT met'} (interval verdict: {g['verdict']['verdict']})"
        )
        d = result["accuracy_difference"]
        print(
            f"accuracy ours − zoology-style after the same tokens: "
            f"{d['ours_minus_zoology_style']:+.3f} {_fmt_iv(d['interval'], '+.3f')}"
        )
    row = result["anchors"]["rows"][0]
    print(
        f"anchor (Zoology's own trainer, NOT this run; {result['anchors']['source'].split(' (')[0]}"
        f"): attention d {row['d']}, L {row['L']}, kv {row['kv']}: "
        f"{row['train_tokens_per_s']:,} tok/s, accuracy {row['accuracy_after_2_epochs']}"
    )
    before = result["load_average_1min"]["before"]
    if before is not None and before > 0.5 * (os.cpu_count() or 1):
        print(
            f"note: 1-min load average {before:.1f} on {os.cpu_count()} cores before the run: "
            "other processes competed for the CPU; rerun on a quiet machine"
        )


def default_out() -> Path:
    return repo_root() / "results" / "bench" / "mqar_cpu.json"


# The MqarBenchConfig fields the command line sets, each as --<field> (underscores as dashes).
CONFIG_FIELDS = ("steps", "chunk", "warmup_chunks", "n_test", "seed")


def config_option(p: argparse.ArgumentParser, field: str, help: str) -> None:
    """Add --<field>, an integer defaulting to MqarBenchConfig's value."""
    assert field in CONFIG_FIELDS, field
    default = getattr(MqarBenchConfig(), field)
    p.add_argument("--" + field.replace("_", "-"), type=int, default=default, help=help)


def build_parser() -> argparse.ArgumentParser:
    """The `bench mqar` argument parser."""
    d = MqarBenchConfig()
    p = argparse.ArgumentParser(
        prog="wm-bench bench mqar",
        description="MQAR training speed at Zoology's CPU configuration (vocabulary 8192, 2 "
        "layers, d 64,\nL 64, kv 8, batch 32, 2 epochs), two ways, interleaved chunk by chunk in "
        "one process:\n"
        "  ours           the suite's real training path (Lightning + LMModule), LM head and "
        "loss\n                 on the labelled positions only\n"
        "  zoology_style  our re-implementation of Zoology's trainer (not Zoology's code), head "
        "and\n                 loss over every position\n"
        "Reports tokens/s of each (median and 95 % interval over chunks), the ratio\n"
        f"ours/zoology-style (goal >= {GOAL_RATIO}) and the test accuracy of both after the same "
        "tokens.\nZoology's own numbers (docs/anchors.md §5) are quoted beside, never mixed in.",
        epilog="Example (the measurement, on an idle machine):\n"
        "  wm-bench bench mqar --steps 750 --threads 2 --repeats 3\n"
        "Quick plumbing check:\n"
        "  wm-bench bench mqar --steps 20 --chunk 5 --out /tmp/mqar.json\n"
        "JSON fields: docs/bench_mqar.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(
        p,
        "steps",
        f"optimiser steps per variant and repeat (default {d.steps} = 2 epochs of 12,000 rows)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="whole runs with fresh models, seed +1 each, order flipped on odd repeats (default 1)",
    )
    config_option(
        p, "chunk", f"steps per timed chunk; the variants alternate by chunk (default {d.chunk})"
    )
    config_option(
        p, "warmup_chunks", f"untimed first chunks of each variant (default {d.warmup_chunks})"
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma list of {', '.join(VARIANTS)} (default both; the ratio needs both)",
    )
    config_option(p, "n_test", f"MQAR test examples both are scored on (default {d.n_test})")
    config_option(p, "seed", f"data and weight seed (default {d.seed})")
    add_output_options(p, "results/bench/mqar_cpu.json", "per-chunk progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line, print the summary and write the JSON.

    Bad values raise ValueError (the `wm-bench` CLI prints them as one "error:" line).
    """
    args = build_parser().parse_args(argv)
    variants = parse_variants(args.variants)
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads}: must be ≥ 1")
    cfg = MqarBenchConfig(**{f: getattr(args, f) for f in CONFIG_FIELDS})
    if args.repeats < 1:
        raise ValueError(f"--repeats {args.repeats}: must be ≥ 1")
    out = Path(args.out) if args.out else default_out()
    result = bench_mqar(
        cfg,
        variants=variants,
        repeats=args.repeats,
        threads=args.threads,
        out=out,
        progress=not args.quiet,
    )
    return print_and_exit(result, out, print_result)


if __name__ == "__main__":
    raise SystemExit(main())
