"""The SSD benchmark's measurement: fp64 check, then fwd / fwd+bwd / graph timings, per case."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from wm_bench.bench import roofline as rl
from wm_bench.bench.common import error_text
from wm_bench.bench.ssd_cases import Case, case_bounds
from wm_bench.testing import rel_rms

TOL = {"bfloat16": 2e-2, "float16": 1e-2, "float32": 1e-3}  # relative RMS (docs/design.md §3, GPU)
GRADS = ("dx", "ddt", "dA", "dB", "dC")


@dataclass(frozen=True)
class Settings:
    """How to measure.

    Cases with B·T above `check_max_tokens` inherit the check verdict of the same layout's last
    checked case (the fp64 reference at 32K tokens × 8 is slow and large). Cases and
    implementations past `budget_s` are recorded as skipped.
    """

    chunk: int  # our (and mamba_ssm's) chunk size Q; fla always uses 64
    dtype: str  # "bfloat16" on the GPU, "float32" under the interpreter
    device: str  # "cuda[:i]", or "cpu" under TRITON_INTERPRET=1
    warmup_ms: float = 25.0  # do_bench warm-up per measurement (CUDA)
    rep_ms: float = 100.0  # do_bench timed budget per measurement (CUDA)
    repeats: int = 2  # wall-clock calls per timing on the CPU interpreter
    graph: bool = True  # also time a CUDA-graph replay of the forward
    check_max_tokens: int = 65536  # largest B·T checked against the reference
    budget_s: float = 100.0  # soft wall-clock cap for the whole measurement
    seed: int = 0  # input seed

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def make_inputs(case: Case, dtype: torch.dtype, device: str, seed: int) -> dict[str, torch.Tensor]:
    """Leaf inputs (requires_grad) at Mamba-2-like scales and a fixed random cotangent dy.

    Returns:
        x [B, T, H, P], dt [B, T, H] (log-uniform in [1e-3, 0.1]), B, C [B, T, G, N], dy
        [B, T, H, P], all in `dtype`; A [H] fp32 = −exp(U[0, log 16]).
    """
    g = torch.Generator(device=device).manual_seed(seed)
    B, T, H, P, G, N = case.dims

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device)

    def uni(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, device=device)

    inp = {
        "x": rnd(B, T, H, P).to(dtype),
        "dt": torch.exp(math.log(1e-3) + math.log(100.0) * uni(B, T, H)).to(dtype),
        "A": -torch.exp(math.log(16.0) * uni(H)),
        "B": rnd(B, T, G, N).to(dtype),
        "C": rnd(B, T, G, N).to(dtype),
    }
    inp = {k: v.requires_grad_(True) for k, v in inp.items()}
    return inp | {"dy": rnd(B, T, H, P).to(dtype)}


def reference(inp: dict[str, torch.Tensor], chunk: int) -> dict[str, torch.Tensor]:
    """y and the five gradients in float64: chunk_ssd(impl="reference") on fp64 copies of the
    same (already rounded) values, so the error measured is the implementation's."""
    from wm_bench.kernels.ssd import chunk_ssd

    leaves = [inp[k].detach().double().requires_grad_(True) for k in ("x", "dt", "A", "B", "C")]
    y, _ = chunk_ssd(*leaves, chunk_size=chunk, impl="reference")
    grads = torch.autograd.grad(y, leaves, inp["dy"].double())
    return {"y": y.detach(), **dict(zip(GRADS, grads))}


def _timer(s: Settings) -> Callable[[Callable[[], Any]], float]:
    if s.cuda:
        from wm_bench.bench.cuda_timing import bench_ms

        return lambda fn: bench_ms(fn, warmup_ms=s.warmup_ms, rep_ms=s.rep_ms)
    from wm_bench.bench.common import median_time

    return lambda fn: 1e3 * median_time(fn, repeats=s.repeats, warmup=0)


def _check(res: dict, ref: dict | None, name: str, got: Any) -> None:
    if ref is not None:
        res["check"][name] = rel_rms(got, ref[name])


