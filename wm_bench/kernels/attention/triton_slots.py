"""DMA top-w attention that gathers the kept keys compactly: O(T·w) work, O(T) memory.

Why. Under a top-w window the keys a query block needs are scattered (with an i.i.d. bias the
kept keys are spread over every key block), so skipping whole key blocks saves almost nothing.
This path visits only the keys some row of the block keeps.

Slots. Sweep the rows in order keeping the current top-w set. While it is not full every key
enters; afterwards key r enters at its own row only by evicting the set's worst key e (which then
has last[e] = r − 1). Give the first w keys one slot each and let an entering key take the slot
of the key it evicts. Then every kept key lives in exactly one slot, the keys of a slot form a
chain j₀ = s < j₁ < j₂ < … with j_{t+1} = last[j_t] + 1, and their lifetimes [j_t, last[j_t]]
tile the rows. So at any row r the kept keys born before r are "the last key born before r" of
each of the w slots (when still alive), plus keys born at rows of the block itself.

Layout (per batch·head, O(S)): `chain` = the kept keys sorted by (slot, index), `seg[s]` = start
of slot s in `chain`. A query block starting at key coordinate r0 finds each slot's key by a
vectorised binary search in its segment (≈ log2 S gathers), gathers those K/V rows as one tile
per BLOCK_N slots, then handles the keys born inside the block as one contiguous diagonal tile.
Backward: dQ mirrors the forward; dK/dV/dbias walk each slot's chain in row order (one program
per BLOCK_N slots, one flush per key, no atomics), then a diagonal kernel adds the rows of each
key's own block. Everything is deterministic.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from wm_bench.kernels.attention.triton_kernels import _load_rows, _score_grads, _softmax_step


def window_chains(last: Tensor, window: int) -> tuple[Tensor, Tensor, int]:
    """Slot chains from `last` (see module doc).

    Args:
        last: [BH, S] int32, last row (key coordinates) keeping each key; j − 1 = never kept.
        window: w (< S).
    Returns:
        chain [BH, S] int32 (kept keys slot-major, then padding with S), seg [BH, w + 1] int32,
        and the binary-search step count ⌈log2(S + 1)⌉.
    """
    BH, S = last.shape
    W = min(window, S)
    dev = last.device
    j = torch.arange(S, device=dev)
    lst = last.long()
    kept = lst >= j
    nxt = lst + 1  # the key that takes j's slot when j is evicted
    has_next = kept & (nxt < S)
    prev = torch.full((BH, S + 1), S, dtype=torch.long, device=dev)
    prev.scatter_(1, torch.where(has_next, nxt, S), torch.where(has_next, j, S).expand(BH, S))
    # Parent pointers: slot heads (j < w) point to themselves, later kept keys to the key they
    # evicted, unkept keys to the sentinel S; pointer jumping finds every key's slot.
    par = torch.where(j < W, j, torch.where(kept, prev[:, :S], S))
    par = torch.cat([par, torch.full((BH, 1), S, dtype=torch.long, device=dev)], dim=1)
    for _ in range(max(1, math.ceil(math.log2(S + 1)))):
        par = par.gather(1, par)
    slot = par[:, :S]  # [BH, S]: in [0, w) for kept keys, S otherwise
    order = torch.argsort(slot * (S + 1) + j, dim=1)
    sorted_slot = slot.gather(1, order)
    chain = torch.where(sorted_slot < W, order, S).to(torch.int32).contiguous()
    bounds = torch.arange(W + 1, device=dev).expand(BH, W + 1).contiguous()
    seg = torch.searchsorted(sorted_slot.contiguous(), bounds).to(torch.int32).contiguous()
    return chain, seg, max(1, math.ceil(math.log2(S + 1)))


@triton.jit
def _slot_keys(CHAIN, SEG, LAST, bh, S, W, r0, g0, n_steps, BLOCK_N: tl.constexpr):
    """For BLOCK_N slots from g0: the slot's last key born before key coordinate r0, whether it
    is still alive at r0, and its last row. Returns (cur, alive, last)."""
    slots = g0 + tl.arange(0, BLOCK_N)
    ok = slots < W
    lo = tl.load(SEG + bh * (W + 1) + slots, mask=ok, other=0)
    hi = tl.load(SEG + bh * (W + 1) + slots + 1, mask=ok, other=0)
    a = lo
    b = hi
    for _ in range(n_steps):  # a = lo + #{chain keys < r0}: the segment is sorted by index
        go = a < b
        mid = (a + b) // 2
        v = tl.load(CHAIN + bh * S + mid, mask=go, other=0)
        right = go & (v < r0)
        a = tl.where(right, mid + 1, a)
        b = tl.where(go & ~right, mid, b)
    has = a > lo
    cur = tl.load(CHAIN + bh * S + a - 1, mask=has, other=0)
    last = tl.load(LAST + bh * S + cur, mask=has, other=-1)
    return cur, has & (last >= r0), last


@triton.jit
def _attn_fwd_slots(
    Q, K, V, BIAS, LAST, CHAIN, SEG, O, LSE,
    T, S, H, GROUP, OFF, W, n_steps, scale_log2,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_ob, stride_ot, stride_oh,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    hk = h // GROUP
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < T
    rows_kc = rows + OFF
    r0 = pid_m * BLOCK_M + OFF
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = _load_rows(Q + b * stride_qb + h * stride_qh, rows, stride_qt, row_ok, offs_dk, DK)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    # 1. Keys born before the block: one per slot, gathered.
    for g0 in range(0, W, BLOCK_N):
        cur, alive, last = _slot_keys(CHAIN, SEG, LAST, bh, S, W, r0, g0, n_steps, BLOCK_N)
        if tl.max(alive.to(tl.int32), axis=0) > 0:
            k = _load_rows(k_base, cur, stride_ks, alive, offs_dk, DK)
            kb = tl.load(BIAS + bh * S + cur, mask=alive, other=0.0) * 1.4426950408889634
            keep = alive[None, :] & (rows_kc[:, None] <= last[None, :]) & row_ok[:, None]
            v = _load_rows(v_base, cur, stride_vs, alive, offs_dv, DV)
            m_i, l_i, acc = _softmax_step(q, k, v, kb, keep, m_i, l_i, acc, scale_log2, DOT_PREC)
    # 2. Keys born inside the block: contiguous.
    for n0 in range(0, BLOCK_M, BLOCK_N):
        cols = r0 + n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < S
        last = tl.load(LAST + bh * S + cols, mask=col_ok, other=-1)
        k = _load_rows(k_base, cols, stride_ks, col_ok, offs_dk, DK)
        kb = tl.load(BIAS + bh * S + cols, mask=col_ok, other=0.0) * 1.4426950408889634
        keep = col_ok[None, :] & (cols[None, :] <= rows_kc[:, None])
        keep = keep & (rows_kc[:, None] <= last[None, :]) & row_ok[:, None]
        v = _load_rows(v_base, cols, stride_vs, col_ok, offs_dv, DV)
        m_i, l_i, acc = _softmax_step(q, k, v, kb, keep, m_i, l_i, acc, scale_log2, DOT_PREC)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    o = acc / l_safe[:, None]
    o_ptrs = O + b * stride_ob + h * stride_oh + rows[:, None] * stride_ot + offs_dv[None, :]
    tl.store(o_ptrs, o.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_dv < DV)[None, :])
    tl.store(LSE + bh * T + rows, m_i + tl.log2(l_safe), mask=row_ok)


@triton.jit
def _attn_bwd_dq_slots(
    Q, K, V, BIAS, LAST, CHAIN, SEG, DO, LSE, DELTA, DQ,
    T, S, H, GROUP, OFF, W, n_steps, scale_log2, scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_dob, stride_dot, stride_doh,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """dQ of one query block over the same keys as the forward (slots, then the diagonal)."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    hk = h // GROUP
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < T
    rows_kc = rows + OFF
    r0 = pid_m * BLOCK_M + OFF
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    qmask = row_ok[:, None] & (offs_dk < DK)[None, :]
    q_off = b * stride_qb + h * stride_qh + rows[:, None] * stride_qt + offs_dk[None, :]
    q = tl.load(Q + q_off, mask=qmask, other=0.0)
    do = _load_rows(DO + b * stride_dob + h * stride_doh, rows, stride_dot, row_ok, offs_dv, DV)
    lse = tl.load(LSE + bh * T + rows, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + bh * T + rows, mask=row_ok, other=0.0)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    dq_acc = tl.zeros([BLOCK_M, BLOCK_DK], dtype=tl.float32)
    for g0 in range(0, W, BLOCK_N):
        cur, alive, last = _slot_keys(CHAIN, SEG, LAST, bh, S, W, r0, g0, n_steps, BLOCK_N)
        if tl.max(alive.to(tl.int32), axis=0) > 0:
            k = _load_rows(k_base, cur, stride_ks, alive, offs_dk, DK)
            v = _load_rows(v_base, cur, stride_vs, alive, offs_dv, DV)
            kb = tl.load(BIAS + bh * S + cur, mask=alive, other=0.0) * 1.4426950408889634
            keep = alive[None, :] & (rows_kc[:, None] <= last[None, :]) & row_ok[:, None]
            _, ds = _score_grads(q, k, v, do, lse, delta, kb, keep, scale_log2, DOT_PREC)
            dq_acc += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    for n0 in range(0, BLOCK_M, BLOCK_N):
        cols = r0 + n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < S
        last = tl.load(LAST + bh * S + cols, mask=col_ok, other=-1)
        k = _load_rows(k_base, cols, stride_ks, col_ok, offs_dk, DK)
        v = _load_rows(v_base, cols, stride_vs, col_ok, offs_dv, DV)
        kb = tl.load(BIAS + bh * S + cols, mask=col_ok, other=0.0) * 1.4426950408889634
        keep = col_ok[None, :] & (cols[None, :] <= rows_kc[:, None])
        keep = keep & (rows_kc[:, None] <= last[None, :]) & row_ok[:, None]
        _, ds = _score_grads(q, k, v, do, lse, delta, kb, keep, scale_log2, DOT_PREC)
        dq_acc += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    tl.store(DQ + q_off, (dq_acc * scale).to(DQ.dtype.element_ty), mask=qmask)


