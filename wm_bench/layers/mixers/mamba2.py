"""Standard Mamba-2 block (Dao & Gu 2024, "Transformers are SSMs", §7 and Fig. 6): the baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from wm_bench.kernels.ssd import chunk_ssd, ssd_step
from wm_bench.layers.base import check_name, init_normal
from wm_bench.layers.mixers.ssd import SSMLayer, check_ssm_fields
from wm_bench.layers.norm import GatedRMSNorm


def _bad(field: str, value: object, valid: str) -> ValueError:
    return ValueError(f"Mamba2Config.{field}={value!r} is invalid; valid: {valid}")


@dataclass(frozen=True)
class Mamba2Config:
    """Mamba-2: d_inner = expand·d, P = min(head_dim, d_inner), H = d_inner / P, G groups of B/C.

    norm_before_gate False is mamba_ssm's default: y ← RMSNorm(y · SiLU(z)), statistics per group
    of d_inner / n_groups channels.
    """

    name: Literal["mamba2"] = "mamba2"
    expand: int = 2  # d_inner = expand · d_model
    head_dim: int = 64  # P, channels per SSM head
    d_state: int = 128  # N, state size per head
    n_groups: int = 1  # G, heads sharing one B and C
    d_conv: int = 4  # causal depthwise conv width over x, B, C
    chunk_size: int = 64  # SSD chunk length (a kernel setting; the output does not depend on it)
    dt_min: float = 1e-3  # Δ bias initialised so Δ is log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1
    norm_before_gate: bool = False  # True: RMSNorm(y) · SiLU(z) instead

    def __post_init__(self) -> None:
        check_name(self, "mamba2")
        check_ssm_fields("Mamba2Config", None, self.chunk_size, self.dt_min, self.dt_max)
        for field in ("expand", "head_dim", "d_state", "n_groups", "d_conv"):
            if getattr(self, field) < 1:
                raise _bad(field, getattr(self, field), "an int ≥ 1")


class Mamba2(SSMLayer):
    """in_proj → (z, x, B, C, Δ); causal depthwise conv1d + SiLU on (x, B, C); SSD with D skip;
    gated RMSNorm with z; out_proj.

    head_dim is clipped to d_inner for tiny widths (d_inner < 64 gives one head of width d_inner).
    The conv keeps its bias, as in mamba_ssm (it is not a projection). Decoding state: the last
    d_conv − 1 conv inputs and the SSM state.
    """

    def __init__(
        self, d_model: int, cfg: Mamba2Config, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.d_inner = cfg.expand * d_model
        self.head_dim = min(cfg.head_dim, self.d_inner)  # P
        if self.d_inner % self.head_dim:
            raise ValueError(
                f"Mamba2: d_inner={self.d_inner} (expand·d_model) is not divisible by "
                f"head_dim={self.head_dim}"
            )
        H = self.n_heads = self.d_inner // self.head_dim
        self.n_groups, self.d_state = G, N = cfg.n_groups, cfg.d_state
        if H % G:
            raise ValueError(
                f"Mamba2: n_groups={G} does not divide the head count H={H} "
                f"(d_inner={self.d_inner} / head_dim={self.head_dim})"
            )
        self.conv_dim = self.d_inner + 2 * G * N  # channels of (x, B, C)
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + H, bias=False)  # z|xBC|Δ
        self.conv = nn.Conv1d(
            self.conv_dim, self.conv_dim, cfg.d_conv, groups=self.conv_dim, padding=cfg.d_conv - 1
        )
        self.init_decay(H)
        self.D = nn.Parameter(torch.ones(H))
        self.norm = GatedRMSNorm(
            self.d_inner, group_size=self.d_inner // G, norm_before_gate=cfg.norm_before_gate
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        init_normal(self.in_proj, self.out_proj)

    def _split(self, xbc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Post-conv (x, B, C) [B, T, conv_dim] → xs [B, T, H, P], Bm, Cm [B, T, G, N]."""
        GN = self.n_groups * self.d_state
        xs, Bm, Cm = xbc.split([self.d_inner, GN, GN], dim=-1)
        GN_shape = (self.n_groups, self.d_state)
        xs = xs.unflatten(-1, (self.n_heads, self.head_dim))
        return xs, Bm.unflatten(-1, GN_shape), Cm.unflatten(-1, GN_shape)

    def _dt_a(self, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw Δ [..., H] → (Δ = softplus(raw + dt_bias), A = −exp(A_log) [H]), both ≥ fp32."""
        compute = torch.promote_types(dt.dtype, torch.float32)
        A = -torch.exp(self.A_log.to(compute))
        return F.softplus(dt.to(compute) + self.dt_bias.to(compute)), A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, T, D]. Returns: y [B, T, D], causal."""
        T = x.shape[1]
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.conv_dim, self.n_heads], dim=-1)
        xbc = F.silu(
            self.conv(xbc.transpose(1, 2))[..., :T].transpose(1, 2)
        )  # causal: drop the tail
        xs, Bm, Cm = self._split(xbc)
        dt, A = self._dt_a(dt)
        impl = self.ssd_impl(x.device, "chunk_ssd")
        y, _ = chunk_ssd(xs, dt, A, Bm, Cm, chunk_size=self.cfg.chunk_size, D=self.D, impl=impl)
        return self.out_proj(self.norm(y.flatten(2), z))

    def init_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> dict:
        """Zero state: {"conv": [B, conv_dim, d_conv − 1], "ssm": [B, H, P, N] ≥ fp32}."""
        conv = torch.zeros(
            batch_size, self.conv_dim, self.cfg.d_conv - 1, device=device, dtype=dtype
        )
        compute = torch.promote_types(dtype, torch.float32)
        ssm = torch.zeros(
            batch_size, self.n_heads, self.head_dim, self.d_state, device=device, dtype=compute
        )
        return {"conv": conv, "ssm": ssm}

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Decode one token. Args: x [B, 1, D], state. Returns: (y [B, 1, D], new state)."""
        if x.shape[1] != 1:
            raise ValueError(f"Mamba2.step: expects one token, got x.shape={tuple(x.shape)}")
        z, xbc, dt = self.in_proj(x[:, 0]).split(
            [self.d_inner, self.conv_dim, self.n_heads], dim=-1
        )
        window = torch.cat([state["conv"], xbc.unsqueeze(-1)], dim=-1)  # [B, conv_dim, d_conv]
        xbc = (window * self.conv.weight[:, 0, :]).sum(-1) + self.conv.bias  # [B, conv_dim]
        xs, Bm, Cm = self._split(F.silu(xbc))
        dt, A = self._dt_a(dt)
        impl = self.ssd_impl(x.device, "ssd_step")
        y, ssm = ssd_step(xs, dt, A, Bm, Cm, state["ssm"], D=self.D, impl=impl)  # y [B, H, P]
        y = self.out_proj(self.norm(y.flatten(1), z))
        return y.unsqueeze(1), {"conv": window[..., 1:], "ssm": ssm}
