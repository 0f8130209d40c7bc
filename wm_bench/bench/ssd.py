"""`wm-bench bench ssd`: chunked SSD fwd and fwd+bwd, ours vs mamba_ssm and fla, vs the roofline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wm_bench.bench import roofline as rl
from wm_bench.bench.common import (
    add_output_options,
    columns,
    interpreter_mode,
    print_and_exit,
    print_goals,
    print_table,
    slug,
    timing_options,
)
from wm_bench.bench.common import default_out as bench_out
from wm_bench.bench.ssd_cases import (
    INTERPRET_CHUNK,
    SHAPES,
    SWEEP_T,
    Case,
    build_cases,
    case_bounds,
)

NO_CUDA = "no CUDA: timings not measured (static H100 bounds only; --interpret runs the plumbing)"


def default_out(device_slug: str) -> Path:
    """<results>/bench/ssd-<device>.json under wm_bench.results.default_results_dir()."""
    return bench_out("ssd", device_slug)


# The tables (bench.common.COLUMNS keys); a measured number column no row fills is left out.
STATIC_KEYS = "case dims fwd_mb fwd_bwd_mb fwd_gflop bound fwd_lb fwd_bwd_lb"
RESULT_KEYS = (
    "case impl status err fwd_ms fwd_gbps fwd_pct fwd_graph_ms graph_pct fwd_bwd_ms fb_gbps "
    "fb_pct peak first vs_mamba"
)


def static_rows(cases: list[Case], elem: int = 2) -> list[dict[str, Any]]:
    """One row per case: minimum bytes and FLOPs and the H100 lower bounds (no timings)."""
    rows = []
    for c in cases:
        b = case_bounds(c, elem)
        rows.append(
            {
                "case": c.name,
                "dims": ", ".join(map(str, c.dims)),
                "fwd_mb": b["fwd"]["bytes"] / 1e6,
                "fwd_bwd_mb": b["fwd_bwd"]["bytes"] / 1e6,
                "fwd_gflop": b["fwd"]["flops"] / 1e9,
                "bound": b["fwd"]["bound"],
                "fwd_lb": b["fwd"]["lower_bound_ms"],
                "fwd_bwd_lb": b["fwd_bwd"]["lower_bound_ms"],
            }
        )
    return rows


def result_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per (case, implementation) of a measured record."""
    rows = []
    for c in rec["cases"]:
        if c.get("skipped"):
            rows.append({"case": c["name"], "status": c["skipped"]})
        for name, r in c["results"].items():
            first = (r.get("first_fwd_s") or 0) + (r.get("first_bwd_s") or 0)
            row = {"case": c["name"], "impl": name, "status": r["status"]}
            row |= {k: r.get(k) for k in ("fwd_ms", "fwd_graph_ms", "fwd_bwd_ms")}
            row |= {"err": r.get("check", {}).get("max"), "first": first or None}
            row["peak"] = r.get("peak_fwd_bwd_mib") or r.get("peak_fwd_mib")
            for key, col in (("fwd", "fwd"), ("fwd_graph", "graph"), ("fwd_bwd", "fb")):
                roof = r.get(f"{key}_roofline", {})
                row[f"{col}_pct"] = roof.get("pct_of_roofline")
                if col != "graph":
                    row[f"{col}_gbps"] = roof.get("achieved_gbps")
            if name == "ours":
                row["vs_mamba"] = c.get("ratios", {}).get("mamba_ssm", {}).get("fwd_bwd_ms")
            rows.append(row)
    return rows


def print_static(cases: list[Case], title: str) -> None:
    """Print the static roofline table."""
    print_table(static_rows(cases), columns(STATIC_KEYS), title=title)


def print_result(rec: dict[str, Any]) -> None:
    """Print the measured table, then the goals, the anchors and what was skipped."""
    st = rec["settings"]
    fla = " (fla: 64)" if "fla" in rec["impls"] else ""
    title = f"SSD chunked scan, {st['dtype']}, chunk {st['chunk']}{fla}; {rec['timer']}"
    if rec["mode"] == "cuda":
        title += (
            f"\n% of the H100 bound at {rl.H100.tbps} TB/s (minimum bytes: read x, dt, B, C, "
            "write y; fwd+bwd also read dy, write dx, ddt, dB, dC)"
        )
    rows = result_rows(rec)
    print_table(rows, columns(RESULT_KEYS, rows), title=title)
    print_goals(rec.get("goals", {}))
    for name, info in rec["impls"].items():
        if info["kind"] == "anchor":
            print(f"anchor {name} {info['versions']}: {info['note']}")
    for name, why in rec["skipped_impls"].items():
        print(f"skipped {name}: {why}")