@triton.jit
def _attn_bwd_dkv_slots(
    Q, K, V, BIAS, LAST, CHAIN, SEG, DO, LSE, DELTA, DKQ, DVQ, DBIAS,
    T, S, H, GROUP, OFF, W, scale_log2,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_dob, stride_dot, stride_doh,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """Per BLOCK_N slots of one query head: walk the query blocks in order, each slot's current
    key accumulating dK, dV, dbias from the rows after its own block; flushed once per key into
    DKQ / DVQ [BH, S, D] fp32 and DBIAS [BH, S] (zero-initialised; scale applied later)."""
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    hk = h // GROUP
    slots = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    sl_ok = slots < W
    lo = tl.load(SEG + bh * (W + 1) + slots, mask=sl_ok, other=0)
    hi = tl.load(SEG + bh * (W + 1) + slots + 1, mask=sl_ok, other=0)
    ptr = lo  # position of the slot's current key in CHAIN
    cur = tl.load(CHAIN + bh * S + ptr, mask=ptr < hi, other=0)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_dob + h * stride_doh
    dk_acc = tl.zeros([BLOCK_N, BLOCK_DK], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    dk_out = DKQ + bh * S * BLOCK_DK
    dv_out = DVQ + bh * S * BLOCK_DV
    n_blocks = tl.cdiv(T, BLOCK_M)
    for mb in range(0, n_blocks):
        r0 = mb * BLOCK_M + OFF
        # Advance each slot to its last key born before r0, flushing the keys it leaves.
        nxt_ok = ptr + 1 < hi
        nxt = tl.load(CHAIN + bh * S + ptr + 1, mask=nxt_ok, other=0)
        adv = nxt_ok & (nxt < r0)
        while tl.max(adv.to(tl.int32), axis=0) > 0:
            tl.store(dk_out + cur[:, None] * BLOCK_DK + offs_dk[None, :], dk_acc,
                     mask=adv[:, None])  # fmt: skip
            tl.store(dv_out + cur[:, None] * BLOCK_DV + offs_dv[None, :], dv_acc,
                     mask=adv[:, None])  # fmt: skip
            tl.store(DBIAS + bh * S + cur, db_acc, mask=adv)
            dk_acc = tl.where(adv[:, None], 0.0, dk_acc)
            dv_acc = tl.where(adv[:, None], 0.0, dv_acc)
            db_acc = tl.where(adv, 0.0, db_acc)
            ptr = tl.where(adv, ptr + 1, ptr)
            cur = tl.where(adv, nxt, cur)
            nxt_ok = ptr + 1 < hi
            nxt = tl.load(CHAIN + bh * S + ptr + 1, mask=nxt_ok, other=0)
            adv = nxt_ok & (nxt < r0)
        has = (ptr < hi) & (cur < r0)
        last = tl.load(LAST + bh * S + cur, mask=has, other=-1)
        alive = has & (last >= r0)
        if tl.max(alive.to(tl.int32), axis=0) > 0:
            rows = mb * BLOCK_M + tl.arange(0, BLOCK_M)
            row_ok = rows < T
            q = _load_rows(q_base, rows, stride_qt, row_ok, offs_dk, DK)
            do = _load_rows(do_base, rows, stride_dot, row_ok, offs_dv, DV)
            lse = tl.load(LSE + bh * T + rows, mask=row_ok, other=0.0)
            delta = tl.load(DELTA + bh * T + rows, mask=row_ok, other=0.0)
            k = _load_rows(k_base, cur, stride_ks, alive, offs_dk, DK)
            v = _load_rows(v_base, cur, stride_vs, alive, offs_dv, DV)
            kb = tl.load(BIAS + bh * S + cur, mask=alive, other=0.0) * 1.4426950408889634
            keep = alive[None, :] & ((rows + OFF)[:, None] <= last[None, :]) & row_ok[:, None]
            p, ds = _score_grads(q, k, v, do, lse, delta, kb, keep, scale_log2, DOT_PREC)
            dv_acc += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PREC)
            dk_acc += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PREC)
            db_acc += tl.sum(ds, axis=0)
    has = ptr < hi
    tl.store(dk_out + cur[:, None] * BLOCK_DK + offs_dk[None, :], dk_acc, mask=has[:, None])
    tl.store(dv_out + cur[:, None] * BLOCK_DV + offs_dv[None, :], dv_acc, mask=has[:, None])
    tl.store(DBIAS + bh * S + cur, db_acc, mask=has)


