"""CDMoE retrieval kernels: product-key top-k, the reference (every expert scored) against the
rule written out and the pruned torch_fast search against the reference; expert_mix against a
dense loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wm_bench.kernels.cdmoe import ACTIVATIONS, expert_mix, product_key_topk
from wm_bench.testing import assert_close

ACT = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "identity": lambda h: h}


def reference_topk(q, sub_keys, k):
    return product_key_topk(q, sub_keys, k, impl="reference")


def fast_topk(q, sub_keys, k):
    return product_key_topk(q, sub_keys, k, impl="torch_fast")


def python_topk(q, sub_keys, k):
    """The rule written out, one (token, head) at a time: ids sorted by (−score, id)."""
    n, half = sub_keys.shape[2], q.shape[-1] // 2
    indices = torch.empty(q.shape[0], q.shape[1], k, dtype=torch.int64)
    for m in range(q.shape[0]):
        for h in range(q.shape[1]):
            s1 = [float(q[m, h, :half] @ sub_keys[h, 0, i]) for i in range(n)]
            s2 = [float(q[m, h, half:] @ sub_keys[h, 1, j]) for j in range(n)]
            ids = sorted(range(n * n), key=lambda e: (-(s1[e // n] + s2[e % n]), e))
            indices[m, h] = torch.tensor(ids[:k])
    return indices


def random_inputs(m, he, r, n, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(m, he, r, generator=g, dtype=dtype, requires_grad=True)
    keys = torch.randn(he, 2, n, r // 2, generator=g, dtype=dtype, requires_grad=True)
    return q, keys


@pytest.mark.parametrize(
    ("m", "he", "r", "n", "k"),
    [
        (7, 2, 4, 4, 3),  # N = 16
        (5, 1, 2, 4, 10),  # k > n: all n² candidates
        (3, 2, 4, 4, 16),  # k = N
        (9, 3, 6, 16, 8),  # N = 256
        (4, 2, 4, 64, 13),  # N = 4096, tiny widths
        (1, 1, 2, 64, 64),  # N = 4096, k = n
    ],
)
def test_fast_product_key_topk_matches_the_reference(m, he, r, n, k):
    q, keys = random_inputs(m, he, r, n)
    scores, indices = fast_topk(q, keys, k)
    ref_scores, ref_indices = reference_topk(q, keys, k)
    assert scores.shape == indices.shape == (m, he, k)
    assert indices.dtype == torch.int64
    assert torch.equal(indices, ref_indices)
    assert_close(scores, ref_scores, "exact64")
    assert (scores[..., :-1] >= scores[..., 1:]).all()


@pytest.mark.parametrize(("n", "k"), [(4, 3), (4, 16), (6, 7)])
def test_reference_product_key_topk_follows_the_rule_written_out(n, k):
    q, keys = random_inputs(3, 2, 4, n, seed=n + k)
    assert torch.equal(reference_topk(q, keys, k)[1], python_topk(q.detach(), keys.detach(), k))


@pytest.mark.parametrize(("n", "k"), [(4, 3), (8, 20), (64, 12)])
def test_fast_product_key_topk_gradients_match_the_reference(n, k):
    q, keys = random_inputs(6, 2, 4, n, seed=1)
    cot = torch.randn(6, 2, k, dtype=torch.float64)
    scores, _ = fast_topk(q, keys, k)
    gq, gk = torch.autograd.grad(scores, (q, keys), cot)
    ref_scores, _ = reference_topk(q, keys, k)
    rq, rk = torch.autograd.grad(ref_scores, (q, keys), cot)
    assert_close(gq, rq, "exact64", what="dq")
    assert_close(gk, rk, "exact64", floor=1.0, what="dsub_keys")  # unselected rows: exactly 0


@pytest.mark.parametrize("k", [1, 5, 9, 25])
def test_product_key_topk_breaks_ties_by_lowest_expert_id(k):
    g = torch.Generator().manual_seed(2)
    q = torch.randint(-1, 2, (20, 2, 4), generator=g).double()  # many exact ties
    keys = torch.randint(-1, 2, (2, 2, 5, 2), generator=g).double()
    scores, indices = fast_topk(q, keys, k)
    ref_scores, ref_indices = reference_topk(q, keys, k)
    assert torch.equal(indices, ref_indices)
    assert torch.equal(scores, ref_scores)
    assert torch.equal(indices[:4], python_topk(q[:4], keys, k))


@pytest.mark.parametrize("impl", ["reference", "torch_fast"])
def test_product_key_topk_is_deterministic_and_keeps_fp32_scores_for_bf16(impl):
    q, keys = random_inputs(8, 2, 8, 8, dtype=torch.float32, seed=3)
    s_a, i_a = product_key_topk(q.bfloat16(), keys.bfloat16(), 6, impl=impl)
    s_b, i_b = product_key_topk(q.bfloat16(), keys.bfloat16(), 6, impl=impl)
    assert s_a.dtype == torch.float32
    assert torch.equal(i_a, i_b) and torch.equal(s_a, s_b)


def dense_loop_mix(x, down, up, indices, gates, activation):
    """y_m = Σ_j gates[m, j] · act(x_m · down[e]) · up[e], one token and one slot at a time."""
    rows = []
    for m in range(x.shape[0]):
        y_m = torch.zeros_like(x[m])
        for j in range(indices.shape[1]):
            e = int(indices[m, j])
            y_m = y_m + gates[m, j] * ACT[activation](x[m] @ down[e]) * up[e]
        rows.append(y_m)
    return torch.stack(rows)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_expert_mix_matches_dense_loop_forward_and_gradients(activation):
    g = torch.Generator().manual_seed(4)
    m, n_exp, d, j = 6, 9, 5, 4
    x = torch.randn(m, d, generator=g, dtype=torch.float64, requires_grad=True)
    down = torch.randn(n_exp, d, generator=g, dtype=torch.float64, requires_grad=True)
    up = torch.randn(n_exp, d, generator=g, dtype=torch.float64, requires_grad=True)
    gates = torch.randn(m, j, generator=g, dtype=torch.float64, requires_grad=True)
    indices = torch.randint(0, n_exp, (m, j), generator=g)
    indices[0] = torch.tensor([3, 3, 3, 1])  # the same expert repeated in a row
    indices[1] = torch.tensor([3, 0, 1, 2])  # and shared across tokens
    y = expert_mix(x, down, up, indices, gates, activation=activation)
    ref = dense_loop_mix(x, down, up, indices, gates, activation)
    assert y.shape == (m, d)
    assert_close(y, ref, "exact64")
    cot = torch.randn(m, d, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(y, (x, down, up, gates), cot)
    ref_grads = torch.autograd.grad(ref, (x, down, up, gates), cot)
    for name, a, b in zip(("x", "down", "up", "gates"), grads, ref_grads):
        assert_close(a, b, "exact64", floor=1.0, what=f"d{name}")  # unused rows: exactly 0


def test_expert_mix_computes_in_fp32_for_bf16_and_returns_x_dtype():
    g = torch.Generator().manual_seed(5)
    x, down, up = (torch.randn(s, generator=g) for s in ((4, 8), (16, 8), (16, 8)))
    indices = torch.randint(0, 16, (4, 3), generator=g)
    gates = torch.rand(4, 3, generator=g)
    y = expert_mix(x.bfloat16(), down.bfloat16(), up.bfloat16(), indices, gates)
    ref = dense_loop_mix(
        x.bfloat16().float(), down.bfloat16().float(), up.bfloat16().float(), indices, gates, "silu"
    )
    assert y.dtype == torch.bfloat16
    assert_close(y, ref, "bf16")


def test_product_key_topk_rejects_bad_shapes_and_k():
    q, keys = random_inputs(3, 2, 4, 4)
    with pytest.raises(ValueError, match="k=17"):
        product_key_topk(q, keys, 17)
    with pytest.raises(ValueError, match="k=0"):
        product_key_topk(q, keys, 0)
    with pytest.raises(ValueError, match="R=5"):
        product_key_topk(torch.randn(3, 2, 5), keys, 2)
    with pytest.raises(ValueError, match=r"\(2, 2, 4, 3\)"):
        product_key_topk(q, torch.randn(2, 2, 4, 3), 2)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        product_key_topk(torch.randn(3, 4), keys, 2)
    with pytest.raises(ValueError, match="impl='triton'"):
        product_key_topk(q, keys, 2, impl="triton")


def test_expert_mix_rejects_bad_activation_shapes_and_impl():
    x, table = torch.randn(4, 8), torch.randn(16, 8)
    idx, gates = torch.zeros(4, 2, dtype=torch.long), torch.ones(4, 2)
    with pytest.raises(ValueError, match="'tanh'"):
        expert_mix(x, table, table, idx, gates, activation="tanh")
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        expert_mix(x, table, table, idx, torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"\(16, 7\)"):
        expert_mix(x, table, torch.randn(16, 7), idx, gates)
    with pytest.raises(ValueError, match="float32"):
        expert_mix(x, table, table, idx.float(), gates)
    with pytest.raises(ValueError, match="impl='triton'"):
        expert_mix(x, table, table, idx, gates, impl="triton")
