"""Triton SSD fwd kernels (Mamba-2, Dao & Gu 2024; docs/spec.md §2.2): cumsum, states, output."""

from __future__ import annotations

import triton
import triton.language as tl

from wm_bench.kernels._impl import interpreting
from wm_bench.kernels._triton import launch_config

# The interpreter runs every program in Python: one tiny config keeps CPU tests fast, and blocks of
# 16 (the smallest tl.dot tile on the GPU) still exercise the multi-block loops at Q = P = N = 32.
INTERPRET = interpreting()  # read once: the caps below size the kernels' partial-sum slots
# Caps on the P / N tile of the sequential state kernels (more, smaller tiles = more programs) and
# on the P tile of the per-chunk kernels; chosen by the wrapper, never autotuned, because the
# number of P / N tiles sets the number of partial-sum slots the backward reduces.
SEQ_PN_CAP_GPU = 64
TILE_P_CAP_GPU = 128
SEQ_PN_CAP = 16 if INTERPRET else SEQ_PN_CAP_GPU
TILE_P_CAP = 16 if INTERPRET else TILE_P_CAP_GPU
Q_BLOCKS = ("BLOCK_M", "BLOCK_K")  # autotuned tiles along the chunk (must be ≤ Q)


def _cfg(num_warps: int, num_stages: int, **blocks: int) -> triton.Config:
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


def _configs(interp: dict[str, int], gpu: list[triton.Config]) -> list[triton.Config]:
    return [_cfg(1, 1, **interp)] if INTERPRET else gpu


