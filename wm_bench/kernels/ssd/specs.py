"""Ahead-of-time compile specs of the SSD Triton kernels for sm_90a (for `wm-bench gpu compile`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import triton

from wm_bench.kernels._triton import pow2_block
from wm_bench.kernels.ssd.triton_bwd import (
    DBC_GPU_CONFIGS,
    DSTATE_GPU_CONFIGS,
    DX_GPU_CONFIGS,
    _ssd_dbc_bwd,
    _ssd_ddt_bwd,
    _ssd_dstate_bwd,
    _ssd_dx_bwd,
)
from wm_bench.kernels.ssd.triton_fwd import (
    CUMSUM_GPU_CONFIG,
    OUT_FWD_GPU_CONFIGS,
    SEQ_PN_CAP_GPU,
    STATE_FWD_GPU_CONFIGS,
    TILE_P_CAP_GPU,
    _ssd_cumsum_fwd,
    _ssd_out_fwd,
    _ssd_state_fwd,
)

# Pointer arguments in the compute dtype (bf16 in training); every other pointer is fp32.
_BF16_PTRS = {"X", "Bm", "Cm", "STATES", "DSTATES", "Y", "DX", "DY", "OUT"}
_PER_CHUNK = {"_ssd_out_fwd", "_ssd_dx_bwd", "_ssd_dbc_bwd"}
_INTS = {"T", "H", "R", "G", "NC", "N_PB", "N_PN"}
# (P, N, Q, with D): Cheems per-head SSD (no D skip) and the Mamba-2 baseline at two chunk sizes.
_SHAPES = {
    "cheems_p128_n128_q256": (128, 128, 256, False),
    "mamba2_p64_n128_q64": (64, 128, 64, True),
    "mamba2_p64_n128_q256": (64, 128, 256, True),
}


@dataclass(frozen=True)
class KernelSpec:
    """One launch variant of an SSD @triton.jit kernel, to compile ahead of time for sm_90a.

    Fields:
        name: stable id, the jit function's name (plus `[dC]` / `[dB]` for the two dB/dC launches).
        fn: the @triton.jit function itself (autotune wrapper removed), for `ASTSource(fn=...)`.
        signature: every non-constexpr argument → Triton type string ("*bf16", "*fp32", "i32"):
            16-bit tensors as bf16 (the training dtype); dt, A, D, states, cumsums and partial
            sums fp32; strides "i32" (Triton picks i64 itself past 2³¹; in-kernel offsets of
            (batch, head, chunk) are int64 anyway).
        cases: case name → constexpr values of this launch at a representative shape, autotuned
            tiles excepted: Cheems per-head P = N = 128, Q = 256; Mamba-2 P = 64, N = 128 at
            Q = 64 and Q = 256 (P / N tiles as the wrapper picks them on a GPU).
        configs: the GPU autotune list: {"num_warps", "num_stages", <tile constexprs>}; a full
            compile takes cases[case] | the config's tiles, with num_warps / num_stages as options.
        instructions: what the code is built on: ["wgmma"] (Hopper warpgroup MMA) for kernels
            made of tl.dot, which configs with 64-row tiles lower to (32-row tiles lower to
            mma.sync); [] for the scan / elementwise kernels.
    """

    name: str
    fn: Any  # triton.runtime.jit.JITFunction
    signature: dict[str, str]
    cases: dict[str, dict[str, Any]]
    configs: list[dict[str, int]]
    instructions: list[str] = field(default_factory=list)


def _jit(kernel: Any) -> Any:
    """The JITFunction under an @triton.autotune wrapper."""
    return kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel


def _signature(fn: Any) -> dict[str, str]:
    sig = {}
    for p in fn.params:
        if p.is_constexpr:
            continue
        if p.name in _INTS or p.name.startswith("stride_"):
            sig[p.name] = "i32"
        else:
            sig[p.name] = "*bf16" if p.name in _BF16_PTRS else "*fp32"
    return sig


def _cases(fn: Any, **fixed: Any) -> dict[str, dict[str, Any]]:
    """Each shape's constexprs for this kernel, with the wrapper's (GPU) choice of P / N tiles."""
    names = {p.name for p in fn.params if p.is_constexpr}
    cases = {}
    for case, (P, N, Q, has_d) in _SHAPES.items():
        values = {
            "P": P,
            "N": N,
            "Q": Q,
            "HAS_D": has_d,
            "HAS_S0": False,
            "STORE_FINAL": True,
            "HAS_DSFIN": False,
            "DOT_PREC": "tf32",  # ignored for bf16 operands
            "BLOCK_N": pow2_block(N, SEQ_PN_CAP_GPU),
            "BLOCK_P": pow2_block(P, SEQ_PN_CAP_GPU),
            **fixed,
        }
        if fn.__name__ in _PER_CHUNK:  # wide P tile (all of P for dB / dC), all of N
            values["BLOCK_P"] = pow2_block(P, None if "FOR_B" in names else TILE_P_CAP_GPU)
            values["BLOCK_N"] = pow2_block(N)
        cases[case] = {k: v for k, v in values.items() if k in names}
    return cases


def _config_dicts(configs: list[triton.Config]) -> list[dict[str, int]]:
    return [{"num_warps": c.num_warps, "num_stages": c.num_stages, **c.kwargs} for c in configs]


def _spec(kernel: Any, configs: list[dict[str, int]], name: str = "", **fixed: Any) -> KernelSpec:
    fn = _jit(kernel)
    dots = fn.__name__ not in ("_ssd_cumsum_fwd", "_ssd_ddt_bwd")
    return KernelSpec(
        name=name or fn.__name__,
        fn=fn,
        signature=_signature(fn),
        cases=_cases(fn, **fixed),
        configs=configs,
        instructions=["wgmma"] if dots else [],
    )


# Every kernel behind chunk_ssd(impl="triton"), in launch order: forward, then backward.
KERNEL_SPECS: list[KernelSpec] = [
    _spec(_ssd_cumsum_fwd, [dict(CUMSUM_GPU_CONFIG)]),
    _spec(_ssd_state_fwd, _config_dicts(STATE_FWD_GPU_CONFIGS)),
    _spec(_ssd_out_fwd, _config_dicts(OUT_FWD_GPU_CONFIGS)),
    _spec(_ssd_dstate_bwd, _config_dicts(DSTATE_GPU_CONFIGS)),
    _spec(_ssd_dx_bwd, _config_dicts(DX_GPU_CONFIGS)),
    _spec(_ssd_dbc_bwd, _config_dicts(DBC_GPU_CONFIGS), "_ssd_dbc_bwd[dC]", FOR_B=False),
    _spec(_ssd_dbc_bwd, _config_dicts(DBC_GPU_CONFIGS), "_ssd_dbc_bwd[dB]", FOR_B=True),
    _spec(_ssd_ddt_bwd, [dict(CUMSUM_GPU_CONFIG)]),
]
