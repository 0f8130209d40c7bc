"""Product-key memory (Lample et al. 2019, "Large Memory Layers with Product Keys", 1907.05242)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from wm_bench.layers.ffn._product_keys import (
    RetrievalLayer,
    check_product_keys,
    embedding_tables,
    scores_to_weights,
)
from wm_bench.layers.ffn.mlp import zero_aux


@dataclass(frozen=True)
class PKMConfig:
    """Product-key memory: per head, top-k of N = n² keys, softmax over the k, weighted value sum.

    num_experts (N memory slots) must be a perfect square. d_key is the query width R per head (two
    halves of R/2). No query BatchNorm (it would couple tokens in training mode).
    """

    name: Literal["pkm"] = "pkm"
    num_experts: int = 1024
    num_heads: int = 4
    top_k: int = 8
    d_key: int = 128

    def __post_init__(self) -> None:
        check_product_keys(self, "pkm", "d_key")


class PKM(RetrievalLayer):
    """y = Σ_h Σ_i softmax_k(s_h)_i · V[e_{h,i}]: an EmbeddingBag sum over He·k value rows."""

    def __init__(
        self, d_model: int, cfg: PKMConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.retrieval = self.product_keys(cfg.d_key)
        (self.values,) = embedding_tables(cfg.num_experts, d_model, 1)  # [N, D]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0 (fp32 scalar)."""
        topk_impl = self.topk_impl(x.device)
        x2 = x.reshape(-1, x.shape[-1])  # [M, D]
        scores, indices = self.retrieval(x2, topk_impl)  # [M, He, k] each
        weights = scores_to_weights(scores).to(self.values.weight.dtype)  # [M, He, k]
        y = F.embedding_bag(
            indices.flatten(1),  # [M, He·k]
            self.values.weight,
            per_sample_weights=weights.flatten(1),
            mode="sum",
        )  # [M, D]
        return y.to(x.dtype).reshape(x.shape), zero_aux(x)

    def active_params(self) -> int:
        """Query projection and sub-keys (scored by every token) + He·k value rows of D."""
        cfg = self.cfg
        return self.retrieval.num_params() + cfg.num_heads * cfg.top_k * self.d_model
