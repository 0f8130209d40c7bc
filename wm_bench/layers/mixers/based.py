"""Based (Arora et al. 2024, arXiv 2402.18668): Taylor linear attention + sliding window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from wm_bench.kernels.attention import attention
from wm_bench.kernels.attention.api import AVAILABLE as ATTENTION_IMPLS
from wm_bench.layers.base import Layer, check_name, init_normal
from wm_bench.layers.position import build_position, check_position, check_rotated_dim


def _bad(field: str, value: object, valid: str) -> ValueError:
    return ValueError(f"BasedConfig.{field}={value!r} is invalid; valid: {valid}")


@dataclass(frozen=True)
class BasedConfig:
    """Based mixer: gated short conv, then Taylor linear attention + sliding-window attention.

    feature_dim F is the q/k projection width of the linear attention (φ has 1 + F + F² features);
    n_heads its head count (value head width d / n_heads); window and window_heads configure the
    softmax branch; position applies to the softmax branch only (Zoology uses none).
    """

    name: Literal["based"] = "based"
    conv_kernel: int = 3  # width of the gated short conv
    feature_dim: int = 16  # F, q/k width of the linear attention
    n_heads: int = 1  # linear-attention heads
    window: int = 64  # keys each query sees in the softmax branch
    window_heads: int = 1  # softmax-branch heads
    position: Literal["none", "rope"] = "none"  # softmax branch only
    rope_base: float = 10000.0  # used when position is "rope"
    eps: float = 1e-12  # added to the linear-attention normaliser

    def __post_init__(self) -> None:
        check_name(self, "based")
        for field in ("conv_kernel", "feature_dim", "n_heads", "window", "window_heads"):
            if getattr(self, field) < 1:
                raise _bad(field, getattr(self, field), "an int ≥ 1")
        check_position("BasedConfig", self.position)
        if not self.rope_base > 1.0:
            raise _bad("rope_base", self.rope_base, "a float > 1")
        if not self.eps >= 0.0:
            raise _bad("eps", self.eps, "a float ≥ 0")


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """Based's 2nd-order Taylor feature map, φ(q)·φ(k) = 1 + q·k/√F + (q·k)²/(2F) ≈ exp(q·k/√F).

    Args:
        x: [..., F].

    Returns:
        [..., 1 + F + F²]: [1, x / F^¼, (x ⊗ x) / (√2 · √F)].
    """
    F_ = x.shape[-1]
    outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)  # [..., F²]
    ones = torch.ones_like(x[..., :1])
    return torch.cat([ones, x / F_**0.25, outer / (2**0.5 * F_**0.5)], dim=-1)


class Based(Layer):
    """Based as one mixer (composition chosen for this suite; Zoology alternates these by layer):

        h = x + ShortConv_k(x) ⊙ (W_g x)             Zoology's BaseConv (gated, residual)
        a = LinAttn(h): y_i = Σ_{j≤i} φ(q_i)·φ(k_j) v_j / (Σ_{j≤i} φ(q_i)·φ(k_j) + eps)
        s = SlidingWindowSoftmax(h): keys j ∈ (i − window, i]
        y = W_o (a + s)

    The linear branch trains in its quadratic form (1 + s + s²/2 masked scores, as Zoology's
    "quadratic" train view) and decodes with running sums Σφ(k)vᵀ and Σφ(k). The window branch
    calls the attention kernel with key_bias = 0, window = w and tie_break = "larger_index": all
    keys tie, so each row keeps its w most recent keys, i.e. exactly a sliding window.
    Decoding state: the last conv_kernel − 1 inputs, the running sums, and the last `window` keys.
    """

    def __init__(
        self, d_model: int, cfg: BasedConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(d_model, cfg, layer_idx=layer_idx, impl=impl)
        for field in ("n_heads", "window_heads"):
            if d_model % getattr(cfg, field):
                raise ValueError(
                    f"Based: d_model={d_model} is not divisible by {field}={getattr(cfg, field)}"
                )
        self.lin_head_dim = d_model // cfg.n_heads
        self.win_head_dim = d_model // cfg.window_heads
        check_rotated_dim(cfg.position, self.win_head_dim, "Based: window head dim")
        k = cfg.conv_kernel
        self.conv = nn.Conv1d(d_model, d_model, k, groups=d_model, padding=k - 1)
        self.gate_proj = nn.Linear(d_model, d_model, bias=False)
        self.lin_q = nn.Linear(d_model, cfg.n_heads * cfg.feature_dim, bias=False)
        self.lin_k = nn.Linear(d_model, cfg.n_heads * cfg.feature_dim, bias=False)
        self.lin_v = nn.Linear(d_model, d_model, bias=False)
        self.win_qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.pos = build_position(
            cfg.position, self.win_head_dim, rope_base=cfg.rope_base, impl=impl
        )
        init_normal(self.gate_proj, self.lin_q, self.lin_k, self.lin_v, self.win_qkv, self.out_proj)

    def mixing_flops_per_token(self, seq_len: int) -> None:
        """Not modelled: None, so the FLOPs count lists Based among its unknown mixers."""
        return None

    def _linear_inputs(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h [B, T, D] → q, k [B, T, Hl, F], v [B, T, Hl, D/Hl], in fp32 (or wider)."""
        compute = torch.promote_types(h.dtype, torch.float32)
        Hl = self.cfg.n_heads
        q = self.lin_q(h).unflatten(-1, (Hl, -1)).to(compute)
        k = self.lin_k(h).unflatten(-1, (Hl, -1)).to(compute)
        v = self.lin_v(h).unflatten(-1, (Hl, -1)).to(compute)
        return q, k, v

    def _window_inputs(self, h: torch.Tensor, offset: int) -> tuple[torch.Tensor, ...]:
        """h [B, T, D] → q, k, v [B, T, Hw, D/Hw] (q, k rotated when position is rope)."""
        q, k, v = self.win_qkv(h).unflatten(-1, (3, self.cfg.window_heads, -1)).unbind(2)
        q, k = self.pos(q, offset=offset), self.pos(k, offset=offset)
        self.resolved_impls.update(self.pos.resolved_impls)
        return q, k, v

    def _window_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Sliding-window softmax: q [B, T, Hw, E], k, v [B, S, Hw, E] (end-aligned) → [B, T, D]."""
        impl = self.resolve("attention", ATTENTION_IMPLS, q.device)
        zeros = torch.zeros(k.shape[0], k.shape[2], k.shape[1], device=k.device, dtype=k.dtype)
        o = attention(
            q,
            k,
            v,
            causal=True,
            key_bias=zeros,  # [B, Hw, S]: every key ties ...
            window=self.cfg.window,
            tie_break="larger_index",  # ... so the newest `window` keys win: a sliding window
            scale=self.win_head_dim**-0.5,
            impl=impl,
        )
        return o.flatten(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [B, T, D]. Returns: y [B, T, D], causal."""
        T = x.shape[1]
        h = x + self.conv(x.transpose(1, 2))[..., :T].transpose(1, 2) * self.gate_proj(x)
        # (a) linear attention, quadratic form: A_ij = φ(q_i)·φ(k_j) = 1 + s + s²/2, s = q·k/√F
        q, k, v = self._linear_inputs(h)
        s = torch.einsum("bihf,bjhf->bhij", q, k) / self.cfg.feature_dim**0.5  # [B, Hl, T, T]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        A = torch.where(causal, 1 + s + 0.5 * s * s, torch.zeros_like(s))
        num = torch.einsum("bhij,bjhe->bihe", A, v)  # [B, T, Hl, D/Hl]
        den = A.sum(-1).transpose(1, 2).unsqueeze(-1)  # [B, T, Hl, 1]
        lin = (num / (den + self.cfg.eps)).flatten(2).to(x.dtype)
        # (b) sliding-window softmax attention
        win = self._window_attend(*self._window_inputs(h, offset=0))
        return self.out_proj(lin + win)

    def init_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> dict:
        """Zero state.

        Returns: {"conv": [B, D, k − 1], "kv": [B, Hl, 1+F+F², D/Hl] fp32, "ksum": [B, Hl, 1+F+F²]
        fp32, "k", "v": [B, 0, Hw, D/Hw] (at most `window` rows), "pos": 0}.
        """
        cfg, Bsz = self.cfg, batch_size
        n_feat = 1 + cfg.feature_dim + cfg.feature_dim**2
        compute = torch.promote_types(dtype, torch.float32)
        kw = {"device": device}
        return {
            "conv": torch.zeros(Bsz, self.d_model, cfg.conv_kernel - 1, dtype=dtype, **kw),
            "kv": torch.zeros(Bsz, cfg.n_heads, n_feat, self.lin_head_dim, dtype=compute, **kw),
            "ksum": torch.zeros(Bsz, cfg.n_heads, n_feat, dtype=compute, **kw),
            "k": torch.zeros(Bsz, 0, cfg.window_heads, self.win_head_dim, dtype=dtype, **kw),
            "v": torch.zeros(Bsz, 0, cfg.window_heads, self.win_head_dim, dtype=dtype, **kw),
            "pos": 0,
        }

    def step(self, x: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Decode one token. Args: x [B, 1, D], state. Returns: (y [B, 1, D], new state)."""
        if x.shape[1] != 1:
            raise ValueError(f"Based.step: expects one token, got x.shape={tuple(x.shape)}")
        conv_in = torch.cat([state["conv"], x.transpose(1, 2)], dim=-1)  # [B, D, k]
        conv_out = (conv_in * self.conv.weight[:, 0, :]).sum(-1) + self.conv.bias  # [B, D]
        h = x + conv_out.unsqueeze(1) * self.gate_proj(x)  # [B, 1, D]
        # (a) linear attention, recurrent form with the explicit feature map
        q, k, v = self._linear_inputs(h)
        fq, fk = taylor_features(q[:, 0]), taylor_features(k[:, 0])  # [B, Hl, 1+F+F²]
        kv = state["kv"] + fk.unsqueeze(-1) * v[:, 0].unsqueeze(-2)  # [B, Hl, 1+F+F², D/Hl]
        ksum = state["ksum"] + fk
        num = torch.einsum("bhf,bhfe->bhe", fq, kv)
        den = (fq * ksum).sum(-1, keepdim=True)
        lin = (num / (den + self.cfg.eps)).flatten(1).unsqueeze(1).to(x.dtype)  # [B, 1, D]
        # (b) sliding window over the cached last `window` keys
        wq, wk, wv = self._window_inputs(h, offset=state["pos"])
        k_all = torch.cat([state["k"], wk], dim=1)[:, -self.cfg.window :]
        v_all = torch.cat([state["v"], wv], dim=1)[:, -self.cfg.window :]
        win = self._window_attend(wq, k_all, v_all)
        new_state = {
            "conv": conv_in[..., 1:],
            "kv": kv,
            "ksum": ksum,
            "k": k_all,
            "v": v_all,
            "pos": state["pos"] + 1,
        }
        return self.out_proj(lin + win), new_state
