"""CDMoE retrieval spec: product-key top-k (Lample 2019, 1907.05242) + expert mix (2412.11834)."""

# Readable PyTorch, no triton, plain autograd. Math runs in fp32 (fp64 inputs stay fp64). Inputs
# are assumed valid: `api.py` checks them. Single-neuron experts as in PEER (He 2024, arXiv
# 2407.04153). The CPU fast path of the top-k (candidate pruning) is in `torch_fast.py`.

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from wm_bench.kernels._impl import compute_dtype

ACTIVATIONS: tuple[str, ...] = ("silu", "gelu", "relu", "identity")

_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "identity": lambda h: h,
}


def stable_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k along the last dim, sorted descending; equal values keep the lower position first.

    Args:
        scores: [..., L] float.
        k: how many to keep, 1 ≤ k ≤ L.
    Returns:
        values [..., k] and positions [..., k] int64.
    """
    values, positions = torch.sort(scores, dim=-1, descending=True, stable=True)
    return values[..., :k], positions[..., :k]


def half_scores(q: Tensor, sub_keys: Tensor) -> tuple[Tensor, Tensor]:
    """Scores of each query half against its own sub-key set, in the math dtype.

    Args:
        q: [M, He, R] float queries, R even.
        sub_keys: [He, 2, n, R/2] float sub-keys (set 1 then set 2).
    Returns:
        s1, s2: [M, He, n] each: s1_i = q[..., :R/2]·K[h, 0, i], s2_j = q[..., R/2:]·K[h, 1, j].
    """
    half = q.shape[-1] // 2
    dtype = compute_dtype(q)
    qf, kf = q.to(dtype), sub_keys.to(dtype)
    s1 = torch.einsum("mhr,hnr->mhn", qf[..., :half], kf[:, 0])  # [M, He, n]
    s2 = torch.einsum("mhr,hnr->mhn", qf[..., half:], kf[:, 1])  # [M, He, n]
    return s1, s2


def gather_scores(s1: Tensor, s2: Tensor, indices: Tensor) -> Tensor:
    """Differentiable scores s1_i + s2_j of experts e = i·n + j: [M, He, k] from [M, He, n] each."""
    n = s1.shape[-1]
    return s1.gather(-1, indices // n) + s2.gather(-1, indices % n)


def product_key_topk(q: Tensor, sub_keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k experts over all N = n² product-key sums, by brute force.

    Expert e = i·n + j scores s1_i + s2_j. Every expert is scored and sorted; ties go to the
    lower expert id. O(M·He·n²) memory: the definition the pruned search of `torch_fast` and the
    Triton kernel are tested against.

    Args:
        q: [M, He, R] float queries, R even.
        sub_keys: [He, 2, n, R/2] float sub-keys (set 1 then set 2).
        k: experts per (token, head), 1 ≤ k ≤ n².
    Returns:
        scores [M, He, k] in the math dtype (fp32 for half inputs), sorted descending,
        differentiable w.r.t. q and sub_keys; indices [M, He, k] int64 in [0, n²).
    """
    # 1. Half scores.
    s1, s2 = half_scores(q, sub_keys)  # [M, He, n] each

    # 2. Every expert's score, flattened so that position e = i·n + j is the expert id.
    full = (s1[..., :, None] + s2[..., None, :]).flatten(-2)  # [M, He, n²]

    # 3. The top k; the stable sort keeps the lower id first among equal scores. Selection
    #    only, so no graph is kept.
    _, indices = stable_topk(full.detach(), k)  # [M, He, k]

    # 4. Differentiable scores by plain gathers.
    return gather_scores(s1, s2, indices), indices


def expert_mix(
    x: Tensor,
    down: Tensor,
    up: Tensor,
    indices: Tensor,
    gates: Tensor,
    activation: str = "silu",
) -> Tensor:
    """Mix single-neuron experts: y = Σ_j gates[:, j] · act(x · down[e_j]) · up[e_j].

    Vectorised gathers: the down rows are gathered to [M, J, D] (one saved tensor); the up side is
    an EmbeddingBag sum with per-sample weights, so no second [M, J, D] tensor is kept.

    Args:
        x: [M, D] float tokens.
        down: [N, D] down (input) rows u_e.
        up: [N, D] up (output) rows w_e.
        indices: [M, J] int expert ids in [0, N) (repeats allowed).
        gates: [M, J] float weights.
        activation: one of ACTIVATIONS.
    Returns:
        y [M, D] in x's dtype.
    """
    dtype = compute_dtype(x)
    act = _ACTIVATION_FNS[activation]

    # 1. Neuron pre-activations h[m, j] = x_m · u_{e_mj}.
    u = F.embedding(indices, down).to(dtype)  # [M, J, D], gathered then cast
    h = torch.einsum("md,mjd->mj", x.to(dtype), u)  # [M, J]

    # 2. Gated activations.
    a = act(h) * gates.to(dtype)  # [M, J]

    # 3. Weighted sum of the up rows.
    y = F.embedding_bag(indices, up.to(dtype), per_sample_weights=a, mode="sum")  # [M, D]
    return y.to(x.dtype)
