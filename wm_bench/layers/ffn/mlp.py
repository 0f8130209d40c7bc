"""Dense gated MLP (SwiGLU, Shazeer 2020, arXiv 2002.05202) and helpers shared by the FFN family."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wm_bench.layers.base import INIT_STD, Layer, check_name

Activation = Literal["silu", "gelu", "relu", "identity"]
ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "identity": lambda h: h,
}


def default_d_ff(d_model: int) -> int:
    """Llama's SwiGLU width: 8/3·d rounded up to a multiple of 64 (≈ the params of a 4·d MLP)."""
    return 64 * math.ceil(8 * d_model / 3 / 64)


def check_positive_int(cls: str, field: str, value: object, *, allow_none: bool = False) -> None:
    """Raise ValueError unless `value` is an int ≥ 1 (or None when allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        hint = "a positive int or None" if allow_none else "a positive int"
        raise ValueError(f"{cls}.{field}={value!r} must be {hint}")


def check_choice(cls: str, field: str, value: object, valid: tuple[str, ...]) -> None:
    """Raise ValueError unless `value` is one of `valid`."""
    if value not in valid:
        raise ValueError(f"{cls}.{field}={value!r} is not valid; valid: {list(valid)}")


def check_top_k(cls: str, top_k: object, num_experts: int) -> None:
    """Raise ValueError unless 1 ≤ top_k ≤ num_experts."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= num_experts:
        raise ValueError(f"{cls}.top_k={top_k!r} must satisfy 1 ≤ top_k ≤ N = {num_experts}")


def linear(d_in: int, d_out: int) -> nn.Linear:
    """A bias-free linear layer initialised N(0, 0.02)."""
    layer = nn.Linear(d_in, d_out, bias=False)
    nn.init.normal_(layer.weight, std=INIT_STD)
    return layer


def zero_aux(x: Tensor) -> Tensor:
    """The aux loss of a layer without one: a fp32 scalar 0 on x's device."""
    return torch.zeros((), dtype=torch.float32, device=x.device)


class GatedMLP(nn.Module):
    """act(x W_gate) ⊙ (x W_up) W_down with two [D, F] input projections.

    Two projections rather than one [D, 2F] split in halves: the halves are strided views
    (slower elementwise on the CPU) whose gradients must be concatenated back, which made the
    MLP 13–20 % slower forward + backward at D = 128, F = 512 on 2 CPU threads (and our llama
    preset slower than transformers' Llama, which also keeps them apart). Same math and init
    distribution (each weight N(0, 0.02)).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu") -> None:
        super().__init__()
        self.d_model, self.d_ff = d_model, d_ff
        self.act = ACTIVATION_FNS[activation]
        self.w_gate = linear(d_model, d_ff)
        self.w_up = linear(d_model, d_ff)
        self.w_out = linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x [..., D]. Returns: y [..., D]."""
        return self.w_out(self.act(self.w_gate(x)) * self.w_up(x))

    def num_params(self) -> int:
        """3·D·F."""
        return 3 * self.d_model * self.d_ff


@dataclass(frozen=True)
class MLPConfig:
    """Dense gated MLP d → d_ff → d.

    d_ff None means default_d_ff(d): 8/3·d rounded up to a multiple of 64 (Llama convention).
    """

    name: Literal["mlp"] = "mlp"
    d_ff: int | None = None
    activation: Activation = "silu"

    def __post_init__(self) -> None:
        check_name(self, "mlp")
        check_positive_int("MLPConfig", "d_ff", self.d_ff, allow_none=True)
        check_choice("MLPConfig", "activation", self.activation, tuple(ACTIVATION_FNS))


class MLP(Layer):
    """Dense gated MLP FFN; every parameter is active for every token."""

    def __init__(
        self, d_model: int, cfg: MLPConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)  # no kernel op: matmuls
        self.d_ff = cfg.d_ff if cfg.d_ff is not None else default_d_ff(d_model)
        self.mlp = GatedMLP(d_model, self.d_ff, cfg.activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0 (fp32 scalar)."""
        return self.mlp(x), zero_aux(x)

    def active_params(self) -> int:
        """All parameters: 3·D·d_ff."""
        return self.mlp.num_params()