@triton.jit
def _attn_bwd_dkv_diag(
    Q, K, V, BIAS, LAST, DO, LSE, DELTA, DKQ, DVQ, DBIAS,
    T, S, H, GROUP, OFF, scale_log2,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_dob, stride_dot, stride_doh,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """Adds, for the keys born in query block pid (BLOCK_N at a time), the contributions of that
    block's own rows to DKQ / DVQ / DBIAS (read-modify-write after the slot kernel)."""
    pid_m = tl.program_id(0)
    sub = tl.program_id(2)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    hk = h // GROUP
    r0 = pid_m * BLOCK_M + OFF
    cols = r0 + sub * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < S
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    k = _load_rows(K + b * stride_kb + hk * stride_kh, cols, stride_ks, col_ok, offs_dk, DK)
    v = _load_rows(V + b * stride_vb + hk * stride_vh, cols, stride_vs, col_ok, offs_dv, DV)
    last = tl.load(LAST + bh * S + cols, mask=col_ok, other=-1)
    bias = tl.load(BIAS + bh * S + cols, mask=col_ok, other=0.0) * 1.4426950408889634
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < T
    rows_kc = rows + OFF
    q = _load_rows(Q + b * stride_qb + h * stride_qh, rows, stride_qt, row_ok, offs_dk, DK)
    do = _load_rows(DO + b * stride_dob + h * stride_doh, rows, stride_dot, row_ok, offs_dv, DV)
    lse = tl.load(LSE + bh * T + rows, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + bh * T + rows, mask=row_ok, other=0.0)
    keep = col_ok[None, :] & (cols[None, :] <= rows_kc[:, None])
    keep = keep & (rows_kc[:, None] <= last[None, :]) & row_ok[:, None]
    p, ds = _score_grads(q, k, v, do, lse, delta, bias, keep, scale_log2, DOT_PREC)
    dv = tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PREC)
    dk = tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PREC)
    db = tl.sum(ds, axis=0)
    dk_ptr = DKQ + bh * S * BLOCK_DK + cols[:, None] * BLOCK_DK + offs_dk[None, :]
    dv_ptr = DVQ + bh * S * BLOCK_DV + cols[:, None] * BLOCK_DV + offs_dv[None, :]
    m2 = col_ok[:, None]
    tl.store(dk_ptr, tl.load(dk_ptr, mask=m2, other=0.0) + dk, mask=m2)
    tl.store(dv_ptr, tl.load(dv_ptr, mask=m2, other=0.0) + dv, mask=m2)
    db_ptr = DBIAS + bh * S + cols
    tl.store(db_ptr, tl.load(db_ptr, mask=col_ok, other=0.0) + db, mask=col_ok)
