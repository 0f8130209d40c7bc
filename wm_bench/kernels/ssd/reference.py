"""SSD reference, chunked and recurrent (Mamba-2 SSD, Dao & Gu 2024; docs/spec.md §2.2).

The readable definition, in the spirit of mamba's `ssd_minimal.py`: plain PyTorch, plain autograd,
fp32 math (fp64 inputs stay fp64). `chunk_ssd` is the chunked form in four numbered steps;
`recurrent_ssd` is a loop of `ssd_step` and is what the tests hold the chunked form to. The CPU
speed path (a hand-written backward for the decay matrix) lives in `torch_fast.py`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from wm_bench.kernels._impl import compute_dtype


def exp_segsum(a: Tensor) -> Tensor:
    """Decay matrix L[..., i, j] = exp(Σ_{k=j+1..i} a[..., k]) for j ≤ i, exactly 0 above.

    Each entry is a direct sum of per-step terms (mamba's stable segsum: a difference of cumulative
    sums loses digits once the cumsum is large). With a ≤ 0 every exponent is ≤ 0; the clamp guards
    out-of-contract inputs (a > 0), and −inf is written before exp, so nothing overflows.

    Args:
        a: [..., Q] per-step log-decays (dt·A ≤ 0).
    Returns:
        [..., Q, Q] decay matrix L.
    """
    Q = a.shape[-1]
    idx = torch.arange(Q, device=a.device)
    k_after_j = idx[:, None] > idx[None, :]  # [Q(k), Q(j)]: a_k counts for column j iff k > j
    terms = a[..., :, None].expand(*a.shape, Q).masked_fill(~k_after_j, 0.0)  # [..., Q(k), Q(j)]
    seg = terms.cumsum(dim=-2)  # [..., Q(i), Q(j)]: Σ_{j<k≤i} a_k
    causal = idx[:, None] >= idx[None, :]  # [Q(i), Q(j)]: j ≤ i
    return seg.clamp(max=0.0).masked_fill(~causal, float("-inf")).exp()


def chunk_ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    chunk_size: int = 64,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
    decay_matrix: Callable[[Tensor], Tensor] = exp_segsum,
) -> tuple[Tensor, Tensor | None]:
    """Chunked SSD: intra-chunk quadratic form + inter-chunk state recurrence (docs/spec.md §2.2).

    Args:
        x: [B, T, H, P] inputs.
        dt: [B, T, H] positive step sizes (already softplus'ed).
        A: [H] negative decay rates.
        B: [B, T, G, N] input projections; head h uses group h // (H // G).
        C: [B, T, G, N] output projections.
        chunk_size: Q, the block length of the quadratic form.
        D: [H] skip weights or None.
        initial_state: [B, H, P, N] or None (zeros).
        return_final_state: also return S_T.
        decay_matrix: how L = exp(segsum(dt·A)) is formed; `exp_segsum` (plain autograd) here,
            the same values with a hand-written backward in `torch_fast`.
    Returns:
        y [B, T, H, P] in x's dtype; final_state [B, H, P, N] fp32 (fp64 for fp64 inputs) or None.
    """
    ct = compute_dtype(x, dt, A, B, C, D, initial_state)
    bsz, T, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    R = H // G  # heads per group
    Q = chunk_size
    nc = -(-T // Q)  # number of chunks
    pad = nc * Q - T

    # 0. fp32 math; pad T to nc·Q with dt = 0 (decay 1, no input) so padding never touches S.
    def prep(t: Tensor) -> Tensor:
        t = t.to(ct)
        return torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) if pad else t

    xc = prep(x).view(bsz, nc, Q, G, R, P)  # [b, c, Q, G, R, P]
    dtc = prep(dt).view(bsz, nc, Q, G, R)  # [b, c, Q, G, R]
    Bc = prep(B).view(bsz, nc, Q, G, N)  # [b, c, Q, G, N]
    Cc = prep(C).view(bsz, nc, Q, G, N)  # [b, c, Q, G, N]
    dA = (dtc * A.to(ct).view(G, R)).permute(0, 1, 3, 4, 2)  # [b, c, G, R, Q]: dt·A ≤ 0

    # 1. Intra-chunk (diagonal blocks): y_i = Σ_{j≤i} (C_i·B_j) L_ij dt_j x_j.
    L = decay_matrix(dA)  # [b, c, G, R, Q(i), Q(j)]
    CB = torch.einsum("bcign,bcjgn->bcgij", Cc, Bc)  # [b, c, G, Q, Q]
    xdt = xc * dtc[..., None]  # [b, c, Q, G, R, P]: dt folded into x, not into the Q×Q mask
    y = torch.einsum("bcgrij,bcjgrp->bcigrp", CB[:, :, :, None] * L, xdt)  # [b, c, Q, G, R, P]

    # 2. Each chunk's final state from its own inputs: Σ_j exp(Σ_{k>j} dA_k) dt_j x_j B_jᵀ.
    decay_to_end = L[..., -1, :].permute(0, 1, 4, 2, 3)  # [b, c, Q, G, R]: last row of L
    states = torch.einsum(
        "bcjgn,bcjgrp->bcgrpn", Bc, xdt * decay_to_end[..., None]
    )  # [b, c, G, R, P, N]

    # 3. Recurrence over chunk states (nc steps): S_c = exp(Σ_chunk dA) S_{c-1} + states_c.
    dA_cs = dA.cumsum(dim=-1)  # [b, c, G, R, Q]: Σ_{k≤i} dA_k within the chunk
    chunk_decay = dA_cs[..., -1].clamp(max=0.0).exp()  # [b, c, G, R]
    if initial_state is None:
        s = xc.new_zeros(bsz, G, R, P, N)
    else:
        s = initial_state.to(ct).reshape(bsz, G, R, P, N)
    incoming = []
    for c in range(nc):
        incoming.append(s)
        s = chunk_decay[:, c, :, :, None, None] * s + states[:, c]
    prev = torch.stack(incoming, dim=1)  # [b, c, G, R, P, N]: state entering each chunk

    # 4. Read-out of the incoming state: y_i += exp(Σ_{k≤i} dA_k) C_i · S_prev.
    decay_in = dA_cs.clamp(max=0.0).exp()  # [b, c, G, R, Q]
    y = y + torch.einsum("bcign,bcgrpn,bcgri->bcigrp", Cc, prev, decay_in)

    y = y.reshape(bsz, nc * Q, H, P)[:, :T]  # [B, T, H, P]
    if D is not None:
        y = y + D.to(ct)[:, None] * x.to(ct)
    final = s.reshape(bsz, H, P, N) if return_final_state else None
    return y.to(x.dtype), final


def ssd_step(
    x_t: Tensor,
    dt_t: Tensor,
    A: Tensor,
    B_t: Tensor,
    C_t: Tensor,
    state: Tensor,
    *,
    D: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One recurrence step: S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_tᵀ; y_t = S_t C_t (+ D x_t).

    Args:
        x_t: [B, H, P]; dt_t: [B, H]; A: [H]; B_t, C_t: [B, G, N]; state: [B, H, P, N].
        D: [H] or None.
    Returns:
        y_t [B, H, P] in x_t's dtype; new_state [B, H, P, N] fp32 (fp64 for fp64 inputs).
    """
    ct = compute_dtype(x_t, dt_t, A, B_t, C_t, state, D)
    R = x_t.shape[1] // B_t.shape[1]
    x, dt = x_t.to(ct), dt_t.to(ct)
    Bh = B_t.to(ct).repeat_interleave(R, dim=1)  # [B, H, N]: head h ← group h // R
    Ch = C_t.to(ct).repeat_interleave(R, dim=1)  # [B, H, N]
    decay = (dt * A.to(ct)).clamp(max=0.0).exp()  # [B, H], same clamp as the chunked form
    new_state = decay[..., None, None] * state.to(ct) + torch.einsum(
        "bhp,bhn->bhpn", dt[..., None] * x, Bh
    )  # [B, H, P, N]
    y = torch.einsum("bhpn,bhn->bhp", new_state, Ch)  # [B, H, P]
    if D is not None:
        y = y + D.to(ct)[:, None] * x
    return y.to(x_t.dtype), new_state


def recurrent_ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Recurrent SSD: a plain loop of `ssd_step` over time (the form that tests `chunk_ssd`).

    Args/Returns: as `chunk_ssd` (no chunk_size).
    """
    ct = compute_dtype(x, dt, A, B, C, D, initial_state)
    bsz, T, H, P = x.shape
    N = B.shape[-1]
    if initial_state is None:
        s = torch.zeros(bsz, H, P, N, dtype=ct, device=x.device)
    else:
        s = initial_state.to(ct)
    ys = []
    for t in range(T):
        y_t, s = ssd_step(x[:, t].to(ct), dt[:, t], A, B[:, t], C[:, t], s, D=D)
        ys.append(y_t)
    y = torch.stack(ys, dim=1)  # [B, T, H, P]
    return y.to(x.dtype), (s if return_final_state else None)