def fit_chunk(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Autotune pruning: keep configs whose chunk tiles fit in Q (else one config clamped to Q)."""
    Q = kwargs.get("Q", named_args.get("Q"))
    fits = [c for c in configs if all(c.kwargs.get(k, 0) <= Q for k in Q_BLOCKS)]
    if fits:
        return fits
    c = configs[0]
    blocks = {k: (min(v, Q) if k in Q_BLOCKS else v) for k, v in c.kwargs.items()}
    return [triton.Config(blocks, num_warps=c.num_warps, num_stages=c.num_stages)]


PRUNE = {"early_config_prune": fit_chunk}

# Cumsum and the backward's dt reduction are elementwise over one chunk: one fixed launch.
CUMSUM_GPU_CONFIG = {"num_warps": 2, "num_stages": 1}
CUMSUM_CONFIG = launch_config(CUMSUM_GPU_CONFIG, {"num_warps": 1, "num_stages": 1})
STATE_FWD_GPU_CONFIGS = [
    _cfg(4, 2, BLOCK_K=64),
    _cfg(4, 3, BLOCK_K=64),
    _cfg(8, 2, BLOCK_K=128),
    _cfg(4, 3, BLOCK_K=32),
]
STATE_FWD_CONFIGS = _configs({"BLOCK_K": 16}, STATE_FWD_GPU_CONFIGS)
OUT_FWD_GPU_CONFIGS = [
    _cfg(4, 2, BLOCK_M=64, BLOCK_K=64),
    _cfg(8, 3, BLOCK_M=64, BLOCK_K=64),
    _cfg(8, 2, BLOCK_M=128, BLOCK_K=64),
    _cfg(4, 3, BLOCK_M=64, BLOCK_K=32),
]
OUT_FWD_CONFIGS = _configs({"BLOCK_M": 16, "BLOCK_K": 16}, OUT_FWD_GPU_CONFIGS)


@triton.jit
def decay_mask(cs_row, cs_col, row_idx, col_idx):
    """exp(cs_row − cs_col) where row ≥ col, else 0: the segment sum is clamped to ≤ 0 and the
    masked entries are −inf BEFORE exp, so nothing overflows and no inf·0 is ever formed."""
    seg = tl.minimum(cs_row[:, None] - cs_col[None, :], 0.0)
    seg = tl.where(row_idx[:, None] >= col_idx[None, :], seg, float("-inf"))
    return tl.exp(seg)


# Indexing convention in every kernel: (batch, head, chunk) offsets are int64 scalars folded into
# base pointers (B·T·H·P and B·NC·H·P·N pass 2³¹ at T = 64K); offsets inside a chunk tile stay
# int32 (< Q · row stride), which keeps address tiles at half the registers.


@triton.jit
def _ssd_cumsum_fwd(
    DT,
    A,
    DT32,
    CS,
    T,
    H,
    NC,
    stride_dt_b,
    stride_dt_t,
    stride_dt_h,
    Q: tl.constexpr,
):
    """One program = one chunk of one (batch, head): dt in fp32 and the chunk-local Σ dt·A.

    Writes DT32, CS: [B·H, NC·Q] fp32, padded positions (t ≥ T) with dt = 0, so the cumsum there
    repeats the last valid value and the chunk's total decay ignores the padding.
    """
    c = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    cq = c.to(tl.int64) * Q  # first position of the chunk
    offs = tl.arange(0, Q)  # [Q]
    dt = tl.load(
        DT + b * stride_dt_b + h * stride_dt_h + cq * stride_dt_t + offs * stride_dt_t,
        mask=offs < T - c * Q,
        other=0.0,
    ).to(tl.float32)
    a = dt * tl.load(A + h).to(tl.float32)  # [Q] log-decays, ≤ 0 in contract
    cs = tl.cumsum(a, axis=0)  # [Q]
    row = bh * NC * Q + cq
    tl.store(DT32 + row + offs, dt)
    tl.store(CS + row + offs, cs)


@triton.autotune(configs=STATE_FWD_CONFIGS, key=["Q", "P", "N"], prune_configs_by=PRUNE)
@triton.jit
def _ssd_state_fwd(
    X,
    Bm,
    DT32,
    CS,
    S0,
    STATES,
    SFIN,
    T,
    H,
    R,
    NC,
    stride_x_b,
    stride_x_t,
    stride_x_h,
    stride_b_b,
    stride_b_t,
    stride_b_g,
    P: tl.constexpr,
    N: tl.constexpr,
    Q: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    HAS_S0: tl.constexpr,
    STORE_FINAL: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """One program = one [BLOCK_P, BLOCK_N] tile of one (batch, head)'s state, walking the chunks.

    Fuses per-chunk states and inter-chunk passing (no per-chunk-state round trip through memory):
    STATES[b, c, h] = S entering chunk c;  S ← exp(cl) S + Σ_j dt_j exp(cl − cs_j) x_j B_jᵀ
    with cs the chunk-local Σ dt·A and cl its last value.
    """
    pid_pn = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    n_nb = tl.cdiv(N, BLOCK_N)
    b = bh // H
    h = bh % H
    g = h // R
    offs_p = (pid_pn // n_nb) * BLOCK_P + tl.arange(0, BLOCK_P)  # [BP]
    offs_n = (pid_pn % n_nb) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    p_mask = offs_p < P
    n_mask = offs_n < N
    pn_mask = p_mask[:, None] & n_mask[None, :]  # [BP, BN]
    pn_off = offs_p[:, None] * N + offs_n[None, :]  # [BP, BN] inside one [P, N] state
    if HAS_S0:
        state = tl.load(S0 + bh * P * N + pn_off, mask=pn_mask, other=0.0).to(tl.float32)
    else:
        state = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    # Chunk-0 bases, advanced by one chunk per step.
    x_ptr = X + b * stride_x_b + h * stride_x_h
    b_ptr = Bm + b * stride_b_b + g * stride_b_g
    cs_ptr = CS + bh * NC * Q
    dt_ptr = DT32 + bh * NC * Q
    s_ptr = STATES + (b * NC * H + h) * P * N
    n_valid = T  # positions left from this chunk's start
    for _c in range(NC):
        tl.store(s_ptr + pn_off, state.to(STATES.dtype.element_ty), mask=pn_mask)
        cl = tl.load(cs_ptr + Q - 1)  # Σ dt·A over the whole chunk
        # Decay first, then accumulate the chunk's inputs straight into the state: one
        # [BP, BN] fp32 accumulator instead of two (registers are the limit at 64 × 64).
        state = state * tl.exp(tl.minimum(cl, 0.0))
        for k0 in range(0, Q, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)  # [BK] chunk-local
            k_mask = offs_k < n_valid
            cs_k = tl.load(cs_ptr + offs_k)
            w = tl.load(dt_ptr + offs_k) * tl.exp(tl.minimum(cl - cs_k, 0.0))  # [BK]
            xT = tl.load(
                x_ptr + offs_k[None, :] * stride_x_t + offs_p[:, None],
                mask=p_mask[:, None] & k_mask[None, :],
                other=0.0,
            )  # [BP, BK]
            b_k = tl.load(
                b_ptr + offs_k[:, None] * stride_b_t + offs_n[None, :],
                mask=k_mask[:, None] & n_mask[None, :],
                other=0.0,
            )  # [BK, BN]
            bw = (b_k * w[:, None]).to(b_k.dtype)  # [BK, BN]: decay folded into B, one rounding
            state = tl.dot(xT, bw, state, input_precision=DOT_PREC)  # [BP, BN]
        x_ptr += Q * stride_x_t
        b_ptr += Q * stride_b_t
        cs_ptr += Q
        dt_ptr += Q
        s_ptr += H * P * N
        n_valid -= Q
    if STORE_FINAL:
        tl.store(SFIN + bh * P * N + pn_off, state, mask=pn_mask)


@triton.autotune(configs=OUT_FWD_CONFIGS, key=["Q", "P", "N"], prune_configs_by=PRUNE)
@triton.jit
def _ssd_out_fwd(
    X,
    Bm,
    Cm,
    DT32,
    CS,
    STATES,
    Dv,
    Y,
    T,
    H,
    R,
    NC,
    stride_x_b,
    stride_x_t,
    stride_x_h,
    stride_b_b,
    stride_b_t,
    stride_b_g,
    stride_c_b,
    stride_c_t,
    stride_c_g,
    P: tl.constexpr,
    N: tl.constexpr,
    Q: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """One program = BLOCK_M rows × BLOCK_P columns of y in one (batch, chunk, head).

    y_i = exp(cs_i) C_i·S_c  +  Σ_{j≤i} (C_i·B_j) exp(cs_i − cs_j) dt_j x_j  (+ D x_i);
    BLOCK_N covers all of N (C·Bᵀ needs the full contraction).
    """
    pid0 = tl.program_id(0)
    c = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    n_pb = tl.cdiv(P, BLOCK_P)
    b = bh // H
    h = bh % H
    g = h // R
    cq = c.to(tl.int64) * Q
    n_valid = T - c * Q
    m0 = (pid0 // n_pb) * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)  # [BM] chunk-local rows
    offs_p = (pid0 % n_pb) * BLOCK_P + tl.arange(0, BLOCK_P)  # [BP]
    offs_n = tl.arange(0, BLOCK_N)  # [BN]
    p_mask = offs_p < P
    n_mask = offs_n < N
    m_mask = offs_m < n_valid
    x_ptr = X + b * stride_x_b + h * stride_x_h + cq * stride_x_t
    b_ptr = Bm + b * stride_b_b + g * stride_b_g + cq * stride_b_t
    cs_ptr = CS + bh * NC * Q + cq
    dt_ptr = DT32 + bh * NC * Q + cq

    cs_m = tl.load(cs_ptr + offs_m)  # [BM]
    c_m = tl.load(
        Cm
        + b * stride_c_b
        + g * stride_c_g
        + cq * stride_c_t
        + offs_m[:, None] * stride_c_t
        + offs_n[None, :],
        mask=m_mask[:, None] & n_mask[None, :],
        other=0.0,
    )  # [BM, BN]
    s_c = tl.load(
        STATES + ((b * NC + c) * H + h) * P * N + offs_p[:, None] * N + offs_n[None, :],
        mask=p_mask[:, None] & n_mask[None, :],
        other=0.0,
    )  # [BP, BN]: state entering the chunk
    acc = tl.dot(c_m, tl.trans(s_c), input_precision=DOT_PREC)  # [BM, BP]
    acc = acc * tl.exp(tl.minimum(cs_m, 0.0))[:, None]

    for k0 in range(0, m0 + BLOCK_M, BLOCK_K):  # causal: column blocks up to the diagonal
        offs_k = k0 + tl.arange(0, BLOCK_K)  # [BK]
        k_mask = offs_k < n_valid
        b_k = tl.load(
            b_ptr + offs_k[:, None] * stride_b_t + offs_n[None, :],
            mask=k_mask[:, None] & n_mask[None, :],
            other=0.0,
        )  # [BK, BN]
        x_k = tl.load(
            x_ptr + offs_k[:, None] * stride_x_t + offs_p[None, :],
            mask=k_mask[:, None] & p_mask[None, :],
            other=0.0,
        )  # [BK, BP]
        cs_k = tl.load(cs_ptr + offs_k)
        dt_k = tl.load(dt_ptr + offs_k)
        cb = tl.dot(c_m, tl.trans(b_k), input_precision=DOT_PREC)  # [BM, BK]
        mix = cb * decay_mask(cs_m, cs_k, offs_m, offs_k) * dt_k[None, :]  # [BM, BK] fp32
        acc = tl.dot(mix.to(x_k.dtype), x_k, acc, input_precision=DOT_PREC)  # [BM, BP]

    mp_mask = m_mask[:, None] & p_mask[None, :]
    if HAS_D:
        x_m = tl.load(
            x_ptr + offs_m[:, None] * stride_x_t + offs_p[None, :], mask=mp_mask, other=0.0
        )  # [BM, BP]
        acc += tl.load(Dv + h).to(tl.float32) * x_m.to(tl.float32)
    y_ptr = Y + ((b * T + cq) * H + h) * P  # Y contiguous [B, T, H, P]
    tl.store(
        y_ptr + offs_m[:, None] * (H * P) + offs_p[None, :],
        acc.to(Y.dtype.element_ty),
        mask=mp_mask,
    )
