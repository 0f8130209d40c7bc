"""Implementation choice shared by every kernel API: explicit `impl=`, no silent fallback."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from typing import Literal

import torch

Impl = Literal["reference", "torch_fast", "triton"]
# What a layer's (and a run's) `impl=` accepts, one tuple for every layer: "auto" picks per op
# and device (resolve_impl: triton on CUDA, else the CPU fast path "torch_fast" where the op has
# one, else the reference); an explicit "reference" or "triton" must exist for every op the layer
# runs. "torch_fast" is reached through "auto" (or a kernel API's own impl=), not named per layer:
# it is a CPU speed path of some ops, not a choice that every op of a layer can honour.
LAYER_IMPLS: tuple[str, ...] = ("auto", "reference", "triton")


def check_impl(impl: str, available: tuple[str, ...], op: str) -> str:
    """Return `impl` if `op` has it, else raise ValueError naming the valid choices."""
    if impl not in available:
        raise ValueError(
            f"{op}: unknown impl={impl!r}; valid choices for this op: {list(available)}"
        )
    return impl


def resolve_impl(impl: str, device: torch.device, available: tuple[str, ...], op: str) -> str:
    """Resolve a layer's impl for one op on one device.

    'auto' → 'triton' on CUDA when the op has it, else 'torch_fast' when the op has it, else
    'reference'. Explicit choices are checked, never switched: asking for an impl the op lacks
    raises ValueError naming the valid ones.
    """
    if impl == "auto":
        if device.type == "cuda" and "triton" in available:
            return "triton"
        return "torch_fast" if "torch_fast" in available else "reference"
    return check_impl(impl, available, op)


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """fp32, or fp64 when any input is fp64: kernel math never runs below fp32."""
    dtype = torch.float32
    for t in tensors:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1: Triton kernels then run on CPU tensors (the interpreter)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@cache
def has_triton() -> bool:
    """True when the triton package is importable (Linux wheels; not on macOS or Windows)."""
    return importlib.util.find_spec("triton") is not None


def check_triton_device(x: torch.Tensor, op: str) -> None:
    """Triton kernels run on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1."""
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(
            f"{op}: impl='triton' got a tensor on {x.device.type!r}; Triton needs CUDA tensors "
            "(or TRITON_INTERPRET=1 to run the kernel on the CPU through the interpreter)"
        )
