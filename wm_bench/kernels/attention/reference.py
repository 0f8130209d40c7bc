"""Attention reference (SPEC §2.3–2.4, DMA 2025 form): GQA softmax, per-key bias, top-w window."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

TieBreak = Literal["smaller_index", "larger_index"]


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """fp32, or fp64 when any input is fp64: the math never runs below fp32."""
    dtype = torch.float32
    for t in tensors:
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _expand_kv(t: Tensor, n_heads: int) -> Tensor:
    """[B, S, Hkv, X] → [B, S, H, X]: query head h reads kv head h // (H // Hkv)."""
    return t.repeat_interleave(n_heads // t.shape[2], dim=2)


def causal_mask(T: int, S: int, device: torch.device) -> Tensor:
    """[T, S] bool: query i (aligned to the END of the keys) sees key j iff j ≤ i + S − T."""
    i = torch.arange(T, device=device)[:, None]
    j = torch.arange(S, device=device)[None, :]
    return j <= i + (S - T)


def priority_rank(key_bias: Tensor, tie_break: TieBreak) -> Tensor:
    """Rank of each key in the fixed total order (0 = kept first): bias desc, then tie rule.

    Args:
        key_bias: [B, H, S].
    Returns:
        [B, H, S] int64 ranks, a permutation of 0..S−1 per (batch, head).
    """
    S = key_bias.shape[-1]
    b = key_bias.detach()
    if tie_break == "larger_index":
        b = b.flip(-1)  # a stable sort then prefers the larger original index on ties
    order = torch.sort(b, dim=-1, descending=True, stable=True).indices  # [B, H, S]
    if tie_break == "larger_index":
        order = S - 1 - order
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(S, device=b.device).expand_as(order))
    return rank


@torch.no_grad()
def window_last_row(
    key_bias: Tensor, window: int, *, tie_break: TieBreak = "smaller_index", q_offset: int = 0
) -> Tensor:
    """Per key, the last query row that keeps it under the top-`window` rule (SPEC §2.4).

    Row i (key coordinates) keeps key j iff j ≤ i and j ranks < window among keys 0..i. The
    bias does not depend on the query, so each key is kept on one contiguous range of rows
    starting at j (or on none). Sweep over rows keeping the current top-w set: adding key i can
    evict exactly one key (the lowest-ranked of the w + 1), which then expires at row i − 1.
    O(S·w) work, vectorised over (batch, head); a key evicted on arrival gets j − 1 (kept nowhere).

    Args:
        key_bias: [B, H, S] float per-key bias (larger = kept first).
        window: w ≥ 1.
        tie_break: "smaller_index" or "larger_index" wins among equal biases.
        q_offset: key index of query row 0 (S − T for end-aligned causal attention).
    Returns:
        last_row: [B, H, S] int64, in query-row coordinates (key coordinates − q_offset);
        keys never evicted get S − 1 − q_offset. Row i keeps key j iff j ≤ i + q_offset ≤
        last_row[j] + q_offset.
    """
    Bsz, H, S = key_bias.shape
    dev = key_bias.device
    rank = priority_rank(key_bias, tie_break).reshape(Bsz * H, S)  # [BH, S]
    last = torch.full_like(rank, S - 1)  # [BH, S]
    w = min(window, S)
    kept_rank = rank[:, :w].clone()  # [BH, w]: the first w keys are all kept at row w − 1
    kept_idx = torch.arange(w, device=dev).expand(Bsz * H, w).clone()  # [BH, w]
    rows = torch.arange(Bsz * H, device=dev)
    for i in range(w, S):
        # 1. The worst kept key vs the arriving key i: the worse of the two leaves the set.
        slot = kept_rank.argmax(dim=-1)  # [BH]: ranks are distinct, so argmax is unique
        worst_rank = kept_rank.gather(-1, slot[:, None])[:, 0]  # [BH]
        new_rank = rank[:, i]  # [BH]
        arrival_evicted = new_rank > worst_rank  # [BH]
        evicted = torch.where(arrival_evicted, i, kept_idx[rows, slot])  # [BH]
        # 2. The evicted key's last row is i − 1; the arriving key (if it stays) takes the slot.
        last[rows, evicted] = i - 1
        stay = ~arrival_evicted
        kept_rank[rows[stay], slot[stay]] = new_rank[stay]
        kept_idx[rows[stay], slot[stay]] = i
    return (last - q_offset).reshape(Bsz, H, S)


