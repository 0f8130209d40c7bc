"""Timing the expert-retrieval speed grid: build each point's layer, time the methods of one
(N, ratio) round-robin and write one result per point (the protocol: tasks/expert_speed)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .grid import (
    EXPERIMENT,
    SpeedPoint,
    SpeedScale,
    ffn_config,
    point_hash,
    points,
    retrieval_bytes,
    spec,
)


def measure(p: SpeedPoint, s: SpeedScale, *, device: str | None = None, seed: int = 0) -> dict:
    """Build the layer of a point and time it (see wm_bench.bench.ffn_speed.time_ffn)."""
    import torch

    from wm_bench.bench.ffn_speed import time_ffn
    from wm_bench.layers.ffn import build_ffn

    torch.manual_seed(seed)
    layer = build_ffn(p.d_model, ffn_config(p))
    return time_ffn(
        layer,
        batch=p.batch,
        seq_len=p.seq_len,
        d_model=p.d_model,
        dtype=p.dtype,
        device=device or p.device,
        repeats=s.repeats,
        warmup=s.warmup,
        seed=seed,
    )


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def measure_group(
    pts: list[SpeedPoint], s: SpeedScale, *, device: str | None = None, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Time the methods of one (N, ratio) round-robin (see the module docstring).

    Returns:
        method → {"fwd_ms", "fwd_bwd_ms" (medians), "fwd_ms_repeats", "fwd_bwd_ms_repeats",
        "first_fwd_s", "first_fwd_bwd_s", "peak_mib", "peak_kind", "params", "impls"} for the
        methods that ran, or {"error": text} for a method that failed to build or run.
    """
    import resource

    import torch

    from wm_bench.bench.common import interleaved_times, synchronizer
    from wm_bench.bench.cuda_timing import timed_call
    from wm_bench.bench.ffn_speed import DTYPES, layer_calls
    from wm_bench.layers.ffn import build_ffn

    dev = device or pts[0].device
    cuda = dev.startswith("cuda")
    sync = synchronizer(dev)
    out: dict[str, dict[str, Any]] = {}
    fns: dict[str, Any] = {}
    layers: dict[str, Any] = {}
    for p in pts:
        try:
            torch.manual_seed(seed)
            dtype = DTYPES[p.dtype]
            layer = build_ffn(p.d_model, ffn_config(p)).to(device=dev, dtype=dtype)
            g = torch.Generator(device="cpu").manual_seed(seed)
            x = torch.randn(p.batch, p.seq_len, p.d_model, generator=g).to(dev, dtype)
            x.requires_grad_(True)
            dy = torch.randn(p.batch, p.seq_len, p.d_model, generator=g).to(dev, dtype)
            fwd, fwd_bwd = layer_calls(layer, x, dy)

            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            _, first_fwd = timed_call(fwd, sync)
            _, first_fwd_bwd = timed_call(fwd_bwd, sync)
            if cuda:
                from wm_bench.bench.cuda_timing import peak_mib

                peak, kind = peak_mib(fwd_bwd), "cuda allocator peak above the inputs, one fwd+bwd"
            else:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                peak = max(0.0, rss - rss0)
                kind = "growth of the process's peak RSS at the first calls (CPU, coarse)"
        except Exception as e:  # recorded per method: one running out of memory must not stop
            out[p.method] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            if cuda:
                torch.cuda.empty_cache()
            continue
        layers[p.method] = layer
        fns[f"{p.method}/fwd"], fns[f"{p.method}/fwd_bwd"] = fwd, fwd_bwd
        out[p.method] = {
            "first_fwd_s": first_fwd,
            "first_fwd_bwd_s": first_fwd_bwd,
            "peak_mib": peak,
            "peak_kind": kind,
            "params": sum(q.numel() for q in layer.parameters() if q.requires_grad),
            "impls": dict(getattr(layer, "resolved_impls", {}) or {}),
        }
    if fns:
        try:
            times = interleaved_times(fns, repeats=s.repeats, warmup=s.warmup, sync=sync)
        except Exception as e:
            err = f"{type(e).__name__} during the round-robin: {e}"[:2000]
            return {m: (v if "error" in v else {"error": err}) for m, v in out.items()}
        for m in layers:
            for key in ("fwd", "fwd_bwd"):
                reps = [1e3 * t for t in times[f"{m}/{key}"]]
                out[m][f"{key}_ms_repeats"] = reps
                out[m][f"{key}_ms"] = statistics.median(reps)
    return out


