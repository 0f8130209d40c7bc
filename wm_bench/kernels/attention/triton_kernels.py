"""Flash-style attention kernels (forward, dK/dV/dbias, dQ): causal, optional per-key bias.

These serve QCAttn (no bias) and DMA without a binding window; the top-w window has its own
kernels that gather the kept keys compactly (`triton_slots`). Bias and causality are constexpr
switches, so each variant compiles to its own specialised code.

Conventions shared with `triton_slots`:
- Layouts are the API's: q [B, T, H, DK], k [B, S, Hkv, DK], v [B, S, Hkv, DV] (unit last
  stride), key_bias [B·H, S] fp32, lse / delta [B·H, T] fp32.
- Query row i sits at key coordinate i + OFF (OFF = S − T: queries aligned to the end of the
  keys). Row i sees key j iff j < S and (causal) j ≤ i + OFF.
- Scores are carried in base 2: s = (q·k·scale + bias)·log2(e), softmax by exp2; lse is stored
  in the same base. Masked entries are −inf before exp2 and every causal row sees at least its
  diagonal key, so no row sums to zero.
- Skipping: key blocks beyond the causal edge are never loaded; the backward walks, per key
  block, only the query rows from the block's first key on.
- Deterministic: every output element is written by exactly one program, no atomics; dK/dV of a
  kv head sum the group's query heads in a fixed order inside one program.
"""

from __future__ import annotations

import triton
import triton.language as tl

from wm_bench.kernels._triton import by_width, launch_config

LOG2E = 1.4426950408889634


@triton.jit
def _keep_mask(rows_kc, cols, S, CAUSAL: tl.constexpr):
    """[BLOCK_M, BLOCK_N] bool: which (row, key) pairs are visible (rows in key coordinates)."""
    keep = (cols < S)[None, :] & (rows_kc >= 0)[:, None]
    if CAUSAL:
        keep = keep & (cols[None, :] <= rows_kc[:, None])
    return keep


@triton.jit
def _load_rows(base, idx, stride, ok, offs, width):
    """Rows idx of a row-major [*, width] tile (row stride `stride`), columns offs; rows with
    ok = False and columns ≥ width read 0. Returns [len(idx), len(offs)]."""
    mask = ok[:, None] & (offs < width)[None, :]
    return tl.load(base + idx[:, None] * stride + offs[None, :], mask=mask, other=0.0)


@triton.jit
def _softmax_step(q, k, v, key_bias, keep, m_i, l_i, acc, scale_log2, DOT_PREC: tl.constexpr):
    """One key tile of the online softmax (base 2): returns the updated (m_i, l_i, acc).

    key_bias: [BLOCK_N] per-key bias already times log2(e) (zeros without a bias); keep: the
    [BLOCK_M, BLOCK_N] visibility mask. Rows with nothing visible yet keep m = −inf safely.
    """
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * scale_log2 + key_bias[None, :]
    s = tl.where(keep, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
    return m_new, l_i, acc


@triton.jit
def _score_grads(q, k, v, do, lse, delta, key_bias, keep, scale_log2, DOT_PREC: tl.constexpr):
    """Backward of one (query tile, key tile): probabilities p recomputed from lse, and
    ds = ∂L/∂(q·k·scale + bias) = p ⊙ (dO·vᵀ − delta). Returns (p, ds), both fp32."""
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PREC) * scale_log2 + key_bias[None, :]
    p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
    return p, p * (dp - delta[:, None])


@triton.jit
def _attn_fwd(
    Q, K, V, BIAS, O, LSE,
    T, S, H, GROUP, OFF, scale_log2,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_ob, stride_ot, stride_oh,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    hk = h // GROUP
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < T
    rows_kc = rows + OFF
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    q_ptrs = Q + b * stride_qb + h * stride_qh + rows[:, None] * stride_qt + offs_dk[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None] & (offs_dk < DK)[None, :], other=0.0)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, (pid_m + 1) * BLOCK_M + OFF)  # one past the block's last visible key
    for n0 in range(0, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < S
        k = _load_rows(k_base, cols, stride_ks, col_ok, offs_dk, DK)
        kb = tl.zeros([BLOCK_N], dtype=tl.float32)
        if HAS_BIAS:
            kb = tl.load(BIAS + bh * S + cols, mask=col_ok, other=0.0) * 1.4426950408889634
        keep = _keep_mask(rows_kc, cols, S, CAUSAL)
        v = _load_rows(v_base, cols, stride_vs, col_ok, offs_dv, DV)
        m_i, l_i, acc = _softmax_step(q, k, v, kb, keep, m_i, l_i, acc, scale_log2, DOT_PREC)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    o = acc / l_safe[:, None]
    o_ptrs = O + b * stride_ob + h * stride_oh + rows[:, None] * stride_ot + offs_dv[None, :]
    tl.store(o_ptrs, o.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_dv < DV)[None, :])
    tl.store(LSE + bh * T + rows, m_i + tl.log2(l_safe), mask=row_ok)


