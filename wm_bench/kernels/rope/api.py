"""Public RoPE kernel surface: rotation tables and rotate-half application (docs/spec.md §2.1)."""

from __future__ import annotations

import torch
from torch import Tensor

from wm_bench.kernels._impl import Impl, check_impl, check_triton_device, has_triton
from wm_bench.kernels.rope import reference as ref

AVAILABLE: tuple[str, ...] = ("reference", "triton") if has_triton() else ("reference",)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def rope_cos_sin(
    T: int,
    dim: int,
    *,
    base: float = 10000.0,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Rotation tables for positions offset..offset+T−1 (offset > 0 when decoding).

    Args:
        T: number of positions, ≥ 0.
        dim: rotated channels, even and ≥ 2; θ_i = base^(−2i/dim), i < dim/2.
        base: frequency base > 0.
        offset: first position, ≥ 0.
        device: device of the tables.
    Returns:
        cos, sin: [T, dim] fp32 (rotate-half layout: channel j pairs with j + dim/2, so each
        frequency appears in both halves).
    """
    if not _is_int(T) or T < 0:
        raise ValueError(f"rope_cos_sin: T={T!r}, expected an int >= 0")
    if not _is_int(dim) or dim < 2 or dim % 2:
        raise ValueError(f"rope_cos_sin: dim={dim!r}, expected an even int >= 2")
    if not base > 0:
        raise ValueError(f"rope_cos_sin: base={base!r}, expected a positive float")
    if not _is_int(offset) or offset < 0:
        raise ValueError(f"rope_cos_sin: offset={offset!r}, expected an int >= 0")
    return ref.rope_cos_sin(T, dim, base=base, offset=offset, device=device)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, *, impl: Impl = "reference") -> Tensor:
    """Rotate x by the tables from `rope_cos_sin` (positions along dim 1), math in fp32.

    Args:
        x: [B, T, H, dim] float (for SSD: B or C as [B, T, G, N]).
        cos, sin: [T, dim].
        impl: "reference" or "triton" (CUDA tensors, or any device under TRITON_INTERPRET=1).
    Returns:
        [B, T, H, dim] in x's dtype.
    """
    check_impl(impl, AVAILABLE, "apply_rope")
    if not x.is_floating_point():
        raise ValueError(f"apply_rope: x must be a floating-point tensor, got dtype={x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"apply_rope: x has shape {tuple(x.shape)}, expected 4-D [B, T, H, dim]")
    T, dim = x.shape[1], x.shape[3]
    if dim % 2:
        raise ValueError(f"apply_rope: x has odd dim={dim}; rotate-half needs an even dim")
    for name, t in (("cos", cos), ("sin", sin)):
        if tuple(t.shape) != (T, dim):
            raise ValueError(
                f"apply_rope: {name} has shape {tuple(t.shape)}, expected [T, dim] = {(T, dim)}"
            )
    if impl == "triton":
        check_triton_device(x, "apply_rope")
        from wm_bench.kernels.rope.triton import apply_rope_triton

        return apply_rope_triton(x, cos.to(x.device), sin.to(x.device))
    return ref.apply_rope(x, cos, sin)
