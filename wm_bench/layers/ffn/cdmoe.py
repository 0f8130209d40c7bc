"""CDMoE: shared MLP + retrieved single-neuron experts (Shi & Wu 2024, arXiv 2412.11834, §CDMoE)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from wm_bench.kernels.cdmoe import product_key_topk
from wm_bench.layers.ffn._product_keys import (
    ProductKeyRetrieval,
    RetrievalLayer,
    check_product_keys,
    embedding_tables,
)
from wm_bench.layers.ffn.mlp import (
    GatedMLP,
    check_choice,
    check_positive_int,
    linear,
    zero_aux,
)


@dataclass(frozen=True)
class CDMoEConfig:
    """CDMoE = SharedMLP(x) + Private(x) (docs/spec.md §2.5).

    shared_d_ff None means 4·d (the Dec-2024 paper; transformers' Doge uses 2·d: set it).
    num_experts N must be a perfect square. router "per_head": num_heads queries of width
    d_retrieval against learned sub-keys (Dec 2024). router "doge": one linear d → 2√N whose
    first √N logits score set 1 and next √N set 2, split per token (Doge 2025); num_heads and
    d_retrieval are then unused. Private gates g = SiLU(x·u_e) · softmax_k(s)_e; no aux loss.
    """

    name: Literal["cdmoe"] = "cdmoe"
    num_experts: int = 1024
    top_k: int = 8
    num_heads: int = 4
    d_retrieval: int = 256
    shared_d_ff: int | None = None
    router: Literal["per_head", "doge"] = "per_head"

    def __post_init__(self) -> None:
        check_product_keys(self, "cdmoe", "d_retrieval")
        check_positive_int("CDMoEConfig", "shared_d_ff", self.shared_d_ff, allow_none=True)
        check_choice("CDMoEConfig", "router", self.router, ("per_head", "doge"))


class CDMoE(RetrievalLayer):
    """Cross-domain MoE: dense shared gated MLP plus N retrieved single-neuron private experts."""

    def __init__(
        self, d_model: int, cfg: CDMoEConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.n = math.isqrt(cfg.num_experts)
        self.shared_d_ff = cfg.shared_d_ff if cfg.shared_d_ff is not None else 4 * d_model
        self.shared = GatedMLP(d_model, self.shared_d_ff)
        self.retrieval: ProductKeyRetrieval | None = None
        self.router: nn.Linear | None = None
        if cfg.router == "per_head":
            self.retrieval = self.product_keys(cfg.d_retrieval)
        else:
            self.router = linear(d_model, 2 * self.n)  # rows [set 1 (√N) | set 2 (√N)]
        # u_e ("down_embed") and w_e ("up_embed"), [N, D] each
        self.down, self.up = embedding_tables(cfg.num_experts, d_model, 2)

    @property
    def retrieval_heads(self) -> int:
        """Heads of retrieval: num_heads (per_head) or 1 (doge)."""
        return self.cfg.num_heads if self.cfg.router == "per_head" else 1

    def route(self, x: Tensor, impl: str = "reference") -> tuple[Tensor, Tensor]:
        """Retrieve experts per token.

        Args:
            x: [M, D] tokens.
            impl: product_key_topk impl.
        Returns:
            scores [M, He, k] (descending) and expert ids [M, He, k]; He = 1 for the doge router.
        """
        if self.retrieval is not None:
            return self.retrieval(x, impl)
        # Doge router as product keys: with q = [x | x] and sub-keys = the router rows viewed
        # [1, 2, √N, D], s1_i = x·W[i] and s2_j = x·W[√N + j]: logit row (2, √N) of each token on
        # its own: `logits.view(M, 2, √N)`, not transformers' `view(2, M, -1)` (docs/spec.md §8).
        q = torch.cat([x, x], dim=-1)[:, None, :]  # [M, 1, 2D]
        sub_keys = self.router.weight.view(1, 2, self.n, self.d_model)  # [1, 2, √N, D]
        return product_key_topk(q, sub_keys, self.cfg.top_k, impl=impl)

    def private(
        self, x: Tensor, topk_impl: str = "reference", mix_impl: str = "reference"
    ) -> Tensor:
        """Private experts: Σ_h Σ_i SiLU(x·u_e) · softmax_k(s_h)_i · w_e.

        Args:
            x: [M, D] tokens.
            topk_impl: product_key_topk impl.
            mix_impl: expert_mix impl.
        Returns:
            [M, D].
        """
        scores, indices = self.route(x, topk_impl)  # [M, He, k] each
        return self.mix_experts(x, scores, indices, "silu", mix_impl)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0 (fp32 scalar)."""
        topk_impl, mix_impl = self.topk_impl(x.device), self.mix_impl(x.device)
        x2 = x.reshape(-1, x.shape[-1])  # [M, D]
        y = self.shared(x2) + self.private(x2, topk_impl, mix_impl)
        return y.reshape(x.shape), zero_aux(x)

    def active_params(self) -> int:
        """Shared MLP 3·D·d_cd + retrieval (query projection and sub-keys, or the router: every
        token scores all of them) + private 2·D·He·k."""
        retrieval = self.retrieval if self.retrieval is not None else self.router
        n_retrieval = sum(p.numel() for p in retrieval.parameters())
        private = 2 * self.d_model * self.retrieval_heads * self.cfg.top_k
        return self.shared.num_params() + n_retrieval + private