def direct_window_mask(
    key_bias: Tensor, window: int, T: int, *, tie_break: TieBreak = "smaller_index"
) -> Tensor:
    """Direct definition of the DMA mask: row i keeps key j iff j ≤ i and rank_i(j) < window.

    rank_i(j) = #{k ≤ i : k outranks j}, where k outranks j iff b_k > b_j, or b_k = b_j and k
    is preferred by the tie rule. O(S²) memory: the ground truth for tests, not for training.

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


def masked_attention(
    q: Tensor, k: Tensor, v: Tensor, keep: Tensor | None, key_bias: Tensor | None, scale: float
) -> Tensor:
    """Dense masked softmax attention in fp32: softmax(q·k·scale + bias, masked) · v.

    Args:
        q: [B, T, H, K]; k: [B, S, Hkv, K]; v: [B, S, Hkv, V].
        keep: [B or 1, H or 1, T, S] bool or None (all visible).
        key_bias: [B, H, S] or None.
    Returns:
        o: [B, T, H, V] in q's dtype.
    """
    ct = _compute_dtype(q, k, v, key_bias)
    H = q.shape[2]
    kh = _expand_kv(k.to(ct), H)  # [B, S, H, K]
    vh = _expand_kv(v.to(ct), H)  # [B, S, H, V]
    scores = torch.einsum("bthk,bshk->bhts", q.to(ct), kh) * scale  # [B, H, T, S]
    if key_bias is not None:
        scores = scores + key_bias.to(ct)[:, :, None, :]
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))  # before softmax: exact zeros
    p = torch.softmax(scores, dim=-1)  # [B, H, T, S]
    return torch.einsum("bhts,bshv->bthv", p, vh).to(q.dtype)


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool, scale: float) -> Tensor:
    """No bias, no window: torch's scaled_dot_product_attention in fp32 (GQA by expansion).

    Args/Returns: as `masked_attention`.
    """
    ct = _compute_dtype(q, k, v)
    T, H, S = q.shape[1], q.shape[2], k.shape[1]
    qh = q.to(ct).transpose(1, 2)  # [B, H, T, K]
    kh = _expand_kv(k.to(ct), H).transpose(1, 2)  # [B, H, S, K]
    vh = _expand_kv(v.to(ct), H).transpose(1, 2)  # [B, H, S, V]
    mask = None
    if causal and T != S:
        mask = causal_mask(T, S, q.device)  # SDPA's is_causal aligns to the start, not the end
    o = F.scaled_dot_product_attention(
        qh, kh, vh, attn_mask=mask, is_causal=causal and T == S, scale=scale
    )  # [B, H, T, V]
    return o.transpose(1, 2).to(q.dtype)


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
    """Reference attention: SDPA without a bias, else dense masked fp32 with the last-row window.

    Args/Returns: as `wm_bench.kernels.attention.attention` (inputs already validated).
    """
    T, S = q.shape[1], k.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if key_bias is None and window is None:
        return sdpa_attention(q, k, v, causal=causal, scale=scale)
    keep = causal_mask(T, S, q.device)[None, None] if causal else None  # [1, 1, T, S]
    if window is not None:
        # 1. One last row per key describes the whole top-w mask: keep iff j ≤ i' ≤ last_row[j].
        last = window_last_row(key_bias, window, tie_break=tie_break, q_offset=S - T)  # [B, H, S]
        rows = torch.arange(T, device=q.device)[:, None]  # [T, 1] query rows
        keep = keep & (rows <= last[:, :, None, :])  # [B, H, T, S]
    return masked_attention(q, k, v, keep, key_bias, scale)


def dense_attention_reference(
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
    """Ground truth: a direct T×S masked softmax in fp32 from the direct rank definition (no SDPA).

    Args/Returns: as `attention` (inputs already validated).
    """
    T, S = q.shape[1], k.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if window is not None:
        keep = direct_window_mask(key_bias, window, T, tie_break=tie_break)  # [B, H, T, S]
    elif causal:
        keep = causal_mask(T, S, q.device)[None, None]  # [1, 1, T, S]
    else:
        keep = None
    return masked_attention(q, k, v, keep, key_bias, scale)
