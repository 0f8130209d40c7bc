"""RoPE reference: tables, rotate-half ≡ complex rotation, relative-position invariance."""

from __future__ import annotations

import math

import pytest
import torch

from wm_bench.kernels.rope import apply_rope, rope_cos_sin


def rnd(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_tables_follow_theta_i_equals_base_to_minus_two_i_over_dim():
    T, dim, base, offset = 5, 6, 500.0, 3
    cos, sin = rope_cos_sin(T, dim, base=base, offset=offset)
    assert cos.shape == sin.shape == (T, dim) and cos.dtype == sin.dtype == torch.float32
    for t in range(T):
        for c in range(dim):
            angle = (t + offset) * base ** (-2 * (c % (dim // 2)) / dim)
            assert math.isclose(cos[t, c].item(), math.cos(angle), abs_tol=1e-7)
            assert math.isclose(sin[t, c].item(), math.sin(angle), abs_tol=1e-7)


def test_offset_tables_are_the_tail_of_the_full_tables():
    full_cos, full_sin = rope_cos_sin(40, 16)
    cos, sin = rope_cos_sin(7, 16, offset=33)
    assert torch.equal(cos, full_cos[33:]) and torch.equal(sin, full_sin[33:])


def test_rotate_half_equals_complex_rotation_of_channel_pairs():
    B, T, H, dim = 2, 9, 3, 8
    x = rnd(B, T, H, dim, dtype=torch.float64)
    cos, sin = rope_cos_sin(T, dim, offset=4)
    out = apply_rope(x, cos, sin)
    half = dim // 2
    z = torch.complex(x[..., :half], x[..., half:])  # channel j pairs with j + dim/2
    theta = 10000.0 ** (-2 * torch.arange(half, dtype=torch.float64) / dim)
    angles = (torch.arange(T, dtype=torch.float64) + 4)[:, None] * theta  # [T, dim/2]
    rotated = z * torch.polar(torch.ones_like(angles), angles)[None, :, None, :]
    expected = torch.cat([rotated.real, rotated.imag], dim=-1)
    assert torch.allclose(out, expected, atol=1e-6)  # tables are fp32
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-6)


def test_shared_position_offset_leaves_q_dot_k_unchanged():
    T, dim = 12, 16
    q = rnd(1, T, 2, dim, dtype=torch.float64, seed=1)
    k = rnd(1, T, 2, dim, dtype=torch.float64, seed=2)

    def scores(offset: int) -> torch.Tensor:
        cos, sin = rope_cos_sin(T, dim, offset=offset)
        qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return torch.einsum("bthd,bshd->bhts", qr, kr)  # [B, H, T, S]

    base = scores(0)
    for offset in (1, 57, 1000):
        assert torch.allclose(scores(offset), base, atol=1e-5)
    assert not torch.allclose(base, torch.einsum("bthd,bshd->bhts", q, k), atol=1e-3)


def test_apply_rope_keeps_dtype_and_computes_in_fp32():
    x = rnd(2, 5, 2, 8)
    cos, sin = rope_cos_sin(5, 8)
    out = apply_rope(x.bfloat16(), cos, sin)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, apply_rope(x.bfloat16().float(), cos, sin).bfloat16())


def test_rope_rejects_bad_inputs_naming_the_value():
    with pytest.raises(ValueError, match="dim=7"):
        rope_cos_sin(4, 7)
    with pytest.raises(ValueError, match="offset=-1"):
        rope_cos_sin(4, 8, offset=-1)
    cos, sin = rope_cos_sin(4, 8)
    with pytest.raises(ValueError, match=r"x has shape \(2, 4, 8\)"):
        apply_rope(rnd(2, 4, 8), cos, sin)
    with pytest.raises(ValueError, match=r"cos has shape \(4, 8\), expected \[T, dim\] = \(5, 8\)"):
        apply_rope(rnd(1, 5, 2, 8), cos, sin)
    with pytest.raises(ValueError, match="'triton'"):
        apply_rope(rnd(1, 4, 2, 8), cos, sin, impl="triton")
