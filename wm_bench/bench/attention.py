"""`wm-bench bench attention`: our Triton kernel vs SDPA (FLASH, CUDNN), Flex, flash-dmattn.

Per shape (B, H, T, D) and variant — "causal" (no bias), "bias" (per-key bias, causal), "w2" and
"w8" (bias + top-w window, w = T/2 and T/8) — every implementation that supports the variant is
first checked against our SDPA reference in fp32 (relative RMS error of o and every gradient; a
wrong one is reported, not timed), then timed with triton.testing.do_bench (median, L2 flushed):
forward, and forward + backward; with peak memory above the inputs, useful TFLOP/s (FLOPs of the
visible (query, key) pairs) and, for ours, executed TFLOP/s (the tiles it really computes: the
causal triangle, or under a window the gathered slot tiles plus each block's diagonal). The
per-key bias is i.i.d. normal by default, so kept keys scatter over every key block (what defeats
block-sparse kernels such as FlexAttention's block mask); `--bias smooth` (a random walk along the
keys, so kept keys cluster) is the friendly case for them. The JSON
(<results>/bench/attention-<device>.json) is rewritten after every measurement, so a run cut
short keeps what it measured.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wm_bench.bench import common as bc
from wm_bench.bench.attention_cases import (
    SHAPES,
    VARIANTS,
    executed_tiles,
    useful_flops,
    visible_pairs,
    window_of,
)
from wm_bench.bench.attention_impls import IMPLS
from wm_bench.bench.attention_measure import goals, run_bench

__all__ = ["executed_tiles", "goals", "main", "run_bench"]  # goals, tiles: read by the tests

NO_CUDA = "no CUDA: timings not measured (FLOP table only; --interpret runs the plumbing)"


def default_out(device_slug: str) -> Path:
    """<results>/bench/attention-<device>.json."""
    return bc.default_out("attention", device_slug)


# The measured table (bench.common.COLUMNS keys); a number column no row fills is left out.
RESULT_KEYS = "case variant impl status err fwd_ms fwd_tf exec_tf fwd_bwd_ms fb_tf peak"


# table column → the result field it shows
RESULT_FIELDS = {
    "status": "status",
    "err": "check_max_rel_rms",
    "fwd_ms": "fwd_ms",
    "fwd_tf": "useful_fwd_tflops",
    "exec_tf": "executed_fwd_tflops",
    "fwd_bwd_ms": "fwd_bwd_ms",
    "fb_tf": "useful_fwd_bwd_tflops",
    "peak": "peak_fwd_bwd_mib",
}


def result_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per (case, variant, impl)."""
    rows = []
    for c in rec["cases"]:
        for variant, e in c["variants"].items():
            if e.get("skipped"):
                rows.append({"case": c["name"], "variant": variant, "status": e["skipped"]})
            for name, r in e["results"].items():
                shown = {col: r.get(field) for col, field in RESULT_FIELDS.items()}
                rows.append({"case": c["name"], "variant": variant, "impl": name, **shown})
    return rows


def print_result(rec: dict[str, Any]) -> None:
    """The measured table, the goals and the implementations that could not run."""
    st = rec["settings"]
    title = f"Attention, {st['dtype']}, bias {st['bias']}, ties {st['tie_break']}; {rec['timer']}"
    rows = result_rows(rec)
    bc.print_table(rows, bc.columns(RESULT_KEYS, rows), title=title)
    bc.print_goals(rec.get("goals", {}))
    for name, why in rec["skipped_impls"].items():
        print(f"skipped {name}: {why}")


def print_static() -> None:
    """Without CUDA: the FLOPs of every (shape, variant), nothing timed."""
    rows = []
    for sname, (B, H, T, D) in SHAPES.items():
        for v in VARIANTS:
            w = window_of(v, T)
            pairs = visible_pairs(T, w) * B * H / 1e6
            fwd, fb = (useful_flops(B, H, T, D, w, bwd) / 1e9 for bwd in (False, True))
            row = {"case": sname, "variant": v, "window": w or "—", "pairs": pairs}
            rows.append(row | {"fwd_gflop": fwd, "fwd_bwd_gflop": fb})
    cols = bc.columns("case variant window pairs fwd_gflop fwd_bwd_gflop")
    bc.print_table(rows, cols, title="Attention benchmark problems (useful FLOPs; nothing timed)")


def _names(text: str, valid: Sequence[str], flag: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    bad = [n for n in names if n not in valid]
    if not names or bad:
        raise ValueError(f"{flag} {text!r}: unknown {bad}; valid: a comma list of {list(valid)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The `bench attention` argument parser."""
    p = argparse.ArgumentParser(
        prog="wm-bench bench attention",
        description=__doc__,
        epilog="Modes: CUDA → measure; --interpret (or TRITON_INTERPRET=1) → our kernel and the "
        "reference at a tiny fp32 shape on the CPU (plumbing only); no CUDA → print the FLOP "
        "table and exit 0.\nExamples:\n  wm-bench bench attention\n  wm-bench bench attention "
        "--shapes b1_h16_t16k_d64 --variants causal,w8 --bias smooth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma list (default: all)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list (default: all)")
    p.add_argument("--impls", default=",".join(IMPLS), help="comma list (default: all)")
    p.add_argument("--bias", default="iid", choices=["iid", "smooth"], help="per-key bias kind")
    p.add_argument(
        "--tie-break", default="smaller_index", choices=["smaller_index", "larger_index"]
    )
    bc.timing_options(
        p,
        budget_s=90.0,
        budget_help="soft wall-clock cap; later problems are recorded as skipped "
        "(default %(default)s: fits the GPU suite's box)",
        check_max_tokens=16384,
        check_help="B·T above which a problem is timed without the fp32 reference check",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interpret", action="store_true", help="CPU interpreter, tiny fp32 shape")
    bc.add_output_options(p, "<results>/bench/attention-<device>.json")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the attention benchmark (see --help). Returns 0; 2 when --interpret comes too late."""
    args = build_parser().parse_args(argv)
    args.shape_names = _names(args.shapes, list(SHAPES), "--shapes")
    args.variant_names = _names(args.variants, VARIANTS, "--variants")
    args.impl_names = _names(args.impls, IMPLS, "--impls")
    args.progress = not args.quiet
    interpret = bc.interpreter_mode(args.interpret, "wm_bench.kernels.attention.triton_kernels")
    if interpret is None:
        print("--interpret: kernels already imported; set TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    import torch

    cuda = torch.cuda.is_available() and not interpret
    if not cuda and not interpret:
        print_static()
        print(NO_CUDA)
        return 0
    if interpret:
        args.dtype = "float32"
        where = "cpu-interpret"
    else:
        torch.cuda.set_device(torch.device(args.device))
        where = bc.slug(torch.cuda.get_device_name(torch.device(args.device)))
    out = Path(args.out) if args.out else default_out(where)
    rec = run_bench(args, cuda, out)
    return bc.print_and_exit(rec, out, print_result)


if __name__ == "__main__":
    sys.exit(main())
