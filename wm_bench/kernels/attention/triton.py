"""Triton attention: launchers and the autograd Function behind `attention(..., impl="triton")`.

No window (QCAttn; DMA with w ≥ S): `_attn_fwd` (o, lse); backward delta = rowsum(dO·O) in torch
→ `_attn_bwd_dkv` (dK, dV, dbias) → `_attn_bwd_dq` (dQ) (`triton_kernels`). Top-w window: ranks →
`_window_last_row` (`triton_window`) → slot chains → `_attn_fwd_slots`; backward
`_attn_bwd_dq_slots`, `_attn_bwd_dkv_slots` + `_attn_bwd_dkv_diag` (`triton_slots`): only kept
keys are visited, O(T·w) work. Memory beyond inputs and outputs is O(T) per (batch, head) (lse,
delta, ranks, `last`, chains; the windowed backward also holds fp32 dK/dV per query head).
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from wm_bench.kernels._triton import pow2_block, rows_contiguous
from wm_bench.kernels.attention.options import AttentionOptions
from wm_bench.kernels.attention.triton_kernels import (
    LOG2E,
    _attn_bwd_dkv,
    _attn_bwd_dq,
    _attn_fwd,
    tiles,
)
from wm_bench.kernels.attention.triton_slots import (
    _attn_bwd_dkv_diag,
    _attn_bwd_dkv_slots,
    _attn_bwd_dq_slots,
    _attn_fwd_slots,
    window_chains,
)
from wm_bench.kernels.attention.triton_window import window_last_row_triton

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256


def _s3(t: Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _dot_prec(dtype: torch.dtype) -> str:
    # fp32 inputs get full-precision products (tf32 costs ~1e-3 relative); 16-bit ignore it.
    return "ieee" if dtype == torch.float32 else "tf32"


class _AttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, key_bias, causal, window, scale, tie_break):
        Bsz, T, H, DK = q.shape
        S, Hkv, DV = k.shape[1], k.shape[2], v.shape[3]
        q, k, v = rows_contiguous(q), rows_contiguous(k), rows_contiguous(v)
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
        bdk, bdv = pow2_block(DK), pow2_block(DV)
        cfg = tiles("fwd_slots" if last is not None else "fwd", max(bdk, bdv))
        grid = (triton.cdiv(T, cfg["BLOCK_M"]), Bsz * H)
        chains = None
        if last is not None:  # top-w: gather the kept keys compactly (triton_slots)
            chain, seg, n_steps = window_chains(last, window)
            chains = (chain, seg, n_steps)
            _attn_fwd_slots[grid](
                q, k, v, bias, last, chain, seg, o, lse,
                T, S, H, H // Hkv, S - T, min(window, S), n_steps, scale * LOG2E,
                *_s3(q), *_s3(k), *_s3(v), *_s3(o),
                DK=DK, DV=DV, BLOCK_DK=bdk, BLOCK_DV=bdv, DOT_PREC=_dot_prec(q.dtype), **cfg,
            )  # fmt: skip
        else:
            _attn_fwd[grid](
                q, k, v, bias if bias is not None else q, o, lse,
                T, S, H, H // Hkv, S - T, scale * LOG2E,
                *_s3(q), *_s3(k), *_s3(v), *_s3(o),
                DK=DK, DV=DV, BLOCK_DK=bdk, BLOCK_DV=bdv, CAUSAL=causal,
                HAS_BIAS=bias is not None, DOT_PREC=_dot_prec(q.dtype), **cfg,
            )  # fmt: skip
        chain, seg = chains[:2] if chains is not None else (None, None)
        ctx.save_for_backward(q, k, v, bias, last, o, lse, chain, seg)  # None where unused
        if chains is not None:
            ctx.n_steps, ctx.window = chains[2], min(window, S)
        ctx.causal, ctx.scale = causal, scale
        ctx.bias_dtype = key_bias.dtype if key_bias is not None else None
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, bias, last, o, lse, chain, seg = ctx.saved_tensors
        Bsz, T, H, DK = q.shape
        S, Hkv, DV = k.shape[1], k.shape[2], v.shape[3]
        do = rows_contiguous(do.to(q.dtype))
        delta = (do.float() * o.float()).sum(-1).transpose(1, 2).reshape(Bsz * H, T).contiguous()
        if chain is not None:  # top-w window
            return _backward_slots(ctx, q, k, v, bias, last, lse, delta, do, chain, seg)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dbias = (
            torch.empty(Bsz * H, S, device=q.device, dtype=torch.float32)
            if bias is not None
            else None
        )
        bdk, bdv = pow2_block(DK), pow2_block(DV)
        common = dict(
            DK=DK, DV=DV, BLOCK_DK=bdk, BLOCK_DV=bdv, CAUSAL=ctx.causal,
            HAS_BIAS=bias is not None, DOT_PREC=_dot_prec(q.dtype),
        )  # fmt: skip
        bias_arg = bias if bias is not None else lse
        sl2 = ctx.scale * LOG2E
        cfg = tiles("dkv", max(bdk, bdv))
        _attn_bwd_dkv[(triton.cdiv(S, cfg["BLOCK_N"]), Bsz * Hkv)](
            q, k, v, bias_arg, do, lse, delta, dk, dv,
            dbias if dbias is not None else lse,
            T, S, H, Hkv, H // Hkv, S - T, sl2, ctx.scale,
            *_s3(q), *_s3(k), *_s3(v), *_s3(do), **common, **cfg,
        )  # fmt: skip
        cfg = tiles("dq", max(bdk, bdv))
        _attn_bwd_dq[(triton.cdiv(T, cfg["BLOCK_M"]), Bsz * H)](
            q, k, v, bias_arg, do, lse, delta, dq,
            T, S, H, H // Hkv, S - T, sl2, ctx.scale,
            *_s3(q), *_s3(k), *_s3(v), *_s3(do), **common, **cfg,
        )  # fmt: skip
        db = dbias.view(Bsz, H, S).to(ctx.bias_dtype) if dbias is not None else None
        return dq, dk, dv, db, None, None, None, None


def _backward_slots(ctx, q, k, v, bias, last, lse, delta, do, chain, seg):
    """Top-w backward: dQ over the forward's keys; dK/dV/dbias by slot walk + diagonal blocks."""
    Bsz, T, H, DK = q.shape
    S, Hkv, DV = k.shape[1], k.shape[2], v.shape[3]
    bdk, bdv = pow2_block(DK), pow2_block(DV)
    common = dict(DK=DK, DV=DV, BLOCK_DK=bdk, BLOCK_DV=bdv, DOT_PREC=_dot_prec(q.dtype))
    sl2, W, G = ctx.scale * LOG2E, ctx.window, H // Hkv
    strides = (*_s3(q), *_s3(k), *_s3(v), *_s3(do))
    dq = torch.empty_like(q)
    cfg = tiles("dq", max(bdk, bdv))
    _attn_bwd_dq_slots[(triton.cdiv(T, cfg["BLOCK_M"]), Bsz * H)](
        q, k, v, bias, last, chain, seg, do, lse, delta, dq,
        T, S, H, G, S - T, W, ctx.n_steps, sl2, ctx.scale, *strides, **common, **cfg,
    )  # fmt: skip
    # Per query head, fp32, zero for keys no row keeps; the group's heads are summed below.
    dkq = torch.zeros(Bsz * H, S, bdk, device=q.device, dtype=torch.float32)
    dvq = torch.zeros(Bsz * H, S, bdv, device=q.device, dtype=torch.float32)
    dbias = torch.zeros(Bsz * H, S, device=q.device, dtype=torch.float32)
    cfg = tiles("dkv", max(bdk, bdv))
    _attn_bwd_dkv_slots[(triton.cdiv(W, cfg["BLOCK_N"]), Bsz * H)](
        q, k, v, bias, last, chain, seg, do, lse, delta, dkq, dvq, dbias,
        T, S, H, G, S - T, W, sl2, *strides, **common, **cfg,
    )  # fmt: skip
    bm = cfg["BLOCK_M"]
    diag = {**cfg, "BLOCK_N": min(cfg["BLOCK_N"], bm)}
    _attn_bwd_dkv_diag[(triton.cdiv(T, bm), Bsz * H, bm // diag["BLOCK_N"])](
        q, k, v, bias, last, do, lse, delta, dkq, dvq, dbias,
        T, S, H, G, S - T, sl2, *strides, **common, **diag,
    )  # fmt: skip
    dk = (dkq[..., :DK] * ctx.scale).view(Bsz, Hkv, G, S, DK).sum(2).transpose(1, 2)
    dv = dvq[..., :DV].view(Bsz, Hkv, G, S, DV).sum(2).transpose(1, 2)
    db = dbias.view(Bsz, H, S).to(ctx.bias_dtype)
    return dq, dk.to(k.dtype), dv.to(v.dtype), db, None, None, None, None


def attention_triton(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions) -> Tensor:
    """Autograd-aware Triton attention with the reference's contract (inputs checked and scale
    resolved by api)."""
    causal, key_bias, window, scale, tie_break = opts
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
    return _AttentionFn.apply(q, k, v, key_bias, causal, window, scale, tie_break)
