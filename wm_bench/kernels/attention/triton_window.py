"""DMA top-w selection in Triton (docs/spec.md §2.4): per key, the last row keeping it, O(S) memory.

The mask of Dynamic Mask Attention is described by one integer per key. Ranks come from a sort
of the bias (O(S log S), the tie rule folded in); then key j, of rank r_j, is kept on rows
j .. m_j − 1 where m_j is the first row at which w keys of smaller rank have appeared (S when
that never happens; rows ≤ j when the key is never kept). `_window_last_row` finds m_j by a
scan over the keys in index order that stops as soon as the count reaches w: programs take
blocks of keys CONSECUTIVE IN RANK ORDER, so a block's keys stop at about the same place, and a
key of rank r stops after about w·S/r keys: O(S·w·log(S/w)) comparisons per (batch, head) in
all, no S×S buffer (the reference builds [chunk, S] counts: O(S²) work and memory traffic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from wm_bench.kernels._triton import launch_config

# Keys per program (consecutive ranks) and keys per scan step. Under the interpreter every
# program runs in Python: small tiles keep tests quick and still cover multi-tile scans.
WINDOW_GPU_BLOCKS = {"BLOCK_J": 32, "BLOCK_K": 128, "num_warps": 4}
WINDOW_INTERPRET_BLOCKS = {"BLOCK_J": 8, "BLOCK_K": 16, "num_warps": 1}


@triton.jit
def _window_last_row(
    RANK,  # [BH, S] int32: rank of key j (0 = kept first)
    ORDER,  # [BH, S] int32: ORDER[r] = the key of rank r
    LAST,  # [BH, S] int32 out: last row (key coordinates) that keeps key j; j − 1 = never
    S,
    W,  # the window w (≥ 1)
    BLOCK_J: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_r = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    rank_ptr = RANK + bh * S
    r = pid_r * BLOCK_J + tl.arange(0, BLOCK_J)  # ranks of this block's keys
    valid = r < S
    j = tl.load(ORDER + bh * S + r, mask=valid, other=0)
    # Keys of rank < w are outranked by fewer than w keys: kept from their own row to the end.
    found = (r < W) | ~valid
    m = tl.full([BLOCK_J], 0, tl.int32) + S  # first row with w outranking keys (S = never)
    cnt = tl.zeros([BLOCK_J], dtype=tl.int32)  # outranking keys seen so far
    k0 = 0
    n_open = tl.sum((~found).to(tl.int32), axis=0)
    while (k0 < S) & (n_open > 0):
        k = k0 + tl.arange(0, BLOCK_K)
        rk = tl.load(rank_ptr + k, mask=k < S, other=2147483647)  # padding outranks nothing
        outr = (rk[None, :] < r[:, None]).to(tl.int32)  # [BLOCK_J, BLOCK_K]
        run = tl.cumsum(outr, axis=1) + cnt[:, None]
        hit = run >= W
        first = tl.min(tl.where(hit, k[None, :], S), axis=1)  # S when the count stays below w
        m = tl.where(found, m, first)
        found = found | (first < S)
        cnt += tl.sum(outr, axis=1)
        n_open = tl.sum((~found).to(tl.int32), axis=0)
        k0 += BLOCK_K
    last = tl.maximum(m - 1, j - 1)
    tl.store(LAST + bh * S + j, last, mask=valid)


def key_order(key_bias: Tensor, tie_break: str) -> Tensor:
    """[B, H, S] int64: the keys from kept-first to kept-last (bias descending, then the tie rule).

    A stable descending sort keeps equal biases in index order (smaller index first); for
    "larger_index" the keys are sorted back to front and the positions mapped back.
    """
    b = key_bias.detach()
    if tie_break == "smaller_index":
        return torch.sort(b, dim=-1, descending=True, stable=True).indices
    S = b.shape[-1]
    return (S - 1) - torch.sort(b.flip(-1), dim=-1, descending=True, stable=True).indices


def window_last_row_triton(
    key_bias: Tensor, window: int, *, tie_break: str = "smaller_index"
) -> Tensor:
    """Per key, the last row (key coordinates) that keeps it: [B, H, S] int32 (see module doc).

    Same contract as `last_row.window_last_row` with q_offset = 0 (int32 here, rows in key
    coordinates). Like every Triton path it does not import the reference it is tested against.
    """
    Bsz, H, S = key_bias.shape
    order = key_order(key_bias, tie_break).reshape(Bsz * H, S)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(S, device=order.device).expand_as(order))
    order, rank = order.to(torch.int32).contiguous(), rank.to(torch.int32).contiguous()
    last = torch.empty_like(rank)
    cfg = launch_config(WINDOW_GPU_BLOCKS, WINDOW_INTERPRET_BLOCKS)
    grid = (triton.cdiv(S, cfg["BLOCK_J"]), Bsz * H)
    _window_last_row[grid](
        rank, order, last, S, min(window, S),
        BLOCK_J=cfg["BLOCK_J"], BLOCK_K=cfg["BLOCK_K"], num_warps=cfg["num_warps"],
    )  # fmt: skip
    return last.view(Bsz, H, S)
