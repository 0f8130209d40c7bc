"""Attention reference (docs/spec.md §2.3–2.4; DMA 2025): GQA softmax, per-key bias, top-w mask."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

TieBreak = Literal["smaller_index", "larger_index"]

# Counts held at once by `window_last_row` ([BH, chunk, S] int32: 16 MB, unless BH·S is larger).
_COUNT_CHUNK_ELEMS = 1 << 22


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


def priority_order(key_bias: Tensor, tie_break: TieBreak) -> Tensor:
    """Keys in the fixed total order (first = kept first): bias descending, then the tie rule.

    Args:
        key_bias: [B, H, S].
    Returns:
        [B, H, S] int64: entry r is the key of rank r.
    """
    S = key_bias.shape[-1]
    b = key_bias.detach()
    if tie_break == "larger_index":
        b = b.flip(-1)  # a stable sort then prefers the larger original index on ties
    order = torch.sort(b, dim=-1, descending=True, stable=True).indices  # [B, H, S]
    return S - 1 - order if tie_break == "larger_index" else order


def priority_rank(key_bias: Tensor, tie_break: TieBreak) -> Tensor:
    """Rank of each key in the fixed total order (0 = kept first): bias desc, then tie rule.

    Args:
        key_bias: [B, H, S].
    Returns:
        [B, H, S] int64 ranks, a permutation of 0..S−1 per (batch, head).
    """
    S = key_bias.shape[-1]
    order = priority_order(key_bias, tie_break)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(S, device=order.device).expand_as(order))
    return rank


@torch.no_grad()
def window_last_row(
    key_bias: Tensor, window: int, *, tie_break: TieBreak = "smaller_index", q_offset: int = 0
) -> Tensor:
    """Per key, the last query row that keeps it under the top-`window` rule (docs/spec.md §2.4).

    Row i (key coordinates) keeps key j iff j ≤ i and c_j(i) < window, where c_j(i) = #{k ≤ i :
    k outranks j}. The bias does not depend on the query and c_j(i) never decreases in i, so
    each key is kept on one contiguous range of rows starting at j (or on none): the range ends
    just before m_j, the first row where c_j reaches the window (S when it never does). c_j(i)
    is a running count over keys, so m_j = searchsorted(cumsum_k [rank_k < rank_j], window):
    O(S²) elementwise work per (batch, head), vectorised, in chunks of keys j that hold about
    _COUNT_CHUNK_ELEMS counts at a time (a sweep over rows is O(S·w) work but one Python step
    per row: 3–7× slower at S ≤ 256, about even at S = 2048 with B·H = 8). A key outranked w
    times before its own row is kept nowhere and gets j − 1.

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
    BH = Bsz * H
    dev = key_bias.device
    rank = priority_rank(key_bias, tie_break).reshape(BH, S)  # [BH, S]: 0 = kept first
    w = min(window, S)  # counts never exceed S − 1, so w ≥ S keeps every key to the end
    j = torch.arange(S, device=dev)
    last = torch.empty_like(rank)  # [BH, S]
    chunk = max(1, _COUNT_CHUNK_ELEMS // max(BH * S, 1))
    for j0 in range(0, S, chunk):
        rj = rank[:, j0 : j0 + chunk]  # [BH, c]: the keys j of this chunk
        # 1. c_j(i) for every row i: running count of keys k ≤ i that outrank j.
        counts = (rank[:, None, :] < rj[:, :, None]).cumsum(-1, dtype=torch.int32)  # [BH, c, S]
        # 2. m_j: the first row whose count reaches w (S if none); rows < m_j keep j.
        target = torch.full((BH, rj.shape[1], 1), w, dtype=torch.int32, device=dev)
        m = torch.searchsorted(counts, target)[..., 0]  # [BH, c]
        # 3. Kept on rows j..m_j − 1, or nowhere (j − 1) when m_j ≤ j.
        last[:, j0 : j0 + chunk] = torch.maximum(m - 1, j[j0 : j0 + chunk] - 1)
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
    ct = _compute_dtype(q, k, v, key_bias)
    H, K, V = q.shape[2], q.shape[3], v.shape[3]
    E = max(K + 1, V)  # common head width
    qh = q.to(ct)
    kh = _expand_kv(k.to(ct), H)  # [B, S, H, K]
    vh = _expand_kv(v.to(ct), H)  # [B, S, H, V]
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
    """Reference attention, all through SDPA: plain; with the bias in a key channel; windowed.

    Args/Returns: as `wm_bench.kernels.attention.attention` (inputs already validated).
    """
    T, S = q.shape[1], k.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
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

    Independent of `attention`: einsum scores, the bias added to them, masked_fill, softmax.

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
