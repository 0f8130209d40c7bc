"""SEIMoE, the paper's "MoE" baseline (Shi & Wu 2024, arXiv 2412.11834): a loop over experts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wm_bench.layers.base import Layer, check_name
from wm_bench.layers.ffn.mlp import check_positive_int, check_top_k, linear, zero_aux


@dataclass(frozen=True)
class SEIMoEConfig:
    """Softmax router, top-k probabilities NOT renormalised, non-gated SiLU experts.

    Plus one shared expert of the same shape, gated by sigmoid(linear(x)).
    d_ff None means 4·d (a plain, non-gated MLP's usual width). No aux loss.
    """

    name: Literal["seimoe"] = "seimoe"
    num_experts: int = 16
    top_k: int = 2
    d_ff: int | None = None

    def __post_init__(self) -> None:
        check_name(self, "seimoe")
        check_positive_int("SEIMoEConfig", "num_experts", self.num_experts)
        check_top_k("SEIMoEConfig", self.top_k, self.num_experts)
        check_positive_int("SEIMoEConfig", "d_ff", self.d_ff, allow_none=True)


class PlainMLP(nn.Module):
    """Non-gated MLP: SiLU(x W_1) W_2."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.up = linear(d_model, d_ff)
        self.down = linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x [..., D]. Returns: [..., D]."""
        return self.down(F.silu(self.up(x)))


class SEIMoE(Layer):
    """The slow baseline on purpose: per expert, gather its tokens, run its MLP, index_add back."""

    def __init__(
        self, d_model: int, cfg: SEIMoEConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)  # the loop is the method
        self.d_ff = cfg.d_ff if cfg.d_ff is not None else 4 * d_model
        self.router = linear(d_model, cfg.num_experts)
        self.experts = nn.ModuleList(PlainMLP(d_model, self.d_ff) for _ in range(cfg.num_experts))
        self.shared = PlainMLP(d_model, self.d_ff)
        self.shared_gate = linear(d_model, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0 (fp32 scalar)."""
        x2 = x.reshape(-1, x.shape[-1])  # [M, D]
        probs = torch.softmax(self.router(x2).float(), dim=-1)  # [M, E]
        top, experts = probs.topk(self.cfg.top_k, dim=-1)  # [M, k], not renormalised
        y = torch.zeros_like(x2)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(experts == e)  # [m] each
            out = expert(x2[token]) * top[token, slot, None].to(x.dtype)  # [m, D]
            y.index_add_(0, token, out)
        y = y + torch.sigmoid(self.shared_gate(x2)) * self.shared(x2)
        return y.reshape(x.shape), zero_aux(x)

    def active_params(self) -> int:
        """Router D·N + top_k experts of 2·D·F + shared expert 2·D·F + its gate D."""
        per_expert = 2 * self.d_model * self.d_ff
        return (
            self.router.weight.numel()
            + (self.cfg.top_k + 1) * per_expert
            + self.shared_gate.weight.numel()
        )
