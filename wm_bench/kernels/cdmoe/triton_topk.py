"""Triton product-key top-k (Lample 2019, 1907.05242): exact top-k of n² sums from ~k·ln k pairs.

Expert e = i·n + j scores s1_i + s2_j. The half scores s1, s2 [M, He, n] come from torch
matmuls (cuBLAS is best at those) and each half's top-kk rows (kk = min(k, n)) from a stable
sort, so t1, t2 are sorted descending with equal scores in ascending row order. One Triton
program per (token, head) then ranks a pruned list of candidate pairs (a, b) — sorted positions
in t1 and t2 — and writes the k winning expert ids. Scores are re-read in torch as
s1[i] + s2[j], so the backward is plain autograd through the matmuls.

Why the pruned list is enough. Order the candidates by (sum descending, id ascending).
(1) Take a pair (a, b) and any (a', b') ≠ (a, b) with a' ≤ a, b' ≤ b. Then t1[a'] ≥ t1[a] and
    t2[b'] ≥ t2[b], and rounded addition is monotone, so its sum is ≥. If the sums are equal in
    exact arithmetic, t1[a'] = t1[a] and t2[b'] = t2[b]; equal values sit in ascending row
    order, so row(a') ≤ row(a), col(b') ≤ col(b), not both equal, and its id is lower. Either
    way (a', b') comes first. There are (a+1)(b+1) − 1 such pairs, so (a, b) can be among the
    first k only if (a+1)(b+1) ≤ k. The pruned list P(k) = {(a, b) : a, b < kk,
    (a+1)(b+1) ≤ k} has Σ_a min(kk, ⌊k/(a+1)⌋) ≈ k·ln k entries instead of kk² (kk² ≈ k² would
    grow like tokens × N for k ∝ √N): memory is O(tokens·(√N + k log k)), never O(tokens·N).
(2) Rounding caveat: a strict t1[a'] > t1[a] can be absorbed, fl(t1[a'] + t2[b]) =
    fl(t1[a] + t2[b]) with a larger id, so (1) only promises that nothing STRICTLY better than
    the k-th score is dropped. The k returned scores are still the k largest sums (every pair
    with a larger sum is in P(k), and P(k) holds ≥ k pairs scoring at least the k-th score: a
    rectangle of (a+1)(b+1) > k pairs contains ≥ k with (a'+1)(b'+1) ≤ k). Only the choice
    among candidates tying the k-th score bit for bit can then differ from the kk² reference.
    Without such absorption (the tests, integer-valued ties included) the ids are identical.

The kernel orders candidates by one int64 key per pair: the fp32 sum mapped to an
order-preserving 32-bit unsigned integer in the high bits and 2³¹ − 1 − id in the low 31, so a
descending sort of the keys is (sum descending, id ascending); `tl.topk` (a bitonic network
that stops merging at the top BLOCK_K) returns them sorted. Like every Triton path here it does
not import the reference it is tested against.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from wm_bench.kernels._impl import interpreting
from wm_bench.kernels._triton import by_width, pow2_block

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_EXPERTS = 2**31  # ids live in the low 31 bits of the sort key

# num_warps by candidate-list width: the bitonic network keeps BLOCK_P int64 keys in registers.
GPU_WARPS = {128: 2, 512: 4, 2048: 8, MAX_EXPERTS: 16}  # up to this BLOCK_P → warps


def _warps(block_p: int) -> int:
    return 1 if interpreting() else by_width(GPU_WARPS, block_p, "BLOCK_P")


@triton.jit
def _pk_select(
    T1, I1, T2, I2, PA, PB, OUT,
    P, n, k, stride_t,
    BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """One (token, head): the k best of the P candidate pairs, by (sum desc, expert id asc).

    T1/T2 [MH, ≥kk] fp32 half scores sorted descending (row stride stride_t), I1/I2 their rows;
    PA/PB [≥P] the candidates' positions in T1 and T2; OUT [MH, k] int64 expert ids.
    """
    row = tl.program_id(0).to(tl.int64)
    p = tl.arange(0, BLOCK_P)
    ok = p < P
    a = tl.load(PA + p, mask=ok, other=0)
    b = tl.load(PB + p, mask=ok, other=0)
    s = tl.load(T1 + row * stride_t + a) + tl.load(T2 + row * stride_t + b)  # as torch adds
    e = tl.load(I1 + row * stride_t + a).to(tl.int64) * n + tl.load(I2 + row * stride_t + b)
    bits = s.to(tl.int32, bitcast=True)
    bits = tl.where(s == 0.0, 0, bits)  # −0.0 ties +0.0, as in a float comparison
    wide = bits.to(tl.int64)
    # Order-preserving map of the float to [0, 2³²): positives above 2³¹ in bit order, negatives
    # below with their magnitude reversed.
    mono = tl.where(wide >= 0, wide + 2147483648, -1 - wide)
    key = mono * 2147483648 + (2147483647 - e)  # < 2⁶³: never negative
    key = tl.where(ok, key, -1)  # padding sorts last
    top = tl.topk(key, BLOCK_K)  # [BLOCK_K] descending
    ids = 2147483647 - (top & 2147483647)
    q = tl.arange(0, BLOCK_K)
    tl.store(OUT + row * k + q, ids, mask=q < k)


@functools.lru_cache(maxsize=64)
def candidate_pairs(k: int, kk: int, device: str) -> tuple[Tensor, Tensor, int]:
    """Positions (a, b) with a, b < kk and (a+1)(b+1) ≤ k, padded to a power of two.

    Returns:
        pa, pb [BLOCK_P] int32 on `device` (padding entries are 0) and the true count P.
    """
    a = torch.arange(kk)
    keep = (a[:, None] + 1) * (a[None, :] + 1) <= k
    pa, pb = keep.nonzero(as_tuple=True)
    count = pa.numel()
    block = pow2_block(count)
    pad = torch.zeros(block - count, dtype=torch.int64)
    pa, pb = torch.cat([pa, pad]), torch.cat([pb, pad])
    return pa.to(device, torch.int32), pb.to(device, torch.int32), count


def product_key_topk_triton(q: Tensor, sub_keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact product-key top-k with the reference's contract (shapes checked by api).

    Args:
        q: [M, He, R] fp16/bf16/fp32 queries.
        sub_keys: [He, 2, n, R/2] sub-keys.
        k: 1 ≤ k ≤ n².
    Returns:
        scores [M, He, k] fp32 sorted descending, differentiable w.r.t. q and sub_keys;
        indices [M, He, k] int64, equal scores by lower id.
    Raises:
        ValueError: a dtype other than fp16/bf16/fp32, or N = n² ≥ 2³¹.
    """
    op = "product_key_topk(impl='triton')"
    for name, t in (("q", q), ("sub_keys", sub_keys)):
        if t.dtype not in TRITON_DTYPES:
            raise ValueError(
                f"{op}: {name} dtype {t.dtype} not supported; valid: "
                f"{[str(d) for d in TRITON_DTYPES]}"
            )
    M, He, R = q.shape
    n, half = sub_keys.shape[2], R // 2
    if n * n >= MAX_EXPERTS:
        raise ValueError(f"{op}: N = n² = {n * n} experts; at most 2^31 − 1 supported")
    qf, kf = q.float(), sub_keys.float()

    # 1. Half scores [M, He, n] (differentiable).
    s1 = torch.einsum("mhr,hnr->mhn", qf[..., :half], kf[:, 0])
    s2 = torch.einsum("mhr,hnr->mhn", qf[..., half:], kf[:, 1])

    # 2. Each half sorted descending, equal scores in ascending row order; the kernel reads the
    #    first kk of each row through the row stride (no copy).
    kk = min(k, n)
    t1, i1 = torch.sort(s1.detach().reshape(M * He, n), dim=-1, descending=True, stable=True)
    t2, i2 = torch.sort(s2.detach().reshape(M * He, n), dim=-1, descending=True, stable=True)

    # 3. The k winners among the pruned candidates.
    indices = torch.empty(M, He, k, device=q.device, dtype=torch.int64)
    if M * He > 0:
        pa, pb, count = candidate_pairs(k, kk, str(q.device))
        block_p = pa.numel()
        _pk_select[(M * He,)](
            t1, i1, t2, i2, pa, pb, indices,
            count, n, k, t1.stride(0),
            BLOCK_P=block_p, BLOCK_K=triton.next_power_of_2(k),
            num_warps=_warps(block_p), num_stages=1,
        )  # fmt: skip

    # 4. Differentiable scores: the same fp32 sums the kernel ranked.
    scores = s1.gather(-1, indices // n) + s2.gather(-1, indices % n)
    return scores, indices
