"""PEER: single-neuron experts (He 2024, "Mixture of a Million Experts", arXiv 2407.04153)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from wm_bench.kernels._impl import resolve_impl
from wm_bench.kernels.cdmoe import IMPLS, expert_mix
from wm_bench.layers.ffn._product_keys import (
    ProductKeyRetrieval,
    check_even,
    check_square,
    scores_to_weights,
)
from wm_bench.layers.ffn.mlp import (
    ACTIVATION_FNS,
    INIT_STD,
    Activation,
    check_choice,
    check_layer_impl,
    check_positive_int,
    check_top_k,
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
        check_square("peer", self.num_experts)
        check_positive_int("PEERConfig", "num_heads", self.num_heads)
        check_top_k("PEERConfig", self.top_k, self.num_experts)
        check_even("PEERConfig", "d_key", self.d_key)
        check_choice("PEERConfig", "activation", self.activation, tuple(ACTIVATION_FNS))


class PEER(nn.Module):
    """y = Σ_h Σ_i softmax_k(s_h)_i·act(x·u_e)·w_e, e = e_{h,i} the EXPERT id (docs/spec.md §8)."""

    def __init__(
        self, d_model: int, cfg: PEERConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__()
        self.cfg, self.layer_idx, self.impl = cfg, layer_idx, check_layer_impl(impl)
        self.d_model = d_model
        self.retrieval = ProductKeyRetrieval(
            d_model, cfg.num_experts, cfg.num_heads, cfg.d_key, cfg.top_k
        )
        self.down = nn.Embedding(cfg.num_experts, d_model)  # u_e rows [N, D]
        self.up = nn.Embedding(cfg.num_experts, d_model)  # w_e rows [N, D]
        nn.init.normal_(self.down.weight, std=INIT_STD)
        nn.init.normal_(self.up.weight, std=INIT_STD)
        self.resolved_impls: dict[str, str] = {}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and aux_loss 0 (fp32 scalar)."""
        topk_impl = self.retrieval.resolve(self.impl, x.device)
        mix_impl = resolve_impl(self.impl, x.device, IMPLS["expert_mix"], "cdmoe.expert_mix")
        self.resolved_impls = {"cdmoe.product_key_topk": topk_impl, "cdmoe.expert_mix": mix_impl}
        x2 = x.reshape(-1, x.shape[-1])  # [M, D]
        scores, indices = self.retrieval(x2, topk_impl)  # [M, He, k] each
        gates = scores_to_weights(scores)  # [M, He, k] fp32
        y = expert_mix(
            x2,
            self.down.weight,
            self.up.weight,
            indices.flatten(1),  # [M, He·k] expert ids
            gates.flatten(1),
            activation=self.cfg.activation,
            impl=mix_impl,
        )
        return y.reshape(x.shape), zero_aux(x)

    def active_params(self) -> int:
        """Query projection and sub-keys (scored by every token) + 2·D·He·k expert rows."""
        cfg = self.cfg
        return self.retrieval.num_params() + 2 * self.d_model * cfg.num_heads * cfg.top_k
