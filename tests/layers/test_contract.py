"""The layer contract is enough: a kernel-free mixer and FFN written here, registered for the
test, pass every generic check the shipped layers pass (tests/layers/layer_contract.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
import torch
from layer_contract import (
    FFN_CHECKS,
    MIXER_CHECKS,
    check_id,
    mixer_output_is_causal,
    mixer_step_decoding_matches_forward_in_float64,
)
from torch import nn

from wm_bench.layers.base import Layer, check_name
from wm_bench.layers.ffn import FFNS
from wm_bench.layers.mixers import MIXERS


@dataclass(frozen=True)
class CumMeanConfig:
    """Causal cumulative mean: y_t = W (s · mean_{j ≤ t} x_j)."""

    name: Literal["cummean"] = "cummean"
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_name(self, "cummean")
        if not self.scale > 0:
            raise ValueError(f"CumMeanConfig.scale={self.scale!r} is invalid; valid: a float > 0")


class CumMean(Layer):
    """The running mean of the inputs, projected: no kernel, a state of one running sum."""

    def __init__(
        self, d_model: int, cfg: CumMeanConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, T, D]. Returns: y [B, T, D], causal."""
        count = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)[:, None]
        return self.out_proj(self.cfg.scale * x.cumsum(1) / count)

    def init_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> dict:
        """{"sum": [B, D] zeros, "count": 0}."""
        zeros = torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)
        return {"sum": zeros, "count": 0}

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Args: x [B, 1, D], state. Returns: (y [B, 1, D], new state)."""
        total, count = state["sum"] + x[:, 0], state["count"] + 1
        y = self.out_proj(self.cfg.scale * total / count).unsqueeze(1)
        return y, {"sum": total, "count": count}

    def mixing_flops_per_token(self, seq_len: int) -> int:
        """One add and one divide per channel; the scale folds into them."""
        return 2 * self.d_model


@dataclass(frozen=True)
class TanhFFNConfig:
    """A one-hidden-layer tanh MLP of width d_ff."""

    name: Literal["tanh_ffn"] = "tanh_ffn"
    d_ff: int = 16

    def __post_init__(self) -> None:
        check_name(self, "tanh_ffn")
        if self.d_ff < 1:
            raise ValueError(f"TanhFFNConfig.d_ff={self.d_ff!r} is invalid; valid: an int ≥ 1")


class TanhFFN(Layer):
    """y = W_2 tanh(W_1 x), every parameter active."""

    def __init__(
        self, d_model: int, cfg: TanhFFNConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.up = nn.Linear(d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0."""
        return self.down(torch.tanh(self.up(x))), torch.zeros((), device=x.device)

    def active_params(self) -> int:
        """All of them: 2 · D · d_ff."""
        return sum(p.numel() for p in self.parameters())


@pytest.fixture
def toy_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the toy mixer and FFN for one test (the registries are plain dicts)."""
    monkeypatch.setitem(MIXERS, "cummean", (CumMean, CumMeanConfig))
    monkeypatch.setitem(FFNS, "tanh_ffn", (TanhFFN, TanhFFNConfig))


@pytest.mark.parametrize("kw", [{}, {"scale": 0.5}], ids=["default", "scale=0.5"])
@pytest.mark.parametrize("check", MIXER_CHECKS, ids=check_id)
def test_a_kernel_free_mixer_passes_the_whole_mixer_contract(toy_layers, check, kw) -> None:
    check("cummean", kw)


@pytest.mark.parametrize("check", FFN_CHECKS, ids=check_id)
def test_a_kernel_free_ffn_passes_the_whole_ffn_contract(toy_layers, check) -> None:
    check("tanh_ffn", {})


def test_the_toy_layers_are_gone_after_the_test() -> None:
    assert "cummean" not in MIXERS and "tanh_ffn" not in FFNS


class PeekingMean(CumMean):
    """A broken CumMean: the mean over the whole sequence, future included."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.cfg.scale * x.mean(1, keepdim=True).expand_as(x))


def test_the_contract_catches_a_mixer_that_reads_the_future(monkeypatch) -> None:
    monkeypatch.setitem(MIXERS, "cummean", (PeekingMean, CumMeanConfig))

    for check in (mixer_output_is_causal, mixer_step_decoding_matches_forward_in_float64):
        with pytest.raises(AssertionError):
            check("cummean", {})
