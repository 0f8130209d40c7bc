"""Product-key memory (Lample et al. 2019, "Large Memory Layers with Product Keys", 1907.05242)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from wm_bench.layers.ffn._product_keys import (
    ProductKeyRetrieval,
    check_even,
    check_square,
    scores_to_weights,
)
from wm_bench.layers.ffn.mlp import (
    INIT_STD,
    check_layer_impl,
    check_positive_int,
    check_top_k,
    zero_aux,
)


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
        check_square("pkm", self.num_experts)
        check_positive_int("PKMConfig", "num_heads", self.num_heads)
        check_top_k("PKMConfig", self.top_k, self.num_experts)
        check_even("PKMConfig", "d_key", self.d_key)


class PKM(nn.Module):
    """y = Σ_h Σ_i softmax_k(s_h)_i · V[e_{h,i}]: an EmbeddingBag sum over He·k value rows."""

    def __init__(
        self, d_model: int, cfg: PKMConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__()
        self.cfg, self.layer_idx, self.impl = cfg, layer_idx, check_layer_impl(impl)
        self.d_model = d_model
        self.retrieval = ProductKeyRetrieval(
            d_model, cfg.num_experts, cfg.num_heads, cfg.d_key, cfg.top_k
        )
        self.values = nn.Embedding(cfg.num_experts, d_model)  # [N, D]
        nn.init.normal_(self.values.weight, std=INIT_STD)
        self.resolved_impls: dict[str, str] = {}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0 (fp32 scalar)."""
        topk_impl = self.retrieval.resolve(self.impl, x.device)
        self.resolved_impls = {"cdmoe.product_key_topk": topk_impl}
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
