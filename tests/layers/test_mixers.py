"""Sequence mixers: the layer contract for every registered one; DMA and Based claims; bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from layer_contract import MIXER_CHECKS, B, D, T, check_id, decode, inputs, make_mixer

from wm_bench.kernels._impl import resolve_impl
from wm_bench.kernels.attention.api import AVAILABLE as ATTENTION_IMPLS
from wm_bench.kernels.rope.api import AVAILABLE as ROPE_IMPLS
from wm_bench.kernels.ssd.api import AVAILABLE as SSD_IMPLS
from wm_bench.layers.mixers import MIXERS, build_mixer
from wm_bench.layers.mixers.based import Based, BasedConfig, taylor_features
from wm_bench.layers.mixers.dma import DMA, DMAConfig
from wm_bench.layers.mixers.qcattn import QCAttn, QCAttnConfig
from wm_bench.layers.mixers.ssd import SSD, SSDConfig
from wm_bench.layers.norm import GatedRMSNorm, rms_norm
from wm_bench.testing import rel_rms

CASES: list[tuple[str, dict]] = (
    [(name, {}) for name in MIXERS]
    + [
        ("qcattn", {"n_kv_heads": 2}),
        ("qcattn", {"n_kv_heads": 1, "qk_norm": True, "position": "none"}),
        ("ssd", {"position": "none"}),
        ("ssd", {"n_groups": 1, "d_state": 16}),
        ("ssd", {"chunk_size": 4}),
        ("ssd", {"expand": 2, "n_groups": 2, "d_state": 6, "chunk_size": 5}),
        ("mamba2", {"head_dim": 16, "d_state": 8, "n_groups": 2, "chunk_size": 4}),
        ("mamba2", {"norm_before_gate": True, "chunk_size": 5}),
        ("dma", {"n_kv_heads": 2, "window": 5, "a_init": 0.3}),
        ("dma", {"n_kv_heads": 2, "window": 5, "a_init": 0.3, "qk_temperature": 0.5}),
        ("based", {"window": 4}),
        ("based", {"window": 4, "n_heads": 2, "window_heads": 2, "position": "rope"}),
    ]
    + [
        ("dma", {"window": 5, "tie_break": tie, "bias_form": form, "a_init": a})
        for tie in ("smaller_index", "larger_index")
        for form in ("exp", "linear")
        for a in (0.0, 0.5)
    ]
)
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in CASES]


def make(name: str, dtype: torch.dtype = torch.float64, **kw: object) -> torch.nn.Module:
    return make_mixer(name, kw, dtype)


@pytest.mark.parametrize("check", MIXER_CHECKS, ids=check_id)
@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_every_registered_mixer_keeps_the_layer_contract(name: str, kw: dict, check) -> None:
    check(name, kw)


AUTO_OPS = {
    "qcattn": {"attention": ATTENTION_IMPLS, "rope": ROPE_IMPLS},
    "ssd": {"chunk_ssd": SSD_IMPLS, "rope": ROPE_IMPLS},
}


@pytest.mark.parametrize("name", sorted(AUTO_OPS))
def test_auto_impl_runs_what_resolve_impl_picks_on_this_device(name: str) -> None:
    mixer = make(name, torch.float32)
    x = inputs(torch.float32)
    with torch.no_grad():
        mixer(x)
    ops = AUTO_OPS[name]
    assert mixer.resolved_impls == {op: resolve_impl("auto", x.device, ops[op], op) for op in ops}


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_every_parameter_receives_gradient(name: str, kw: dict) -> None:
    mixer = make(name, **kw)
    y = mixer(inputs())
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in mixer.named_parameters():
        if name == "dma" and pname == "dt_proj.weight" and mixer.cfg.a_init == 0.0:
            assert torch.count_nonzero(p.grad) == 0  # ∂b/∂dt ∝ A = 0 (docs/spec.md §2.4)
        else:
            assert p.grad.abs().max() > 0, pname


@pytest.mark.parametrize("name", list(MIXERS))
def test_step_decoding_matches_forward_in_float32(name: str) -> None:
    mixer = make(name, dtype=torch.float32)
    x = inputs(torch.float32)
    with torch.no_grad():
        assert rel_rms(decode(mixer, x), mixer(x)) < 1e-4


# --- DMA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias_form", ["exp", "linear"])
@pytest.mark.parametrize("window", [None, T, 16])
def test_dma_at_a_zero_within_window_equals_qk_norm_attention(
    bias_form: str, window: int | None
) -> None:
    dma = make("dma", bias_form=bias_form, window=window)
    attn = QCAttn(D, QCAttnConfig(qk_norm=True)).double()
    missing, unexpected = attn.load_state_dict(dma.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"dt_proj.weight", "A"}
    x = inputs()
    assert rel_rms(dma(x), attn(x)) < 1e-12


def test_dma_w_delta_gets_exactly_zero_gradient_at_a_zero_while_a_learns() -> None:
    dma = make("dma", window=5)  # T > window: the mask is the tie rule, the bias still matters
    y = dma(inputs())
    (y * torch.randn_like(y)).sum().backward()
    assert torch.count_nonzero(dma.dt_proj.weight.grad) == 0
    assert (dma.A.grad.abs() > 0).all()


@pytest.mark.parametrize("tie_break", ["smaller_index", "larger_index"])
def test_dma_at_a_zero_keeps_the_keys_the_tie_rule_picks(tie_break: str) -> None:
    w = 4
    dma = make("dma", window=w, tie_break=tie_break, bias_form="linear")
    q, k, v = dma._project(inputs(), offset=0)
    got = dma._attend_biased(q, k, v, dma.key_bias(v))
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    keep = (j <= i) & ((j < w) if tie_break == "smaller_index" else (j > i - w))
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / dma.head_dim**0.5
    p = scores.masked_fill(~keep, float("-inf")).softmax(-1)
    expected = torch.einsum("bhij,bjhd->bihd", p, v).flatten(2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_dma_bias_forms_differ_only_by_f() -> None:
    exp_form, linear_form = make("dma", a_init=0.7), make("dma", a_init=0.7, bias_form="linear")
    v = torch.randn(B, T, 4, 8, dtype=torch.float64)
    torch.testing.assert_close(exp_form.key_bias(v), linear_form.key_bias(v).exp())
    assert exp_form.key_bias(v).shape == (B, 4, T)


def test_dma_temperature_scales_the_scores_and_keeps_old_hashes() -> None:
    from wm_bench.config import config_hash

    # hashes of configs written before qk_temperature existed are unchanged
    assert config_hash(DMAConfig()) == "888a97acd855f9a7"
    assert config_hash(DMAConfig(n_heads=1, window=8)) == "edf3eefc7202ce70"
    assert config_hash(DMAConfig(qk_temperature=1.0)) != config_hash(DMAConfig())
    plain, hot = make("dma", window=5), make("dma", window=5, qk_temperature=1.0)
    hot.load_state_dict(plain.state_dict(), strict=False)
    x = inputs()
    assert rel_rms(hot(x), plain(x)) < 1e-12  # τ = 1 is the plain layer
    with torch.no_grad():
        hot.log_temperature.fill_(math.log(3.0))
    q, k, v = hot._project(x, offset=0)
    q0, k0, _ = plain._project(x, offset=0)
    torch.testing.assert_close(q, 3.0 * q0)
    torch.testing.assert_close(k, k0)


# --- Based -------------------------------------------------------------------------------------


def test_taylor_features_give_second_order_exp_inner_product() -> None:
    q, k = torch.randn(5, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    s = (q * k).sum(-1) / 4.0  # q·k/√F, F = 16
    phi = (taylor_features(q) * taylor_features(k)).sum(-1)
    torch.testing.assert_close(phi, 1 + s + s * s / 2)
    assert taylor_features(q).shape == (5, 1 + 16 + 256)


def test_based_window_branch_is_a_sliding_window() -> None:
    w = 3
    based = Based(D, BasedConfig(window=w)).double()
    q, k, v = (torch.randn(B, T, 1, D, dtype=torch.float64) for _ in range(3))
    got = based._window_attend(q, k, v)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    keep = (j <= i) & (j > i - w)
    p = (torch.einsum("bihd,bjhd->bhij", q, k) / D**0.5).masked_fill(~keep, float("-inf"))
    expected = torch.einsum("bhij,bjhd->bihd", p.softmax(-1), v).flatten(2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_gated_rmsnorm_normalises_each_group_of_the_gated_values() -> None:
    y, z = torch.randn(3, 12, dtype=torch.float64), torch.randn(3, 12, dtype=torch.float64)
    got = GatedRMSNorm(12, group_size=4)(y, z)
    expected = rms_norm((y * F.silu(z)).view(3, 3, 4), None, 1e-6).view(3, 12)
    torch.testing.assert_close(got, expected)
    before = GatedRMSNorm(12, norm_before_gate=True)(y, z)
    torch.testing.assert_close(before, rms_norm(y, None, 1e-6) * F.silu(z))


# --- registry and configs ----------------------------------------------------------------------


def test_build_mixer_parses_a_mapping_strictly() -> None:
    mixer = build_mixer(D, {"name": "ssd", "position": "none", "chunk_size": 8})
    assert isinstance(mixer, SSD) and mixer.cfg == SSDConfig(position="none", chunk_size=8)
    with pytest.raises(ValueError, match="chunk"):
        build_mixer(D, {"name": "ssd", "chunk": 8})


def test_explicit_triton_impl_raises_instead_of_falling_back() -> None:
    mixer = build_mixer(D, QCAttnConfig(), impl="triton")
    with pytest.raises(ValueError, match="triton"):
        mixer(inputs(torch.float32))
    with pytest.raises(ValueError, match="cuda"):
        build_mixer(D, QCAttnConfig(), impl="cuda")


def test_ssd_derives_sizes_from_d_model_and_config() -> None:
    ssd = SSD(D, SSDConfig())
    assert (ssd.n_heads, ssd.head_dim, ssd.d_state, ssd.n_groups) == (4, 8, 8, 4)
    grouped = SSD(D, SSDConfig(expand=2, n_groups=1, d_state=16))
    assert (grouped.head_dim, grouped.d_state, grouped.n_groups) == (16, 16, 1)
    mamba = build_mixer(D, {"name": "mamba2"})
    assert (mamba.n_heads, mamba.head_dim, mamba.d_state) == (1, 64, 128)  # head_dim clipped


@pytest.mark.parametrize(
    ("build", "bad"),
    [
        (lambda: build_mixer(D, {"name": "mamba3"}), "mamba3"),
        (lambda: build_mixer(D, dataclasses.replace(QCAttnConfig(), n_heads=2)), None),
        (lambda: SSDConfig(n_heads=4, n_groups=3), "n_groups=3"),
        (lambda: QCAttn(30, QCAttnConfig()), "d_model=30"),
        (lambda: SSD(30, SSDConfig()), "30"),
        (lambda: DMA(30, DMAConfig()), "d_model=30"),
        (lambda: QCAttn(20, QCAttnConfig()), "head_dim=5"),
        (lambda: SSDConfig(d_state=5), "d_state=5"),
        (lambda: SSD(40, SSDConfig(n_heads=8)), "N=5"),
        (lambda: QCAttnConfig(n_heads=4, n_kv_heads=3), "n_kv_heads=3"),
        (lambda: QCAttnConfig(position="alibi"), "alibi"),
        (lambda: DMAConfig(bias_form="softmax"), "softmax"),
        (lambda: DMAConfig(tie_break="random"), "random"),
        (lambda: DMAConfig(window=0), "window=0"),
        (lambda: DMAConfig(qk_temperature=0.0), "qk_temperature=0.0"),
        (lambda: DMAConfig(qk_temperature=float("nan")), "qk_temperature=nan"),
        (lambda: DMAConfig(qk_norm=False, qk_temperature=2.0), "qk_norm=True"),
        (lambda: BasedConfig(feature_dim=0), "feature_dim=0"),
        (lambda: build_mixer(D, {"name": "mamba2", "n_groups": 3}), "n_groups=3"),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(build, bad: str | None) -> None:
    if bad is None:  # a valid replacement builds fine: the raise cases below are not vacuous
        assert isinstance(build(), QCAttn)
        return
    with pytest.raises(ValueError, match=bad.replace("(", r"\(")):
        build()
