"""RoPE reference (Su et al. 2021, "RoFormer"; docs/spec.md §2.1): rotate-half rotary embedding."""

from __future__ import annotations

import torch
from torch import Tensor


def rope_cos_sin(
    T: int, dim: int, *, base: float = 10000.0, offset: int = 0, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Rotation tables for positions offset..offset+T−1, θ_i = base^(−2i/dim).

    Angles are formed in fp64 (position × θ loses digits in fp32 at long positions), then cast.

    Args:
        T: number of positions; dim: rotated channels (even); base: frequency base;
        offset: first position (decoding); device: where the tables live.
    Returns:
        cos, sin: [T, dim] fp32, each frequency repeated over both halves (rotate-half layout).
    """
    # 1. Inverse frequencies θ_i, i = 0..dim/2−1.
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
    # 2. Angles (offset + t)·θ_i: [T, dim/2], repeated over both halves → [T, dim].
    pos = torch.arange(offset, offset + T, dtype=torch.float64, device=device)
    angles = torch.outer(pos, inv_freq)  # [T, dim/2]
    angles = torch.cat([angles, angles], dim=-1)  # [T, dim]
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (j, j + dim/2) of x by the angles in cos/sin, math in fp32.

    Args:
        x: [B, T, H, dim]; cos, sin: [T, dim].
    Returns:
        [B, T, H, dim] in x's dtype: x·cos + rotate_half(x)·sin, rotate_half(x) = (−x₂, x₁).
    """
    ct = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(ct)
    x1, x2 = xf.chunk(2, dim=-1)  # [B, T, H, dim/2] each
    rotated = torch.cat([-x2, x1], dim=-1)  # [B, T, H, dim]
    c = cos.to(ct)[None, :, None, :]  # [1, T, 1, dim]
    s = sin.to(ct)[None, :, None, :]
    return (xf * c + rotated * s).to(x.dtype)
