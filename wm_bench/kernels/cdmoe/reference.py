"""CDMoE retrieval spec: product-key top-k (Lample 2019, 1907.05242) + expert mix (2412.11834)."""

# Readable PyTorch, no triton. Math runs in fp32 (fp64 inputs stay fp64). Inputs are assumed
# valid: `api.py` checks them. Single-neuron experts as in PEER (He 2024, arXiv 2407.04153).

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS: tuple[str, ...] = ("silu", "gelu", "relu", "identity")

_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "identity": lambda h: h,
}


def math_dtype(t: Tensor) -> torch.dtype:
    """The dtype the reference computes in: fp32 for half types, else the input's own."""
    return torch.promote_types(t.dtype, torch.float32)


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


@lru_cache(maxsize=64)
def _pairs_cpu(kk: int, k: int) -> tuple[Tensor, Tensor]:
    a = torch.arange(kk)[:, None]
    b = torch.arange(kk)[None, :]
    keep = (a + 1) * (b + 1) <= k
    rows, cols = keep.nonzero(as_tuple=True)
    return rows, cols


def candidate_pairs(kk: int, k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Sorted positions (a, b) of the candidates that can be among the top k of t1[a] + t2[b].

    t1, t2 are sorted descending with ties in ascending row order. Every pair (a', b') with
    a' ≤ a and b' ≤ b has t1[a'] + t2[b'] ≥ t1[a] + t2[b]; when the sums are equal, the ties
    inside each half put the dominating pair's rows first, so its expert id i·n + j is the lower
    one. So (a, b) is outranked by the (a+1)(b+1) − 1 pairs it is dominated by, and can be in the
    top k only if (a+1)(b+1) ≤ k. That leaves Σ_a ⌊k/(a+1)⌋ ≈ k·ln k pairs out of kk².

    Returns:
        (a, b): [P] int64 each, on `device`, in row-major order.
    """
    a, b = _pairs_cpu(kk, k)
    return a.to(device), b.to(device)


def product_key_topk(q: Tensor, sub_keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact top-k experts over all n² product-key sums, from k² candidates.

    Expert e = i·n + j scores s1_i + s2_j, with s1 = q[..., :R/2]·K[h, 0, i] and
    s2 = q[..., R/2:]·K[h, 1, j]. Any expert of the top k uses a row i among the top k of s1 and a
    row j among the top k of s2, so the top-min(k, n) per half and their sums give the exact
    answer (when k > n, kk = n), and of those kk² sums only the ≈ k·ln k pairs of
    `candidate_pairs` can win. Ties are broken by the lower expert id, at every step, which keeps
    both shortcuts exact also with ties.

    Args:
        q: [M, He, R] float queries, R even.
        sub_keys: [He, 2, n, R/2] float sub-keys (set 1 then set 2).
        k: experts per (token, head), 1 ≤ k ≤ n².
    Returns:
        scores [M, He, k] in the math dtype (fp32 for half inputs), sorted descending,
        differentiable w.r.t. q and sub_keys; indices [M, He, k] int64 in [0, n²).
    """
    n = sub_keys.shape[2]
    half = q.shape[-1] // 2
    dtype = math_dtype(q)
    qf, kf = q.to(dtype), sub_keys.to(dtype)

    # 1. Half scores.
    s1 = torch.einsum("mhr,hnr->mhn", qf[..., :half], kf[:, 0])  # [M, He, n]
    s2 = torch.einsum("mhr,hnr->mhn", qf[..., half:], kf[:, 1])  # [M, He, n]

    # 2. Top-kk rows per half; selection only, so no graph is kept.
    kk = min(k, n)
    t1, i1 = stable_topk(s1.detach(), kk)  # [M, He, kk]
    t2, i2 = stable_topk(s2.detach(), kk)  # [M, He, kk]

    # 3. Candidate sums and their expert ids, reordered by ascending id so that the stable sort
    #    of step 4 breaks ties by the lower id. Only pairs of sorted positions (a, b) with
    #    (a+1)(b+1) ≤ k can make the top k (see `candidate_pairs`): about k·ln k, not kk².
    a, b = candidate_pairs(kk, k, q.device)  # [P] each
    ids = i1[..., a] * n + i2[..., b]  # [M, He, P]
    cand = t1[..., a] + t2[..., b]  # [M, He, P]
    ids, by_id = ids.sort(dim=-1)
    cand = cand.gather(-1, by_id)

    # 4. Top-k candidates.
    _, pos = stable_topk(cand, k)  # [M, He, k]
    indices = ids.gather(-1, pos)  # [M, He, k]

    # 5. Differentiable scores by plain gathers (bitwise equal to the candidate sums).
    scores = s1.gather(-1, indices // n) + s2.gather(-1, indices % n)  # [M, He, k]
    return scores, indices


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
    dtype = math_dtype(x)
    act = _ACTIVATION_FNS[activation]

    # 1. Neuron pre-activations h[m, j] = x_m · u_{e_mj}.
    u = F.embedding(indices, down).to(dtype)  # [M, J, D], gathered then cast
    h = torch.einsum("md,mjd->mj", x.to(dtype), u)  # [M, J]

    # 2. Gated activations.
    a = act(h) * gates.to(dtype)  # [M, J]

    # 3. Weighted sum of the up rows.
    y = F.embedding_bag(indices, up.to(dtype), per_sample_weights=a, mode="sum")  # [M, D]
    return y.to(x.dtype)
