"""SSD CPU fast path: the reference chunked scan, with a hand-written backward for its decays.

Autograd through the masked cumsum of `reference.exp_segsum` is about 3× slower on CPU than the
closed-form backward below, and the decay matrix dominates the chunked scan's cost at small sizes.
Everything else is `reference.chunk_ssd` itself, so the two forms agree to round-off.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from wm_bench.kernels.ssd import reference


class ExpSegsum(torch.autograd.Function):
    """`reference.exp_segsum` (same values) with a closed-form backward.

    With g = dL ∘ L, the gradient of a_k is da_k = Σ_{i ≥ k} Σ_{j < k} g[i, j]: a_k enters every
    segment sum that starts before it and ends at or after it. The clamp is treated as the
    identity it is in contract (a ≤ 0), and no inf·0 is ever formed.
    """

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        # The reference's steps done in place (about 6% faster with the backward than calling it).
        idx = torch.arange(a.shape[-1], device=a.device)  # (arange compare: CPU tril is slow)
        L = a[..., :, None].expand(*a.shape, a.shape[-1])  # [..., Q(k), Q(j)]
        L = L.masked_fill(idx[:, None] <= idx[None, :], 0.0)  # a_k counts for j iff k > j
        L.cumsum_(dim=-2).clamp_(max=0.0)  # [..., Q(i), Q(j)]: Σ_{j<k≤i} a_k
        L.masked_fill_(idx[:, None] < idx[None, :], float("-inf")).exp_()  # 0 above the diagonal
        ctx.save_for_backward(L)
        return L

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_L: Tensor) -> Tensor:
        (L,) = ctx.saved_tensors
        idx = torch.arange(L.shape[-1], device=L.device)
        g = grad_L * L  # [..., Q(i), Q(j)]: d/d(segment sum); 0 above the diagonal
        before_k = g.cumsum(dim=-1).sub_(g)  # [..., Q(i), Q(k)]: Σ_{j<k} g[i, j]
        lower = (idx[:, None] >= idx[None, :]).to(L.dtype)  # [Q(i), Q(k)]: i ≥ k
        return torch.einsum("...ik,ik->...k", before_k, lower)  # [..., Q]: Σ_{i≥k}


def chunk_ssd(*args: Tensor, **kwargs: object) -> tuple[Tensor, Tensor | None]:
    """`reference.chunk_ssd` with `ExpSegsum` as its decay matrix. Args/Returns: as there."""
    return reference.chunk_ssd(*args, **kwargs, decay_matrix=ExpSegsum.apply)
