"""Attention reference (docs/spec.md §2.3–2.4; DMA 2025): GQA softmax, per-key bias, top-w mask.

The readable definition: scores by einsum, the per-key bias added to them, the mask from the
direct rank rule, softmax, values. O(T·S) memory per (batch, head): the ground truth the fast
paths are tested against. The CPU training path (SDPA, the top-w mask in O(S) memory) is in
`torch_fast.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wm_bench.kernels._impl import compute_dtype
from wm_bench.kernels.attention.last_row import TieBreak


def expand_kv(t: Tensor, n_heads: int) -> Tensor:
    """[B, S, Hkv, X] → [B, S, H, X]: query head h reads kv head h // (H // Hkv)."""
    return t.repeat_interleave(n_heads // t.shape[2], dim=2)


def causal_mask(T: int, S: int, device: torch.device) -> Tensor:
    """[T, S] bool: query i (aligned to the END of the keys) sees key j iff j ≤ i + S − T."""
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(S, device=device)[None, :]
    return j <= i + (S - T)


def direct_window_mask(
    key_bias: Tensor, window: int, T: int, *, tie_break: TieBreak = "smaller_index"
) -> Tensor:
    """The DMA top-w mask by its definition: row i keeps key j iff j ≤ i and rank_i(j) < window.

    rank_i(j) = #{k ≤ i : k outranks j}, where k outranks j iff b_k > b_j, or b_k = b_j and k
    is preferred by the tie rule. O(S²) memory.

    Args:
        key_bias: [B, H, S]; T: query rows, aligned to the end of the keys (row i ↔ key i + S − T).
    Returns:
        [B, H, T, S] bool keep-mask (already causal).
    """
    S = key_bias.shape[-1]
    b = key_bias.detach()
    bj, bk = b[..., :, None], b[..., None, :]  # [B, H, S(j), 1], [B, H, 1, S(k)]
    j = torch.arange(S, device=b.device)[:, None]
    k = torch.arange(S, device=b.device)[None, :]
    prefer_k = k < j if tie_break == "smaller_index" else k > j  # [S(j), S(k)]
    outranks = (bk > bj) | ((bk == bj) & prefer_k)  # [B, H, S(j), S(k)]
    rank_at_row = outranks.long().cumsum(dim=-1)  # [B, H, S(j), S(i)]: #{k ≤ i outranking j}
    keep = (rank_at_row < window).transpose(-1, -2)  # [B, H, S(i), S(j)]
    keep = keep & causal_mask(S, S, b.device)
    return keep[..., S - T :, :]  # [B, H, T, S]


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    key_bias: Tensor | None = None,
    window: int | None = None,
    scale: float | None = None,
    tie_break: TieBreak = "smaller_index",
) -> Tensor:
    """softmax(q·kᵀ·scale + bias, masked) · v, in fp32 (fp64 for fp64 inputs).

    Args/Returns: as `wm_bench.kernels.attention.attention` (inputs already validated):
        q [B, T, H, K], k [B, S, Hkv, K], v [B, S, Hkv, V], key_bias [B, H, S] → o [B, T, H, V].
    """
    ct = compute_dtype(q, k, v, key_bias)
    T, H, S = q.shape[1], q.shape[2], k.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale

    # 1. Which keys each query row keeps: the top-w rule (already causal), causal, or all.
    if window is not None:
        keep = direct_window_mask(key_bias, window, T, tie_break=tie_break)  # [B, H, T, S]
    elif causal:
        keep = causal_mask(T, S, q.device)[None, None]  # [1, 1, T, S]
    else:
        keep = None

    # 2. Scores, GQA by repeating each kv head for its query heads, plus the per-key bias.
    kh = expand_kv(k.to(ct), H)  # [B, S, H, K]
    vh = expand_kv(v.to(ct), H)  # [B, S, H, V]
    scores = torch.einsum("bthk,bshk->bhts", q.to(ct), kh) * scale  # [B, H, T, S]
    if key_bias is not None:
        scores = scores + key_bias.to(ct)[:, :, None, :]

    # 3. Masked keys get −inf before the softmax: exact zeros after it.
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    p = torch.softmax(scores, dim=-1)  # [B, H, T, S]

    # 4. Weighted sum of the values.
    return torch.einsum("bhts,bshv->bthv", p, vh).to(q.dtype)  # [B, T, H, V]
