"""Triton RoPE ≡ reference, forward and gradient (TRITON_INTERPRET=1 on CPU; CUDA when present)."""

from __future__ import annotations

import os

import pytest
import torch

from wm_bench.kernels.rope import apply_rope, rope_cos_sin

pytestmark = pytest.mark.interpret
if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("needs TRITON_INTERPRET=1 (make test-interpret) or CUDA", allow_module_level=True)
DEVICE = (
    "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
)


def _rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (
        (a - b).float().pow(2).mean().sqrt() / b.float().pow(2).mean().sqrt().clamp_min(1e-12)
    ).item()


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 7, 3, 8), (1, 13, 5, 6), (2, 5, 17, 32)])
@pytest.mark.parametrize("offset", [0, 1000])
def test_triton_rope_matches_reference_forward_and_backward(shape, offset):
    torch.manual_seed(0)
    B, T, H, D = shape
    x = torch.randn(shape, device=DEVICE, requires_grad=True)
    cos, sin = rope_cos_sin(T, D, offset=offset, device=DEVICE)
    y_ref = apply_rope(x, cos, sin, impl="reference")
    y_tri = apply_rope(x, cos, sin, impl="triton")
    assert _rel_rms(y_tri, y_ref) < 1e-6
    dy = torch.randn_like(y_ref)  # random cotangent, never .sum()
    (g_ref,) = torch.autograd.grad(y_ref, x, dy)
    (g_tri,) = torch.autograd.grad(y_tri, x, dy)
    assert torch.isfinite(g_tri).all()
    assert _rel_rms(g_tri, g_ref) < 1e-6


def test_triton_rope_handles_non_contiguous_input():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 6, device=DEVICE).transpose(1, 2)  # [B, T=9, H=4, D] strided
    cos, sin = rope_cos_sin(9, 6, device=DEVICE)
    ref = apply_rope(x, cos, sin, impl="reference")
    assert _rel_rms(apply_rope(x, cos, sin, impl="triton"), ref) < 1e-6