def bench_impl(
    impl: Any, case: Case, inp: dict, ref: dict | None, inherited: dict | None, s: Settings
) -> dict[str, Any]:
    """Check one implementation on one case against the fp64 reference, then time it if right.

    Args:
        impl: an ssd_impls.Impl.
        case: the problem.
        inp: from `make_inputs`.
        ref: from `reference`, or None when this case inherits a verdict.
        inherited: {"case", "status"} of the same layout's last checked case, or None.
        s: settings.
    Returns:
        status: "ok"; "fwd-only" (backward raised or its gradients are off: forward timed only);
        "wrong" (forward off, here or at the inherited case: nothing timed); "error" (forward
        raised; timing_error when only a timing raised). Also the check (relative
        RMS per output and its max, or the inherited verdict), first_fwd_s / first_bwd_s (first
        calls: autotune and compile included), fwd_ms, fwd_bwd_ms, fwd_graph_ms, peak MiB above
        the inputs (CUDA), and roofline records with achieved GB/s and % of the bound (CUDA).
    """
    from wm_bench.bench.cuda_timing import timed_call
    from wm_bench.bench.ssd_impls import SSD_ARGS

    sync = torch.cuda.synchronize if s.cuda else (lambda: None)
    chunk, tol = impl.fixed_chunk or s.chunk, TOL[s.dtype]
    res: dict[str, Any] = {"chunk": chunk, "check": {"tol": tol}}
    if inherited is not None:
        res["check"] |= {"inherited_from": inherited["case"], "verdict": inherited["status"]}
    elif ref is None:
        res["check"]["unchecked"] = (
            "no fp64 reference for this case (see the case's reference_error)"
        )
    prior = (inherited or {}).get("status")
    leaves = [inp[k] for k in SSD_ARGS]
    try:
        y, res["first_fwd_s"] = timed_call(lambda: impl.ssd_fn(*leaves, chunk=chunk), sync)
    except Exception as e:
        return res | {"status": "error", "error": error_text(e)}
    _check(res, ref, "y", y)
    if not res["check"].get("y", 0.0) < tol or prior == "wrong":
        return res | {"status": "wrong", "reason": f"forward off the fp64 reference (tol {tol})"}
    try:
        grads, res["first_bwd_s"] = timed_call(
            lambda: torch.autograd.grad(y, leaves, inp["dy"]), sync
        )
        for name, g in zip(GRADS, grads):
            _check(res, ref, name, g)
        bwd_ok = all(res["check"].get(n, 0.0) < tol for n in GRADS) and prior != "fwd-only"
        if not bwd_ok:
            res["bwd_error"] = f"gradients off the fp64 reference (tol {tol}): not timed"
        del grads
    except Exception as e:
        res["bwd_error"], bwd_ok = error_text(e), False
    y = None  # free the check's activations before timing
    errs = [v for k, v in res["check"].items() if k == "y" or k in GRADS]
    res["check"]["max"] = max(errs) if errs else None

    f, targets = impl.timed(inp, chunk)
    dy = inp["dy"]

    def fwd() -> Any:
        return f(*targets)

    def fwd_bwd() -> Any:
        return torch.autograd.grad(f(*targets), targets, dy)

    timer = _timer(s)
    try:
        if s.cuda:
            from wm_bench.bench.cuda_timing import peak_mib

            res["peak_fwd_mib"] = peak_mib(fwd)
            res["peak_fwd_bwd_mib"] = peak_mib(fwd_bwd) if bwd_ok else None
        res["fwd_ms"] = timer(fwd)
        res["fwd_bwd_ms"] = timer(fwd_bwd) if bwd_ok else None
    except Exception as e:  # e.g. out of memory at the longest T: what was measured stays
        res["timing_error"] = error_text(e)
    if s.cuda and s.graph and res.get("fwd_ms"):
        from wm_bench.bench.cuda_timing import graph_bench_ms

        try:
            res["fwd_graph_ms"] = graph_bench_ms(fwd, warmup_ms=s.warmup_ms, rep_ms=s.rep_ms)
        except Exception as e:  # e.g. a CPU sync inside the call
            res["fwd_graph_ms"], res["graph_error"] = None, error_text(e)
    if s.cuda:  # achieved GB/s and % of the H100 bound: only for GPU times
        bounds = case_bounds(case, inp["x"].element_size())
        for key, b in (("fwd", "fwd"), ("fwd_graph", "fwd"), ("fwd_bwd", "fwd_bwd")):
            if res.get(f"{key}_ms"):
                flops, nbytes = bounds[b]["flops"], bounds[b]["bytes"]
                res[f"{key}_roofline"] = rl.roofline_record(flops, nbytes, res[f"{key}_ms"])
    return res | {"status": "ok" if bwd_ok else "fwd-only"}


def ratios(results: dict[str, dict], base: str) -> dict[str, float | None]:
    """ours / base for each timing and the fwd+bwd peak memory (None where either is missing)."""
    ours, other = results.get("ours", {}), results.get(base, {})
    keys = ("fwd_ms", "fwd_bwd_ms", "fwd_graph_ms", "peak_fwd_bwd_mib")
    return {k: ours[k] / other[k] if ours.get(k) and other.get(k) else None for k in keys}


def goals(cases: list[dict]) -> dict[str, dict[str, Any]]:
    """The SSD kernel's goals (fwd+bwd ≤ 0.8× mamba_ssm, ≥ 50 % of the roofline at T ≥ 8K, peak
    memory ≤ mamba_ssm's) from what was measured; met is None while anything is missing."""
    shapes = [c for c in cases if c["group"] == "shape"]
    vs = [c.get("ratios", {}).get("mamba_ssm", {}) for c in shapes]
    fb = [r.get("fwd_bwd_ms") for r in vs]
    mem = [r.get("peak_fwd_bwd_mib") for r in vs]
    ours = [c["results"].get("ours", {}) for c in cases if c["dims"]["T"] >= 8192]
    ran = [o for o in ours if o.get("status") not in (None, "skipped")]  # not cut by the budget
    pct = [o.get("fwd_roofline", {}).get("pct_of_roofline") for o in ran]

    def verdict(vals: list, ok: Callable[[float], bool]) -> bool | None:
        return None if not vals or None in vals else all(ok(v) for v in vals)

    return {
        "fwd_bwd_at_most_0.8x_mamba_ssm": {"values": fb, "met": verdict(fb, lambda r: r <= 0.8)},
        "fwd_at_least_50pct_roofline_T8k": {"values": pct, "met": verdict(pct, lambda p: p >= 50)},
        "peak_fwd_bwd_at_most_mamba_ssm": {"values": mem, "met": verdict(mem, lambda r: r <= 1)},
    }