def build_parser() -> argparse.ArgumentParser:
    """The `bench ssd` argument parser."""
    p = argparse.ArgumentParser(
        prog="wm-bench bench ssd",
        description=(
            "Chunked SSD (Mamba-2 scan), forward and forward+backward: our Triton kernel side\n"
            "by side with mamba_ssm's mamba_chunk_scan_combined and fla's chunk_simple_gla\n"
            "(docs/anchors.md §3; each used when importable). Every implementation is first\n"
            "checked against the float64 reference (relative RMS of y and every gradient; a wrong\n"
            "one is reported, not timed), then timed with triton.testing.do_bench (median, L2\n"
            "flushed): forward with autograd on, forward + torch.autograd.grad, a CUDA-graph\n"
            "replayed forward; also peak memory, first-call time, achieved GB/s and % of the\n"
            "H100 bandwidth roofline. The JSON (<results>/bench/ssd-<device>.json) is rewritten\n"
            "after every measurement."
        ),
        epilog="Modes: CUDA → measure; --interpret (or TRITON_INTERPRET=1) → the same pipeline "
        "at a tiny fp32 shape on the CPU (plumbing only); no CUDA → print the static roofline "
        "table and exit 0.\nExamples:\n  wm-bench bench ssd\n  wm-bench bench ssd --cases "
        "shapes --impls ours,mamba_ssm\n  wm-bench bench ssd --budget-s 600   # the whole sweep",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", default="all", help="all | shapes | sweep | comma-separated names")
    p.add_argument(
        "--sweep-t",
        default=",".join(map(str, SWEEP_T)),
        help="T values of the sweep at the first shape's layout (default %(default)s)",
    )
    p.add_argument("--impls", default="ours,mamba_ssm,fla", help="comma list (default %(default)s)")
    p.add_argument("--chunk", type=int, default=None, help="chunk Q (default 64; 16 interpreted)")
    timing_options(
        p,
        budget_s=100.0,
        budget_help="soft wall-clock cap; later cases are recorded as skipped (default "
        "%(default)s, fits the GPU suite's box)",
        check_max_tokens=65536,
        check_help="B·T above which a case inherits the check of its layout's last checked case "
        "(default %(default)s)",
        timing_help=("do_bench warm-up per timing", "do_bench timed budget per timing"),
    )
    p.add_argument("--no-graph", action="store_true", help="skip the CUDA-graph forward")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interpret", action="store_true", help="CPU interpreter, tiny fp32 case")
    p.add_argument("--static", action="store_true", help="static roofline table only")
    add_output_options(p, "<results>/bench/ssd-<device>.json; static mode: only if given")
    return p


def _static(cases: list[Case], out: str | None, why: str) -> int:
    print_static(cases, f"SSD static roofline on the {rl.H100.name} (bf16 minimum bytes)")
    print(f"(the sweep's T = 2048 point is {next(iter(SHAPES))})")
    print(why)
    if out:
        from wm_bench.results import now_iso, provenance, write_json_atomic

        rec = {"schema": "bench-ssd/1", "mode": "static", "gpu_timings": False, "note": why}
        rec["cases"] = [
            {"name": c.name, "group": c.group, "dims": c.dim_dict, "bounds": case_bounds(c, 2)}
            for c in cases
        ]
        rec |= {"created_at": now_iso(), "provenance": provenance({"type": "none"})}
        print(f"wrote {write_json_atomic(out, rec)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the SSD benchmark (see --help).

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    Returns:
        0 (also without CUDA, after the static table); 2 when --interpret comes too late.
    """
    args = build_parser().parse_args(argv)
    sweep = [int(t) for t in args.sweep_t.split(",") if t]
    impls = [n for n in args.impls.split(",") if n]
    from wm_bench.bench.ssd_impls import IMPL_NAMES

    if not impls or set(impls) - set(IMPL_NAMES):
        raise ValueError(f"--impls {args.impls!r}; valid: a comma list of {list(IMPL_NAMES)}")
    interpret = interpreter_mode(args.interpret, "wm_bench.kernels.ssd.triton_fwd")
    if interpret is None:
        msg = "--interpret: the kernels are imported already; set TRITON_INTERPRET=1 first"
        print(msg, file=sys.stderr)
        return 2
    import torch

    cases = build_cases(args.cases, sweep, interpret=False)
    if args.static or (not interpret and not torch.cuda.is_available()):
        return _static(cases, args.out, "static: timings not measured" if args.static else NO_CUDA)

    from wm_bench.bench.ssd_measure import Settings, bench_ssd

    common = {
        "check_max_tokens": args.check_max_tokens,
        "budget_s": args.budget_s,
        "seed": args.seed,
    }
    if interpret:
        cases = build_cases("all", (), interpret=True)
        s = Settings(
            args.chunk or INTERPRET_CHUNK, "float32", "cpu", repeats=args.repeats, **common
        )
        where = "cpu-interpret"
    else:
        torch.cuda.set_device(torch.device(args.device))  # Triton launches on the current one
        s = Settings(
            args.chunk or 64,
            args.dtype,
            args.device,
            warmup_ms=args.warmup_ms,
            rep_ms=args.rep_ms,
            graph=not args.no_graph,
            **common,
        )
        where = slug(torch.cuda.get_device_name(torch.device(args.device)))
    out = Path(args.out) if args.out else default_out(where)
    rec = bench_ssd(cases, impls, s, out, progress=not args.quiet)
    return print_and_exit(rec, out, print_result)


if __name__ == "__main__":
    sys.exit(main())
