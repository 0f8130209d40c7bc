"""Attention: the reference (dense definition) and torch_fast (SDPA) against each other and
against independent forms: torch's SDPA, GQA by repetition, decode alignment, per-key bias, the
DMA top-w rule written out in Python. Every property test runs for both impls."""

from __future__ import annotations

import random
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from wm_bench.kernels.attention import attention, window_last_row
from wm_bench.kernels.attention.reference import direct_window_mask
from wm_bench.testing import assert_close

RULES = ["smaller_index", "larger_index"]
CPU_IMPLS = ["reference", "torch_fast"]


def reference(*args, **kwargs) -> torch.Tensor:
    return attention(*args, **kwargs, impl="reference")


def fast(*args, **kwargs) -> torch.Tensor:
    return attention(*args, **kwargs, impl="torch_fast")


def make_qkv(B, T, S, H, Hkv, K=8, V=6, *, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=torch.float64)
    k = torch.randn(B, S, Hkv, K, generator=g, dtype=torch.float64)
    v = torch.randn(B, S, Hkv, V, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype), v.to(dtype)


def tied_bias(B: int, H: int, S: int, *, levels: int = 3, seed: int = 0) -> torch.Tensor:
    """Per-key bias with few distinct values, so exact ties are common."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (B, H, S), generator=g).double() * 0.7


def python_window_mask(bias_bhs: torch.Tensor, window: int, tie_break: str) -> torch.Tensor:
    """The rule written out: row i keeps the first `window` keys of 0..i sorted by (−b, tie)."""
    Bsz, H, S = bias_bhs.shape
    keep = torch.zeros(Bsz, H, S, S, dtype=torch.bool)
    for b in range(Bsz):
        for h in range(H):
            vals = bias_bhs[b, h].tolist()
            for i in range(S):
                sign = 1 if tie_break == "smaller_index" else -1
                order = sorted(range(i + 1), key=lambda j: (-vals[j], sign * j))
                keep[b, h, i, order[:window]] = True
    return keep


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_attention_without_bias_matches_dense_and_sdpa(impl):
    run = partial(attention, impl=impl)
    q, k, v = make_qkv(2, 9, 9, 3, 3, seed=1)
    o = run(q, k, v)
    assert o.shape == (2, 9, 3, 6) and o.dtype == torch.float64
    assert_close(o, reference(q, k, v), "exact64")
    sdpa = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
    ).transpose(1, 2)
    assert_close(o, sdpa, "exact64")


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_non_causal_attention_matches_dense(impl):
    run = partial(attention, impl=impl)
    q, k, v = make_qkv(2, 5, 11, 4, 2, seed=2)
    o = run(q, k, v, causal=False, scale=0.3)
    assert_close(o, reference(q, k, v, causal=False, scale=0.3), "exact64")


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_gqa_query_head_reads_kv_head_h_over_group_size(impl):
    run = partial(attention, impl=impl)
    q, k, v = make_qkv(2, 7, 7, 6, 2, seed=3)
    o = run(q, k, v)
    k_full, v_full = k[:, :, [0, 0, 0, 1, 1, 1]], v[:, :, [0, 0, 0, 1, 1, 1]]
    assert_close(o, run(q, k_full, v_full), "exact64")
    assert_close(o, reference(q, k, v), "exact64")


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_decode_queries_align_to_the_end_of_the_keys(window, impl):
    run = partial(attention, impl=impl)
    S, T = 12, 4
    q, k, v = make_qkv(2, S, S, 4, 2, seed=4)
    bias = tied_bias(2, 4, S, seed=4) if window else None
    full = run(q, k, v, key_bias=bias, window=window)
    tail = run(q[:, S - T :], k, v, key_bias=bias, window=window)
    assert_close(tail, full[:, S - T :], "exact64")
    dense = reference(q[:, S - T :], k, v, key_bias=bias, window=window)
    assert_close(tail, dense, "exact64")


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_key_bias_is_added_to_every_querys_score(impl):
    run = partial(attention, impl=impl)
    q, k, v = make_qkv(2, 8, 8, 4, 2, seed=5)
    bias = torch.randn(2, 4, 8, dtype=torch.float64)
    o = run(q, k, v, key_bias=bias)
    assert_close(o, reference(q, k, v, key_bias=bias), "exact64")
    mask = torch.arange(8)[:, None] >= torch.arange(8)[None, :]
    float_mask = bias[:, :, None, :].masked_fill(~mask, float("-inf"))  # [B, H, T, S]
    kh, vh = k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2)
    sdpa = F.scaled_dot_product_attention(
        q.transpose(1, 2), kh.transpose(1, 2), vh.transpose(1, 2), attn_mask=float_mask
    ).transpose(1, 2)
    assert_close(o, sdpa, "exact64")


@pytest.mark.parametrize("tie_break", RULES)
@pytest.mark.parametrize("window", [1, 2, 5])
@pytest.mark.parametrize("levels", [2, 1000], ids=["ties", "distinct"])
@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_windowed_attention_matches_dense_rank_definition(levels, window, tie_break, impl):
    run = partial(attention, impl=impl)
    q, k, v = make_qkv(2, 10, 13, 4, 2, seed=6 + window)
    bias = tied_bias(2, 4, 13, levels=levels, seed=window)
    o = run(q, k, v, key_bias=bias, window=window, tie_break=tie_break)
    ref = reference(q, k, v, key_bias=bias, window=window, tie_break=tie_break)
    assert_close(o, ref, "exact64")


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_window_at_least_the_length_equals_no_window(impl):
    run = partial(attention, impl=impl)
    q, k, v = make_qkv(2, 9, 9, 2, 2, seed=7)
    bias = tied_bias(2, 2, 9, seed=7)
    o = run(q, k, v, key_bias=bias)
    for window in (9, 50):
        assert_close(run(q, k, v, key_bias=bias, window=window), o, "exact64")


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_window_one_returns_the_value_of_the_top_bias_visible_key(impl):
    run = partial(attention, impl=impl)
    S = 10
    q, k, v = make_qkv(1, S, S, 2, 1, seed=8)
    bias = torch.randn(1, 2, S, dtype=torch.float64)
    o = run(q, k, v, key_bias=bias, window=1)
    for h in range(2):
        for i in range(S):
            top = int(bias[0, h, : i + 1].argmax())
            assert torch.allclose(o[0, i, h], v[0, top, 0], atol=1e-12)


@pytest.mark.parametrize("tie_break", RULES)
@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_equal_biases_keep_first_w_keys_or_a_sliding_window(tie_break, impl):
    run = partial(attention, impl=impl)
    S, w = 11, 3
    q, k, v = make_qkv(2, S, S, 2, 2, seed=9)
    zeros = torch.zeros(2, 2, S, dtype=torch.float64)
    o = run(q, k, v, key_bias=zeros, window=w, tie_break=tie_break)
    i, j = torch.arange(S)[:, None], torch.arange(S)[None, :]
    if tie_break == "smaller_index":
        keep = (j <= i) & (j < w)  # the first w keys, forever
    else:
        keep = (j <= i) & (j > i - w)  # the last w keys: a sliding window
    expected = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=keep
    ).transpose(1, 2)
    assert_close(o, expected, "exact64")


@pytest.mark.parametrize(
    ("with_bias", "window", "tie_break", "T"),
    [(False, None, "smaller_index", 9), (False, None, "smaller_index", 4),
     (True, None, "smaller_index", 9), (True, None, "smaller_index", 4),
     (True, 3, "smaller_index", 9), (True, 3, "larger_index", 4), (True, 2, "larger_index", 9)],
)  # fmt: skip
def test_fast_attention_gradients_match_the_reference(with_bias, window, tie_break, T):
    S = 9
    q, k, v = make_qkv(2, T, S, 4, 2, seed=10)
    bias = tied_bias(2, 4, S, seed=10) if with_bias else None
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    if with_bias:
        leaves.append(bias.clone().requires_grad_(True))
    gy = torch.randn(2, T, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def grads(fn):
        bias_leaf = leaves[3] if with_bias else None
        o = fn(*leaves[:3], key_bias=bias_leaf, window=window, tie_break=tie_break)
        return torch.autograd.grad((o * gy).sum(), leaves)  # random cotangent

    for name, a, b in zip("qkvb", grads(fast), grads(reference)):
        assert_close(a, b, "fp64", what=f"d{name}")


def test_bf16_inputs_give_bf16_output():
    q, k, v = make_qkv(1, 6, 6, 2, 1, dtype=torch.bfloat16, seed=11)
    bias = torch.randn(1, 2, 6).bfloat16()
    for kw in ({}, {"key_bias": bias, "window": 2}):
        o = fast(q, k, v, **kw)
        assert o.dtype == torch.bfloat16
        up = {n: (t.float() if n == "key_bias" else t) for n, t in kw.items()}
        assert_close(o, reference(q.float(), k.float(), v.float(), **up), "bf16")


@pytest.mark.parametrize("case", range(50))
def test_window_last_row_equals_direct_rank_definition(case):
    rnd = random.Random(case)
    S = rnd.randint(1, 30)
    window = rnd.randint(1, S + 2)
    bias = tied_bias(2, 2, S, levels=rnd.choice([1, 2, 3, 5]), seed=case)
    for tie_break in RULES:
        expected = python_window_mask(bias, window, tie_break)  # [B, H, S, S]
        q_offset = rnd.randrange(S)
        last = window_last_row(bias, window, tie_break=tie_break, q_offset=q_offset)
        assert last.dtype == torch.int64 and last.shape == bias.shape
        i = torch.arange(S)[:, None]  # key coordinates
        j = torch.arange(S)[None, :]
        from_last = (j <= i) & (i - q_offset <= last[:, :, None, :])
        assert torch.equal(from_last, expected)
        assert torch.equal(direct_window_mask(bias, window, S, tie_break=tie_break), expected)


def test_attention_rejects_bad_inputs_naming_the_value():
    q, k, v = make_qkv(1, 4, 4, 4, 2)
    bias = torch.zeros(1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="window=2 requires key_bias"):
        attention(q, k, v, window=2)
    with pytest.raises(ValueError, match="'triton'"):
        attention(q, k, v, impl="triton")
    with pytest.raises(ValueError, match=r"H=4.*Hkv=3"):
        attention(q, k[:, :, [0, 1, 1]], v[:, :, [0, 1, 1]])
    with pytest.raises(ValueError, match="'middle'"):
        attention(q, k, v, key_bias=bias, window=2, tie_break="middle")
    with pytest.raises(ValueError, match="'middle'"):
        window_last_row(bias, 2, tie_break="middle")
    with pytest.raises(ValueError, match="window=0"):
        attention(q, k, v, key_bias=bias, window=0)
    with pytest.raises(ValueError, match="causal"):
        attention(q, k, v, key_bias=bias, window=2, causal=False)
    with pytest.raises(ValueError, match=r"T=4.*S=2"):
        attention(q, k[:, :2], v[:, :2])
    with pytest.raises(ValueError, match=r"key_bias has shape \(1, 2, 4\)"):
        attention(q, k, v, key_bias=bias[:, :2])
