"""Implementation choice shared by every kernel API: explicit `impl=`, no silent fallback."""

from __future__ import annotations

from typing import Literal

import torch

Impl = Literal["reference", "triton"]
LayerImpl = Literal["auto", "reference", "triton"]


def check_impl(impl: str, available: tuple[str, ...], op: str) -> str:
    """Return `impl` if `op` has it, else raise ValueError naming the valid choices."""
    if impl not in available:
        raise ValueError(f"{op}: unknown impl={impl!r}; valid choices for this op: {list(available)}")
    return impl


def resolve_impl(impl: str, device: torch.device, available: tuple[str, ...], op: str) -> str:
    """Resolve a layer's impl: 'auto' → 'triton' on CUDA when the op has one, else 'reference'.

    Explicit choices are checked, never switched: asking for 'triton' on an op without it raises.
    """
    if impl == "auto":
        return "triton" if device.type == "cuda" and "triton" in available else "reference"
    return check_impl(impl, available, op)
