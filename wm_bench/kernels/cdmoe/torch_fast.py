"""CDMoE CPU fast path: exact product-key top-k from ≈ k·ln k candidates instead of n² scores.

Same contract and the same answer (ties included) as `reference.product_key_topk`, which scores
every expert; tested against it.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from wm_bench.kernels.cdmoe.reference import gather_scores, half_scores, stable_topk


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
    """Exact top-k experts over all n² product-key sums, from k·ln k candidates.

    Any expert of the top k uses a row i among the top k of s1 and a row j among the top k of
    s2, so the top-min(k, n) per half and their sums give the exact answer (when k > n, kk = n),
    and of those kk² sums only the ≈ k·ln k pairs of `candidate_pairs` can win. Ties are broken
    by the lower expert id, at every step, which keeps both shortcuts exact also with ties.

    Args/Returns: as `reference.product_key_topk`.
    """
    n = sub_keys.shape[2]

    # 1. Half scores.
    s1, s2 = half_scores(q, sub_keys)  # [M, He, n] each

    # 2. Top-kk rows per half; selection only, so no graph is kept.
    kk = min(k, n)
    t1, i1 = stable_topk(s1.detach(), kk)  # [M, He, kk]
    t2, i2 = stable_topk(s2.detach(), kk)  # [M, He, kk]

    # 3. Candidate sums and their expert ids, reordered by ascending id so that the stable sort
    #    of step 4 breaks ties by the lower id.
    a, b = candidate_pairs(kk, k, q.device)  # [P] each
    ids = i1[..., a] * n + i2[..., b]  # [M, He, P]
    cand = t1[..., a] + t2[..., b]  # [M, He, P]
    ids, by_id = ids.sort(dim=-1)
    cand = cand.gather(-1, by_id)

    # 4. Top-k candidates.
    _, pos = stable_topk(cand, k)  # [M, He, k]
    indices = ids.gather(-1, pos)  # [M, He, k]

    # 5. Differentiable scores by plain gathers (bitwise equal to the candidate sums).
    return gather_scores(s1, s2, indices), indices
