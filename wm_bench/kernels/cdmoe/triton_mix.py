"""Triton expert mixing for CDMoE / PEER single-neuron experts (2412.11834, 2407.04153).

y[m] = Σ_j g[m, j] · act(h[m, j]) · w_{e(m, j)},  h[m, j] = x[m] · u_{e(m, j)},
with u the `down` rows, w the `up` rows and e(m, j) = indices[m, j]. Three kernels:

- `_mix_fwd`, one program per token: pass 1 walks the token's J slots in blocks of BLOCK_J,
  gathers their down rows tile by tile over D and reduces h (fp32); it stores h and
  a = act(h)·g ([M, J] fp32 each: the backward needs both). Pass 2 walks the D tiles and, in
  each, sums a_j · w_j over all slots. Two passes because y has D entries and D may not fit one
  tile: h must be complete before any y tile can be finished.
- `_mix_bwd_token`, one program per token, the same two passes: da = dy·w_j, then
  d gate = da·act(h) and dh = da·g·act'(h) ([M, J] fp32), then dx = Σ_j dh_j · u_j per tile.
- `_mix_bwd_table`, programs over (picked experts, D tile): the table gradients are sums over
  every (token, slot) pair that picked the expert — d w_e = Σ a·dy[m], d u_e = Σ dh·x[m] — so
  the host sorts the M·J pairs by expert id (stable) and each program walks whole contiguous
  segments of that order, BLOCK_P pairs at a time. Every output row has one writer and a fixed
  summation order: deterministic without atomics, correct however many tokens share an expert
  (or one token picks it twice), and no [M, J, D] gathered tensor ever exists (the reference's
  autograd keeps one). Rows of experts nobody picked are zero-filled by torch; the grid covers
  min(N, M·J) segments, so a huge sparse table costs a memset, not N programs.

Memory beyond inputs and outputs: h, a, dh, d gate ([M, J] fp32) and the sorted pair list.
Like every Triton path here it does not import the reference it is tested against.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from wm_bench.kernels._triton import launch_config, rows_contiguous

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
ACTIVATIONS = ("silu", "gelu", "relu", "identity")

# Launch configs. No tl.dot here: these are gathers and row reductions, bound by the bytes of
# the rows they gather, so the tiles aim for many rows in flight (BLOCK_J rows × BLOCK_D
# channels per load) at ~32 fp32 values per thread; `wm-bench gpu compile` checks registers.
# Under the interpreter every program runs in Python: tiny tiles still exercise the J, D and
# pair loops with awkward tails.
GPU_CONFIGS = {
    "fwd": {"BLOCK_J": 16, "BLOCK_D": 256, "num_warps": 4, "num_stages": 2},
    "bwd_token": {"BLOCK_J": 16, "BLOCK_D": 256, "num_warps": 4, "num_stages": 2},
    "bwd_table": {"BLOCK_S": 4, "BLOCK_P": 16, "BLOCK_D": 256, "num_warps": 4, "num_stages": 2},
}
INTERPRET_CONFIGS = {
    "fwd": {"BLOCK_J": 4, "BLOCK_D": 16, "num_warps": 1, "num_stages": 1},
    "bwd_token": {"BLOCK_J": 4, "BLOCK_D": 16, "num_warps": 1, "num_stages": 1},
    "bwd_table": {"BLOCK_S": 8, "BLOCK_P": 4, "BLOCK_D": 16, "num_warps": 1, "num_stages": 1},
}


def configs(kind: str) -> dict[str, int]:
    """Launch config of one kernel kind: tiny under TRITON_INTERPRET=1, the GPU one otherwise."""
    return launch_config(GPU_CONFIGS[kind], INTERPRET_CONFIGS[kind])


@triton.jit
def _act(h, ACT: tl.constexpr):
    """act(h) in fp32; gelu is the erf form (torch's default)."""
    if ACT == "silu":
        out = h * tl.sigmoid(h)
    elif ACT == "gelu":
        out = 0.5 * h * (1.0 + tl.math.erf(h * 0.7071067811865476))
    elif ACT == "relu":
        out = tl.maximum(h, 0.0)
    else:
        out = h
    return out


@triton.jit
def _act_and_grad(h, ACT: tl.constexpr):
    """(act(h), act'(h)) in fp32. relu'(0) = 0, as torch's relu backward."""
    if ACT == "silu":
        s = tl.sigmoid(h)
        out = h * s
        grad = s * (1.0 + h * (1.0 - s))
    elif ACT == "gelu":
        cdf = 0.5 * (1.0 + tl.math.erf(h * 0.7071067811865476))
        out = h * cdf
        grad = cdf + h * tl.exp(-0.5 * h * h) * 0.3989422804014327  # Φ(h) + h·φ(h)
    elif ACT == "relu":
        out = tl.maximum(h, 0.0)
        grad = tl.where(h > 0.0, 1.0, 0.0)
    else:
        out = h
        grad = tl.full(h.shape, 1.0, tl.float32)
    return out, grad


@triton.jit
def _slot_dots(
    ROW, TABLE, IDX, GATE, j0, J, D, stride_w, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr
):
    """Pass 1 of the token kernels for the slots jj = j0 … j0 + BLOCK_J − 1 (valid: j_ok):
    returns (jj, j_ok, ROW · TABLE[e_j], g_j), the dot in fp32 over D tile by tile, with
    e_j = IDX[jj] and g_j = GATE[jj]; ROW, IDX and GATE point at the token's rows."""
    jj = j0 + tl.arange(0, BLOCK_J)
    j_ok = jj < J
    e = tl.load(IDX + jj, mask=j_ok, other=0).to(tl.int64)
    acc = tl.zeros([BLOCK_J], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        d_ok = dd < D
        row = tl.load(ROW + dd, mask=d_ok, other=0.0).to(tl.float32)
        rows = TABLE + e[:, None] * stride_w + dd[None, :]
        t = tl.load(rows, mask=j_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(t * row[None, :], axis=1)
    g = tl.load(GATE + jj, mask=j_ok, other=0.0).to(tl.float32)
    return jj, j_ok, acc, g


@triton.jit
def _mix_rows(OUT, COEF, TABLE, IDX, J, D, stride_w, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 2 of the token kernels: OUT[d] = Σ_j COEF[j] · TABLE[e_j, d] for one token (OUT,
    COEF, IDX: its rows), one D tile at a time. COEF was stored by pass 1 of this program."""
    tl.debug_barrier()  # pass 1's stores came from other threads of this program: order them
    for d0 in range(0, D, BLOCK_D):
        dd = d0 + tl.arange(0, BLOCK_D)
        d_ok = dd < D
        acc = tl.zeros([BLOCK_D], dtype=tl.float32)
        for j0 in range(0, J, BLOCK_J):
            jj = j0 + tl.arange(0, BLOCK_J)
            j_ok = jj < J
            e = tl.load(IDX + jj, mask=j_ok, other=0).to(tl.int64)
            coef = tl.load(COEF + jj, mask=j_ok, other=0.0)
            rows = TABLE + e[:, None] * stride_w + dd[None, :]
            t = tl.load(rows, mask=j_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
            acc += tl.sum(coef[:, None] * t, axis=0)
        tl.store(OUT + dd, acc.to(OUT.dtype.element_ty), mask=d_ok)


@triton.jit
def _mix_fwd(
    X, DOWN, UP, IDX, GATE, Y, H, A,
    J, D, stride_x, stride_w, stride_y,
    ACT: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """One token: h = x · u_e and a = act(h)·g for its J slots (stored), then y = Σ_j a_j w_j."""
    m = tl.program_id(0).to(tl.int64)
    idx = IDX + m * J
    for j0 in range(0, J, BLOCK_J):
        jj, j_ok, h, g = _slot_dots(
            X + m * stride_x, DOWN, idx, GATE + m * J, j0, J, D, stride_w, BLOCK_J, BLOCK_D
        )
        tl.store(H + m * J + jj, h, mask=j_ok)
        tl.store(A + m * J + jj, _act(h, ACT) * g, mask=j_ok)
    _mix_rows(Y + m * stride_y, A + m * J, UP, idx, J, D, stride_w, BLOCK_J, BLOCK_D)


@triton.jit
def _mix_bwd_token(
    DY, DOWN, UP, IDX, GATE, H, DX, DGATE, DH,
    J, D, stride_dy, stride_w, stride_dx,
    ACT: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """One token: da = dy · w_e, d gate = da·act(h) and dh = da·g·act'(h) for its J slots
    (stored, fp32), then dx = Σ_j dh_j u_j."""
    m = tl.program_id(0).to(tl.int64)
    idx = IDX + m * J
    for j0 in range(0, J, BLOCK_J):
        jj, j_ok, da, g = _slot_dots(
            DY + m * stride_dy, UP, idx, GATE + m * J, j0, J, D, stride_w, BLOCK_J, BLOCK_D
        )
        h = tl.load(H + m * J + jj, mask=j_ok, other=0.0)
        act, act_grad = _act_and_grad(h, ACT)
        tl.store(DGATE + m * J + jj, da * act, mask=j_ok)
        tl.store(DH + m * J + jj, da * g * act_grad, mask=j_ok)
    _mix_rows(DX + m * stride_dx, DH + m * J, DOWN, idx, J, D, stride_w, BLOCK_J, BLOCK_D)


@triton.jit
def _mix_bwd_table(
    X, DY, A, DH, PAIRS, EXPERT, STARTS, DDOWN, DUP,
    S, J, D, stride_x, stride_dy, stride_dw,
    BLOCK_S: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """BLOCK_S experts × one D tile: d u_e = Σ dh·x[m] and d w_e = Σ a·dy[m] over e's pairs.

    PAIRS [M·J] holds the flat pair ids m·J + j sorted by expert (stable) and EXPERT the sorted
    expert ids; segment s (one picked expert) is PAIRS[STARTS[s] : STARTS[s + 1]], walked
    BLOCK_P pairs at a time so that a popular expert stays vectorised. Only picked experts have
    a (non-empty) segment: the host zero-fills the other rows.
    """
    dd = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = dd < D
    s0 = tl.program_id(0) * BLOCK_S
    for seg in range(s0, tl.minimum(s0 + BLOCK_S, S)):
        start = tl.load(STARTS + seg)
        end = tl.load(STARTS + seg + 1)
        if start < end:
            e = tl.load(EXPERT + start).to(tl.int64)
            acc_down = tl.zeros([BLOCK_D], dtype=tl.float32)
            acc_up = tl.zeros([BLOCK_D], dtype=tl.float32)
            for p0 in range(start, end, BLOCK_P):
                pp = p0 + tl.arange(0, BLOCK_P)
                p_ok = pp < end
                pair = tl.load(PAIRS + pp, mask=p_ok, other=0).to(tl.int64)
                m = pair // J
                a = tl.load(A + pair, mask=p_ok, other=0.0)
                dh = tl.load(DH + pair, mask=p_ok, other=0.0)
                tile_ok = p_ok[:, None] & d_ok[None, :]
                x = tl.load(X + m[:, None] * stride_x + dd[None, :], mask=tile_ok, other=0.0)
                dy = tl.load(DY + m[:, None] * stride_dy + dd[None, :], mask=tile_ok, other=0.0)
                acc_down += tl.sum(dh[:, None] * x.to(tl.float32), axis=0)
                acc_up += tl.sum(a[:, None] * dy.to(tl.float32), axis=0)
            tl.store(DDOWN + e * stride_dw + dd, acc_down.to(DDOWN.dtype.element_ty), mask=d_ok)
            tl.store(DUP + e * stride_dw + dd, acc_up.to(DUP.dtype.element_ty), mask=d_ok)


def expert_segments(indices: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """The (token, slot) pairs grouped by expert, without a host sync.

    Args:
        indices: [M, J] expert ids in [0, n).
        n: number of experts N.
    Returns:
        pairs [M·J] int32: flat pair ids m·J + j sorted by expert, stable (token order within
        an expert, so sums are reproducible); expert [M·J]: the sorted ids; starts [S + 1]
        int32 with S = min(N, M·J): segment s = pairs[starts[s] : starts[s + 1]] is the s-th
        picked expert, segments past the number of picked experts are empty (= M·J).
    """
    flat = indices.flatten()
    count = flat.numel()
    expert, order = torch.sort(flat, stable=True)
    first = torch.ones(count, dtype=torch.bool, device=flat.device)
    first[1:] = expert[1:] != expert[:-1]
    seg = torch.cumsum(first, 0) - 1  # segment of each sorted position: non-decreasing
    # Segment s starts at the first position whose segment is ≥ s (M·J past the last one). A
    # binary search keeps the number of picked experts on the device (no host sync, unlike
    # bincount's output size); the grid covers its bound min(N, M·J).
    wanted = torch.arange(min(n, count) + 1, device=flat.device)
    starts = torch.searchsorted(seg, wanted)
    return order.to(torch.int32), expert, starts.to(torch.int32)


class _ExpertMixFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, down, up, indices, gates, activation):
        M, D = x.shape
        J = indices.shape[1]
        x, down, up = rows_contiguous(x), rows_contiguous(down), rows_contiguous(up)
        if up.stride(0) != down.stride(0):  # one row stride serves both tables
            down, up = down.contiguous(), up.contiguous()
        idx, g = indices.contiguous(), gates.contiguous()
        y = torch.empty(M, D, device=x.device, dtype=x.dtype)
        h = torch.empty(M, J, device=x.device, dtype=torch.float32)
        a = torch.empty(M, J, device=x.device, dtype=torch.float32)
        if M > 0:
            cfg = configs("fwd")
            _mix_fwd[(M,)](
                x, down, up, idx, g, y, h, a,
                J, D, x.stride(0), down.stride(0), y.stride(0),
                ACT=activation, **cfg,
            )  # fmt: skip
        ctx.save_for_backward(x, down, up, idx, g, h, a)
        ctx.activation = activation
        ctx.gates_dtype = gates.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, down, up, idx, g, h, a = ctx.saved_tensors
        need_x, need_down, need_up, _, need_g, _ = ctx.needs_input_grad
        M, D = x.shape
        N, J = down.shape[0], idx.shape[1]
        dy = dy.to(x.dtype).contiguous()
        dx = dgate = ddown = dup = None
        if need_x or need_g or need_down:  # dh feeds dx and d down
            dx = torch.empty_like(x)
            dgate32 = torch.empty(M, J, device=x.device, dtype=torch.float32)
            dh = torch.empty(M, J, device=x.device, dtype=torch.float32)
            if M > 0:
                cfg = configs("bwd_token")
                _mix_bwd_token[(M,)](
                    dy, down, up, idx, g, h, dx, dgate32, dh,
                    J, D, dy.stride(0), down.stride(0), dx.stride(0),
                    ACT=ctx.activation, **cfg,
                )  # fmt: skip
            dgate = dgate32.to(ctx.gates_dtype) if need_g else None
            dx = dx if need_x else None
        else:
            dh = a  # unused: only d up is asked for
        if need_down or need_up:
            ddown = torch.zeros(N, D, device=x.device, dtype=down.dtype)
            dup = torch.zeros(N, D, device=x.device, dtype=up.dtype)
            pairs, expert, starts = expert_segments(idx, N)
            n_seg = starts.numel() - 1
            cfg = configs("bwd_table")
            if n_seg > 0 and D > 0:
                grid = (triton.cdiv(n_seg, cfg["BLOCK_S"]), triton.cdiv(D, cfg["BLOCK_D"]))
                _mix_bwd_table[grid](
                    x, dy, a, dh, pairs, expert, starts, ddown, dup,
                    n_seg, J, D, x.stride(0), dy.stride(0), ddown.stride(0), **cfg,
                )  # fmt: skip
            ddown = ddown if need_down else None
            dup = dup if need_up else None
        return dx, ddown, dup, None, dgate, None


def expert_mix_triton(
    x: Tensor, down: Tensor, up: Tensor, indices: Tensor, gates: Tensor, activation: str
) -> Tensor:
    """Autograd-aware Triton expert mix with the reference's contract (shapes checked by api).

    Raises:
        ValueError: a dtype the kernels do not take, an unknown activation, or more than
            2^31 − 1 (token, slot) pairs (the sorted pair list is int32).
        IndexError: an expert id outside [0, N) (one host sync; a gather kernel cannot raise).
    """
    op = "expert_mix(impl='triton')"
    for name, t in (("x", x), ("down", down), ("up", up), ("gates", gates)):
        if t.dtype not in TRITON_DTYPES:
            raise ValueError(
                f"{op}: {name} dtype {t.dtype} not supported; valid: "
                f"{[str(d) for d in TRITON_DTYPES]}"
            )
    for name, t in (("down", down), ("up", up), ("indices", indices), ("gates", gates)):
        if t.device != x.device:
            raise ValueError(f"{op}: {name} on {t.device} but x on {x.device}; expected one device")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: unknown activation={activation!r}; valid: {list(ACTIVATIONS)}")
    if indices.numel() >= 2**31:
        raise ValueError(f"{op}: M·J = {indices.numel()} pairs; at most 2^31 − 1 supported")
    n = down.shape[0]
    if indices.numel() > 0:
        lo, hi = (int(v) for v in torch.aminmax(indices))
        if lo < 0 or hi >= n:
            raise IndexError(f"{op}: expert ids must lie in [0, N={n}), got min {lo}, max {hi}")
    return _ExpertMixFn.apply(x, down, up, indices, gates, activation)
