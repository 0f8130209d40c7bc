"""PEER: single-neuron experts (He 2024, "Mixture of a Million Experts", arXiv 2407.04153)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from wm_bench.layers.ffn._product_keys import (
    RetrievalLayer,
    check_product_keys,
    embedding_tables,
)
from wm_bench.layers.ffn.mlp import (
    ACTIVATION_FNS,
    Activation,
    check_choice,
    zero_aux,
)


@dataclass(frozen=True)
class PEERConfig:
    """PEER: per head, product-key top-k of N = n² single-neuron experts, softmax over the k.

    num_experts must be a perfect square; d_key is the query width per head. GELU as in the paper;
    no query BatchNorm (it would couple tokens in training mode).
    """

    name: Literal["peer"] = "peer"
    num_experts: int = 1024
    num_heads: int = 4
    top_k: int = 8
    d_key: int = 128
    activation: Activation = "gelu"

    def __post_init__(self) -> None:
        check_product_keys(self, "peer", "d_key")
        check_choice("PEERConfig", "activation", self.activation, tuple(ACTIVATION_FNS))


class PEER(RetrievalLayer):
    """y = Σ_h Σ_i softmax_k(s_h)_i·act(x·u_e)·w_e, e = e_{h,i} the EXPERT id (docs/spec.md §8)."""

    def __init__(
        self, d_model: int, cfg: PEERConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.retrieval = self.product_keys(cfg.d_key)
        self.down, self.up = embedding_tables(cfg.num_experts, d_model, 2)  # u_e, w_e [N, D]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0 (fp32 scalar)."""
        topk_impl, mix_impl = self.topk_impl(x.device), self.mix_impl(x.device)
        x2 = x.reshape(-1, x.shape[-1])  # [M, D]
        scores, indices = self.retrieval(x2, topk_impl)  # [M, He, k] each
        y = self.mix_experts(x2, scores, indices, self.cfg.activation, mix_impl)
        return y.reshape(x.shape), zero_aux(x)

    def active_params(self) -> int:
        """Query projection and sub-keys (scored by every token) + 2·D·He·k expert rows."""
        cfg = self.cfg
        return self.retrieval.num_params() + 2 * self.d_model * cfg.num_heads * cfg.top_k
