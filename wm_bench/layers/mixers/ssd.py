"""Cheems SSD block: Mamba-2 SSD (Dao & Gu 2024, eq. 16) + RoPE on B, C (docs/spec.md §2.1–2.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from wm_bench.kernels._impl import resolve_impl
from wm_bench.kernels.ssd import chunk_ssd, ssd_step
from wm_bench.kernels.ssd.api import AVAILABLE as SSD_IMPLS
from wm_bench.kernels.ssd.api import STEP_AVAILABLE
from wm_bench.layers.position import POSITIONS, build_position

LAYER_IMPLS = ("auto", "reference", "triton")


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
        if self.name != "ssd":
            raise _bad("name", self.name, "'ssd'")
        check_ssm_fields("SSDConfig", self.n_heads, self.chunk_size, self.dt_min, self.dt_max)
        if self.expand < 1:
            raise _bad("expand", self.expand, "an int ≥ 1")
        if self.n_groups is not None and (self.n_groups < 1 or self.n_heads % self.n_groups):
            raise _bad("n_groups", self.n_groups, f"None or a divisor of n_heads={self.n_heads}")
        if self.d_state is not None and self.d_state < 1:
            raise _bad("d_state", self.d_state, "None or an int ≥ 1")
        if self.position not in POSITIONS:
            raise _bad("position", self.position, str(sorted(POSITIONS)))
        if self.d_state is not None and self.position == "rope" and self.d_state % 2:
            raise _bad("d_state", self.d_state, "an even int when position='rope'")
        if not self.rope_base > 1.0:
            raise _bad("rope_base", self.rope_base, "a float > 1")


class SSD(nn.Module):
    """Cheems SSD mixer: x, B, C, Δ projections → RoPE(B, C) along N → chunked SSD → out_proj.

    No conv1d, no gate, no D skip (docs/spec.md §2.2). The four input projections are one fused
    matmul (equal to four separate ones). Head h reads B/C group h // (H / G). Decoding stores the
    rotated B_s x_sᵀ in the state and reads it with C_t rotated at the current position.
    """

    def __init__(
        self, d_model: int, cfg: SSDConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__()
        if impl not in LAYER_IMPLS:
            raise ValueError(f"SSD: impl={impl!r}; valid: {list(LAYER_IMPLS)}")
        self.d_model, self.cfg, self.layer_idx, self.impl = d_model, cfg, layer_idx, impl
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
        if cfg.position == "rope" and self.d_state % 2:
            raise ValueError(
                f"SSD: d_state N={self.d_state} (= head dim P when d_state is None) is odd; "
                "RoPE on B/C needs an even N"
            )
        GN = self.n_groups * self.d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + 2 * GN + H, bias=False)  # x | B | C | Δ
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self.A_log = nn.Parameter(init_a_log(H))
        self.dt_bias = nn.Parameter(init_dt_bias(H, cfg.dt_min, cfg.dt_max))
        self.pos = build_position(cfg.position, self.d_state, rope_base=cfg.rope_base, impl=impl)
        self.resolved_impls: dict[str, str] = {}
        for lin in (self.in_proj, self.out_proj):
            nn.init.normal_(lin.weight, std=0.02)

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

    def _ssd_impl(self, device: torch.device, op: str) -> str:
        # ssd_step (decoding) has no Triton form: "auto" resolves it to the reference on CUDA.
        available = STEP_AVAILABLE if op == "ssd_step" else SSD_IMPLS
        impl = resolve_impl(self.impl, device, available=available, op=op)
        self.resolved_impls[op] = impl
        return impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, T, D]. Returns: y [B, T, D], causal."""
        xs, dt, A, Bm, Cm = self._inputs(x, offset=0)
        impl = self._ssd_impl(x.device, "chunk_ssd")
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
        impl = self._ssd_impl(x.device, "ssd_step")
        y, ssm = ssd_step(xs[:, 0], dt[:, 0], A, Bm[:, 0], Cm[:, 0], state["ssm"], impl=impl)
        return self.out_proj(y.flatten(1)).unsqueeze(1), {"ssm": ssm, "pos": state["pos"] + 1}
