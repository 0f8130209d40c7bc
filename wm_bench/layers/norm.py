"""RMSNorm (Zhang & Sennrich 2019) in fp32, and the gated RMSNorm of Mamba-2 (Dao & Gu 2024, §7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float = 1e-6) -> torch.Tensor:
    """Normalise the last dimension by its root mean square, computed in at least fp32.

    Args:
        x: [..., D] any float dtype.
        weight: [D] per-channel gain, or None for no gain.
        eps: added to the mean square before the square root.

    Returns:
        [..., D] in x's dtype.
    """
    # fp32 (or wider, for float64 inputs) so bf16 activations do not lose the mean square
    compute = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(compute)
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(compute)
    return y.to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain initialised to 1 (eps 1e-6, fp32 math; docs/spec.md §2.6)."""

    def __init__(self, dim: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [..., dim]. Returns: [..., dim] in x's dtype."""
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class GatedRMSNorm(nn.Module):
    """Mamba-2's gated RMSNorm: RMSNorm(y · SiLU(z)) (or RMSNorm(y) · SiLU(z)), grouped.

    Normalisation statistics are taken per group of `group_size` channels (Mamba-2 uses one group
    per B/C group, `d_inner / n_groups`); the gain is per channel over the full width.
    """

    def __init__(
        self,
        dim: int,
        *,
        group_size: int | None = None,
        norm_before_gate: bool = False,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        group_size = dim if group_size is None else group_size
        if group_size <= 0 or dim % group_size != 0:
            raise ValueError(
                f"GatedRMSNorm: group_size={group_size} must be positive and divide dim={dim}"
            )
        self.dim = dim
        self.group_size = group_size
        self.norm_before_gate = norm_before_gate
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Args: y [..., dim] values, z [..., dim] gate. Returns: [..., dim] in y's dtype."""
        compute = torch.promote_types(y.dtype, torch.float32)
        yf, gate = y.to(compute), F.silu(z.to(compute))
        if not self.norm_before_gate:
            yf = yf * gate
        groups = yf.unflatten(-1, (self.dim // self.group_size, self.group_size))  # [..., g, gs]
        out = rms_norm(groups, None, self.eps).flatten(-2) * self.weight.to(compute)
        if self.norm_before_gate:
            out = out * gate
        return out.to(y.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.dim}, group_size={self.group_size}, "
            f"norm_before_gate={self.norm_before_gate}, eps={self.eps}"
        )
