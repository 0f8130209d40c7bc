"""Time one FFN layer: forward and forward+backward on random tokens, peak memory, first call.

Used by the expert-speed experiment (`tasks/expert_speed`). Forward runs with autograd on (as in
training); forward+backward is one forward plus `torch.autograd.grad` of the output (and the
layer's auxiliary loss) into the input and every parameter, under a fixed random cotangent. On
CUDA: `triton.testing.do_bench` medians (L2 flushed) and peak memory above what was allocated
before; on the CPU: wall-clock medians after warm-up at a fixed thread count, and the process's
peak RSS growth (a coarse number, labelled as such).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def layer_calls(
    layer: torch.nn.Module, x: torch.Tensor, dy: torch.Tensor
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(forward, forward + backward into x and every parameter) of an FFN at input x [B, T, D]
    with cotangent dy [B, T, D] (and 1 for a differentiable auxiliary loss)."""
    params = [p for p in layer.parameters() if p.requires_grad]

    def fwd() -> Any:
        return layer(x)

    def fwd_bwd() -> Any:
        y, aux = layer(x)
        outs, cots = [y], [dy]
        if isinstance(aux, torch.Tensor) and aux.requires_grad:
            outs.append(aux)
            cots.append(torch.ones_like(aux))
        return torch.autograd.grad(outs, [x, *params], cots, allow_unused=True)

    return fwd, fwd_bwd


def time_ffn(
    layer: torch.nn.Module,
    *,
    batch: int,
    seq_len: int,
    d_model: int,
    dtype: str,
    device: str,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Forward and forward+backward milliseconds of `layer` on [batch, seq_len, d_model] tokens.

    Args:
        layer: an FFN from `wm_bench.layers.ffn` (returns (y, aux)); moved to device/dtype here.
        dtype: a key of DTYPES.
        device: "cpu" or "cuda[:i]".
        repeats, warmup: timed and untimed calls per measurement on the CPU (CUDA uses do_bench).
    Returns:
        fwd_ms, fwd_bwd_ms, first_fwd_s, first_fwd_bwd_s, peak_mib (CUDA: allocator peak of one
        forward+backward above the inputs; CPU: growth of the process's peak RSS, coarse),
        resolved impls, parameter count.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; valid: {list(DTYPES)}")
    cuda = device.startswith("cuda")
    g = torch.Generator(device="cpu").manual_seed(seed)
    layer = layer.to(device=device, dtype=DTYPES[dtype])
    x = torch.randn(batch, seq_len, d_model, generator=g).to(device, DTYPES[dtype])
    x.requires_grad_(True)
    dy = torch.randn(batch, seq_len, d_model, generator=g).to(device, DTYPES[dtype])
    fwd, fwd_bwd = layer_calls(layer, x, dy)

    sync: Callable[[], None] = torch.cuda.synchronize if cuda else (lambda: None)
    out: dict[str, Any] = {"params": sum(p.numel() for p in layer.parameters() if p.requires_grad)}
    rss0 = _rss_mib()
    for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out[f"first_{name}_s"] = time.perf_counter() - t0
    if cuda:
        from wm_bench.bench.cuda_timing import bench_ms, peak_mib

        out["fwd_ms"] = bench_ms(fwd)
        out["fwd_bwd_ms"] = bench_ms(fwd_bwd)
        out["peak_mib"] = peak_mib(fwd_bwd)
        out["peak_kind"] = "cuda allocator peak above the inputs, one forward+backward"
    else:
        from wm_bench.bench.common import median_time

        out["fwd_ms"] = 1e3 * median_time(fwd, repeats=repeats, warmup=warmup)
        out["fwd_bwd_ms"] = 1e3 * median_time(fwd_bwd, repeats=repeats, warmup=warmup)
        out["peak_mib"] = max(0.0, _rss_mib() - rss0)
        out["peak_kind"] = "growth of the process's peak RSS (CPU, coarse)"
    out["impls"] = dict(getattr(layer, "resolved_impls", {}) or {})
    return out
