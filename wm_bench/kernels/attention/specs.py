"""Attention Triton kernel specs for the sm_90a ahead-of-time check: `wm-bench gpu compile`.

Each kernel is compiled at the head widths the issue lists (64, 128, 256; 32 pads to 32 and
shares the smallest tiles) with the tiles `gpu_tiles` ships for that width: the dense kernels
(QCAttn, DMA without a binding window) plain causal and with the per-key bias, the top-w slot
kernels (DMA with a window) once each, and the window selection kernel.
"""

from __future__ import annotations

from wm_bench.gpu.registry import CompileConfig, KernelSpec
from wm_bench.kernels.attention.triton_kernels import (
    _attn_bwd_dkv,
    _attn_bwd_dq,
    _attn_fwd,
    gpu_tiles,
)
from wm_bench.kernels.attention.triton_slots import (
    _attn_bwd_dkv_diag,
    _attn_bwd_dkv_slots,
    _attn_bwd_dq_slots,
    _attn_fwd_slots,
)
from wm_bench.kernels.attention.triton_window import WINDOW_GPU_BLOCKS, _window_last_row

HEAD_DIMS = (64, 128, 256)
BF16 = ("Q", "K", "V", "O", "DO", "DQ", "DK_OUT", "DV_OUT")  # activations and their grads
I32_PTRS = ("LAST", "CHAIN", "SEG")
FP32_SCALARS = ("scale_log2", "scale")
INTS = ("T", "S", "H", "HKV", "GROUP", "OFF", "W", "n_steps")
# kernel → the tile kind it launches with (`gpu_tiles`)
KERNELS = {
    _attn_fwd: "fwd",
    _attn_bwd_dkv: "dkv",
    _attn_bwd_dq: "dq",
    _attn_fwd_slots: "fwd_slots",
    _attn_bwd_dq_slots: "dq",
    _attn_bwd_dkv_slots: "dkv",
    _attn_bwd_dkv_diag: "dkv",
}
DENSE = (_attn_fwd, _attn_bwd_dkv, _attn_bwd_dq)


def _signature(fn) -> dict[str, str]:
    """Every non-constexpr argument typed: bf16 activations, int32 index arrays, fp32 else."""
    sig = {}
    for p in fn.params:
        if p.is_constexpr:
            continue
        name = p.name
        if name.startswith("stride") or name in INTS:
            sig[name] = "i32"
        elif name in FP32_SCALARS:
            sig[name] = "fp32"
        elif name in BF16:
            sig[name] = "*bf16"
        elif name in I32_PTRS:
            sig[name] = "*i32"
        else:
            sig[name] = "*fp32"  # BIAS, LSE, DELTA, DBIAS, DKQ, DVQ
    return sig


def _spec(fn, head_dim: int) -> KernelSpec:
    tiles = gpu_tiles(KERNELS[fn], head_dim)
    bm, bn = tiles["BLOCK_M"], tiles["BLOCK_N"]
    if fn is _attn_bwd_dkv_diag:
        bn = min(bn, bm)
    config = CompileConfig(
        num_warps=tiles["num_warps"],
        num_stages=tiles["num_stages"],
        constexprs={"BLOCK_M": bm, "BLOCK_N": bn},
    )
    base = {"DK": head_dim, "DV": head_dim, "BLOCK_DK": head_dim, "BLOCK_DV": head_dim,
            "DOT_PREC": "tf32"}  # fmt: skip
    if fn in DENSE:
        cases = {
            f"d{head_dim}_causal": {**base, "CAUSAL": True, "HAS_BIAS": False},
            f"d{head_dim}_bias": {**base, "CAUSAL": True, "HAS_BIAS": True},
        }
    else:
        cases = {f"d{head_dim}_window": base}
    sig = _signature(fn)
    return KernelSpec(
        name=f"{fn.__name__.lstrip('_')}_d{head_dim}",
        fn=fn,
        signature=sig,
        cases=tuple(cases.values()),
        case_names=tuple(cases),
        configs=(config,),
        instructions=("wgmma",) if max(bm, bn) >= 64 else ("mma",),
        # Pointers from torch are 16-byte aligned; every stride is a multiple of the head width.
        aligned=tuple(n for n in sig if n.startswith("stride") or sig[n].startswith("*")),
    )


KERNEL_SPECS: list[KernelSpec] = [_spec(fn, d) for fn in KERNELS for d in HEAD_DIMS] + [
    KernelSpec(
        name="window_last_row",
        fn=_window_last_row,
        signature={"RANK": "*i32", "ORDER": "*i32", "LAST": "*i32", "S": "i32", "W": "i32"},
        cases=({"BLOCK_J": WINDOW_GPU_BLOCKS["BLOCK_J"], "BLOCK_K": WINDOW_GPU_BLOCKS["BLOCK_K"]},),
        configs=(CompileConfig(num_warps=WINDOW_GPU_BLOCKS["num_warps"], num_stages=1),),
        instructions=(),
        aligned=("RANK", "ORDER", "LAST"),
    )
]