def bench_ssd(
    cases: list[Case],
    impl_names: list[str],
    s: Settings,
    out: Path | None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every case × implementation (check, then time), rewriting the JSON after each one so
    a time box that ends the process loses at most the measurement in flight.

    Args:
        cases: from `ssd.build_cases`.
        impl_names: subset of ssd_impls.IMPL_NAMES.
        s: settings.
        out: JSON path (None: write nothing).
        progress: one line per measurement.
    Returns:
        The record (also written to `out`).
    """
    import triton

    from wm_bench.bench.ssd_impls import load_impls
    from wm_bench.results import now_iso, provenance, write_json_atomic

    t0 = time.monotonic()
    impls, skipped = load_impls(impl_names, interpret=not s.cuda)
    if s.cuda:
        from wm_bench.bench.cuda_timing import device_info

        dev = device_info(s.device)
    else:
        dev = {"type": "cpu", "interpret": True}
    elem = torch.empty((), dtype=getattr(torch, s.dtype)).element_size()
    rec: dict[str, Any] = {
        "schema": "bench-ssd/1",
        "mode": "cuda" if s.cuda else "interpret",
        "gpu_timings": s.cuda,
        "timer": "triton.testing.do_bench: median, L2 flushed, CUDA events"
        if s.cuda
        else "CPU wall clock under TRITON_INTERPRET=1: plumbing only, not a performance number",
        "settings": asdict(s) | {"tolerance_rel_rms": TOL[s.dtype]},
        "impls": {i.name: {"kind": i.kind, "versions": i.versions, "note": i.note} for i in impls},
        "skipped_impls": skipped,
        "cases": [],
        "created_at": now_iso(),
        "provenance": provenance(dev) | {"triton_version": triton.__version__},
    }

    def save() -> None:
        rec["goals"], rec["wall_s"] = goals(rec["cases"]), round(time.monotonic() - t0, 1)
        if out:
            write_json_atomic(out, rec)

    checked: dict[tuple, dict[str, dict]] = {}  # layout → impl → its last checked verdict
    for case in cases:
        crec: dict[str, Any] = {"name": case.name, "group": case.group, "dims": case.dim_dict}
        crec |= {"bounds": case_bounds(case, elem), "results": {}}
        rec["cases"].append(crec)
        if time.monotonic() - t0 > s.budget_s:
            crec["skipped"] = f"time budget spent (--budget-s {s.budget_s:g})"
            continue
        inp = make_inputs(case, getattr(torch, s.dtype), s.device, s.seed)
        known = checked.get(case.layout, {})
        ref = None  # checked when small enough, or when the layout has no verdict yet
        if s.check_max_tokens >= case.B * case.T or any(i.name not in known for i in impls):
            try:
                ref = reference(inp, s.chunk)
            except Exception as e:  # e.g. out of memory in fp64: timed, flagged unchecked
                crec["reference_error"] = error_text(e)
        for impl in impls:
            if time.monotonic() - t0 > s.budget_s:
                crec["results"][impl.name] = {"status": "skipped", "reason": "time budget spent"}
                continue
            inh = None if ref is not None else known.get(impl.name)
            r = bench_impl(impl, case, inp, ref, inh, s)
            crec["results"][impl.name] = r
            if ref is not None:
                verdict = {"case": case.name, "status": r["status"]}
                checked.setdefault(case.layout, {})[impl.name] = verdict
            crec["ratios"] = {b: ratios(crec["results"], b) for b in ("mamba_ssm", "fla")}
            save()
            if progress:
                print(f"  {case.name} · {impl.name}: {summary(r)}", flush=True)
        del inp, ref
        if s.cuda:
            torch.cuda.empty_cache()
    save()
    return rec


def summary(r: dict) -> str:
    """One progress line for a result: status, worst error, times, error text."""
    parts = [r["status"]]
    if r.get("check", {}).get("max") is not None:
        parts.append(f"max rel RMS {r['check']['max']:.1e}")
    parts += [
        f"{k[:-3]} {r[k]:.3f} ms" for k in ("fwd_ms", "fwd_bwd_ms", "fwd_graph_ms") if r.get(k)
    ]
    if r.get("error") or r.get("bwd_error"):
        parts.append(f"[{r.get('error') or r.get('bwd_error')}]")
    return ", ".join(parts)