def reproduce(
    scale: str,
    *,
    only: list[str] | None = None,
    limit: int | None = None,
    results_dir: str | Path | None = None,
    force: bool = False,
    threads: int | None = None,
    quiet: bool = False,
    dry_run: bool = False,
) -> int:
    """Time every point of the grid at `scale`, one result file each; finished points skipped.
    With `dry_run`, list the points with their hash and done/pending state and time nothing.

    Returns:
        0 when every point is ok (or was done already), 1 when some failed, 2 on bad arguments.
    """
    import torch

    from wm_bench.config import to_dict
    from wm_bench.results import find_done, make_result, now_iso, write_result
    from wm_bench.sweep import select_by_tags

    s = spec(scale)
    try:
        pts = select_by_tags(points(scale), only or [], what=EXPERIMENT)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pts = pts[: limit if limit is not None else None]
    if not pts:
        print("nothing to run (check --only / --limit)", file=sys.stderr)
        return 2
    if dry_run:
        rows = [
            (
                p.method,
                f"N={p.num_experts} k={p.top_k} ratio={p.ratio:g}",
                point_hash(p, s),
                "pending"
                if force
                or find_done(point_hash(p, s), EXPERIMENT, scale, p.method, results_dir) is None
                else "done",
            )
            for p in pts
        ]
        n_pending = sum(r[3] == "pending" for r in rows)
        print(
            f"{EXPERIMENT} @ {scale}: {len(rows)} planned points, {len(rows) - n_pending} done, "
            f"{n_pending} pending (dry run: nothing timed or written)"
        )
        for r in rows:
            print("  " + "  ".join(r))
        return 0
    if s.device == "cuda" and not torch.cuda.is_available():
        print(
            f"error: scale {scale!r} times on CUDA and none is available; use --scale cpu",
            file=sys.stderr,
        )
        return 2
    if threads:
        torch.set_num_threads(threads)
    device_info: dict[str, Any]
    if s.device == "cuda":
        from wm_bench.bench.cuda_timing import device_info as cuda_info

        device_info = cuda_info()
    else:
        device_info = {"type": "cpu", "threads": torch.get_num_threads()}
    print(
        f"{EXPERIMENT} @ {scale}: {len(pts)} points on {s.device}, {s.protocol}, "
        f"{s.repeats} repeats"
    )
    groups: dict[tuple[int, float], list[SpeedPoint]] = {}
    for p in pts:
        groups.setdefault((p.num_experts, p.ratio), []).append(p)
    t_all, failed, done = time.perf_counter(), 0, 0
    for (n, ratio), group in groups.items():
        pending = [
            p
            for p in group
            if force
            or find_done(point_hash(p, s), EXPERIMENT, scale, p.method, results_dir) is None
        ]
        done += len(group) - len(pending)
        if not pending:
            continue
        started, t0, load0 = now_iso(), time.perf_counter(), _loadavg()
        if s.protocol == "round_robin":
            ms = measure_group(pending, s)
        else:
            ms = {}
            for p in pending:
                try:
                    ms[p.method] = measure(p, s)
                except Exception as e:  # recorded, as in the round-robin path
                    ms[p.method] = {"error": f"{type(e).__name__}: {e}"[:2000]}
        wall, load1 = time.perf_counter() - t0, _loadavg()
        session = f"{started} N={n} ratio={ratio:g}"
        for p in pending:
            m = ms[p.method]
            common = dict(
                experiment=EXPERIMENT,
                variant=p.method,
                seed=0,
                scale=scale,
                config={
                    "point": asdict(p),
                    "ffn": to_dict(ffn_config(p)),
                    "tags": p.tags,
                    "timing": {"protocol": s.protocol, "repeats": s.repeats, "warmup": s.warmup},
                },
                config_hash=point_hash(p, s),
                device=device_info,
                started_at=started,
            )
            timing = {
                "wall_s": wall / len(pending),
                "group_wall_s": wall,
                "loadavg_before": load0,
                "loadavg_after": load1,
            }
            if "error" in m:
                failed += 1
                rec = make_result(status="failed", error=m["error"], timing=timing, **common)
            else:
                metrics = {"fwd_ms": m["fwd_ms"], "fwd_bwd_ms": m["fwd_bwd_ms"]}
                rb = retrieval_bytes(p)
                if rb is not None:
                    metrics["retrieval_gbps"] = rb / (m["fwd_ms"] * 1e6)
                extra = {
                    "retrieval_bytes": rb,
                    "session": session,
                    "group": [q.method for q in pending],
                }
                for key in ("fwd_ms_repeats", "fwd_bwd_ms_repeats"):
                    if key in m:
                        extra[key] = [round(x, 4) for x in m[key]]
                timing.update(
                    {k: m[k] for k in ("peak_mib", "peak_kind", "first_fwd_s", "first_fwd_bwd_s")}
                )
                rec = make_result(
                    status="ok",
                    metrics=metrics,
                    higher_is_better={"fwd_ms": False, "fwd_bwd_ms": False, "retrieval_gbps": True},
                    impls=m["impls"],
                    params={"total": m["params"]},
                    timing=timing,
                    extra=extra,
                    **common,
                )
            write_result(rec, results_dir)
            done += 1
            if not quiet:
                what = (
                    f"fwd {rec['metrics']['fwd_ms']:.2f} ms, fwd+bwd "
                    f"{rec['metrics']['fwd_bwd_ms']:.2f} ms"
                    if rec["status"] == "ok"
                    else rec["error"].splitlines()[0][:120]
                )
                elapsed = (time.perf_counter() - t_all) / 60
                load = load1[0] if load1 else "?"
                print(
                    f"[{done}/{len(pts)}] {p.method} N={p.num_experts} k={p.top_k}: {what} "
                    f"({elapsed:.1f} min, load {load})",
                    flush=True,
                )
        if s.device == "cuda":
            torch.cuda.empty_cache()
    print(
        f"done: {len(pts)} points in {(time.perf_counter() - t_all) / 60:.1f} min, {failed} failed"
    )
    return 1 if failed else 0
