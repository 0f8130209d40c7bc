"""QCAttn: causal softmax attention with RoPE and optional GQA / QK-norm (docs/spec.md §2.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn

from wm_bench.kernels.attention import attention
from wm_bench.kernels.attention.api import AVAILABLE as ATTENTION_IMPLS
from wm_bench.layers.base import Layer, check_name, init_normal
from wm_bench.layers.norm import RMSNorm
from wm_bench.layers.position import build_position, check_position, pairs_channels


def _bad(cls: str, field: str, value: object, valid: str) -> ValueError:
    return ValueError(f"{cls}.{field}={value!r} is invalid; valid: {valid}")


@dataclass(frozen=True)
class QCAttnConfig:
    """Causal multi-head attention with optional grouped-query heads and QK-norm."""

    name: Literal["qcattn"] = "qcattn"
    n_heads: int = 4  # query heads
    n_kv_heads: int | None = None  # key/value heads (GQA); None → n_heads
    head_dim: int | None = None  # None → d_model / n_heads
    position: Literal["rope", "none"] = "rope"  # applied to q and k
    rope_base: float = 10000.0  # RoPE frequency base θ
    qk_norm: bool = False  # RMSNorm q and k per head before the scores

    def __post_init__(self) -> None:
        check_attention_fields(self, "qcattn")


class AttentionFields(Protocol):
    """The fields every attention config has (QCAttnConfig, DMAConfig)."""

    name: str
    n_heads: int
    n_kv_heads: int | None
    head_dim: int | None
    position: str
    rope_base: float
    qk_norm: bool


def check_attention_fields(cfg: AttentionFields, name: str) -> None:
    """Validate the fields QCAttn and DMA configs share (raises ValueError naming the field)."""
    cls = type(cfg).__name__
    check_name(cfg, name)
    if cfg.n_heads < 1:
        raise _bad(cls, "n_heads", cfg.n_heads, "an int ≥ 1")
    if cfg.n_kv_heads is not None and (cfg.n_kv_heads < 1 or cfg.n_heads % cfg.n_kv_heads):
        raise _bad(cls, "n_kv_heads", cfg.n_kv_heads, f"None or a divisor of n_heads={cfg.n_heads}")
    if cfg.head_dim is not None and cfg.head_dim < 1:
        raise _bad(cls, "head_dim", cfg.head_dim, "None or an int ≥ 1")
    check_position(cls, cfg.position)
    if cfg.head_dim is not None and pairs_channels(cfg.position) and cfg.head_dim % 2:
        raise _bad(cls, "head_dim", cfg.head_dim, f"an even int when position={cfg.position!r}")
    if not cfg.rope_base > 1.0:
        raise _bad(cls, "rope_base", cfg.rope_base, "a float > 1")


def attention_head_dim(d_model: int, n_heads: int, head_dim: int | None, position: str) -> int:
    """Head width: `head_dim`, or d_model / n_heads (checked); even when `position` rotates it."""
    if head_dim is None:
        if d_model % n_heads:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                "choose n_heads dividing d_model or set head_dim"
            )
        head_dim = d_model // n_heads
    if pairs_channels(position) and head_dim % 2:
        raise ValueError(
            f"head_dim={head_dim} (d_model={d_model} / n_heads={n_heads}) is odd; "
            f"position={position!r} needs an even head dim"
        )
    return head_dim


class QCAttn(Layer):
    """Causal softmax attention: q, k, v projections → [QK-norm] → RoPE → attention → o.

    Decoding keeps a KV cache of rotated keys and values; the new query is aligned to the end of
    the cache, so `step` reproduces `forward` row by row.
    """

    def __init__(
        self,
        d_model: int,
        cfg: AttentionFields,
        *,
        layer_idx: int = 0,
        impl: str = "auto",
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.n_kv_heads or cfg.n_heads
        self.head_dim = attention_head_dim(d_model, cfg.n_heads, cfg.head_dim, cfg.position)
        K, H, Hkv = self.head_dim, self.n_heads, self.n_kv_heads
        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, Hkv * K, bias=False)
        self.v_proj = nn.Linear(d_model, Hkv * K, bias=False)
        self.o_proj = nn.Linear(H * K, d_model, bias=False)
        self.q_norm = RMSNorm(K) if cfg.qk_norm else None
        self.k_norm = RMSNorm(K) if cfg.qk_norm else None
        self.pos = build_position(cfg.position, K, rope_base=cfg.rope_base, impl=impl)
        init_normal(self.q_proj, self.k_proj, self.v_proj, self.o_proj)

    def keys_per_query(self, seq_len: int) -> int:
        """Keys each query attends to in a forward over `seq_len` tokens (PaLM's convention: T,
        no causal halving)."""
        return seq_len

    def mixing_flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token outside the projections: QKᵀ and PV, 2 · H · head_dim each
        per key (2 FLOPs per multiply-add), over `keys_per_query(seq_len)` keys."""
        return 4 * self.n_heads * self.head_dim * self.keys_per_query(seq_len)

    def _project(
        self, x: torch.Tensor, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, D] → q [B, T, H, K], k [B, T, Hkv, K] (normed, rotated), v [B, T, Hkv, K]."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # per head, then RoPE (docs/spec.md §2.4 step 5)
        q, k = self.pos(q, offset=offset), self.pos(k, offset=offset)
        self.resolved_impls.update(self.pos.resolved_impls)
        return q, k, v

    def _attention_impl(self, device: torch.device) -> str:
        return self.resolve("attention", ATTENTION_IMPLS, device)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention, q [B, T, H, K] end-aligned to k, v [B, S, Hkv, K] → [B, T, H·K]."""
        impl = self._attention_impl(q.device)
        o = attention(q, k, v, causal=True, scale=self.head_dim**-0.5, impl=impl)
        return o.flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, T, D]. Returns: y [B, T, D], causal."""
        q, k, v = self._project(x, offset=0)
        return self.o_proj(self._attend(q, k, v))

    def init_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> dict:
        """Empty KV cache: {"k": [B, 0, Hkv, K], "v": [B, 0, Hkv, K], "pos": 0}."""
        empty = torch.zeros(
            batch_size, 0, self.n_kv_heads, self.head_dim, device=device, dtype=dtype
        )
        return {"k": empty, "v": empty.clone(), "pos": 0}

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Decode one token. Args: x [B, 1, D], state. Returns: (y [B, 1, D], new state)."""
        q, k, v = self._project(x, offset=state["pos"])
        k_all = torch.cat([state["k"], k], dim=1)  # [B, S, Hkv, K]
        v_all = torch.cat([state["v"], v], dim=1)
        new_state = {"k": k_all, "v": v_all, "pos": state["pos"] + x.shape[1]}
        return self.o_proj(self._attend(q, k_all, v_all)), new_state
