"""Triton SSD backward kernels (Mamba-2, docs/spec.md §2.2): state grads, dx, dB/dC, ddt/dA/dD."""

from __future__ import annotations

import triton
import triton.language as tl

from wm_bench.kernels.ssd.triton_fwd import PRUNE, _cfg, _configs, decay_mask

# Notation per (batch, head), chunk c, chunk-local positions i (readers) and j (writers):
# cs = chunk-local Σ dt·A, cl = cs at the chunk's end, S_c = state entering chunk c (recomputed by
# the forward state kernel), G_c = ∂L/∂(state leaving chunk c), u_j = dt_j x_j,
# e_j = exp(cl − cs_j), M_ij = (C_i·B_j) exp(cs_i − cs_j) for j ≤ i.
# Every exponent is a log-decay: dcs (∂L/∂cs) is gathered per position and turned into
# ∂L/∂(dt·A) by a reverse cumsum in the last kernel.

# GPU autotune lists: tiles along the chunk only (P / N tiles are the wrapper's), ≤ 4 each,
# every one ≥ 64 rows on the tl.dot M side (wgmma) and spill-free at the sm_90a compile check
# (`wm-bench gpu compile`), P = N = 128 included (the dB / dC kernel takes its state term after
# the intra-chunk loop; see there).
DSTATE_GPU_CONFIGS = [
    _cfg(4, 2, BLOCK_M=64),
    _cfg(4, 3, BLOCK_M=64),
    _cfg(8, 2, BLOCK_M=128),
    _cfg(4, 3, BLOCK_M=32),
]
DSTATE_CONFIGS = _configs({"BLOCK_M": 16}, DSTATE_GPU_CONFIGS)
DX_GPU_CONFIGS = [
    _cfg(8, 3, BLOCK_K=64, BLOCK_M=64),
    _cfg(8, 2, BLOCK_K=64, BLOCK_M=64),
    _cfg(8, 2, BLOCK_K=64, BLOCK_M=32),
    _cfg(8, 3, BLOCK_K=128, BLOCK_M=32),
]
DX_CONFIGS = _configs({"BLOCK_K": 16, "BLOCK_M": 16}, DX_GPU_CONFIGS)
DBC_GPU_CONFIGS = [
    _cfg(8, 2, BLOCK_M=64, BLOCK_K=16),
    _cfg(8, 2, BLOCK_M=64, BLOCK_K=32),
    _cfg(8, 2, BLOCK_M=128, BLOCK_K=32),
    _cfg(8, 2, BLOCK_M=128, BLOCK_K=16),
]
DBC_CONFIGS = _configs({"BLOCK_M": 16, "BLOCK_K": 16}, DBC_GPU_CONFIGS)


