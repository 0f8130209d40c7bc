"""The layer contract of CONTRIBUTING.md as checks that any registered mixer or FFN must pass.

Each check takes a registry name and the config's keyword arguments, looks the layer up in
`MIXERS` / `FFNS` when it runs (so a layer registered by a test, e.g. with monkeypatch, is
checked like a shipped one) and needs no kernel: a layer without kernel ops passes them all.
tests/layers/test_mixers.py and test_ffn.py run them over every registered layer,
tests/layers/test_contract.py over toy layers defined in the test file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, get_args

import pytest
import torch

from wm_bench.config import BlockConfig, ModelConfig, config_hash, from_dict, to_dict
from wm_bench.flops import config_flops_per_token
from wm_bench.kernels._impl import Impl
from wm_bench.layers.ffn import FFNS, build_ffn
from wm_bench.layers.mixers import MIXERS, build_mixer
from wm_bench.testing import assert_close

B, T, D = 2, 13, 32
IMPL_NAMES = frozenset(get_args(Impl))  # what `resolved_impls` may report an op ran with

Check = Callable[[str, dict[str, Any]], None]


def make_mixer(
    name: str, kw: dict[str, Any], dtype: torch.dtype = torch.float64, impl: str = "auto"
) -> torch.nn.Module:
    """The registered mixer `name` with config `kw`, seeded, in `dtype`."""
    torch.manual_seed(0)
    return build_mixer(D, MIXERS[name][1](**kw), impl=impl).to(dtype)


def make_ffn(name: str, kw: dict[str, Any], impl: str = "auto") -> torch.nn.Module:
    """The registered FFN `name` with config `kw`, seeded."""
    torch.manual_seed(0)
    return build_ffn(D, FFNS[name][1](**kw), impl=impl)


def inputs(dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
    """x [B, T, D] from its own generator."""
    return torch.randn(B, T, D, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def decode(mixer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token `step` over x [B, T, D] from `init_state`: y [B, T, D]."""
    state = mixer.init_state(x.shape[0], device=x.device, dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t : t + 1], state)
        assert y_t.shape == (x.shape[0], 1, x.shape[2])
        ys.append(y_t)
    return torch.cat(ys, dim=1)


def _one_layer_model(block: BlockConfig) -> ModelConfig:
    return ModelConfig(vocab_size=64, d_model=D, n_layers=2, pattern="M", blocks={"M": block})


def _check_config(registry: dict[str, tuple[type, type]], name: str, kw: dict[str, Any]) -> Any:
    """Frozen dataclass, `name` first and equal to the registry key, JSON fields, name checked."""
    cfg_cls = registry[name][1]
    cfg = cfg_cls(**kw)
    assert dataclasses.fields(cfg_cls)[0].name == "name" and cfg.name == name
    as_dict = dataclasses.asdict(cfg)
    assert json.loads(json.dumps(as_dict)) == as_dict
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="'other'"):
        cfg_cls(**{**kw, "name": "other"})
    return cfg


def _check_impls(layer: torch.nn.Module, *, explicit: str | None = None) -> None:
    impls = layer.resolved_impls
    assert isinstance(impls, dict) and all(isinstance(op, str) for op in impls)
    assert set(impls.values()) <= IMPL_NAMES, impls
    if explicit is not None:
        assert set(impls.values()) <= {explicit}, impls


# ---- mixers ---------------------------------------------------------------------------------


def mixer_config_is_a_strict_registered_dataclass(name: str, kw: dict[str, Any]) -> None:
    """The config is frozen, named, JSON; a model holding it round-trips through its dict."""
    cfg = _check_config(MIXERS, name, kw)
    assert type(build_mixer(D, cfg)) is MIXERS[name][0]
    with pytest.raises(ValueError, match="no_such_field"):
        build_mixer(D, {**dataclasses.asdict(cfg), "no_such_field": 1})
    model = _one_layer_model(BlockConfig(mixer=cfg, ffn=None))
    assert from_dict(ModelConfig, to_dict(model)) == model
    assert len(config_hash(model)) == 16


def mixer_forward_keeps_shape_and_gives_finite_values_and_gradients(
    name: str, kw: dict[str, Any]
) -> None:
    """y [B, T, D] in x's dtype, finite and not all zero; finite gradients everywhere."""
    mixer = make_mixer(name, kw)
    x = inputs().requires_grad_()
    y = mixer(x)
    assert y.shape == (B, T, D) and y.dtype == x.dtype
    assert torch.isfinite(y).all() and y.abs().max() > 0
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def mixer_output_is_causal(name: str, kw: dict[str, Any]) -> None:
    """Changing the inputs from position t on leaves y[:, :t] alone and changes y[:, t:]."""
    mixer = make_mixer(name, kw)
    x = inputs()
    for t in (1, 7):
        changed = x.clone()
        changed[:, t:] = inputs(seed=2)[:, t:]
        with torch.no_grad():
            y, y_changed = mixer(x), mixer(changed)
        scale = y.abs().max().item()
        torch.testing.assert_close(y_changed[:, :t], y[:, :t], rtol=0, atol=1e-6 * scale)
        assert (y_changed[:, t:] - y[:, t:]).abs().max() > 1e-3 * scale


