"""FFN registry: each variant builds, runs, is token-wise and matches its definition."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from layer_contract import FFN_CHECKS, D, check_id

from wm_bench.kernels._impl import resolve_impl
from wm_bench.kernels.cdmoe import IMPLS
from wm_bench.layers.ffn import FFNS, build_ffn
from wm_bench.layers.ffn.cdmoe import CDMoE, CDMoEConfig
from wm_bench.layers.ffn.mlp import MLP, MLPConfig, default_d_ff
from wm_bench.layers.ffn.moe import MoE, MoEConfig
from wm_bench.layers.ffn.peer import PEER, PEERConfig
from wm_bench.layers.ffn.pkm import PKM, PKMConfig
from wm_bench.layers.ffn.seimoe import SEIMoE, SEIMoEConfig
from wm_bench.testing import rel_rms


def n_params(layer: torch.nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("check", FFN_CHECKS, ids=check_id)
@pytest.mark.parametrize("name", sorted(FFNS))
def test_every_registered_ffn_keeps_the_layer_contract(name: str, check) -> None:
    check(name, {})


def test_dense_mlp_active_params_equal_total_and_default_width_is_llama():
    layer = MLP(D, MLPConfig())
    assert layer.active_params() == n_params(layer) == 3 * D * 128
    assert default_d_ff(32) == 128 and default_d_ff(1024) == 2752


@pytest.mark.parametrize("impl", ["reference", "triton"])  # triton = torch._grouped_mm
def test_moe_grouped_path_matches_per_token_loop(impl):
    torch.manual_seed(1)
    # 24 experts for 22 tokens × 3: some experts get no token (empty groups).
    layer = MoE(D, MoEConfig(num_experts=24, top_k=3, d_ff=16, shared_expert=True), impl=impl)
    x = torch.randn(2, 11, D, requires_grad=True)
    y, _ = layer(x)
    x2 = x.reshape(-1, D)
    rows = []
    for m in range(x2.shape[0]):
        p = torch.softmax(x2[m] @ layer.router.weight.T, dim=-1)
        top, idx = p.topk(3)
        top = top / top.sum()
        out = layer.shared(x2[m])
        for g, e in zip(top, idx.tolist()):
            gate, up = (x2[m] @ layer.w_in[e]).chunk(2)
            out = out + g * (F.silu(gate) * up) @ layer.w_out[e]
        rows.append(out)
    ref = torch.stack(rows).reshape(x.shape)
    assert rel_rms(y, ref) < 1e-5
    cot = torch.randn_like(y)
    g_a = torch.autograd.grad(y, (x, layer.w_in, layer.router.weight), cot)
    g_b = torch.autograd.grad(ref, (x, layer.w_in, layer.router.weight), cot)
    for a, b in zip(g_a, g_b):
        assert rel_rms(a, b) < 1e-5
    want = "grouped_mm" if impl == "triton" else "reference"
    assert layer.resolved_impls == {"moe.grouped_experts": want}


def test_moe_grouped_mm_refuses_unaligned_widths_and_auto_keeps_the_loop_on_cpu():
    x = torch.randn(1, 4, D)
    with pytest.raises(ValueError, match="multiples of 16 bytes"):
        MoE(D, MoEConfig(num_experts=4, top_k=1, d_ff=5), impl="triton")(x)
    layer = MoE(D, MoEConfig(num_experts=4, top_k=1, d_ff=16))  # impl="auto"
    layer(x)
    assert layer.resolved_impls == {"moe.grouped_experts": "reference"}


def test_cdmoe_auto_impl_runs_what_resolve_impl_picks_on_this_device():
    layer = CDMoE(D, CDMoEConfig(num_experts=16, top_k=2))
    x = torch.randn(1, 3, D)
    layer(x)
    assert layer.resolved_impls == {
        f"cdmoe.{op}": resolve_impl("auto", x.device, IMPLS[op], f"cdmoe.{op}")
        for op in ("product_key_topk", "expert_mix")
    }


def test_moe_aux_loss_equals_coef_for_a_uniform_router():
    layer = MoE(D, MoEConfig(aux_loss_coef=0.05))
    torch.nn.init.zeros_(layer.router.weight)
    _, aux = layer(torch.randn(2, 5, D))
    assert abs(aux.item() - 0.05) < 1e-6


def test_seimoe_matches_its_definition():
    torch.manual_seed(2)
    layer = SEIMoE(D, SEIMoEConfig(num_experts=6, top_k=2, d_ff=16))
    x = torch.randn(2, 5, D)
    y, aux = layer(x)
    x2 = x.reshape(-1, D)
    rows = []
    for m in range(x2.shape[0]):
        p = torch.softmax(layer.router(x2[m]), dim=-1)
        top, idx = p.topk(2)  # not renormalised
        out = torch.sigmoid(layer.shared_gate(x2[m])) * layer.shared(x2[m])
        for g, e in zip(top, idx.tolist()):
            ex = layer.experts[e]
            out = out + g * ex.down(F.silu(ex.up(x2[m])))
        rows.append(out)
    assert rel_rms(y, torch.stack(rows).reshape(x.shape)) < 1e-5
    assert aux.item() == 0.0


def loop_private(x2, down, up, score_fn, n, k, activation=F.silu):
    """Per token and head: all n² sums, top-k, softmax_k, Σ g · w_e with g = act(x·u_e)·p."""
    rows = []
    for m in range(x2.shape[0]):
        out = torch.zeros(x2.shape[1])
        for s1, s2 in score_fn(x2[m]):  # one (s1 [n], s2 [n]) per head
            full = (s1[:, None] + s2[None, :]).flatten()  # expert e = i·n + j
            top, idx = full.topk(k)
            p = torch.softmax(top, dim=-1)
            for pi, e in zip(p, idx.tolist()):
                out = out + activation(x2[m] @ down[e]) * pi * up[e]
        rows.append(out)
    return torch.stack(rows)


@pytest.mark.parametrize("router", ["per_head", "doge"])
def test_cdmoe_private_part_matches_per_token_loop(router):
    torch.manual_seed(3)
    cfg = CDMoEConfig(num_experts=64, top_k=5, num_heads=3, d_retrieval=8, router=router)
    layer = CDMoE(D, cfg)
    x2 = torch.randn(10, D)
    n, half = 8, 4

    def score_fn(xm):
        if router == "doge":
            logits = layer.router(xm)  # [2n]: first n score set 1, next n set 2
            return [(logits[:n], logits[n:])]
        keys = layer.retrieval.sub_keys
        q = layer.retrieval.query(xm).view(3, 8)
        return [(keys[h, 0] @ q[h, :half], keys[h, 1] @ q[h, half:]) for h in range(3)]

    with torch.no_grad():
        got = layer.private(x2)
        ref = loop_private(x2, layer.down.weight, layer.up.weight, score_fn, n, 5)
        y, _ = layer(x2[None])
    assert rel_rms(got, ref) < 1e-5
    assert rel_rms(y[0], layer.shared(x2) + ref) < 1e-5


def test_peer_matches_per_token_loop_indexing_by_expert_id():
    torch.manual_seed(4)
    layer = PEER(D, PEERConfig(num_experts=16, num_heads=2, top_k=3, d_key=4))
    x2 = torch.randn(6, D)
    keys = layer.retrieval.sub_keys

    def score_fn(xm):
        q = layer.retrieval.query(xm).view(2, 4)
        return [(keys[h, 0] @ q[h, :2], keys[h, 1] @ q[h, 2:]) for h in range(2)]

    with torch.no_grad():
        y, _ = layer(x2[None])
        ref = loop_private(x2, layer.down.weight, layer.up.weight, score_fn, 4, 3, F.gelu)
    assert rel_rms(y[0], ref) < 1e-5


def test_pkm_matches_per_token_loop():
    torch.manual_seed(5)
    layer = PKM(D, PKMConfig(num_experts=16, num_heads=2, top_k=3, d_key=4))
    x2 = torch.randn(6, D)
    keys, values = layer.retrieval.sub_keys, layer.values.weight
    rows = []
    with torch.no_grad():
        y, _ = layer(x2[None])
        for m in range(6):
            q = layer.retrieval.query(x2[m]).view(2, 4)
            out = torch.zeros(D)
            for h in range(2):
                full = ((keys[h, 0] @ q[h, :2])[:, None] + (keys[h, 1] @ q[h, 2:])[None]).flatten()
                top, idx = full.topk(3)
                out = out + (torch.softmax(top, -1)[:, None] * values[idx]).sum(0)
            rows.append(out)
    assert rel_rms(y[0], torch.stack(rows)) < 1e-5


def test_doge_routing_of_a_token_ignores_other_tokens():
    torch.manual_seed(6)
    layer = CDMoE(D, CDMoEConfig(num_experts=64, top_k=4, router="doge"))
    x = torch.randn(4, 6, D)
    with torch.no_grad():
        _, idx_batch = layer.route(x.reshape(-1, D))
        idx_batch = idx_batch.view(4, 6, 1, 4)
        for b, t in [(0, 0), (1, 3), (3, 5)]:
            _, idx_alone = layer.route(x[b, t][None])
            assert torch.equal(idx_batch[b, t], idx_alone[0])
        x2 = x.clone()
        x2[1:] = torch.randn(3, 6, D)
        _, idx_other = layer.route(x2.reshape(-1, D))
    assert torch.equal(idx_batch[0], idx_other.view(4, 6, 1, 4)[0])


def test_cdmoe_sub_keys_are_random_so_scores_do_not_tie():
    layer = CDMoE(D, CDMoEConfig(num_experts=64, top_k=4, d_retrieval=8))
    assert layer.retrieval.sub_keys.abs().min() > 0
    with torch.no_grad():
        scores, _ = layer.route(torch.randn(5, D))
    assert (scores[..., :-1] > scores[..., 1:]).all()


def test_cdmoe_active_params_count_shared_retrieval_and_private():
    layer = CDMoE(D, CDMoEConfig(num_experts=64, top_k=4, num_heads=2, d_retrieval=8))
    shared, retrieval = 3 * D * 4 * D, D * 2 * 8 + 2 * 8 * 8
    assert layer.active_params() == shared + retrieval + 2 * D * 2 * 4
    doge = CDMoE(D, CDMoEConfig(num_experts=64, top_k=4, router="doge"))
    assert doge.active_params() == shared + D * 16 + 2 * D * 4


@pytest.mark.parametrize("cfg_cls", [CDMoEConfig, PKMConfig, PEERConfig])
def test_non_square_num_experts_is_rejected_with_suggestions(cfg_cls):
    with pytest.raises(ValueError, match=r"num_experts=2048 is not a perfect square; try 1024"):
        cfg_cls(num_experts=2048)


@pytest.mark.parametrize(
    ("make", "bad"),
    [
        (lambda: CDMoEConfig(num_experts=16, top_k=17), "top_k=17"),
        (lambda: PKMConfig(num_experts=16, top_k=0), "top_k=0"),
        (lambda: MoEConfig(num_experts=4, top_k=5), "top_k=5"),
        (lambda: SEIMoEConfig(num_experts=4, top_k=9), "top_k=9"),
        (lambda: MLPConfig(activation="tanh"), "'tanh'"),
        (lambda: PEERConfig(activation="swish"), "'swish'"),
        (lambda: CDMoEConfig(router="view2"), "'view2'"),
        (lambda: CDMoEConfig(d_retrieval=7), "d_retrieval=7"),
        (lambda: MoEConfig(aux_loss_coef=-1.0), "aux_loss_coef=-1.0"),
        (lambda: MLPConfig(d_ff=0), "d_ff=0"),
    ],
)
def test_bad_config_raises_value_error_naming_the_value(make, bad):
    with pytest.raises(ValueError, match=bad):
        make()


def test_build_ffn_rejects_unknown_name_and_bad_impl():
    @dataclasses.dataclass(frozen=True)
    class Nope:
        name: str = "nope"

    with pytest.raises(ValueError, match="unknown ffn 'nope'; valid: "):
        build_ffn(D, Nope())
    with pytest.raises(ValueError, match="impl='fast'"):
        build_ffn(D, MLPConfig(), impl="fast")
    layer = build_ffn(D, CDMoEConfig(num_experts=16, top_k=2), impl="triton")
    with pytest.raises(ValueError, match="impl='triton'"):
        layer(torch.randn(1, 2, D))
