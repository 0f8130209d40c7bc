"""Attention CPU fast path: torch's fused SDPA, and the DMA top-w mask in O(S) memory.

Same contract as `reference.attention`, which it is tested against: no bias goes straight to
SDPA; a per-key bias rides in one extra key channel so SDPA stays on its fused kernel; the top-w
window becomes one "last row" per key (`window_last_row`) and a boolean mask built from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from wm_bench.kernels._impl import compute_dtype
from wm_bench.kernels.attention.last_row import window_last_row
from wm_bench.kernels.attention.options import AttentionOptions
from wm_bench.kernels.attention.reference import causal_mask, expand_kv


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool, scale: float) -> Tensor:
    """No bias, no window: torch's scaled_dot_product_attention in fp32 (GQA by expansion).

    Args/Returns: as `reference.attention` (no bias, no window).
    """
    ct = compute_dtype(q, k, v)
    T, H, S = q.shape[1], q.shape[2], k.shape[1]
    qh = q.to(ct).transpose(1, 2)  # [B, H, T, K]
    kh = expand_kv(k.to(ct), H).transpose(1, 2)  # [B, H, S, K]
    vh = expand_kv(v.to(ct), H).transpose(1, 2)  # [B, H, S, V]
    mask = None
    if causal and T != S:
        mask = causal_mask(T, S, q.device)  # SDPA's is_causal aligns to the start, not the end
    o = F.scaled_dot_product_attention(
        qh, kh, vh, attn_mask=mask, is_causal=causal and T == S, scale=scale
    )  # [B, H, T, V]
    return o.transpose(1, 2).to(q.dtype)


def _pad_last(t: Tensor, width: int) -> Tensor:
    """Zero-pad the last dim of t up to `width` (no copy when it already has it)."""
    return t if t.shape[-1] == width else F.pad(t, (0, width - t.shape[-1]))


def biased_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_bias: Tensor,
    keep: Tensor | None,
    *,
    is_causal: bool,
    scale: float,
) -> Tensor:
    """softmax(q·k·scale + bias, masked) · v through SDPA, the bias riding in one extra channel.

    q·k·scale + b_j = [q, 1]·[k, b_j / scale]·scale: the per-key bias becomes channel K of the
    keys (and a constant 1 in the queries), so SDPA needs no float mask and autograd carries
    dL/db_j = dL/dk'[j, K] / scale. A bias inside a float attn_mask would also be exact, but a
    mask that needs a gradient sends CPU SDPA to its unfused math path. The fused CPU kernel
    also wants one head width for q, k and v, so the narrower side is padded with zero
    channels (zero in q and k: no score change; zero in v: output channels that are dropped).
    The mask, when given, is boolean and never differentiated. fp32 math (fp64 for fp64 inputs).

    Args:
        q: [B, T, H, K]; k: [B, S, Hkv, K]; v: [B, S, Hkv, V].
        key_bias: [B, H, S].
        keep: [B or 1, H or 1, T, S] bool or None (every key visible unless is_causal).
        is_causal: T == S causal attention without a mask (SDPA's own start-aligned mask).
        scale: score scale.
    Returns:
        o: [B, T, H, V] in q's dtype.
    """
    ct = compute_dtype(q, k, v, key_bias)
    H, K, V = q.shape[2], q.shape[3], v.shape[3]
    E = max(K + 1, V)  # common head width
    qh = q.to(ct)
    kh = expand_kv(k.to(ct), H)  # [B, S, H, K]
    vh = expand_kv(v.to(ct), H)  # [B, S, H, V]
    bias = key_bias.to(ct).transpose(1, 2)[..., None] / scale  # [B, S, H, 1]
    q1 = _pad_last(torch.cat([qh, torch.ones_like(qh[..., :1])], dim=-1), E)  # [B, T, H, E]
    k1 = _pad_last(torch.cat([kh, bias], dim=-1), E)  # [B, S, H, E]
    v1 = _pad_last(vh, E)  # [B, S, H, E]
    o = F.scaled_dot_product_attention(
        q1.transpose(1, 2),
        k1.transpose(1, 2),
        v1.transpose(1, 2),
        attn_mask=keep,
        is_causal=is_causal,
        scale=scale,
    )  # [B, H, T, E]
    return o[..., :V].transpose(1, 2).to(q.dtype)


def attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions) -> Tensor:
    """Attention through SDPA: plain; with the bias in a key channel; windowed by last rows.

    Args/Returns: as `wm_bench.kernels.attention.attention` (inputs validated, scale resolved).
    """
    causal, key_bias, window, scale, tie_break = opts
    assert scale is not None, "api.attention resolves the scale"
    T, S = q.shape[1], k.shape[1]
    if key_bias is None and window is None:
        return sdpa_attention(q, k, v, causal=causal, scale=scale)
    if window is None:
        # Bias only: SDPA's own causal mask (skips masked blocks) when queries and keys align.
        aligned = causal and T == S
        keep = causal_mask(T, S, q.device)[None, None] if causal and not aligned else None
        return biased_sdpa(q, k, v, key_bias, keep, is_causal=aligned, scale=scale)
    # One last row per key describes the whole top-w mask: row i keeps j iff j ≤ i' ≤ last_row[j].
    last = window_last_row(key_bias, window, tie_break=tie_break, q_offset=S - T)  # [B, H, S]
    rows = torch.arange(T, device=q.device)[:, None]  # [T, 1] query rows
    keep = causal_mask(T, S, q.device)[None, None] & (rows <= last[:, :, None, :])  # [B, H, T, S]
    return biased_sdpa(q, k, v, key_bias, keep, is_causal=False, scale=scale)
