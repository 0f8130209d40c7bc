"""Triton RoPE ≡ reference, forward and gradient (TRITON_INTERPRET=1 on CPU; CUDA when present)."""

from __future__ import annotations

import pytest
import torch

from wm_bench.kernels.rope import apply_rope, rope_cos_sin
from wm_bench.testing import assert_close

pytestmark = pytest.mark.interpret


@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 7, 3, 8), (1, 13, 5, 6), (2, 5, 17, 32)])
@pytest.mark.parametrize("offset", [0, 1000])
def test_triton_rope_matches_reference_forward_and_backward(shape, offset, triton_device):
    torch.manual_seed(0)
    B, T, H, D = shape
    x = torch.randn(shape, device=triton_device, requires_grad=True)
    cos, sin = rope_cos_sin(T, D, offset=offset, device=triton_device)
    y_ref = apply_rope(x, cos, sin, impl="reference")
    y_tri = apply_rope(x, cos, sin, impl="triton")
    assert_close(y_tri, y_ref, "fp32")
    dy = torch.randn_like(y_ref)  # random cotangent, never .sum()
    (g_ref,) = torch.autograd.grad(y_ref, x, dy)
    (g_tri,) = torch.autograd.grad(y_tri, x, dy)
    assert torch.isfinite(g_tri).all()
    assert_close(g_tri, g_ref, "fp32")


def test_triton_rope_handles_non_contiguous_input(triton_device):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 6, device=triton_device).transpose(1, 2)  # [B, T=9, H=4, D] strided
    cos, sin = rope_cos_sin(9, 6, device=triton_device)
    ref = apply_rope(x, cos, sin, impl="reference")
    assert_close(apply_rope(x, cos, sin, impl="triton"), ref, "fp32")