@triton.autotune(configs=DSTATE_CONFIGS, key=["Q", "P", "N"], prune_configs_by=PRUNE)
@triton.jit
def _ssd_dstate_bwd(
    DY,
    Cm,
    CS,
    STATES,
    DSFIN,
    DSTATES,
    DS0,
    DDECAY,
    T,
    H,
    R,
    NC,
    stride_dy_b,
    stride_dy_t,
    stride_dy_h,
    stride_c_b,
    stride_c_t,
    stride_c_g,
    P: tl.constexpr,
    N: tl.constexpr,
    Q: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    HAS_DSFIN: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """One program = one [BLOCK_P, BLOCK_N] tile of one (batch, head), walking chunks backwards.

    DSTATES[b, c, h] = G_c;  G_{c−1} = exp(cl_c) G_c + Σ_i exp(cs_i) dy_i C_iᵀ;  DS0 = G_{−1}.
    DDECAY[bh, c, tile] = exp(cl_c) <G_c, S_c> over the tile: ∂L/∂cl_c from the state decay.
    """
    pid_pn = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    n_nb = tl.cdiv(N, BLOCK_N)
    n_pn = tl.cdiv(P, BLOCK_P) * n_nb
    b = bh // H
    h = bh % H
    g = h // R
    offs_p = (pid_pn // n_nb) * BLOCK_P + tl.arange(0, BLOCK_P)  # [BP]
    offs_n = (pid_pn % n_nb) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    p_mask = offs_p < P
    n_mask = offs_n < N
    pn_mask = p_mask[:, None] & n_mask[None, :]
    pn_off = offs_p[:, None] * N + offs_n[None, :]  # [BP, BN]
    if HAS_DSFIN:
        gs = tl.load(DSFIN + bh * P * N + pn_off, mask=pn_mask, other=0.0).to(tl.float32)
    else:
        gs = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    # Last-chunk bases, moved back by one chunk per step.
    last = tl.cast(NC - 1, tl.int64)
    dy_ptr = DY + b * stride_dy_b + h * stride_dy_h + last * Q * stride_dy_t
    c_ptr = Cm + b * stride_c_b + g * stride_c_g + last * Q * stride_c_t
    cs_ptr = CS + bh * NC * Q + last * Q
    s_off = ((b * NC + last) * H + h) * P * N
    dec_ptr = DDECAY + (bh * NC + last) * n_pn + pid_pn
    n_valid = T - (NC - 1) * Q  # positions of the current chunk that exist
    for _ci in range(NC):
        tl.store(DSTATES + s_off + pn_off, gs.to(DSTATES.dtype.element_ty), mask=pn_mask)
        decay = tl.exp(tl.minimum(tl.load(cs_ptr + Q - 1), 0.0))
        s_c = tl.load(STATES + s_off + pn_off, mask=pn_mask, other=0.0).to(tl.float32)
        tl.store(dec_ptr, decay * tl.sum(gs * s_c))
        gs = gs * decay  # then the chunk's reads accumulate straight into it (one accumulator)
        for m0 in range(0, Q, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)  # [BM]
            m_mask = offs_m < n_valid
            dyT = tl.load(
                dy_ptr + offs_m[None, :] * stride_dy_t + offs_p[:, None],
                mask=p_mask[:, None] & m_mask[None, :],
                other=0.0,
            )  # [BP, BM]
            c_m = tl.load(
                c_ptr + offs_m[:, None] * stride_c_t + offs_n[None, :],
                mask=m_mask[:, None] & n_mask[None, :],
                other=0.0,
            )  # [BM, BN]
            dyT = (dyT * tl.exp(tl.minimum(tl.load(cs_ptr + offs_m), 0.0))[None, :]).to(c_m.dtype)
            gs = tl.dot(dyT, c_m, gs, input_precision=DOT_PREC)  # [BP, BN]
        dy_ptr -= Q * stride_dy_t
        c_ptr -= Q * stride_c_t
        cs_ptr -= Q
        s_off -= H * P * N
        dec_ptr -= n_pn
        n_valid += Q
    tl.store(DS0 + bh * P * N + pn_off, gs, mask=pn_mask)


@triton.autotune(configs=DX_CONFIGS, key=["Q", "P", "N"], prune_configs_by=PRUNE)
@triton.jit
def _ssd_dx_bwd(
    X,
    DY,
    Bm,
    Cm,
    DT32,
    CS,
    STATES,
    DSTATES,
    Dv,
    DX,
    PART,
    T,
    H,
    R,
    NC,
    stride_x_b,
    stride_x_t,
    stride_x_h,
    stride_dy_b,
    stride_dy_t,
    stride_dy_h,
    stride_b_b,
    stride_b_t,
    stride_b_g,
    stride_c_b,
    stride_c_t,
    stride_c_g,
    P: tl.constexpr,
    N: tl.constexpr,
    Q: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """One program = BLOCK_K rows × BLOCK_P columns of dx in one (batch, chunk, head).

    v_j = Σ_{i≥j} M_ij dy_i + e_j G_c B_j  (= ∂L/∂u_j);  dx_j = dt_j v_j + D dy_j.
    Per-row sums over this P tile, the four planes of PART [4, n_pb, B·H, NC·Q] fp32:
    0: x_j·v_j (∂L/∂dt_j through u_j and the state input), 1: x_j·dy_j (dD),
    2: exp(cs_j) dy_j·(S_c C_j) (∂L/∂cs_j through the state read; row j as a reader),
    3: dt_j e_j x_j·(G_c B_j) (∂L/∂(cl − cs_j) through e_j).
    """
    pid0 = tl.program_id(0)
    c = tl.program_id(1)
    bh = tl.program_id(2).to(tl.int64)
    n_pb = tl.cdiv(P, BLOCK_P)
    pb = pid0 % n_pb
    b = bh // H
    h = bh % H
    g = h // R
    cq = c.to(tl.int64) * Q
    n_valid = T - c * Q
    k0 = (pid0 // n_pb) * BLOCK_K
    offs_k = k0 + tl.arange(0, BLOCK_K)  # [BK] chunk-local rows
    offs_p = pb * BLOCK_P + tl.arange(0, BLOCK_P)  # [BP]
    offs_n = tl.arange(0, BLOCK_N)  # [BN] all of N
    p_mask = offs_p < P
    n_mask = offs_n < N
    k_mask = offs_k < n_valid
    kp_mask = k_mask[:, None] & p_mask[None, :]
    kn_mask = k_mask[:, None] & n_mask[None, :]
    pn_off = offs_p[:, None] * N + offs_n[None, :]  # [BP, BN]
    pn_mask = p_mask[:, None] & n_mask[None, :]
    x_ptr = X + b * stride_x_b + h * stride_x_h + cq * stride_x_t
    dy_ptr = DY + b * stride_dy_b + h * stride_dy_h + cq * stride_dy_t
    b_ptr = Bm + b * stride_b_b + g * stride_b_g + cq * stride_b_t
    c_ptr = Cm + b * stride_c_b + g * stride_c_g + cq * stride_c_t
    cs_ptr = CS + bh * NC * Q + cq
    dt_ptr = DT32 + bh * NC * Q + cq
    s_off = ((b * NC + c) * H + h) * P * N
    plane = n_pb * tl.num_programs(2) * NC * Q
    part = PART + (pb * tl.num_programs(2) + bh) * NC * Q + cq + offs_k  # [BK], plane 0

    cs_k = tl.load(cs_ptr + offs_k)  # [BK]
    dt_k = tl.load(dt_ptr + offs_k)
    cl = tl.load(cs_ptr + Q - 1)
    x_k = tl.load(x_ptr + offs_k[:, None] * stride_x_t + offs_p[None, :], mask=kp_mask, other=0.0)
    dy_k = tl.load(dy_ptr + offs_k[:, None] * stride_dy_t + offs_p[None, :], mask=kp_mask)
    x_k = x_k.to(tl.float32)  # [BK, BP]
    dy_k = dy_k.to(tl.float32)

    # Row j read the incoming state: ∂L/∂cs_j = exp(cs_j) dy_j·(S_c C_j), reduced at once.
    c_k = tl.load(c_ptr + offs_k[:, None] * stride_c_t + offs_n[None, :], mask=kn_mask, other=0.0)
    s_c = tl.load(STATES + s_off + pn_off, mask=pn_mask, other=0.0)  # [BP, BN]
    rd = tl.dot(c_k, tl.trans(s_c), input_precision=DOT_PREC)  # [BK, BP]
    tl.store(part + 2 * plane, tl.exp(tl.minimum(cs_k, 0.0)) * tl.sum(dy_k * rd, axis=1))

    # Row j wrote into the outgoing state.
    b_k = tl.load(b_ptr + offs_k[:, None] * stride_b_t + offs_n[None, :], mask=kn_mask, other=0.0)
    g_c = tl.load(DSTATES + s_off + pn_off, mask=pn_mask, other=0.0)  # [BP, BN]
    v = tl.dot(b_k, tl.trans(g_c), input_precision=DOT_PREC)  # [BK, BP]
    v = v * tl.exp(tl.minimum(cl - cs_k, 0.0))[:, None]
    tl.store(part + 3 * plane, dt_k * tl.sum(x_k * v, axis=1))

    for m0 in range((k0 // BLOCK_M) * BLOCK_M, Q, BLOCK_M):  # reader blocks at or after j
        offs_m = m0 + tl.arange(0, BLOCK_M)  # [BM]
        m_mask = offs_m < n_valid
        c_m = tl.load(
            c_ptr + offs_m[:, None] * stride_c_t + offs_n[None, :],
            mask=m_mask[:, None] & n_mask[None, :],
            other=0.0,
        )  # [BM, BN]
        dy_m = tl.load(
            dy_ptr + offs_m[:, None] * stride_dy_t + offs_p[None, :],
            mask=m_mask[:, None] & p_mask[None, :],
            other=0.0,
        )  # [BM, BP]
        cs_m = tl.load(cs_ptr + offs_m)
        cbT = tl.dot(b_k, tl.trans(c_m), input_precision=DOT_PREC)  # [BK, BM]: B_j·C_i
        mT = cbT * tl.trans(decay_mask(cs_m, cs_k, offs_m, offs_k))  # [BK, BM] = Mᵀ
        v = tl.dot(mT.to(dy_m.dtype), dy_m, v, input_precision=DOT_PREC)  # [BK, BP]

    dx = v * dt_k[:, None]
    if HAS_D:
        dx += tl.load(Dv + h).to(tl.float32) * dy_k
        tl.store(part + plane, tl.sum(x_k * dy_k, axis=1))
    tl.store(part, tl.sum(x_k * v, axis=1))
    dx_ptr = DX + ((b * T + cq) * H + h) * P  # DX contiguous [B, T, H, P]
    tl.store(
        dx_ptr + offs_k[:, None] * (H * P) + offs_p[None, :],
        dx.to(DX.dtype.element_ty),
        mask=kp_mask,
    )


@triton.autotune(configs=DBC_CONFIGS, key=["Q", "P", "N", "FOR_B"], prune_configs_by=PRUNE)
@triton.jit
def _ssd_dbc_bwd(
    X,
    DY,
    Bm,
    Cm,
    DT32,
    CS,
    STATES,
    DSTATES,
    OUT,
    DCS,
    T,
    H,
    G,
    R,
    NC,
    stride_x_b,
    stride_x_t,
    stride_x_h,
    stride_dy_b,
    stride_dy_t,
    stride_dy_h,
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
    FOR_B: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """One program = BLOCK_M rows of dC (FOR_B False) or dB (FOR_B True) in one (batch, chunk,
    group), summing the group's R heads in registers (no per-head [B, T, H, N] buffer); BLOCK_P
    and BLOCK_N cover all of P and N, so each head's [BM, P] rows are loaded once.

    dC_i = Σ_h exp(cs_i) dy_i S_c + Σ_{j≤i} (dy_i·u_j) exp(cs_i − cs_j) B_j
    dB_j = Σ_h dt_j e_j x_j G_c + Σ_{i≥j} (dy_i·u_j) exp(cs_i − cs_j) C_i
    Also per head and row, DCS [B·H, NC·Q] fp32: that side's share of the intra-chunk ∂L/∂cs,
    row sums for dC and minus column sums for dB of (dy_i·u_j) (C_i·B_j) exp(cs_i − cs_j),
    the diagonal left out (it cancels exactly).
    """
    r0 = tl.program_id(0) * BLOCK_M
    c = tl.program_id(1)
    bg = tl.program_id(2).to(tl.int64)
    b = bg // G
    g = bg % G
    cq = c.to(tl.int64) * Q
    n_valid = T - c * Q
    offs_r = r0 + tl.arange(0, BLOCK_M)  # [BM] chunk-local rows of this program
    offs_n = tl.arange(0, BLOCK_N)  # [BN] all of N
    offs_p = tl.arange(0, BLOCK_P)  # [BP] all of P
    n_mask = offs_n < N
    p_mask = offs_p < P
    r_mask = offs_r < n_valid
    b_ptr = Bm + b * stride_b_b + g * stride_b_g + cq * stride_b_t
    c_ptr = Cm + b * stride_c_b + g * stride_c_g + cq * stride_c_t
    if FOR_B:  # own = the rows we differentiate, other = what they meet in C·Bᵀ
        own_ptr = b_ptr
        other_ptr = c_ptr
        stride_own = stride_b_t
        stride_other = stride_c_t
        lo = (r0 // BLOCK_K) * BLOCK_K  # readers i ≥ j
        hi = Q
    else:
        own_ptr = c_ptr
        other_ptr = b_ptr
        stride_own = stride_c_t
        stride_other = stride_b_t
        lo = 0
        hi = r0 + BLOCK_M  # writers j ≤ i
    own = tl.load(
        own_ptr + offs_r[:, None] * stride_own + offs_n[None, :],
        mask=r_mask[:, None] & n_mask[None, :],
        other=0.0,
    )  # [BM, BN]
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)

    for hh in range(R):
        h = g * R + hh
        bh = b * H + h
        x_ptr = X + b * stride_x_b + h * stride_x_h + cq * stride_x_t
        dy_ptr = DY + b * stride_dy_b + h * stride_dy_h + cq * stride_dy_t
        cs_ptr = CS + bh * NC * Q + cq
        dt_ptr = DT32 + bh * NC * Q + cq
        s_off = ((b * NC + c) * H + h) * P * N
        cs_r = tl.load(cs_ptr + offs_r)  # [BM]
        dt_r = tl.load(dt_ptr + offs_r)

        if FOR_B:  # the rows' own P-side (x for dB, dy for dC) and the other side's
            a_ptr = x_ptr
            stride_a = stride_x_t
            o_ptr = dy_ptr
            stride_o = stride_dy_t
            st_ptr = DSTATES + s_off
        else:
            a_ptr = dy_ptr
            stride_a = stride_dy_t
            o_ptr = x_ptr
            stride_o = stride_x_t
            st_ptr = STATES + s_off
        a_r = tl.load(
            a_ptr + offs_r[:, None] * stride_a + offs_p[None, :],
            mask=r_mask[:, None] & p_mask[None, :],
            other=0.0,
        )  # [BM, BP]: loaded once per head, used by every dot below

        dcs = tl.zeros([BLOCK_M], dtype=tl.float32)

        # Intra-chunk term over the other side's blocks.
        for o0 in range(lo, hi, BLOCK_K):
            offs_o = o0 + tl.arange(0, BLOCK_K)  # [BK]
            o_mask = offs_o < n_valid
            other = tl.load(
                other_ptr + offs_o[:, None] * stride_other + offs_n[None, :],
                mask=o_mask[:, None] & n_mask[None, :],
                other=0.0,
            )  # [BK, BN]
            o_t = tl.load(
                o_ptr + offs_o[:, None] * stride_o + offs_p[None, :],
                mask=o_mask[:, None] & p_mask[None, :],
                other=0.0,
            )  # [BK, BP]
            cs_o = tl.load(cs_ptr + offs_o)
            cb = tl.dot(own, tl.trans(other), input_precision=DOT_PREC)  # [BM, BK]
            dm = tl.dot(a_r, tl.trans(o_t), input_precision=DOT_PREC)  # [BM, BK]: dy_i·x_j
            if FOR_B:  # rows are writers j, columns readers i
                dms = dm * dt_r[:, None] * tl.trans(decay_mask(cs_o, cs_r, offs_o, offs_r))
                strict = offs_o[None, :] > offs_r[:, None]
            else:  # rows are readers i, columns writers j
                dt_o = tl.load(dt_ptr + offs_o)
                dms = dm * dt_o[None, :] * decay_mask(cs_r, cs_o, offs_r, offs_o)
                strict = offs_r[:, None] > offs_o[None, :]
            acc = tl.dot(dms.to(other.dtype), other, acc, input_precision=DOT_PREC)  # [BM, BN]
            g_seg = tl.sum(tl.where(strict, dms * cb, 0.0), axis=1)  # [BM]
            if FOR_B:
                dcs -= g_seg
            else:
                dcs += g_seg
        # State term after the intra loop, unscaled dot then fp32 row scale: exp(cs_i) for dC
        # (dy·S_c), dt_j e_j for dB (x·G_c); its ∂L/∂cs share comes from the dx kernel. Scaling
        # the rows first made the dot's A operand a register tile, which Triton lays out over
        # 8 warps along M (64 rows replicated twice) and which spilled at P = N = 128, 64 rows.
        s_t = tl.load(
            st_ptr + offs_p[:, None] * N + offs_n[None, :],
            mask=p_mask[:, None] & n_mask[None, :],
            other=0.0,
        )  # [BP, BN]
        if FOR_B:
            scale = dt_r * tl.exp(tl.minimum(tl.load(cs_ptr + Q - 1) - cs_r, 0.0))
        else:
            scale = tl.exp(tl.minimum(cs_r, 0.0))
        s_term = tl.dot(a_r.to(s_t.dtype), s_t, input_precision=DOT_PREC)  # [BM, BN]
        acc += s_term * scale[:, None]
        tl.store(DCS + bh * NC * Q + cq + offs_r, dcs)

    out_ptr = OUT + ((b * T + cq) * G + g) * N  # OUT contiguous [B, T, G, N]
    tl.store(
        out_ptr + offs_r[:, None] * (G * N) + offs_n[None, :],
        acc.to(OUT.dtype.element_ty),
        mask=r_mask[:, None] & n_mask[None, :],
    )


@triton.jit
def _ssd_ddt_bwd(
    DT32,
    A,
    DCS_C,
    DCS_B,
    DDECAY,
    PART,
    DDT,
    DA_PART,
    DD_PART,
    T,
    H,
    NC,
    N_PB,
    N_PN,
    stride_ddt_b,
    stride_ddt_t,
    stride_ddt_h,
    Q: tl.constexpr,
    HAS_D: tl.constexpr,
):
    """One program = one chunk of one (batch, head): ∂L/∂(dt·A) from the gathered dcs, then
    ddt = (direct terms) + A·da, and this chunk's shares of dA (Σ dt·da) and dD (Σ x·dy).

    da_k = Σ_{i≥k} dcs_i  +  Σ_{j<k} qs_j  +  Σ_tiles DDECAY, with qs_j = ∂L/∂(cl − cs_j):
    e_j = exp(cl − cs_j) depends on a_k only for k > j, the state decay exp(cl) on every a_k.
    """
    c = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    n_bh = tl.num_programs(1)
    b = bh // H
    h = bh % H
    cq = c.to(tl.int64) * Q
    offs = tl.arange(0, Q)  # [Q]
    t_mask = offs < T - c * Q
    row = bh * NC * Q + cq
    dcs = tl.load(DCS_C + row + offs) + tl.load(DCS_B + row + offs)  # [Q]
    ddt = tl.zeros([Q], dtype=tl.float32)
    dd = tl.zeros([Q], dtype=tl.float32)
    qs = tl.zeros([Q], dtype=tl.float32)
    plane = N_PB * n_bh * NC * Q
    for s in range(N_PB):  # the dx kernel's P tiles
        part = PART + (s * n_bh + bh) * NC * Q + cq + offs
        ddt += tl.load(part)
        if HAS_D:
            dd += tl.load(part + plane)
        dcs += tl.load(part + 2 * plane)
        qs += tl.load(part + 3 * plane)
    decay_sum = 0.0
    for s in range(N_PN):  # the state-gradient kernel's (P, N) tiles
        decay_sum += tl.load(DDECAY + (bh * NC + c) * N_PN + s)
    da = tl.cumsum(dcs, axis=0, reverse=True) + (tl.cumsum(qs, axis=0) - qs) + decay_sum
    ddt += da * tl.load(A + h).to(tl.float32)
    dt = tl.load(DT32 + row + offs)
    tl.store(
        DDT + b * stride_ddt_b + h * stride_ddt_h + cq * stride_ddt_t + offs * stride_ddt_t,
        ddt.to(DDT.dtype.element_ty),
        mask=t_mask,
    )
    tl.store(DA_PART + bh * NC + c, tl.sum(tl.where(t_mask, dt * da, 0.0)))
    if HAS_D:
        tl.store(DD_PART + bh * NC + c, tl.sum(tl.where(t_mask, dd, 0.0)))
