"""Triton attention: launchers and the autograd Function behind `attention(..., impl="triton")`.

Forward: (window) ranks → `_window_last_row` → `_attn_fwd` (o, lse). Backward: delta = rowsum(dO·O)
in torch → `_attn_bwd_dkv` (dK, dV, dbias) → `_attn_bwd_dq` (dQ). Memory beyond the inputs and
outputs is O(T) per (batch, head): lse, delta, the ranks and `last`. See `triton_kernels` for the
masking and skipping rules.
"""

from __future__ import annotations

import math
import os

import torch
import triton
from torch import Tensor

from wm_bench.kernels.attention.triton_kernels import (
    LOG2E,
    _attn_bwd_dkv,
    _attn_bwd_dq,
    _attn_fwd,
    tiles,
)
from wm_bench.kernels.attention.triton_window import window_last_row_triton

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _rows_contig(t: Tensor) -> Tensor:
    """Kernels take strides for every dim but the last, which must be unit."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _s3(t: Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _dot_prec(dtype: torch.dtype) -> str:
    # fp32 inputs get full-precision products (tf32 costs ~1e-3 relative); 16-bit ignore it.
    return "ieee" if dtype == torch.float32 else "tf32"


def _head_block(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


class _AttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, key_bias, causal, window, scale, tie_break):
        Bsz, T, H, DK = q.shape
        S, Hkv, DV = k.shape[1], k.shape[2], v.shape[3]
        q, k, v = _rows_contig(q), _rows_contig(k), _rows_contig(v)
        bias = (
            key_bias.detach().float().reshape(Bsz * H, S).contiguous()
            if key_bias is not None
            else None
        )
        use_window = window is not None and window < S  # w ≥ S keeps every visible key
        last = (
            window_last_row_triton(key_bias.detach(), window, tie_break=tie_break).view(Bsz * H, S)
            if use_window
            else None
        )
        o = torch.empty(Bsz, T, H, DV, device=q.device, dtype=q.dtype)
        lse = torch.empty(Bsz * H, T, device=q.device, dtype=torch.float32)
        bdk, bdv = _head_block(DK), _head_block(DV)
        cfg = tiles("fwd", max(bdk, bdv), _interpret())
        grid = (triton.cdiv(T, cfg["BLOCK_M"]), Bsz * H)
        _attn_fwd[grid](
            q, k, v, bias if bias is not None else q, last if last is not None else lse, o, lse,
            T, S, H, H // Hkv, S - T, scale * LOG2E,
            *_s3(q), *_s3(k), *_s3(v), *_s3(o),
            DK=DK, DV=DV, BLOCK_DK=bdk, BLOCK_DV=bdv, CAUSAL=causal, HAS_BIAS=bias is not None,
            WINDOW=last is not None, DOT_PREC=_dot_prec(q.dtype), **cfg,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, bias, last, o, lse)
        ctx.causal, ctx.scale = causal, scale
        ctx.bias_dtype = key_bias.dtype if key_bias is not None else None
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, bias, last, o, lse = ctx.saved_tensors
        Bsz, T, H, DK = q.shape
        S, Hkv, DV = k.shape[1], k.shape[2], v.shape[3]
        do = _rows_contig(do.to(q.dtype))
        delta = (do.float() * o.float()).sum(-1).transpose(1, 2).reshape(Bsz * H, T).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dbias = (
            torch.empty(Bsz * H, S, device=q.device, dtype=torch.float32)
            if bias is not None
            else None
        )
        bdk, bdv = _head_block(DK), _head_block(DV)
        common = dict(
            DK=DK, DV=DV, BLOCK_DK=bdk, BLOCK_DV=bdv, CAUSAL=ctx.causal,
            HAS_BIAS=bias is not None, WINDOW=last is not None, DOT_PREC=_dot_prec(q.dtype),
        )  # fmt: skip
        bias_arg = bias if bias is not None else lse
        last_arg = last if last is not None else lse
        sl2 = ctx.scale * LOG2E
        cfg = tiles("dkv", max(bdk, bdv), _interpret())
        _attn_bwd_dkv[(triton.cdiv(S, cfg["BLOCK_N"]), Bsz * Hkv)](
            q, k, v, bias_arg, last_arg, do, lse, delta, dk, dv,
            dbias if dbias is not None else lse,
            T, S, H, Hkv, H // Hkv, S - T, sl2, ctx.scale,
            *_s3(q), *_s3(k), *_s3(v), *_s3(do), **common, **cfg,
        )  # fmt: skip
        cfg = tiles("dq", max(bdk, bdv), _interpret())
        _attn_bwd_dq[(triton.cdiv(T, cfg["BLOCK_M"]), Bsz * H)](
            q, k, v, bias_arg, last_arg, do, lse, delta, dq,
            T, S, H, H // Hkv, S - T, sl2, ctx.scale,
            *_s3(q), *_s3(k), *_s3(v), *_s3(do), **common, **cfg,
        )  # fmt: skip
        db = dbias.view(Bsz, H, S).to(ctx.bias_dtype) if dbias is not None else None
        return dq, dk, dv, db, None, None, None, None


def attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    key_bias: Tensor | None,
    window: int | None,
    scale: float | None,
    tie_break: str,
) -> Tensor:
    """Autograd-aware Triton attention with the reference's contract (inputs checked by api)."""
    if q.shape[-1] > MAX_HEAD_DIM or v.shape[-1] > MAX_HEAD_DIM:
        raise ValueError(
            f"attention(impl='triton'): head widths K={q.shape[-1]}, V={v.shape[-1]}; "
            f"the kernel supports up to {MAX_HEAD_DIM}"
        )
    if q.dtype not in TRITON_DTYPES:
        raise ValueError(
            f"attention(impl='triton'): dtype {q.dtype} not supported; valid: "
            f"{[str(d) for d in TRITON_DTYPES]}"
        )
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return _AttentionFn.apply(q, k, v, key_bias, causal, window, scale, tie_break)
