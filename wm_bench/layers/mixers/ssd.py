"""Cheems SSD block: Mamba-2 SSD (Dao & Gu 2024, eq. 16) + RoPE on B, C (docs/spec.md §2.1–2.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from wm_bench.kernels.ssd import chunk_ssd, ssd_step
from wm_bench.kernels.ssd.api import AVAILABLE as SSD_IMPLS
from wm_bench.kernels.ssd.api import STEP_AVAILABLE
from wm_bench.layers.base import Layer, check_name, init_normal
from wm_bench.layers.position import build_position, check_position, pairs_channels


def _bad(field: str, value: object, valid: str) -> ValueError:
    return ValueError(f"SSDConfig.{field}={value!r} is invalid; valid: {valid}")


def init_a_log(n_heads: int, low: float = 1.0, high: float = 16.0) -> torch.Tensor:
    """Returns A_log [H] = log U[low, high]: A = −exp(A_log) ∈ [−high, −low] (docs/spec.md §2.2)."""
    return torch.empty(n_heads).uniform_(low, high).log()


def init_dt_bias(n_heads: int, dt_min: float, dt_max: float, floor: float = 1e-4) -> torch.Tensor:
    """dt_bias = softplus⁻¹(Δ), Δ log-uniform in [dt_min, dt_max] (Mamba-2 init). Returns [H]."""
    log_dt = torch.rand(n_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    dt = log_dt.exp().clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse of softplus: log(exp(dt) − 1)


class SSMLayer(Layer):
    """What the SSD and Mamba-2 mixers share: A and Δ initialisation, the SSD impl choice per op,
    and the scan's mixing FLOPs. Subclasses set n_heads, head_dim (P) and d_state (N)."""

    n_heads: int
    head_dim: int
    d_state: int

    def init_decay(self, n_heads: int) -> None:
        """A_log [H] and dt_bias [H] parameters (docs/spec.md §2.2, Mamba-2 init)."""
        self.A_log = nn.Parameter(init_a_log(n_heads))
        self.dt_bias = nn.Parameter(init_dt_bias(n_heads, self.cfg.dt_min, self.cfg.dt_max))

    def ssd_impl(self, device: torch.device, op: str) -> str:
        """The impl of `op` ("chunk_ssd", or "ssd_step": decoding, which has no Triton form, so
        "auto" resolves it to the reference on CUDA)."""
        return self.resolve(op, STEP_AVAILABLE if op == "ssd_step" else SSD_IMPLS, device)

    def mixing_flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token of the chunked scan outside the projections, with chunk
        Q = min(chunk_size, T): 2 · H · (Q·N + Q·P + 2·N·P), the in-chunk scores C Bᵀ and their
        product with X, the state update B ⊗ X and the read C · S."""
        q, n, p = min(self.cfg.chunk_size, seq_len), self.d_state, self.head_dim
        return 2 * self.n_heads * (q * n + q * p + 2 * n * p)


def check_ssm_fields(
    cls: str, n_heads: int | None, chunk_size: int, dt_min: float, dt_max: float
) -> None:
    """Validate fields the SSD and Mamba-2 configs share."""
    if n_heads is not None and n_heads < 1:
        raise ValueError(f"{cls}.n_heads={n_heads!r} is invalid; valid: an int ≥ 1")
    if chunk_size < 1:
        raise ValueError(f"{cls}.chunk_size={chunk_size!r} is invalid; valid: an int ≥ 1")
    if not 0.0 < dt_min <= dt_max:
        raise ValueError(f"{cls}.dt_min={dt_min!r}, dt_max={dt_max!r}; valid: 0 < dt_min ≤ dt_max")


@dataclass(frozen=True)
class SSDConfig:
    """Cheems SSD: d_inner = expand·d, P = d_inner / n_heads, N = d_state or P, G = n_groups or H.

    chunk_size is the SSD kernel's Q; Δ is initialised log-uniform in [dt_min, dt_max].
    """

    name: Literal["ssd"] = "ssd"
    n_heads: int = 4
    expand: int = 1
    d_state: int | None = None
    n_groups: int | None = None
    position: Literal["rope", "none"] = "rope"
    rope_base: float = 10000.0
    chunk_size: int = 64
    dt_min: float = 1e-3
    dt_max: float = 0.1

    def __post_init__(self) -> None:
        check_name(self, "ssd")
        check_ssm_fields("SSDConfig", self.n_heads, self.chunk_size, self.dt_min, self.dt_max)
        if self.expand < 1:
            raise _bad("expand", self.expand, "an int ≥ 1")
        if self.n_groups is not None and (self.n_groups < 1 or self.n_heads % self.n_groups):
            raise _bad("n_groups", self.n_groups, f"None or a divisor of n_heads={self.n_heads}")
        if self.d_state is not None and self.d_state < 1:
            raise _bad("d_state", self.d_state, "None or an int ≥ 1")
        check_position("SSDConfig", self.position)
        if self.d_state is not None and pairs_channels(self.position) and self.d_state % 2:
            raise _bad("d_state", self.d_state, f"an even int when position={self.position!r}")
        if not self.rope_base > 1.0:
            raise _bad("rope_base", self.rope_base, "a float > 1")


class SSD(SSMLayer):
    """Cheems SSD mixer: x, B, C, Δ projections → RoPE(B, C) along N → chunked SSD → out_proj.

    No conv1d, no gate, no D skip (docs/spec.md §2.2). The four input projections are one fused
    matmul (equal to four separate ones). Head h reads B/C group h // (H / G). Decoding stores the
    rotated B_s x_sᵀ in the state and reads it with C_t rotated at the current position.
    """

    def __init__(
        self, d_model: int, cfg: SSDConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.d_inner = cfg.expand * d_model
        H = self.n_heads = cfg.n_heads
        if self.d_inner % H:
            raise ValueError(
                f"SSD: expand·d_model={self.d_inner} (d_model={d_model}) is not divisible by "
                f"n_heads={H}"
            )
        self.head_dim = self.d_inner // H  # P
        self.d_state = cfg.d_state or self.head_dim  # N
        self.n_groups = cfg.n_groups or H  # G
        if pairs_channels(cfg.position) and self.d_state % 2:
            raise ValueError(
                f"SSD: d_state N={self.d_state} (= head dim P when d_state is None) is odd; "
                f"position={cfg.position!r} on B/C needs an even N"
            )
        GN = self.n_groups * self.d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + 2 * GN + H, bias=False)  # x | B | C | Δ
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.init_decay(H)
        self.pos = build_position(cfg.position, self.d_state, rope_base=cfg.rope_base, impl=impl)
        init_normal(self.in_proj, self.out_proj)

    def _inputs(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, ...]:
        """x [B, T, D] → xs [B, T, H, P], dt [B, T, H] (> 0), A [H] (< 0), Bm, Cm [B, T, G, N]."""
        Bsz, T, _ = x.shape
        GN = self.n_groups * self.d_state
        xs, Bm, Cm, dt = self.in_proj(x).split([self.d_inner, GN, GN, self.n_heads], dim=-1)
        xs = xs.view(Bsz, T, self.n_heads, self.head_dim)
        Bm = self.pos(Bm.view(Bsz, T, self.n_groups, self.d_state), offset=offset)  # key-like
        Cm = self.pos(Cm.view(Bsz, T, self.n_groups, self.d_state), offset=offset)  # query-like
        self.resolved_impls.update(self.pos.resolved_impls)
        compute = torch.promote_types(x.dtype, torch.float32)  # Δ and A never below fp32
        dt = F.softplus(dt.to(compute) + self.dt_bias.to(compute))
        A = -torch.exp(self.A_log.to(compute))
        return xs, dt, A, Bm, Cm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, T, D]. Returns: y [B, T, D], causal."""
        xs, dt, A, Bm, Cm = self._inputs(x, offset=0)
        impl = self.ssd_impl(x.device, "chunk_ssd")
        y, _ = chunk_ssd(xs, dt, A, Bm, Cm, chunk_size=self.cfg.chunk_size, impl=impl)
        return self.out_proj(y.flatten(2))  # [B, T, H·P] → [B, T, D]

    def init_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> dict:
        """Zero state: {"ssm": [B, H, P, N] fp32 (fp64 for fp64 dtype), "pos": 0}."""
        compute = torch.promote_types(dtype, torch.float32)
        ssm = torch.zeros(
            batch_size, self.n_heads, self.head_dim, self.d_state, device=device, dtype=compute
        )
        return {"ssm": ssm, "pos": 0}

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Decode one token. Args: x [B, 1, D], state. Returns: (y [B, 1, D], new state)."""
        if x.shape[1] != 1:
            raise ValueError(f"SSD.step: expects one token, got x.shape={tuple(x.shape)}")
        xs, dt, A, Bm, Cm = self._inputs(x, offset=state["pos"])
        impl = self.ssd_impl(x.device, "ssd_step")
        y, ssm = ssd_step(xs[:, 0], dt[:, 0], A, Bm[:, 0], Cm[:, 0], state["ssm"], impl=impl)
        return self.out_proj(y.flatten(1)).unsqueeze(1), {"ssm": ssm, "pos": state["pos"] + 1}
