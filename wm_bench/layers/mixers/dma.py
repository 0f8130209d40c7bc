"""DMA: dynamic mask attention, 2025 form (Shi et al., arXiv 2508.02124; docs/spec.md §2.4)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from wm_bench.kernels.attention import attention
from wm_bench.layers.base import init_normal
from wm_bench.layers.mixers.qcattn import QCAttn, check_attention_fields

BIAS_FORMS = ("exp", "linear")
TIE_BREAKS = ("smaller_index", "larger_index")


def _bad(field: str, value: object, valid: str) -> ValueError:
    return ValueError(f"DMAConfig.{field}={value!r} is invalid; valid: {valid}")


@dataclass(frozen=True)
class DMAConfig:
    """DMA: attention + a learned per-key bias b = f(A·softplus(V W_Δ)) and a top-`window` mask.

    window None keeps every causally visible key (dense attention plus the bias). tie_break fixes
    which keys win equal biases: "smaller_index" (default) or "larger_index" (a sliding window at
    A = 0).

    qk_temperature (ours, not the paper's; None = off): with QK-norm, a learned per-head
    temperature τ multiplies the scores, τ = exp(log τ) initialised to this value. QK-norm fixes
    the logits' scale at initialisation (unit-RMS q and k: scores of order 1 instead of the
    near-zero scores of small random projections); τ lets each head choose its sharpness. Left
    out of the config hash while None, so every earlier DMA config keeps its hash.
    """

    name: Literal["dma"] = "dma"
    n_heads: int = 4
    n_kv_heads: int | None = None
    head_dim: int | None = None
    position: Literal["rope", "none"] = "rope"
    rope_base: float = 10000.0
    qk_norm: bool = True
    a_init: float = 0.0
    bias_form: Literal["exp", "linear"] = "exp"
    window: int | None = None
    tie_break: Literal["smaller_index", "larger_index"] = "smaller_index"
    qk_temperature: float | None = field(default=None, metadata={"hash_if_set": True})

    def __post_init__(self) -> None:
        check_attention_fields(self, "dma")
        if self.bias_form not in BIAS_FORMS:
            raise _bad("bias_form", self.bias_form, str(list(BIAS_FORMS)))
        if self.tie_break not in TIE_BREAKS:
            raise _bad("tie_break", self.tie_break, str(list(TIE_BREAKS)))
        if self.window is not None and self.window < 1:
            raise _bad("window", self.window, "None or an int ≥ 1")
        t = self.qk_temperature
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0
        ):
            raise _bad("qk_temperature", t, "None or a finite float > 0")
        if t is not None and not self.qk_norm:
            raise _bad("qk_temperature", t, "None unless qk_norm=True (it rescales normed scores)")


class DMA(QCAttn):
    """QCAttn (QK-norm on by default, RoPE) plus DMA's key bias and per-row top-w key selection.

    1. dt = flatten_heads(V) · W_Δ: one scalar per KV head and key position (W_Δ: Hkv·P → Hkv).
    2. b = exp(A·softplus(dt)) ("exp") or A·softplus(dt) ("linear"); A per KV head, init a_init.
    3. The bias is per key, shared by all queries of the group; the kernel adds it to the scores
       and, with a window, keeps each query row's top-w visible keys by bias (ties by tie_break).
    4. With qk_temperature (ours): the queries of head h are scaled by a learned τ_h > 0.
    Decoding caches rotated keys, values and each key's bias; the new query row ranks all cached
    keys, which is exactly the full forward's last row.
    """

    def __init__(
        self, d_model: int, cfg: DMAConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        Hkv = self.n_kv_heads
        self.dt_proj = nn.Linear(Hkv * self.head_dim, Hkv, bias=False)  # W_Δ
        self.A = nn.Parameter(torch.full((Hkv,), float(cfg.a_init)))
        init_normal(self.dt_proj)
        self.log_temperature = (
            nn.Parameter(torch.full((self.n_heads,), math.log(cfg.qk_temperature)))
            if cfg.qk_temperature is not None
            else None
        )

    def keys_per_query(self, seq_len: int) -> int:
        """The top-`window` keys of each row (every visible key without a window)."""
        window = self.cfg.window
        return min(window, seq_len) if window else seq_len

    def _project(
        self, x: torch.Tensor, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """QCAttn's projections; with qk_temperature, q [B, T, H, K] scaled per head by τ."""
        q, k, v = super()._project(x, offset)
        if self.log_temperature is not None:
            q = q * self.log_temperature.exp().to(q.dtype)[:, None]  # [H, 1] over [B, T, H, K]
        return q, k, v

    def key_bias(self, v: torch.Tensor) -> torch.Tensor:
        """Per-key bias from the values.

        Args:
            v: [B, S, Hkv, P] values (no RoPE).

        Returns:
            [B, Hkv, S] in fp32 (or wider): f(A · softplus(v · W_Δ)).
        """
        dt = self.dt_proj(v.flatten(2))  # [B, S, Hkv·P] → [B, S, Hkv]
        compute = torch.promote_types(dt.dtype, torch.float32)
        a = self.A.to(compute) * F.softplus(dt.to(compute))  # ∂a/∂dt ∝ A: zero at A = 0
        b = torch.exp(a) if self.cfg.bias_form == "exp" else a
        return b.transpose(1, 2)

    def _attend_biased(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        """q [B, T, H, P], k, v [B, S, Hkv, P], bias [B, Hkv, S] → [B, T, H·P]."""
        impl = self._attention_impl(q.device)
        group = self.n_heads // self.n_kv_heads
        key_bias = bias.repeat_interleave(
            group, dim=1
        )  # [B, H, S]: query head h uses kv h // group
        o = attention(
            q,
            k,
            v,
            causal=True,
            key_bias=key_bias,
            window=self.cfg.window,
            scale=self.head_dim**-0.5,
            tie_break=self.cfg.tie_break,
            impl=impl,
        )
        return o.flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, T, D]. Returns: y [B, T, D], causal."""
        q, k, v = self._project(x, offset=0)
        return self.o_proj(self._attend_biased(q, k, v, self.key_bias(v)))

    def init_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> dict:
        """Empty cache: {"k", "v": [B, 0, Hkv, P], "bias": [B, Hkv, 0] fp32, "pos": 0}."""
        state = super().init_state(batch_size, device=device, dtype=dtype)
        compute = torch.promote_types(dtype, torch.float32)
        state["bias"] = torch.zeros(batch_size, self.n_kv_heads, 0, device=device, dtype=compute)
        return state

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Decode one token. Args: x [B, 1, D], state. Returns: (y [B, 1, D], new state)."""
        q, k, v = self._project(x, offset=state["pos"])
        new_state = {
            "k": torch.cat([state["k"], k], dim=1),  # [B, S, Hkv, P]
            "v": torch.cat([state["v"], v], dim=1),
            "bias": torch.cat([state["bias"], self.key_bias(v)], dim=2),  # [B, Hkv, S]
            "pos": state["pos"] + x.shape[1],
        }
        o = self._attend_biased(q, new_state["k"], new_state["v"], new_state["bias"])
        return self.o_proj(o), new_state
