"""Triton RoPE (rotate-half, RoFormer eq. 34): fused rotation forward and its transpose backward."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _rope_kernel(
    X,
    COS,
    SIN,
    Y,
    T,
    H,
    stride_xb,
    stride_xt,
    stride_xh,
    stride_yb,
    stride_yt,
    stride_yh,
    stride_ct,
    HALF: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
    CONJ: tl.constexpr,
):
    """One program = one (batch, position) row and BLOCK_H heads; pairs channel j with j + HALF."""
    pid_bt = tl.program_id(0)
    pid_h = tl.program_id(1)
    b = (pid_bt // T).to(tl.int64)  # int64: B·T·H·D can pass 2³¹ at long T
    t = (pid_bt % T).to(tl.int64)
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HALF
    mask = (offs_h[:, None] < H) & d_mask[None, :]

    cos = tl.load(COS + t * stride_ct + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    sin = tl.load(SIN + t * stride_ct + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    if CONJ:  # backward: the transpose of a rotation is the rotation by −θ
        sin = -sin

    x_ptr = X + b * stride_xb + t * stride_xt + offs_h[:, None] * stride_xh + offs_d[None, :]
    x1 = tl.load(x_ptr, mask=mask, other=0.0).to(tl.float32)  # [BLOCK_H, BLOCK_D]
    x2 = tl.load(x_ptr + HALF, mask=mask, other=0.0).to(tl.float32)
    y1 = x1 * cos[None, :] - x2 * sin[None, :]
    y2 = x2 * cos[None, :] + x1 * sin[None, :]

    y_ptr = Y + b * stride_yb + t * stride_yt + offs_h[:, None] * stride_yh + offs_d[None, :]
    tl.store(y_ptr, y1.to(Y.dtype.element_ty), mask=mask)
    tl.store(y_ptr + HALF, y2.to(Y.dtype.element_ty), mask=mask)


def launch_rope(x: Tensor, cos: Tensor, sin: Tensor, *, conj: bool = False) -> Tensor:
    """Rotate x [B, T, H, D] by cos/sin [T, D]; `conj` rotates by −θ (the backward)."""
    x = x.contiguous()
    cos = cos.contiguous()
    sin = sin.contiguous()
    B, T, H, D = x.shape
    y = torch.empty_like(x)
    half = D // 2
    block_h = min(triton.next_power_of_2(H), 16)
    grid = (B * T, triton.cdiv(H, block_h))
    _rope_kernel[grid](
        x, cos, sin, y, T, H,
        x.stride(0), x.stride(1), x.stride(2),
        y.stride(0), y.stride(1), y.stride(2),
        cos.stride(0),
        HALF=half, BLOCK_H=block_h, BLOCK_D=triton.next_power_of_2(half), CONJ=conj,
    )  # fmt: skip
    return y


class _RopeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        return launch_rope(x, cos, sin)

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return launch_rope(dy, cos, sin, conj=True), None, None


def apply_rope_triton(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Autograd-aware Triton RoPE with the reference's contract (x [B, T, H, D], cos/sin [T, D])."""
    return _RopeFn.apply(x, cos, sin)
