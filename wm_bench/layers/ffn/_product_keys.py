"""Product-key retrieval shared by PKM, PEER and CDMoE (Lample et al. 2019, arXiv 1907.05242),
and the expert-row mixing PEER and CDMoE share."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from wm_bench.kernels.cdmoe import IMPLS, expert_mix, product_key_topk
from wm_bench.layers.base import INIT_STD, Layer, check_name
from wm_bench.layers.ffn.mlp import check_positive_int, check_top_k, linear


def check_square(layer: str, num_experts: object) -> int:
    """Return n = √N, or raise ValueError naming N and nearby valid sizes.

    A non-square N leaves experts unreachable by the i·n + j product map (docs/spec.md §8).
    """
    if not isinstance(num_experts, int) or isinstance(num_experts, bool) or num_experts < 1:
        raise ValueError(f"{layer} num_experts={num_experts!r} must be a positive perfect square")
    n = math.isqrt(num_experts)
    if n * n == num_experts:
        return n
    lo4 = 4 ** ((num_experts.bit_length() - 1) // 2)  # largest power of 4 below N
    squares = (n * n, (n + 1) * (n + 1))
    raise ValueError(
        f"{layer} num_experts={num_experts} is not a perfect square; "
        f"try {lo4} or {4 * lo4} (nearest squares: {squares[0]}, {squares[1]})"
    )


def check_even(cls: str, field: str, value: object) -> None:
    """Raise ValueError unless `value` is a positive even int (two query halves)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 2 or value % 2:
        raise ValueError(f"{cls}.{field}={value!r} must be a positive even int (two halves)")


def check_product_keys(cfg: Any, name: str, key_field: str) -> None:
    """The checks every product-key config shares (PKM, PEER, CDMoE): its registry name, N a
    perfect square, num_heads ≥ 1, 1 ≤ top_k ≤ N, and an even query width `cfg.<key_field>`."""
    cls = type(cfg).__name__
    check_name(cfg, name)
    check_square(name, cfg.num_experts)
    check_positive_int(cls, "num_heads", cfg.num_heads)
    check_top_k(cls, cfg.top_k, cfg.num_experts)
    check_even(cls, key_field, getattr(cfg, key_field))


class ProductKeyRetrieval(nn.Module):
    """Per-head queries q_h = W_q x ∈ R^R against two sets of √N sub-keys; exact top-k experts.

    Sub-keys are random N(0, 0.02) like every other weight (the authors' zeros make all scores tie,
    docs/spec.md §8); the same init as the Doge router, whose weight rows are its sub-keys.
    """

    def __init__(self, d_model: int, num_experts: int, num_heads: int, d_key: int, top_k: int):
        super().__init__()
        self.n = math.isqrt(num_experts)
        self.num_heads, self.d_key, self.top_k = num_heads, d_key, top_k
        self.query = linear(d_model, num_heads * d_key)
        self.sub_keys = nn.Parameter(  # [He, 2, n, R/2]
            torch.randn(num_heads, 2, self.n, d_key // 2) * INIT_STD
        )

    def forward(self, x: Tensor, impl: str) -> tuple[Tensor, Tensor]:
        """Args: x [M, D]; impl a layer impl. Returns: scores [M, He, k], indices [M, He, k]."""
        q = self.query(x).unflatten(-1, (self.num_heads, self.d_key))  # [M, He, R]
        return product_key_topk(q, self.sub_keys, self.top_k, impl=impl)

    def num_params(self) -> int:
        """Query projection D·He·R plus sub-keys He·2·n·R/2; every token scores all of them."""
        return sum(p.numel() for p in self.parameters())


def scores_to_weights(scores: Tensor) -> Tensor:
    """Softmax over the k retrieved scores of each (token, head), in fp32: [M, He, k]."""
    return torch.softmax(scores.float(), dim=-1)


def embedding_tables(num_rows: int, d_model: int, count: int) -> tuple[nn.Embedding, ...]:
    """`count` row tables [num_rows, d_model] initialised N(0, INIT_STD): all are created first,
    then initialised in order (the order the layers have always drawn their random numbers in)."""
    tables = tuple(nn.Embedding(num_rows, d_model) for _ in range(count))
    for table in tables:
        nn.init.normal_(table.weight, std=INIT_STD)
    return tables


class RetrievalLayer(Layer):
    """Base of the layers that retrieve experts by product keys (PKM, PEER, CDMoE): the impl of
    each kernel op, recorded per forward, and the single-neuron expert mix of PEER and CDMoE
    (their `down` u_e and `up` w_e tables [N, D])."""

    down: nn.Embedding
    up: nn.Embedding

    def product_keys(self, d_key: int) -> ProductKeyRetrieval:
        """Per-head product-key retrieval of the config's top_k of num_experts, num_heads queries
        of width d_key."""
        cfg = self.cfg
        return ProductKeyRetrieval(self.d_model, cfg.num_experts, cfg.num_heads, d_key, cfg.top_k)

    def topk_impl(self, device: torch.device) -> str:
        """The impl of product_key_topk on `device`."""
        return self.resolve("cdmoe.product_key_topk", IMPLS["product_key_topk"], device)

    def mix_impl(self, device: torch.device) -> str:
        """The impl of expert_mix on `device`."""
        return self.resolve("cdmoe.expert_mix", IMPLS["expert_mix"], device)

    def mix_experts(
        self, x: Tensor, scores: Tensor, indices: Tensor, activation: str, impl: str
    ) -> Tensor:
        """Σ_h Σ_i softmax_k(s_h)_i · act(x·u_e) · w_e over the retrieved experts e = e_{h,i}.

        Args:
            x: [M, D] tokens.
            scores, indices: [M, He, k] retrieval scores and expert ids.
            activation: the experts' activation.
            impl: expert_mix impl.
        Returns:
            [M, D].
        """
        gates = scores_to_weights(scores)  # [M, He, k] fp32
        return expert_mix(
            x,
            self.down.weight,
            self.up.weight,
            indices.flatten(1),  # [M, He·k] expert ids
            gates.flatten(1),
            activation=activation,
            impl=impl,
        )
