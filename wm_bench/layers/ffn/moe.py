"""Grouped top-k MoE, the fair baseline (load balancing: Switch Transformer, arXiv 2101.03961)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wm_bench.kernels._impl import check_impl
from wm_bench.layers.base import INIT_STD, Layer, check_name
from wm_bench.layers.ffn.mlp import GatedMLP, check_positive_int, check_top_k, default_d_ff, linear


def gated_silu(x: Tensor, w_in: Tensor, w_out: Tensor) -> Tensor:
    """One expert: SiLU(x W_gate) ⊙ (x W_up) W_down.

    Args:
        x: [m, D] rows; w_in: [D, 2F] as [gate | up]; w_out: [F, D].
    Returns:
        [m, D].
    """
    gate, up = (x @ w_in).chunk(2, dim=-1)  # [m, F] each
    return (F.silu(gate) * up) @ w_out


@dataclass(frozen=True)
class MoEConfig:
    """Token-choice top-k MoE of gated SiLU experts, dropless (no capacity limit).

    Router: softmax over the E logits (fp32), top-k, renormalised to sum 1 over the k chosen.
    d_ff (per expert) None means default_d_ff(d), each expert as wide as the dense MLP (Mixtral /
    Jamba convention; set it smaller to match active parameters). shared_expert adds one ungated
    expert of the same width to every token. aux_loss_coef scales the Switch load-balancing loss.
    """

    name: Literal["moe"] = "moe"
    num_experts: int = 16
    top_k: int = 2
    d_ff: int | None = None
    shared_expert: bool = False
    aux_loss_coef: float = 0.01

    def __post_init__(self) -> None:
        check_name(self, "moe")
        check_positive_int("MoEConfig", "num_experts", self.num_experts)
        check_top_k("MoEConfig", self.top_k, self.num_experts)
        check_positive_int("MoEConfig", "d_ff", self.d_ff, allow_none=True)
        if not isinstance(self.shared_expert, bool):
            raise ValueError(f"MoEConfig.shared_expert={self.shared_expert!r} must be a bool")
        coef = self.aux_loss_coef
        if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not coef >= 0:
            raise ValueError(f"MoEConfig.aux_loss_coef={coef!r} must be a float ≥ 0")


GROUPED_IMPLS = ("reference", "grouped_mm")  # what `moe.grouped_experts` can run


def grouped_mm_ok(x: Tensor, d_model: int, d_ff: int) -> str:
    """Why torch._grouped_mm cannot run these experts ("" when it can).

    It needs every row stride to be a multiple of 16 bytes (D, 2F and F times the element size)
    and, on CUDA, a Hopper-class GPU (capability ≥ 9.0) in torch's build.
    """
    if not hasattr(torch, "_grouped_mm"):
        return f"torch {torch.__version__} has no torch._grouped_mm"
    elem = x.element_size()
    bad = [n for n in (d_model, d_ff) if (n * elem) % 16]
    if bad:
        return f"widths {bad} × {elem} B are not multiples of 16 bytes"
    if x.device.type == "cuda" and torch.cuda.get_device_capability(x.device) < (9, 0):
        return "torch._grouped_mm needs compute capability ≥ 9.0"
    return ""


def resolve_grouped(impl: str, x: Tensor, d_model: int, d_ff: int) -> str:
    """The grouped-experts path for a layer impl.

    "auto": torch._grouped_mm on CUDA where it can run, else the reference loop over expert
    slices. "triton" asks for the fast path, which for MoE is torch._grouped_mm (there is no
    hand-written MoE kernel): it raises when that cannot run. "reference": the loop.
    """
    why = grouped_mm_ok(x, d_model, d_ff)
    if impl == "auto":
        return "grouped_mm" if x.device.type == "cuda" and not why else "reference"
    if impl == "triton":
        if why:
            raise ValueError(f"moe.grouped_experts: impl='triton' (torch._grouped_mm): {why}")
        return "grouped_mm"
    return check_impl(impl, GROUPED_IMPLS, "moe.grouped_experts")


def grouped_gated_silu(xs: Tensor, w_in: Tensor, w_out: Tensor, counts: Tensor) -> Tensor:
    """Every expert's gated SiLU MLP on its slice of xs, two torch._grouped_mm calls.

    Args:
        xs: [R, D] rows sorted by expert; counts: [E] rows per expert (sum R).
        w_in: [E, D, 2F]; w_out: [E, F, D].
    Returns:
        [R, D].
    """
    offs = counts.cumsum(0).to(torch.int32)  # end row of each expert's slice
    h = torch._grouped_mm(xs, w_in.to(xs.dtype), offs=offs)  # [R, 2F]
    gate, up = h.chunk(2, dim=-1)
    return torch._grouped_mm((F.silu(gate) * up).contiguous(), w_out.to(xs.dtype), offs=offs)


class MoE(Layer):
    """Top-k MoE computed grouped: tokens sorted by expert, one grouped matmul per projection
    (torch._grouped_mm), or the reference loop over expert slices."""

    def __init__(
        self, d_model: int, cfg: MoEConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        e, d = cfg.num_experts, d_model
        self.d_ff = cfg.d_ff if cfg.d_ff is not None else default_d_ff(d)
        self.router = linear(d, e)
        # Stacked expert weights (ready for a grouped matmul): [gate | up] then down.
        self.w_in = nn.Parameter(torch.randn(e, d, 2 * self.d_ff) * INIT_STD)  # [E, D, 2F]
        self.w_out = nn.Parameter(torch.randn(e, self.d_ff, d) * INIT_STD)  # [E, F, D]
        self.shared = GatedMLP(d, self.d_ff) if cfg.shared_expert else None

    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Args: x [M, D]. Returns: probs [M, E] fp32, gates [M, k] fp32 (sum 1), experts [M, k]."""
        probs = torch.softmax(self.router(x).float(), dim=-1)  # [M, E]
        top, experts = probs.topk(self.cfg.top_k, dim=-1)  # [M, k]
        return probs, top / top.sum(dim=-1, keepdim=True), experts

    def expert(self, e: int, x: Tensor) -> Tensor:
        """Expert e's gated SiLU MLP on rows x [m, D] -> [m, D]."""
        return gated_silu(x, self.w_in[e], self.w_out[e])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x [B, T, D]. Returns: y [B, T, D] and the scaled aux loss (fp32 scalar)."""
        grouped_impl = resolve_grouped(self.impl, x, self.d_model, self.d_ff)
        self.resolved_impls = {"moe.grouped_experts": grouped_impl}
        k, n_exp = self.cfg.top_k, self.cfg.num_experts
        x2 = x.reshape(-1, x.shape[-1])  # [M, D]
        probs, gates, experts = self.route(x2)

        # 1. Sort the M·k (token, expert) assignments by expert.
        flat = experts.reshape(-1)  # [M·k]
        order = torch.argsort(flat, stable=True)  # [M·k]
        token = order // k  # token of each sorted assignment
        counts = torch.bincount(flat, minlength=n_exp)  # [E]

        # 2. One expert per contiguous slice: grouped matmuls, or a loop whose stacked weights are
        #    unbound once (indexing w_in[e] per expert would make backward zero-fill a full
        #    [E, D, 2F] gradient E times).
        xs = x2[token]  # [M·k, D], grouped by expert
        if grouped_impl == "grouped_mm":
            ys = grouped_gated_silu(xs, self.w_in, self.w_out, counts)
        else:
            w_in, w_out = self.w_in.unbind(0), self.w_out.unbind(0)  # E × [D, 2F], E × [F, D]
            parts = xs.split(counts.tolist())
            ys = torch.cat([gated_silu(xe, w_in[e], w_out[e]) for e, xe in enumerate(parts)])
        ys = ys * gates.reshape(-1)[order, None].to(x.dtype)  # [M·k, D]

        # 3. Scatter back and add each token's k contributions.
        y = torch.zeros_like(x2).index_add_(0, token, ys)  # [M, D]
        if self.shared is not None:
            y = y + self.shared(x2)

        # 4. Switch load balancing: E · Σ_e f_e · P_e, f_e the share of the M·k assignments.
        frac = counts.float() / flat.numel()  # [E]
        aux = self.cfg.aux_loss_coef * n_exp * (frac * probs.mean(dim=0)).sum()
        return y.reshape(x.shape), aux

    def active_params(self) -> int:
        """Router D·E + top_k experts of 3·D·F (+ the shared expert)."""
        per_expert = 3 * self.d_model * self.d_ff
        shared = per_expert if self.shared is not None else 0
        return self.router.weight.numel() + self.cfg.top_k * per_expert + shared
