"""Triton SSD (Mamba-2, docs/spec.md §2.2): launchers and the autograd Function behind chunk_ssd."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
from torch import Tensor

from wm_bench.kernels._triton import pow2_block, rows_contiguous
from wm_bench.kernels.ssd.triton_bwd import _ssd_dbc_bwd, _ssd_ddt_bwd, _ssd_dstate_bwd, _ssd_dx_bwd
from wm_bench.kernels.ssd.triton_fwd import (
    CUMSUM_CONFIG,
    SEQ_PN_CAP,
    TILE_P_CAP,
    _ssd_cumsum_fwd,
    _ssd_out_fwd,
    _ssd_state_fwd,
)

# Forward, three kernels: chunk cumsum of dt·A → states (per-chunk states and inter-chunk passing
# fused in one sequential walk per state tile) → output (intra-chunk (C Bᵀ ∘ L)(dt x) plus the
# read of the incoming state). Backward, five: states recomputed (never kept between passes) →
# state gradients walking backwards → dx → dC and dB (a group's heads summed in registers) →
# ddt, dA, dD from the gathered ∂L/∂cumsum.

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
CHUNK_SIZES = (16, 32, 64, 128, 256)


def _strides3(t: Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


@dataclass(frozen=True)
class _Geom:
    """Problem geometry shared by every launch of one call."""

    bsz: int
    T: int
    H: int
    P: int
    G: int
    N: int
    Q: int

    @property
    def R(self) -> int:  # heads per group
        return self.H // self.G

    @property
    def NC(self) -> int:  # chunks, the last one padded
        return -(-self.T // self.Q)

    @property
    def BH(self) -> int:
        return self.bsz * self.H

    @property
    def seq_blocks(self) -> tuple[int, int]:  # (BLOCK_P, BLOCK_N) of the sequential state kernels
        return pow2_block(self.P, SEQ_PN_CAP), pow2_block(self.N, SEQ_PN_CAP)

    @property
    def n_pn(self) -> int:
        bp, bn = self.seq_blocks
        return triton.cdiv(self.P, bp) * triton.cdiv(self.N, bn)

    @property
    def tile_p(self) -> int:  # BLOCK_P of the per-chunk kernels
        return pow2_block(self.P, TILE_P_CAP)

    @property
    def n_pb(self) -> int:
        return triton.cdiv(self.P, self.tile_p)

    @property
    def full_p(self) -> int:  # BLOCK_P of the dB / dC kernel: all of P in one tile
        return pow2_block(self.P)

    @property
    def full_n(self) -> int:  # BLOCK_N of the per-chunk kernels: all of N in one tile
        return pow2_block(self.N)


def _dot_prec(dtype: torch.dtype) -> str:
    # fp32 inputs get full-precision products (tf32 would cost ~1e-3 relative); 16-bit ignore it.
    return "ieee" if dtype == torch.float32 else "tf32"


def _cumsum(dt: Tensor, A: Tensor, g: _Geom) -> tuple[Tensor, Tensor]:
    """dt [B, T, H] → (dt in fp32, chunk-local Σ dt·A), both [B·H, NC·Q] fp32."""
    dt32 = torch.empty(g.BH, g.NC * g.Q, device=dt.device, dtype=torch.float32)
    cs = torch.empty_like(dt32)
    _ssd_cumsum_fwd[(g.NC, g.BH)](
        dt, A, dt32, cs, g.T, g.H, g.NC, *_strides3(dt), Q=g.Q, **CUMSUM_CONFIG
    )
    return dt32, cs


def _states(
    x: Tensor, B: Tensor, dt32: Tensor, cs: Tensor, s0: Tensor | None, g: _Geom, final: bool
) -> tuple[Tensor, Tensor | None]:
    """States entering each chunk [B, NC, H, P, N] (x's dtype) and the final state (fp32)."""
    states = torch.empty(g.bsz, g.NC, g.H, g.P, g.N, device=x.device, dtype=x.dtype)
    sfin = (
        torch.empty(g.bsz, g.H, g.P, g.N, device=x.device, dtype=torch.float32) if final else None
    )
    bp, bn = g.seq_blocks
    _ssd_state_fwd[(g.n_pn, g.BH)](
        x, B, dt32, cs, s0 if s0 is not None else x, states, sfin if final else states,
        g.T, g.H, g.R, g.NC, *_strides3(x), *_strides3(B),
        P=g.P, N=g.N, Q=g.Q, BLOCK_P=bp, BLOCK_N=bn,
        HAS_S0=s0 is not None, STORE_FINAL=final, DOT_PREC=_dot_prec(x.dtype),
    )  # fmt: skip
    return states, sfin


def _output(
    x: Tensor, B: Tensor, C: Tensor, dt32: Tensor, cs: Tensor, states: Tensor, D: Tensor | None,
    g: _Geom,
) -> Tensor:  # fmt: skip
    """y [B, T, H, P] in x's dtype."""
    y = torch.empty(g.bsz, g.T, g.H, g.P, device=x.device, dtype=x.dtype)
    n_pb = g.n_pb

    def grid(meta: dict) -> tuple[int, int, int]:
        return (g.Q // meta["BLOCK_M"] * n_pb, g.NC, g.BH)

    _ssd_out_fwd[grid](
        x, B, C, dt32, cs, states, D if D is not None else x, y,
        g.T, g.H, g.R, g.NC, *_strides3(x), *_strides3(B), *_strides3(C),
        P=g.P, N=g.N, Q=g.Q, BLOCK_P=g.tile_p, BLOCK_N=g.full_n,
        HAS_D=D is not None, DOT_PREC=_dot_prec(x.dtype),
    )  # fmt: skip
    return y


def _backward(
    x: Tensor, B: Tensor, C: Tensor, dt32: Tensor, cs: Tensor, A: Tensor, D: Tensor | None,
    s0: Tensor | None, dy: Tensor, dsfin: Tensor | None, dt_dtype: torch.dtype, g: _Geom,
) -> tuple[Tensor, ...]:  # fmt: skip
    """All gradients: dx, dB, dC (compute dtype), ddt (dt_dtype), dA, dD, ds0 (fp32)."""
    dev, prec = x.device, _dot_prec(x.dtype)
    f32 = {"device": dev, "dtype": torch.float32}
    states, _ = _states(x, B, dt32, cs, s0, g, final=False)

    # 1. State gradients G_c for every chunk, the initial state's, and exp(cl)<G_c, S_c> tiles.
    dstates = torch.empty_like(states)
    ds0 = torch.empty(g.bsz, g.H, g.P, g.N, **f32)
    ddecay = torch.empty(g.BH, g.NC, g.n_pn, **f32)
    bp, bn = g.seq_blocks
    _ssd_dstate_bwd[(g.n_pn, g.BH)](
        dy, C, cs, states, dsfin if dsfin is not None else ds0, dstates, ds0, ddecay,
        g.T, g.H, g.R, g.NC, *_strides3(dy), *_strides3(C),
        P=g.P, N=g.N, Q=g.Q, BLOCK_P=bp, BLOCK_N=bn, HAS_DSFIN=dsfin is not None, DOT_PREC=prec,
    )  # fmt: skip

    # 2. dx, with per-row partial sums over its P tiles (four planes: see _ssd_dx_bwd).
    dx = torch.empty(g.bsz, g.T, g.H, g.P, device=dev, dtype=x.dtype)
    part = torch.empty(4, g.n_pb, g.BH, g.NC * g.Q, **f32)
    n_pb = g.n_pb

    def grid_dx(meta: dict) -> tuple[int, int, int]:
        return (g.Q // meta["BLOCK_K"] * n_pb, g.NC, g.BH)

    _ssd_dx_bwd[grid_dx](
        x, dy, B, C, dt32, cs, states, dstates, D if D is not None else x, dx, part,
        g.T, g.H, g.R, g.NC, *_strides3(x), *_strides3(dy), *_strides3(B), *_strides3(C),
        P=g.P, N=g.N, Q=g.Q, BLOCK_P=g.tile_p, BLOCK_N=g.full_n, HAS_D=D is not None,
        DOT_PREC=prec,
    )  # fmt: skip

    # 3. dC then dB, each with its side of the intra-chunk ∂L/∂cs.
    def grid_bc(meta: dict) -> tuple[int, int, int]:
        return (g.Q // meta["BLOCK_M"], g.NC, g.bsz * g.G)

    outs = {}
    for for_b in (False, True):
        out = torch.empty(g.bsz, g.T, g.G, g.N, device=dev, dtype=x.dtype)
        dcs = torch.empty(g.BH, g.NC * g.Q, **f32)
        _ssd_dbc_bwd[grid_bc](
            x, dy, B, C, dt32, cs, states, dstates, out, dcs,
            g.T, g.H, g.G, g.R, g.NC,
            *_strides3(x), *_strides3(dy), *_strides3(B), *_strides3(C),
            P=g.P, N=g.N, Q=g.Q, BLOCK_P=g.full_p, BLOCK_N=g.full_n, FOR_B=for_b,
            DOT_PREC=prec,
        )  # fmt: skip
        outs[for_b] = (out, dcs)
    (dC, dcs_c), (dB, dcs_b) = outs[False], outs[True]

    # 4. ddt, and per-chunk shares of dA and dD (reduced here: [B·H, NC] floats).
    ddt = torch.empty(g.bsz, g.T, g.H, device=dev, dtype=dt_dtype)
    da_part = torch.empty(g.BH, g.NC, **f32)
    dd_part = torch.empty_like(da_part) if D is not None else da_part
    _ssd_ddt_bwd[(g.NC, g.BH)](
        dt32, A, dcs_c, dcs_b, ddecay, part, ddt, da_part, dd_part,
        g.T, g.H, g.NC, g.n_pb, g.n_pn, *_strides3(ddt), Q=g.Q, HAS_D=D is not None,
        **CUMSUM_CONFIG,
    )  # fmt: skip
    dA = da_part.view(g.bsz, g.H, g.NC).sum(dim=(0, 2))
    dD = dd_part.view(g.bsz, g.H, g.NC).sum(dim=(0, 2)) if D is not None else None
    return dx, ddt, dA, dB, dC, dD, ds0


class _ChunkSSDFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, s0, chunk_size):
        bsz, T, H, P = x.shape
        g = _Geom(bsz, T, H, P, B.shape[2], B.shape[3], chunk_size)
        same = x.dtype == B.dtype == C.dtype
        cdt = x.dtype if same else torch.float32  # one dtype for every tl.dot operand
        xc, Bc, Cc = (rows_contiguous(t.to(cdt)) for t in (x, B, C))
        A32 = A.detach().float().contiguous()
        D32 = D.detach().float().contiguous() if D is not None else None
        s0c = s0.detach().contiguous() if s0 is not None else None
        dt32, cs = _cumsum(dt, A32, g)
        states, sfin = _states(xc, Bc, dt32, cs, s0c, g, final=True)
        y = _output(xc, Bc, Cc, dt32, cs, states, D32, g)
        del states  # recomputed in backward: [B, NC, H, P, N] is the largest buffer
        ctx.save_for_backward(xc, Bc, Cc, dt32, cs, A32, D32, s0c)
        ctx.geom = g
        ctx.dtypes = (x.dtype, dt.dtype, A.dtype, B.dtype, C.dtype)
        ctx.d_dtype = D.dtype if D is not None else None
        ctx.s0_dtype = s0.dtype if s0 is not None else None
        ctx.set_materialize_grads(False)  # an unused final state costs no zero tensor
        return y.to(x.dtype), sfin

    @staticmethod
    def backward(ctx, dy, dsfin):
        xc, Bc, Cc, dt32, cs, A32, D32, s0c = ctx.saved_tensors
        g: _Geom = ctx.geom
        x_dt, dt_dt, A_dt, B_dt, C_dt = ctx.dtypes
        if dy is None:
            dy = torch.zeros(g.bsz, g.T, g.H, g.P, device=xc.device, dtype=xc.dtype)
        dy = rows_contiguous(dy.to(xc.dtype))
        dsfin = dsfin.float().contiguous() if dsfin is not None else None
        dx, ddt, dA, dB, dC, dD, ds0 = _backward(
            xc, Bc, Cc, dt32, cs, A32, D32, s0c, dy, dsfin, dt_dt, g
        )
        return (
            dx.to(x_dt),
            ddt,
            dA.to(A_dt),
            dB.to(B_dt),
            dC.to(C_dt),
            dD.to(ctx.d_dtype) if dD is not None else None,
            ds0.to(ctx.s0_dtype) if s0c is not None else None,
            None,
        )


def chunk_ssd_triton(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    chunk_size: int,
    D: Tensor | None,
    initial_state: Tensor | None,
    return_final_state: bool,
) -> tuple[Tensor, Tensor | None]:
    """Autograd-aware Triton chunked SSD with the reference's contract (inputs checked by api)."""
    y, final = _ChunkSSDFn.apply(x, dt, A, B, C, D, initial_state, chunk_size)
    return y, (final if return_final_state else None)
