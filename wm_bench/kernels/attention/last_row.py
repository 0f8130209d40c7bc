"""The DMA top-w mask in O(S) memory: the last query row that keeps each key (docs/spec.md §2.4).

`reference.direct_window_mask` states the rule with an O(S²) mask; this is its compact form, used
by the CPU fast path, the mask diagnostics and as the oracle of the Triton window kernel.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

TieBreak = Literal["smaller_index", "larger_index"]

# Counts held at once by `window_last_row` ([BH, chunk, S] int32: 16 MB, unless BH·S is larger).
_COUNT_CHUNK_ELEMS = 1 << 22


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
