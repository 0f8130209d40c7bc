"""Triton CDMoE kernels ≡ reference: product-key top-k ids/scores/grads, expert-mix output/grads.

Runs under TRITON_INTERPRET=1 on the CPU at tiny fp32 shapes (every program is Python there),
or on CUDA. The reference is `api.*(impl="reference")`, itself checked against brute force in
test_cdmoe_reference.py.
"""

from __future__ import annotations

import pytest
import torch

from wm_bench.kernels.cdmoe import ACTIVATIONS, api
from wm_bench.testing import assert_close

pytestmark = pytest.mark.interpret


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- product_key_topk ---------------------------------------------------------------------------
def pk_inputs(device: torch.device, m, he, r, n, *, seed=0, dtype=torch.float32, ties=False):
    g = gen(seed)
    if ties:  # integer values: many exactly equal sums (and −0.0 half scores)
        q = torch.randint(-1, 2, (m, he, r), generator=g).float()
        keys = torch.randint(-1, 2, (he, 2, n, r // 2), generator=g).float()
    else:
        q = torch.randn(m, he, r, generator=g)
        keys = torch.randn(he, 2, n, r // 2, generator=g)
    return q.to(device, dtype), keys.to(device, dtype)


def pk_both(q, keys, k, cot=None):
    """[(scores, indices, grads or None)] for triton then reference."""
    out = []
    for impl in ("triton", "reference"):
        ql, kl = q.clone().requires_grad_(), keys.clone().requires_grad_()
        scores, indices = api.product_key_topk(ql, kl, k, impl=impl)
        grads = torch.autograd.grad(scores, (ql, kl), cot) if cot is not None else None
        out.append((scores.detach(), indices, grads))
    return out


@pytest.mark.parametrize(
    ("m", "he", "r", "n", "k"),
    [
        (7, 2, 4, 4, 3),  # N = 16
        (5, 1, 2, 4, 1),  # k = 1
        (5, 2, 2, 4, 4),  # k = n
        (5, 1, 2, 4, 10),  # k > n: all n² pairs are candidates
        (3, 2, 4, 4, 16),  # k = N
        (9, 3, 6, 16, 8),  # N = 256
        (4, 2, 4, 64, 13),  # N = 4096, tiny widths
        (2, 1, 2, 64, 64),  # N = 4096, k = n
        (1, 1, 2, 32, 1024),  # k = N = 1024 (every pair of the 32 × 32 grid)
    ],
)
def test_topk_matches_reference(m, he, r, n, k, triton_device):
    q, keys = pk_inputs(triton_device, m, he, r, n, seed=k)
    (s, i, _), (rs, ri, _) = pk_both(q, keys, k)
    assert s.shape == i.shape == (m, he, k) and i.dtype == torch.int64 and s.dtype == rs.dtype
    assert torch.equal(i, ri)
    assert_close(s, rs, "fp32")
    assert (s[..., :-1] >= s[..., 1:]).all()


@pytest.mark.parametrize("k", [1, 5, 9, 25])
def test_topk_ties_break_by_lower_expert_id(k, triton_device):
    q, keys = pk_inputs(triton_device, 20, 2, 4, 5, seed=2, ties=True)
    (s, i, _), (rs, ri, _) = pk_both(q, keys, k)
    assert torch.equal(i, ri)
    assert torch.equal(s, rs)


@pytest.mark.parametrize("k", [3, 10])
def test_topk_signed_zeros_tie(k, triton_device):
    """A zero query against keys of both signs gives half scores +0.0 and −0.0: all sums tie,
    so the winners are the k lowest ids, as a float comparison (not the sign bit) says."""
    q = torch.zeros(3, 1, 2, device=triton_device)
    keys = torch.tensor([1.0, -1.0, 2.0, -0.5], device=triton_device).repeat(1, 2, 1)[..., None]
    (s, i, _), (rs, ri, _) = pk_both(q, keys, k)
    assert torch.equal(i, ri)
    assert torch.equal(i[0, 0].cpu(), torch.arange(k))


@pytest.mark.parametrize(("n", "k"), [(4, 3), (8, 20), (64, 12)])
def test_topk_gradients_match_reference(n, k, triton_device):
    q, keys = pk_inputs(triton_device, 6, 2, 4, n, seed=1)
    cot = torch.randn(6, 2, k, generator=gen(3)).to(triton_device)
    (_, i, (gq, gk)), (_, ri, (rq, rk)) = pk_both(q, keys, k, cot)
    assert torch.equal(i, ri)
    assert_close(gq, rq, "fp32")
    assert_close(gk, rk, "fp32", floor=1.0)  # unselected sub-keys: exactly 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_topk_half_inputs(dtype, triton_device):
    q, keys = pk_inputs(triton_device, 6, 2, 8, 16, seed=4, dtype=dtype)
    cot = torch.randn(6, 2, 7, generator=gen(5)).to(triton_device)
    (s, i, (gq, gk)), (rs, ri, (rq, rk)) = pk_both(q, keys, 7, cot)
    assert s.dtype == torch.float32 and torch.equal(i, ri)
    assert_close(s, rs, "fp32")
    assert gq.dtype == dtype
    assert_close(gq, rq, "bf16")
    assert_close(gk, rk, "bf16", floor=1.0)


def test_topk_rejects_fp64(triton_device):
    q, keys = pk_inputs(triton_device, 2, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="float64"):
        api.product_key_topk(q, keys, 3, impl="triton")


# ---- expert_mix ---------------------------------------------------------------------------------
def mix_inputs(
    device: torch.device,
    m,
    d,
    n,
    j,
    *,
    seed=0,
    dtype=torch.float32,
    repeat=True,
    idx_dtype=torch.int64,
):
    """x, down, up, indices, gates; `repeat` adds shared experts and in-token duplicates."""
    g = gen(seed)
    idx = torch.randint(0, n, (m, j), generator=g)
    if repeat and j > 1:
        idx[:, 1] = idx[:, 0]  # the same expert twice within every token
        idx[: m // 2, -1] = 3  # half the tokens share expert 3
    return {
        "x": torch.randn(m, d, generator=g).to(device, dtype),
        "down": torch.randn(n, d, generator=g).to(device, dtype),
        "up": torch.randn(n, d, generator=g).to(device, dtype),
        "indices": idx.to(device, idx_dtype),
        "gates": torch.randn(m, j, generator=g).to(device),
    }


def mix_run(inp: dict, impl: str, activation: str = "silu", seed: int = 9) -> list[torch.Tensor]:
    """[y, dx, d down, d up, d gates] under a fixed random cotangent."""
    names = ("x", "down", "up", "gates")
    leaves = {n: t.detach().clone().requires_grad_(n in names) for n, t in inp.items()}
    y = api.expert_mix(**leaves, activation=activation, impl=impl)
    dy = torch.randn(y.shape, generator=gen(seed)).to(y.device, y.dtype)
    grads = torch.autograd.grad(y, [leaves[n] for n in names], dy)
    return [y.detach(), *grads]


def mix_compare(inp: dict, activation: str = "silu", tol: str | float = "fp32") -> None:
    got, want = mix_run(inp, "triton", activation), mix_run(inp, "reference", activation)
    for name, a, b in zip(("y", "dx", "ddown", "dup", "dgates"), got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert_close(a, b, tol, floor=1.0, what=name)  # unused rows: exactly 0


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mix_matches_reference(activation, triton_device):
    """D = 40 (three tiles of 16 under the interpreter, a tail), J = 7 (two blocks of 4)."""
    mix_compare(mix_inputs(triton_device, 6, 40, 64, 7, seed=1), activation)


def test_mix_many_experts(triton_device):
    """N = 4096: most table rows get no pair and must come back exactly zero."""
    inp = mix_inputs(triton_device, 8, 16, 4096, 5, seed=2)
    mix_compare(inp, "gelu")
    _, _, ddown, dup, _ = mix_run(inp, "triton", "gelu")
    unused = torch.ones(4096, dtype=torch.bool)
    unused[inp["indices"].flatten().cpu()] = False
    assert (ddown[unused.to(ddown.device)] == 0).all() and (dup[unused.to(dup.device)] == 0).all()


def test_mix_one_expert_for_everything(triton_device):
    """Every slot of every token picks expert 3: one long segment (many BLOCK_P chunks)."""
    inp = mix_inputs(triton_device, 12, 24, 16, 7, seed=3, repeat=False)
    inp["indices"].fill_(3)
    mix_compare(inp, "silu")


def test_mix_int32_indices_and_single_slot(triton_device):
    mix_compare(mix_inputs(triton_device, 5, 16, 32, 1, seed=4, idx_dtype=torch.int32), "relu")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mix_half_inputs(dtype, triton_device):
    """Half tables and tokens, fp32 gates (as the layers pass them); fp32 accumulation in both."""
    mix_compare(mix_inputs(triton_device, 6, 40, 64, 7, seed=5, dtype=dtype), "silu", tol="bf16")


def test_mix_deterministic(triton_device):
    inp = mix_inputs(triton_device, 9, 40, 8, 7, seed=6)  # 63 pairs on 8 experts: heavy sharing
    a, b = mix_run(inp, "triton", "gelu"), mix_run(inp, "triton", "gelu")
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_mix_rejects_bad_inputs(triton_device):
    inp = mix_inputs(triton_device, 3, 16, 8, 2, seed=7)
    bad = dict(inp, indices=inp["indices"].clone().fill_(8))
    with pytest.raises(IndexError, match="N=8"):
        api.expert_mix(**bad, impl="triton")
    wide = {n: (t.double() if t.is_floating_point() else t) for n, t in inp.items()}
    with pytest.raises(ValueError, match="float64"):
        api.expert_mix(**wide, impl="triton")


# ---- layers on the kernels ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cdmoe", "peer"])
def test_layers_run_on_the_kernels(name, triton_device):
    """CDMoE and PEER with impl='triton' ≡ impl='reference' (output and every weight grad)."""
    from wm_bench.layers.ffn import FFNS

    cls, cfg_cls = FFNS[name]
    kwargs = {"num_experts": 64, "top_k": 4, "num_heads": 2}
    kwargs |= {"d_retrieval": 8} if name == "cdmoe" else {"d_key": 8}
    cfg = cfg_cls(**kwargs)
    torch.manual_seed(0)
    ref = cls(32, cfg, impl="reference").to(triton_device)
    tri = cls(32, cfg, impl="triton").to(triton_device)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 32, generator=gen(8)).to(triton_device)
    dy = torch.randn(2, 5, 32, generator=gen(9)).to(triton_device)
    outs = []
    for layer in (ref, tri):
        y, _ = layer(x)
        y.backward(dy)
        outs.append((y.detach(), [p.grad.clone() for p in layer.parameters()]))
    assert set(tri.resolved_impls.values()) == {"triton"}
    assert_close(outs[1][0], outs[0][0], "fp32")
    for a, b in zip(outs[1][1], outs[0][1], strict=True):
        assert_close(a, b, 1e-4, floor=1.0)


# ---- realistic shapes in bf16 (CUDA) ------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_mix_bf16_realistic(gpu_device):
    """M = 4096 tokens, D = 1024, N = 16384 experts, J = 64 slots, bf16 vs the fp32 reference."""
    inp = mix_inputs(gpu_device, 4096, 1024, 16384, 64, seed=10, dtype=torch.bfloat16)
    inp["x"] = inp["x"] / 32  # h ~ N(0, 1): the activations' interesting range
    got = mix_run(inp, "triton", "silu")
    ref_in = {n: (t.float() if t.is_floating_point() else t) for n, t in inp.items()}
    want = mix_run(ref_in, "reference", "silu")
    dtypes = [torch.bfloat16] * 4 + [torch.float32]  # gates stay fp32
    names = ("y", "dx", "ddown", "dup", "dgates")
    for name, a, b, dtype in zip(names, got, want, dtypes, strict=True):
        assert a.dtype == dtype, name
        assert_close(a, b, 3e-2, floor=1.0, what=name)


@pytest.mark.gpu
def test_gpu_topk_realistic(gpu_device):
    """M = 4096 tokens, 4 heads, N = 16384 (n = 128), k = 32, bf16.

    Scores equal the reference's bit for bit; ids too, except (see triton_topk's rounding
    caveat) where an fp32 sum absorbed a difference at the k-th score: only ids of that score
    may then differ.
    """
    q, keys = pk_inputs(gpu_device, 4096, 4, 128, 128, seed=11, dtype=torch.bfloat16)
    (s, i, _), (rs, ri, _) = pk_both(q, keys, 32)
    assert torch.equal(s, rs)
    differ = i != ri
    assert differ.float().mean() < 1e-3
    assert torch.equal(s[differ], s[..., -1:].expand_as(s)[differ])