def mixer_step_decoding_matches_forward_in_float64(name: str, kw: dict[str, Any]) -> None:
    """`init_state` + `step` token by token gives `forward`'s output."""
    mixer = make_mixer(name, kw)
    x = inputs()
    with torch.no_grad():
        assert_close(decode(mixer, x), mixer(x), tol=1e-10, what=f"{name} decode")


def mixer_reports_the_impls_it_ran(name: str, kw: dict[str, Any]) -> None:
    """`resolved_impls` maps op → an impl name, after forward and step; an explicit impl is
    what every op ran."""
    x = inputs(torch.float32)
    with torch.no_grad():
        auto = make_mixer(name, kw, torch.float32)
        auto(x)
        decode(auto, x[:, :2])
        _check_impls(auto)
        reference = make_mixer(name, kw, torch.float32, impl="reference")
        reference(x)
        _check_impls(reference, explicit="reference")
    with pytest.raises(ValueError, match="no_such_impl"):
        make_mixer(name, kw, impl="no_such_impl")


def mixer_reports_its_mixing_flops(name: str, kw: dict[str, Any]) -> None:
    """`mixing_flops_per_token(T)` is an int ≥ 0 (None: not modelled) and the model's FLOPs
    count adds it once per layer (or lists the mixer as unknown)."""
    mixer = make_mixer(name, kw)
    per_len = {n: mixer.mixing_flops_per_token(n) for n in (1, T, 4 * T)}
    model = _one_layer_model(BlockConfig(mixer=mixer.cfg, ffn=None))
    counted = config_flops_per_token(model, T)
    if per_len[T] is None:
        assert set(per_len.values()) == {None}
        assert counted["unknown_mixers"] == [type(mixer).__name__]
        return
    for f in per_len.values():
        assert isinstance(f, int) and not isinstance(f, bool) and f >= 0
    assert per_len[1] <= per_len[T] <= per_len[4 * T]  # never less work for a longer context
    assert counted["unknown_mixers"] == [] and counted["mixing_flops"] == 2 * per_len[T]


MIXER_CHECKS: tuple[Check, ...] = (
    mixer_config_is_a_strict_registered_dataclass,
    mixer_forward_keeps_shape_and_gives_finite_values_and_gradients,
    mixer_output_is_causal,
    mixer_step_decoding_matches_forward_in_float64,
    mixer_reports_the_impls_it_ran,
    mixer_reports_its_mixing_flops,
)


# ---- FFNs -----------------------------------------------------------------------------------


def ffn_config_is_a_strict_registered_dataclass(name: str, kw: dict[str, Any]) -> None:
    """The config is frozen, named, JSON; a model holding it round-trips through its dict."""
    cfg = _check_config(FFNS, name, kw)
    assert type(build_ffn(D, cfg)) is FFNS[name][0]
    model = _one_layer_model(BlockConfig(mixer=MIXERS["qcattn"][1](), ffn=cfg))
    assert from_dict(ModelConfig, to_dict(model)) == model


def ffn_runs_and_backprops_finite(name: str, kw: dict[str, Any]) -> None:
    """y [B, T, D] and a scalar aux loss, finite; finite gradients into x and every parameter."""
    layer = make_ffn(name, kw)
    x = torch.randn(2, 7, D, requires_grad=True)
    y, aux = layer(x)
    assert y.shape == x.shape and aux.shape == ()
    assert torch.isfinite(y).all() and torch.isfinite(aux)
    (y * torch.randn_like(y)).sum().add(aux).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def ffn_is_tokenwise(name: str, kw: dict[str, Any]) -> None:
    """A token's output depends on that token only: not on later ones, nor on other rows."""
    layer = make_ffn(name, kw)
    x = torch.randn(3, 9, D)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(3, 5, D)  # later positions change
    x2[2] = torch.randn(9, D)  # another sequence of the batch changes
    with torch.no_grad():
        y, _ = layer(x)
        y2, _ = layer(x2)
    assert torch.allclose(y[:2, :4], y2[:2, :4], atol=1e-6, rtol=1e-5)


def ffn_active_params_are_at_most_total(name: str, kw: dict[str, Any]) -> None:
    """0 < active_params() ≤ the layer's parameter count."""
    layer = make_ffn(name, kw)
    assert 0 < layer.active_params() <= sum(p.numel() for p in layer.parameters())


def ffn_reports_the_impls_it_ran(name: str, kw: dict[str, Any]) -> None:
    """`resolved_impls` maps op → an impl name; an explicit impl is what every op ran."""
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        auto = make_ffn(name, kw)
        auto(x)
        _check_impls(auto)
        reference = make_ffn(name, kw, impl="reference")
        reference(x)
        _check_impls(reference, explicit="reference")
    with pytest.raises(ValueError, match="no_such_impl"):
        make_ffn(name, kw, impl="no_such_impl")


FFN_CHECKS: tuple[Check, ...] = (
    ffn_config_is_a_strict_registered_dataclass,
    ffn_runs_and_backprops_finite,
    ffn_is_tokenwise,
    ffn_active_params_are_at_most_total,
    ffn_reports_the_impls_it_ran,
)


def check_id(check: Check) -> str:
    """A check's test id: its name."""
    return check.__name__
