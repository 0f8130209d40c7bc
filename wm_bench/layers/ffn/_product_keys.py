"""Product-key retrieval shared by PKM, PEER and CDMoE (Lample et al. 2019, arXiv 1907.05242)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wm_bench.kernels._impl import resolve_impl
from wm_bench.kernels.cdmoe import IMPLS, product_key_topk
from wm_bench.layers.ffn.mlp import INIT_STD, linear


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

    def resolve(self, impl: str, device: torch.device) -> str:
        """The impl product_key_topk runs with for a layer impl on `device`."""
        return resolve_impl(impl, device, IMPLS["product_key_topk"], "cdmoe.product_key_topk")

    def num_params(self) -> int:
        """Query projection D·He·R plus sub-keys He·2·n·R/2; every token scores all of them."""
        return sum(p.numel() for p in self.parameters())


def scores_to_weights(scores: Tensor) -> Tensor:
    """Softmax over the k retrieved scores of each (token, head), in fp32: [M, He, k]."""
    return torch.softmax(scores.float(), dim=-1)
