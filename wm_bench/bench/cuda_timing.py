"""CUDA timing helpers for kernel benchmarks: do_bench medians, CUDA-graph replay, peak memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def bench_ms(fn: Callable[[], Any], *, warmup_ms: float = 25.0, rep_ms: float = 100.0) -> float:
    """Median milliseconds of `fn` on the current CUDA device (docs/anchors.md §4).

    `triton.testing.do_bench`: warm-up, the L2 cache flushed before every repetition, CUDA events
    around each call, the median of the repetitions.

    Args:
        fn: zero-argument callable launching the work (one call = one measured unit).
        warmup_ms: time spent in untimed calls first.
        rep_ms: time spent in timed calls (at least one).
    Returns:
        Median milliseconds.
    """
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))


def graph_bench_ms(
    fn: Callable[[], Any], *, warmup_ms: float = 25.0, rep_ms: float = 100.0
) -> float:
    """Median milliseconds of a CUDA-graph replay of `fn` under torch.no_grad().

    The call is warmed up on a side stream (autotuners settle there), captured once, and the
    replay timed with `bench_ms`: launch overhead and Python glue drop out, kernel time stays.

    Args:
        fn: zero-argument callable; must not synchronise with the CPU inside.
        warmup_ms, rep_ms: as `bench_ms`.
    Returns:
        Median milliseconds of one replay.
    Raises:
        RuntimeError (or what the capture raised) when `fn` cannot be captured.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad():
        with torch.cuda.stream(stream):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            keep = fn()  # the graph's output buffers live as long as `keep`
    torch.cuda.synchronize()
    try:
        return bench_ms(graph.replay, warmup_ms=warmup_ms, rep_ms=rep_ms)
    finally:
        del graph, keep


def peak_mib(fn: Callable[[], Any]) -> float:
    """Peak CUDA memory of one call of `fn` above what was allocated before it, in MiB.

    Args:
        fn: zero-argument callable; its result is dropped after the measurement.
    Returns:
        (max_memory_allocated after a reset − memory_allocated before) / 2²⁰.
    """
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2**20


def timed_call(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[Any, float]:
    """One call of `fn` and its wall-clock seconds (e.g. the first call: autotune + compile).

    Args:
        fn: zero-argument callable.
        sync: waits for queued device work (torch.cuda.synchronize, or a no-op on the CPU).
    Returns:
        (fn's result, seconds).
    """
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def device_info(device: str | torch.device = "cuda") -> dict[str, Any]:
    """The GPU for a result's provenance: name, capability, SMs, memory, CUDA and driver versions.

    Args:
        device: a CUDA device.
    Returns:
        JSON-ready fields; "driver" comes from nvidia-smi when it is on the PATH.
    """
    import shutil
    import subprocess

    props = torch.cuda.get_device_properties(torch.device(device))
    info: dict[str, Any] = {
        "type": "cuda",
        "name": props.name,
        "capability": list(torch.cuda.get_device_capability(torch.device(device))),
        "sm_count": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "torch_cuda": torch.version.cuda,
    }
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            cmd = [smi, "--query-gpu=driver_version", "--format=csv,noheader"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            info["driver"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info
