"""Attention Triton kernel specs for the sm_90a ahead-of-time compile check: `wm-bench gpu compile`.

Each kernel is compiled at every head width the issue lists (64, 128, 256; 32 shares 64's tiles
after padding to 16) with the tiles `gpu_tiles` ships for that width, in three variants: plain
causal (QCAttn), causal + per-key bias, causal + bias + top-w window (DMA).
"""

from __future__ import annotations

from wm_bench.gpu.registry import CompileConfig, KernelSpec
from wm_bench.kernels.attention.triton_kernels import (
    _attn_bwd_dkv,
    _attn_bwd_dq,
    _attn_fwd,
    gpu_tiles,
)
from wm_bench.kernels.attention.triton_window import WINDOW_GPU_BLOCKS, _window_last_row

HEAD_DIMS = (64, 128, 256)
VARIANTS = {  # name → (HAS_BIAS, WINDOW)
    "causal": (False, False),
    "bias": (True, False),
    "bias_window": (True, True),
}
_STRIDE_GROUPS = {
    "_attn_fwd": ("q", "k", "v", "o"),
    "_attn_bwd_dkv": ("q", "k", "v", "do"),
    "_attn_bwd_dq": ("q", "k", "v", "do"),
}
_SCALARS = {
    "_attn_fwd": {"T": "i32", "S": "i32", "H": "i32", "GROUP": "i32", "OFF": "i32"}
    | {"scale_log2": "fp32"},
    "_attn_bwd_dkv": {"T": "i32", "S": "i32", "H": "i32", "HKV": "i32", "GROUP": "i32"}
    | {"OFF": "i32", "scale_log2": "fp32", "scale": "fp32"},
    "_attn_bwd_dq": {"T": "i32", "S": "i32", "H": "i32", "GROUP": "i32", "OFF": "i32"}
    | {"scale_log2": "fp32", "scale": "fp32"},
}
_PTRS = {  # pointer arguments: activations bf16, bias / lse / delta / dbias fp32, last int32
    "_attn_fwd": {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "BIAS": "*fp32", "LAST": "*i32"}
    | {"O": "*bf16", "LSE": "*fp32"},
    "_attn_bwd_dkv": {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "BIAS": "*fp32", "LAST": "*i32"}
    | {"DO": "*bf16", "LSE": "*fp32", "DELTA": "*fp32", "DK_OUT": "*bf16", "DV_OUT": "*bf16"}
    | {"DBIAS": "*fp32"},
    "_attn_bwd_dq": {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "BIAS": "*fp32", "LAST": "*i32"}
    | {"DO": "*bf16", "LSE": "*fp32", "DELTA": "*fp32", "DQ": "*bf16"},
}
_KINDS = {"_attn_fwd": "fwd", "_attn_bwd_dkv": "dkv", "_attn_bwd_dq": "dq"}


def _signature(name: str) -> dict[str, str]:
    strides = {
        f"stride_{g}{d}": "i32"
        for g in _STRIDE_GROUPS[name]
        for d in ("b", "t" if g in ("q", "o", "do") else "s", "h")
    }
    return _PTRS[name] | _SCALARS[name] | strides


def _spec(fn, head_dim: int) -> KernelSpec:
    name = fn.__name__
    tiles = gpu_tiles(_KINDS[name], head_dim)
    config = CompileConfig(
        num_warps=tiles["num_warps"],
        num_stages=tiles["num_stages"],
        constexprs={"BLOCK_M": tiles["BLOCK_M"], "BLOCK_N": tiles["BLOCK_N"]},
    )
    cases = {
        f"d{head_dim}_{variant}": {
            "DK": head_dim, "DV": head_dim, "BLOCK_DK": head_dim, "BLOCK_DV": head_dim,
            "CAUSAL": True, "HAS_BIAS": bias, "WINDOW": window, "DOT_PREC": "tf32",
        }
        for variant, (bias, window) in VARIANTS.items()
    }  # fmt: skip
    sig = _signature(name)
    return KernelSpec(
        name=f"{name.lstrip('_')}_d{head_dim}",
        fn=fn,
        signature=sig,
        cases=tuple(cases.values()),
        case_names=tuple(cases),
        configs=(config,),
        instructions=("wgmma",) if tiles["BLOCK_M"] >= 64 else ("mma",),
        # Pointers from torch are 16-byte aligned; every stride is a multiple of the head width.
        aligned=tuple(n for n in sig if n.startswith("stride") or sig[n].startswith("*")),
    )


KERNEL_SPECS: list[KernelSpec] = [
    _spec(fn, d) for fn in (_attn_fwd, _attn_bwd_dkv, _attn_bwd_dq) for d in HEAD_DIMS
] + [
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
