"""`wm-bench bench attention`: our Triton kernel vs SDPA (FLASH, CUDNN), Flex, flash-dmattn.

Per shape (B, H, T, D) and variant — "causal" (no bias), "bias" (per-key bias, causal), "w2" and
"w8" (bias + top-w window, w = T/2 and T/8) — every implementation that supports the variant is
first checked against our SDPA reference in fp32 (max relative error of o and every gradient; a
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
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SHAPES = {  # (B, H, T, D): issue 5's listed shapes
    "b8_h16_t2k_d64": (8, 16, 2048, 64),
    "b4_h16_t4k_d128": (4, 16, 4096, 128),
    "b1_h16_t16k_d64": (1, 16, 16384, 64),
}
INTERPRET_SHAPES = {"tiny_b1_h2_t48_d16": (1, 2, 48, 16)}
VARIANTS = ("causal", "bias", "w2", "w8")  # w2 / w8: window T/2, T/8
IMPLS = ("ours", "sdpa_flash", "sdpa_cudnn", "flex", "flash_dmattn")
SUPPORTS = {  # impl → variants it can run
    "ours": VARIANTS,
    "sdpa_flash": ("causal",),
    "sdpa_cudnn": ("causal",),
    "flex": VARIANTS,
    "flash_dmattn": ("bias", "w2", "w8"),
}
TOL = {"bfloat16": 3e-2, "float16": 1e-2, "float32": 1e-4}
NO_CUDA = "no CUDA: timings not measured (FLOP table only; --interpret runs the plumbing)"


def window_of(variant: str, T: int) -> int | None:
    """The top-w window of a variant at length T (None: no window)."""
    return {"w2": T // 2, "w8": T // 8}.get(variant)


def visible_pairs(T: int, window: int | None) -> int:
    """(query, key) pairs one causal (batch, head) attends to: Σ_i min(i + 1, w)."""
    if window is None:
        return T * (T + 1) // 2
    w = min(window, T)
    return w * (w + 1) // 2 + (T - w) * w


def useful_flops(B: int, H: int, T: int, D: int, window: int | None, backward: bool) -> float:
    """4·D FLOPs per visible pair forward (q·k, p·v); fwd+bwd 3.5×, as docs/anchors.md §2 counts."""
    f = 4.0 * D * B * H * visible_pairs(T, window)
    return f * 3.5 if backward else f


def make_inputs(
    B: int, H: int, T: int, D: int, *, dtype: Any, device: str, bias_kind: str, seed: int
) -> dict[str, Any]:
    """q, k, v [B, T, H, D] and key_bias [B, H, T] leaves, and a fixed cotangent do."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device)

    bias = rnd(B, H, T)
    if bias_kind == "smooth":
        bias = bias.cumsum(-1) / T**0.5  # a random walk: neighbouring keys rank alike
    inp = {n: rnd(B, T, H, D).to(dtype).requires_grad_(True) for n in ("q", "k", "v")}
    inp["key_bias"] = bias.to(dtype).requires_grad_(True)
    inp["do"] = rnd(B, T, H, D).to(dtype)
    return inp