@triton.jit
def _attn_bwd_dkv(
    Q, K, V, BIAS, DO, LSE, DELTA, DK_OUT, DV_OUT, DBIAS,
    T, S, H, HKV, GROUP, OFF, scale_log2, scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_dob, stride_dot, stride_doh,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """dK, dV of one kv head's key block (its GROUP query heads summed in order), and dbias."""
    pid_n = tl.program_id(0)
    bhk = tl.program_id(1).to(tl.int64)
    b = bhk // HKV
    hk = bhk % HKV
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < S
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    kmask = col_ok[:, None] & (offs_dk < DK)[None, :]
    vmask = col_ok[:, None] & (offs_dv < DV)[None, :]
    k_off = b * stride_kb + hk * stride_kh + cols[:, None] * stride_ks + offs_dk[None, :]
    v_off = b * stride_vb + hk * stride_vh + cols[:, None] * stride_vs + offs_dv[None, :]
    k = tl.load(K + k_off, mask=kmask, other=0.0)
    v = tl.load(V + v_off, mask=vmask, other=0.0)
    dk_acc = tl.zeros([BLOCK_N, BLOCK_DK], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    lo = 0
    if CAUSAL:  # first row that may see the block's first key
        lo = (tl.maximum(pid_n * BLOCK_N - OFF, 0) // BLOCK_M) * BLOCK_M
    for g in range(0, GROUP):
        h = hk * GROUP + g
        bh = b * H + h
        hi = T
        kb = tl.zeros([BLOCK_N], dtype=tl.float32)
        if HAS_BIAS:
            kb = tl.load(BIAS + bh * S + cols, mask=col_ok, other=0.0) * 1.4426950408889634
        db_acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        q_base = Q + b * stride_qb + h * stride_qh
        do_base = DO + b * stride_dob + h * stride_doh
        for m0 in range(lo, hi, BLOCK_M):
            rows = m0 + tl.arange(0, BLOCK_M)
            row_ok = rows < T
            q = _load_rows(q_base, rows, stride_qt, row_ok, offs_dk, DK)
            do = _load_rows(do_base, rows, stride_dot, row_ok, offs_dv, DV)
            lse = tl.load(LSE + bh * T + rows, mask=row_ok, other=0.0)
            delta = tl.load(DELTA + bh * T + rows, mask=row_ok, other=0.0)
            keep = _keep_mask(rows + OFF, cols, S, CAUSAL) & row_ok[:, None]
            p, ds = _score_grads(q, k, v, do, lse, delta, kb, keep, scale_log2, DOT_PREC)
            dv_acc += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=DOT_PREC)
            dk_acc += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PREC)
            if HAS_BIAS:
                db_acc += tl.sum(ds, axis=0)
        if HAS_BIAS:
            tl.store(DBIAS + bh * S + cols, db_acc, mask=col_ok)
    tl.store(DK_OUT + k_off, (dk_acc * scale).to(DK_OUT.dtype.element_ty), mask=kmask)
    tl.store(DV_OUT + v_off, dv_acc.to(DV_OUT.dtype.element_ty), mask=vmask)


@triton.jit
def _attn_bwd_dq(
    Q, K, V, BIAS, DO, LSE, DELTA, DQ,
    T, S, H, GROUP, OFF, scale_log2, scale,
    stride_qb, stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_dob, stride_dot, stride_doh,
    DK: tl.constexpr, DV: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, DOT_PREC: tl.constexpr,
):  # fmt: skip
    """dQ of one query block: the forward's key loop (same skipping) with p recomputed from lse."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    hk = h // GROUP
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < T
    rows_kc = rows + OFF
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
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, (pid_m + 1) * BLOCK_M + OFF)
    for n0 in range(0, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < S
        k = _load_rows(k_base, cols, stride_ks, col_ok, offs_dk, DK)
        v = _load_rows(v_base, cols, stride_vs, col_ok, offs_dv, DV)
        kb = tl.zeros([BLOCK_N], dtype=tl.float32)
        if HAS_BIAS:
            kb = tl.load(BIAS + bh * S + cols, mask=col_ok, other=0.0) * 1.4426950408889634
        keep = _keep_mask(rows_kc, cols, S, CAUSAL) & row_ok[:, None]
        _, ds = _score_grads(q, k, v, do, lse, delta, kb, keep, scale_log2, DOT_PREC)
        dq_acc += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
    tl.store(DQ + q_off, (dq_acc * scale).to(DQ.dtype.element_ty), mask=qmask)


# Launch tiles. Under the interpreter one small tile keeps CPU tests quick and still exercises
# multi-block loops; on the GPU the tile shrinks as the head grows (registers and shared memory:
# checked for sm_90a by `wm-bench gpu compile`, which fails on spills). Fixed per head width
# rather than autotuned: the compile check then covers exactly what ships.
def gpu_tiles(kind: str, head_dim: int) -> dict[str, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) of one kernel kind at one padded head width."""
    table = {
        # kind: {max padded head width: tiles}
        "fwd": {64: (128, 64, 4, 3), 128: (128, 64, 8, 3), 256: (64, 32, 4, 2)},
        # The slot forward holds a gathered K and V tile at once: 8 warps at d ≤ 64 (no spills).
        "fwd_slots": {64: (128, 64, 8, 3), 128: (128, 64, 8, 3), 256: (64, 32, 4, 2)},
        "dkv": {64: (64, 64, 8, 1), 128: (32, 64, 8, 1), 256: (32, 32, 8, 1)},
        "dq": {64: (64, 64, 4, 2), 128: (64, 32, 4, 2), 256: (32, 32, 4, 1)},
    }[kind]
    bm, bn, warps, stages = by_width(table, head_dim, "attention triton: head width")
    return {"BLOCK_M": bm, "BLOCK_N": bn, "num_warps": warps, "num_stages": stages}


INTERPRET_TILES = {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 1, "num_stages": 1}


def tiles(kind: str, head_dim: int) -> dict[str, int]:
    """The launch tiles of a kernel kind: tiny under the interpreter, `gpu_tiles` otherwise."""
    return launch_config(gpu_tiles(kind, head_dim), INTERPRET_TILES)