# ---- implementations: (inputs, variant, window) → o [B, T, H, D] --------------------------------
def _ours(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
    from wm_bench.kernels.attention import attention

    bias = None if variant == "causal" else inp["key_bias"]
    return attention(
        inp["q"], inp["k"], inp["v"], key_bias=bias, window=window, tie_break=tie_break,
        impl="triton",
    )  # fmt: skip


def _reference(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
    from wm_bench.kernels.attention import attention

    bias = None if variant == "causal" else inp["key_bias"]
    return attention(
        inp["q"], inp["k"], inp["v"], key_bias=bias, window=window, tie_break=tie_break,
        impl="reference",
    )  # fmt: skip


def _sdpa(backend_name: str) -> Callable[..., Any]:
    def run(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, backend_name)
        q, k, v = (inp[n].transpose(1, 2) for n in ("q", "k", "v"))  # views, no copies
        with sdpa_kernel([backend]):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return o.transpose(1, 2)

    return run


_FLEX_CACHE: dict[Any, Any] = {}


def _flex(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
    """FlexAttention (compiled): the bias as a score_mod, causal / top-w as a block mask."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, k, v = (inp[n].transpose(1, 2) for n in ("q", "k", "v"))
    B, H, T, _ = q.shape
    key = (variant, window, tie_break, B, H, T, inp["key_bias"].data_ptr())
    if key not in _FLEX_CACHE:
        if window is None:

            def mask_mod(b, h, qi, kj):
                return kj <= qi
        else:
            from wm_bench.kernels.attention.reference import window_last_row

            last = window_last_row(inp["key_bias"].detach().float(), window, tie_break=tie_break)

            def mask_mod(b, h, qi, kj):
                return (kj <= qi) & (qi <= last[b, h, kj])

        block_mask = create_block_mask(mask_mod, B, H, T, T, device=q.device)
        _FLEX_CACHE.clear()  # one problem's mask at a time (they are O(T²/128²) each)
        _FLEX_CACHE[key] = (block_mask, torch.compile(flex_attention, dynamic=False))
    block_mask, fn = _FLEX_CACHE[key]
    if variant == "causal":
        o = fn(q, k, v, block_mask=block_mask)
    else:
        bias = inp["key_bias"]

        def score_mod(score, b, h, qi, kj):
            return score + bias[b, h, kj]

        o = fn(q, k, v, score_mod=score_mod, block_mask=block_mask)
    return o.transpose(1, 2)


def _flash_dmattn(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
    """flash-dmattn's Triton backend: it takes a dense [B, H, T, S] bias and mask."""
    import torch
    from flash_dmattn import triton_dmattn_func

    q, k, v, kb = inp["q"], inp["k"], inp["v"], inp["key_bias"]
    B, T, H, _ = q.shape
    bias = kb[:, :, None, :].expand(B, H, T, T)
    mask = None
    if window is not None:
        from wm_bench.kernels.attention.reference import causal_mask, window_last_row

        last = window_last_row(kb.detach().float(), window, tie_break=tie_break)
        rows = torch.arange(T, device=q.device)[:, None]
        keep = causal_mask(T, T, q.device) & (rows <= last[:, :, None, :])
        mask = keep.to(q.dtype)
    return triton_dmattn_func(q, k, v, attn_mask=mask, attn_bias=bias, is_causal=True)


RUNNERS: dict[str, Callable[..., Any]] = {
    "ours": _ours,
    "sdpa_flash": _sdpa("FLASH_ATTENTION"),
    "sdpa_cudnn": _sdpa("CUDNN_ATTENTION"),
    "flex": _flex,
    "flash_dmattn": _flash_dmattn,
}


def availability(impls: Sequence[str], cuda: bool) -> dict[str, str]:
    """impl → why it cannot run here ("" when it can)."""
    import importlib.util

    why = {}
    for name in impls:
        if name == "ours":
            why[name] = ""
        elif not cuda:
            why[name] = "needs CUDA"
        elif name == "flash_dmattn" and importlib.util.find_spec("flash_dmattn") is None:
            why[name] = "flash_dmattn not importable (pip install flash-dmattn; benchmark-only)"
        else:
            why[name] = ""
    return why


def executed_tiles(
    key_bias: Any, window: int | None, tie_break: str, block_m: int, block_n: int
) -> int:
    """(query block, key tile) products our forward computes.

    No window: the causal lower triangle of the block grid. Top-w window (`triton_slots`): per
    query block, one gathered tile per group of block_n slots holding a key alive at the block's
    first row and born before it, plus the block's own diagonal tiles.
    """
    import torch

    B, H, T = key_bias.shape
    nq, nk = -(-T // block_m), -(-T // block_n)
    q0 = torch.arange(nq, device=key_bias.device) * block_m  # first row of each query block
    if window is None or window >= T:
        k0 = torch.arange(nk, device=key_bias.device) * block_n
        return int((k0[None, :] < (q0[:, None] + block_m)).sum()) * B * H
    from wm_bench.kernels.attention.triton_slots import window_chains
    from wm_bench.kernels.attention.triton_window import window_last_row_triton

    last = window_last_row_triton(key_bias.detach().float(), window, tie_break=tie_break)
    last = last.view(B * H, T)
    chain, seg, _ = window_chains(last, window)
    W = min(window, T)
    pos = torch.arange(T, device=last.device).expand(B * H, T).contiguous()
    slot_at = torch.searchsorted(seg[:, 1:].contiguous(), pos.to(seg.dtype), right=True)
    slot = torch.full((B * H, T + 1), W, dtype=torch.long, device=last.device)
    slot.scatter_(1, chain.long(), slot_at.long())  # padding entries of chain land on column T
    slot = slot[:, :T]
    j = torch.arange(T, device=last.device)
    alive = (j[None, None, :] < q0[None, :, None]) & (last.long()[:, None, :] >= q0[None, :, None])
    alive &= (slot < W)[:, None, :]  # [BH, nq, T]
    n_groups = -(-W // block_n)
    group = (slot // block_n).clamp(max=n_groups)[:, None, :].expand_as(alive)
    hits = torch.zeros(B * H, nq, n_groups + 1, dtype=torch.int32, device=last.device)
    hits.scatter_add_(2, group, alive.to(torch.int32))
    diag = sum(-(-min(block_m, T - int(r)) // block_n) for r in q0.tolist())
    return int((hits[..., :n_groups] > 0).sum()) + diag * B * H


def rel_err(a: Any, b: Any) -> float:
    """max |a − b| / max(max |b|, 1e-30) in float64."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _err(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def default_out(device_slug: str) -> Path:
    """<results>/bench/attention-<device>.json."""
    from wm_bench.results import default_results_dir

    return default_results_dir() / "bench" / f"attention-{device_slug}.json"


def measure(
    name: str, inp: dict, variant: str, window: int | None, args: argparse.Namespace,
    ref: dict | None, cuda: bool,
) -> dict[str, Any]:  # fmt: skip
    """Check one implementation on one problem, then time its forward and forward+backward."""
    import torch

    from wm_bench.bench.cuda_timing import bench_ms, peak_mib, timed_call

    run = RUNNERS[name]
    leaves = [inp[n] for n in ("q", "k", "v")] + ([inp["key_bias"]] if variant != "causal" else [])
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    res: dict[str, Any] = {"status": "ok", "check": {}}

    def fwd() -> Any:
        return run(inp, variant, window, args.tie_break)

    def fwd_bwd() -> Any:
        return torch.autograd.grad(fwd(), leaves, inp["do"])

    try:
        o, res["first_fwd_s"] = timed_call(fwd, sync)
        grads, res["first_fwd_bwd_s"] = timed_call(fwd_bwd, sync)
    except Exception as e:  # recorded, not raised: one failing anchor must not stop the run
        return {"status": "error", "error": _err(e)}
    if ref is not None:
        got = {"o": o, **dict(zip(("dq", "dk", "dv", "dbias"), grads, strict=False))}
        res["check"] = {k: rel_err(v, ref[k]) for k, v in got.items() if k in ref}
        res["check_max"] = max(res["check"].values())
        if not res["check_max"] < TOL[args.dtype]:
            res["status"] = "wrong"
            return res
    if cuda:
        res["fwd_ms"] = bench_ms(fwd, warmup_ms=args.warmup_ms, rep_ms=args.rep_ms)
        res["fwd_bwd_ms"] = bench_ms(fwd_bwd, warmup_ms=args.warmup_ms, rep_ms=args.rep_ms)
        res["peak_fwd_bwd_mib"] = peak_mib(fwd_bwd)
    else:
        from wm_bench.bench.common import median_time

        res["fwd_ms"] = 1e3 * median_time(fwd, repeats=args.repeats, warmup=0)
        res["fwd_bwd_ms"] = 1e3 * median_time(fwd_bwd, repeats=args.repeats, warmup=0)
    return res


def reference_outputs(inp: dict, variant: str, window: int | None, tie_break: str) -> dict:
    """o and gradients from our SDPA reference on fp32 copies of the same (rounded) values."""
    import torch

    ref_inp = {n: inp[n].detach().float().requires_grad_(True) for n in ("q", "k", "v", "key_bias")}
    ref_inp["do"] = inp["do"].float()
    o = _reference(ref_inp, variant, window, tie_break)
    names = ["q", "k", "v"] + (["key_bias"] if variant != "causal" else [])
    grads = torch.autograd.grad(o, [ref_inp[n] for n in names], ref_inp["do"])
    out = {"o": o.detach()}
    out.update(dict(zip(("dq", "dk", "dv", "dbias"), (g.detach() for g in grads), strict=False)))
    return out


def goals(cases: list[dict]) -> dict[str, dict[str, Any]]:
    """Issue 5's goals from the measured cases (None where a needed number is missing)."""

    def ms(case: dict, variant: str, impl: str) -> float | None:
        r = case["variants"].get(variant, {}).get("results", {}).get(impl, {})
        return r.get("fwd_bwd_ms") if r.get("status") == "ok" else None

    out: dict[str, dict[str, Any]] = {}
    vals = []
    for c in cases:
        a, b = ms(c, "causal", "ours"), ms(c, "causal", "sdpa_flash")
        vals.append(b / a if a and b else None)
    out["causal fwd+bwd throughput ≥ 0.9× SDPA-FLASH"] = {"values": vals, "threshold": 0.9}
    vals = []
    for c in cases:
        if c["dims"]["T"] >= 16384:
            a, b = ms(c, "w8", "ours"), ms(c, "causal", "sdpa_cudnn")
            vals.append(b / a if a and b else None)
    out["bias + w=T/8 at T=16384 faster than dense causal SDPA-CUDNN"] = {
        "values": vals, "threshold": 1.0,
    }  # fmt: skip
    for rival in ("flex", "flash_dmattn"):
        vals = []
        for c in cases:
            if c["dims"]["T"] >= 4096:
                for v in ("bias", "w2", "w8"):
                    a, b = ms(c, v, "ours"), ms(c, v, rival)
                    vals.append(b / a if a and b else None)
        out[f"with bias, ≥ 3× faster than {rival} at T ≥ 4096"] = {"values": vals, "threshold": 3}
    for g in out.values():
        v = g["values"]
        g["met"] = (
            None if not v or any(x is None for x in v) else all(x >= g["threshold"] for x in v)
        )
    return out


def run_bench(args: argparse.Namespace, cuda: bool, out: Path) -> dict[str, Any]:
    """Every (shape, variant, impl) in order; the JSON rewritten after each measurement."""
    import torch

    from wm_bench.bench.roofline import achieved_tflops
    from wm_bench.kernels.attention.triton_kernels import gpu_tiles
    from wm_bench.results import now_iso, provenance, write_json_atomic

    shapes = INTERPRET_SHAPES if not cuda else {n: SHAPES[n] for n in args.shape_names}
    dtype = getattr(torch, args.dtype)
    device = args.device if cuda else "cpu"
    impls = [i for i in args.impl_names if cuda or i == "ours"]
    why = availability(args.impl_names, cuda)
    if cuda:
        from wm_bench.bench.cuda_timing import device_info

        dev = device_info(device)
    else:
        dev = {"type": "cpu", "interpret": True}
    rec: dict[str, Any] = {
        "schema": "bench-attention/1",
        "mode": "cuda" if cuda else "interpret",
        "settings": {
            "dtype": args.dtype,
            "bias": args.bias,
            "tie_break": args.tie_break,
            "warmup_ms": args.warmup_ms,
            "rep_ms": args.rep_ms,
        },
        "timer": "triton.testing.do_bench median (L2 flushed)" if cuda else "wall clock median",
        "skipped_impls": {k: v for k, v in why.items() if v},
        "cases": [],
        "created_at": now_iso(),
        "provenance": provenance(dev),
    }
    t_start = time.perf_counter()
    for sname, (B, H, T, D) in shapes.items():
        case: dict[str, Any] = {"name": sname, "dims": {"B": B, "H": H, "T": T, "D": D}}
        case["variants"] = {}
        rec["cases"].append(case)
        inp = make_inputs(
            B, H, T, D, dtype=dtype, device=device, bias_kind=args.bias, seed=args.seed
        )
        for variant in args.variant_names:
            window = window_of(variant, T)
            entry: dict[str, Any] = {"window": window, "results": {}}
            case["variants"][variant] = entry
            for backward, key in ((False, "fwd"), (True, "fwd_bwd")):
                entry[f"useful_{key}_gflop"] = useful_flops(B, H, T, D, window, backward) / 1e9
            if time.perf_counter() - t_start > args.budget_s:
                entry["skipped"] = f"over --budget-s {args.budget_s}"
                write_json_atomic(out, rec)
                continue
            ref = None
            if args.check_max_tokens >= B * T:
                ref = reference_outputs(inp, variant, window, args.tie_break)
            tiles = gpu_tiles("fwd" if window is None else "fwd_slots", max(16, D))
            tiles_run = executed_tiles(
                inp["key_bias"], window if variant != "causal" else None, args.tie_break,
                tiles["BLOCK_M"], tiles["BLOCK_N"],
            )  # fmt: skip
            entry["ours_executed_fwd_gflop"] = 4.0 * D * tiles_run * tiles["BLOCK_M"] * (
                tiles["BLOCK_N"]
            ) / 1e9  # fmt: skip
            for name in impls:
                if variant not in SUPPORTS[name] or why.get(name):
                    continue
                if args.progress:
                    print(f"  {sname} {variant} {name} …", file=sys.stderr, flush=True)
                r = measure(name, inp, variant, window, args, ref, cuda)
                for key in ("fwd", "fwd_bwd"):
                    if cuda and r.get(f"{key}_ms"):
                        r[f"useful_{key}_tflops"] = achieved_tflops(
                            entry[f"useful_{key}_gflop"] * 1e9, r[f"{key}_ms"]
                        )
                if cuda and name == "ours" and r.get("fwd_ms"):
                    r["executed_fwd_tflops"] = achieved_tflops(
                        entry["ours_executed_fwd_gflop"] * 1e9, r["fwd_ms"]
                    )
                entry["results"][name] = r
                rec["wall_s"] = time.perf_counter() - t_start
                write_json_atomic(out, rec)
            if ref is not None:
                del ref
            if cuda:
                torch.cuda.empty_cache()
    rec["goals"] = goals(rec["cases"]) if cuda else {}
    rec["wall_s"] = time.perf_counter() - t_start
    write_json_atomic(out, rec)
    return rec


COLUMNS = [
    ("case", "case"),
    ("variant", "variant"),
    ("impl", "impl"),
    ("status", "status"),
    ("err", "max rel err", ".1e"),
    ("fwd_ms", "fwd ms", ".3f"),
    ("fwd_tf", "fwd TF/s useful", ".0f"),
    ("exec_tf", "fwd TF/s executed", ".0f"),
    ("fwd_bwd_ms", "fwd+bwd ms", ".3f"),
    ("fb_tf", "fwd+bwd TF/s useful", ".0f"),
    ("peak", "peak MiB", ",.0f"),
]


def result_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per (case, variant, impl)."""
    rows = []
    for c in rec["cases"]:
        for variant, e in c["variants"].items():
            if e.get("skipped"):
                rows.append({"case": c["name"], "variant": variant, "status": e["skipped"]})
            for name, r in e["results"].items():
                rows.append(
                    {
                        "case": c["name"], "variant": variant, "impl": name,
                        "status": r["status"], "err": r.get("check_max"),
                        "fwd_ms": r.get("fwd_ms"), "fwd_bwd_ms": r.get("fwd_bwd_ms"),
                        "fwd_tf": r.get("useful_fwd_tflops"),
                        "exec_tf": r.get("executed_fwd_tflops"),
                        "fb_tf": r.get("useful_fwd_bwd_tflops"),
                        "peak": r.get("peak_fwd_bwd_mib"),
                    }
                )  # fmt: skip
    return rows


def print_result(rec: dict[str, Any]) -> None:
    """The measured table, the goals and the implementations that could not run."""
    from wm_bench.bench.common import print_table

    st = rec["settings"]
    title = f"Attention, {st['dtype']}, bias {st['bias']}, ties {st['tie_break']}; {rec['timer']}"
    rows = result_rows(rec)
    keep = {"case", "variant", "impl", "status"}
    keep |= {k for r in rows for k, v in r.items() if v is not None}
    print_table(rows, [c for c in COLUMNS if c[0] in keep], title=title)
    for name, g in rec.get("goals", {}).items():
        met = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        vals = ", ".join("—" if v is None else f"{v:.2f}" for v in g["values"])
        print(f"goal {name}: {met} ({vals})")
    for name, why in rec["skipped_impls"].items():
        print(f"skipped {name}: {why}")


def print_static() -> None:
    """Without CUDA: the FLOPs of every (shape, variant), nothing timed."""
    from wm_bench.bench.common import print_table

    rows = []
    for sname, (B, H, T, D) in SHAPES.items():
        for v in VARIANTS:
            w = window_of(v, T)
            rows.append(
                {
                    "case": sname, "variant": v, "window": w or "—",
                    "pairs": visible_pairs(T, w) * B * H / 1e6,
                    "fwd": useful_flops(B, H, T, D, w, False) / 1e9,
                    "fb": useful_flops(B, H, T, D, w, True) / 1e9,
                }
            )  # fmt: skip
    cols = [
        ("case", "case"), ("variant", "variant"), ("window", "w"),
        ("pairs", "visible pairs (M)", ",.1f"), ("fwd", "fwd GFLOP", ",.1f"),
        ("fb", "fwd+bwd GFLOP", ",.1f"),
    ]  # fmt: skip
    print_table(rows, cols, title="Attention benchmark problems (useful FLOPs; nothing timed)")


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
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument(
        "--budget-s", type=float, default=90.0,
        help="soft wall-clock cap; later problems are recorded as skipped "
        "(default %(default)s: fits the GPU suite's box)",
    )  # fmt: skip
    p.add_argument("--warmup-ms", type=float, default=25.0)
    p.add_argument("--rep-ms", type=float, default=100.0)
    p.add_argument("--repeats", type=int, default=2, help="timed calls per timing, interpreter")
    p.add_argument(
        "--check-max-tokens", type=int, default=16384,
        help="B·T above which a problem is timed without the fp32 reference check",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interpret", action="store_true", help="CPU interpreter, tiny fp32 shape")
    p.add_argument("--out", default=None, help="JSON path (default <results>/bench/...)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the attention benchmark (see --help). Returns 0; 2 when --interpret comes too late."""
    args = build_parser().parse_args(argv)
    args.shape_names = _names(args.shapes, list(SHAPES), "--shapes")
    args.variant_names = _names(args.variants, VARIANTS, "--variants")
    args.impl_names = _names(args.impls, IMPLS, "--impls")
    args.progress = not args.quiet
    interpret = args.interpret or os.environ.get("TRITON_INTERPRET") == "1"
    if interpret and os.environ.get("TRITON_INTERPRET") != "1":
        if "wm_bench.kernels.attention.triton_kernels" in sys.modules:
            print("--interpret: kernels already imported; set TRITON_INTERPRET=1", file=sys.stderr)
            return 2
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    cuda = torch.cuda.is_available() and not interpret
    if not cuda and not interpret:
        print_static()
        print(NO_CUDA)
        return 0
    if interpret:
        args.dtype = "float32"
        slug = "cpu-interpret"
    else:
        torch.cuda.set_device(torch.device(args.device))
        slug = _slug(torch.cuda.get_device_name(torch.device(args.device)))
    out = Path(args.out) if args.out else default_out(slug)
    rec = run_bench(args, cuda, out)
    print_result(rec)
    print(f"wrote {out} in {rec['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
