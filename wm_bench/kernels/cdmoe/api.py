"""Public surface of the CDMoE retrieval kernels: explicit impl, shape and value checks."""

from __future__ import annotations

from torch import Tensor

from wm_bench.kernels._impl import check_impl, check_triton_device, has_triton
from wm_bench.kernels.cdmoe import reference, torch_fast
from wm_bench.kernels.cdmoe.reference import ACTIVATIONS

# Implementations each op has today; layers pass these to `resolve_impl`. expert_mix has no CPU
# fast path: its reference (two gathers, one EmbeddingBag) is what the CPU runs.
_TRITON: tuple[str, ...] = ("triton",) if has_triton() else ()
IMPLS: dict[str, tuple[str, ...]] = {
    "product_key_topk": ("reference", "torch_fast", *_TRITON),
    "expert_mix": ("reference", *_TRITON),
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_product_key_inputs(q: Tensor, sub_keys: Tensor, k: int) -> None:
    op = "product_key_topk"
    if q.ndim != 3:
        raise ValueError(f"{op}: q must be [M, He, R], got shape {tuple(q.shape)}")
    _, he, r = q.shape
    if r % 2 != 0 or r == 0:
        raise ValueError(f"{op}: query width R={r} must be even and positive (two halves)")
    if sub_keys.ndim != 4 or sub_keys.shape[:2] != (he, 2) or sub_keys.shape[3] != r // 2:
        raise ValueError(
            f"{op}: sub_keys must be [He, 2, n, R/2] = [{he}, 2, n, {r // 2}], "
            f"got shape {tuple(sub_keys.shape)}"
        )
    if not (q.is_floating_point() and sub_keys.is_floating_point()):
        raise ValueError(f"{op}: q and sub_keys must be floating, got {q.dtype}, {sub_keys.dtype}")
    if q.device != sub_keys.device:
        raise ValueError(f"{op}: q on {q.device} but sub_keys on {sub_keys.device}")
    n = sub_keys.shape[2]
    if not _is_int(k) or not 1 <= k <= n * n:
        raise ValueError(f"{op}: k={k!r} must be an int with 1 ≤ k ≤ N = n² = {n * n}")


def product_key_topk(
    q: Tensor, sub_keys: Tensor, k: int, *, impl: str = "reference"
) -> tuple[Tensor, Tensor]:
    """Exact top-k of the n² product-key sums s1_i + s2_j (expert e = i·n + j) per token and head.

    Args:
        q: [M, He, R] float queries, R even; the first R/2 channels meet set 1, the rest set 2.
        sub_keys: [He, 2, n, R/2] float sub-keys; N = n² experts.
        k: experts per (token, head), 1 ≤ k ≤ N.
        impl: "reference" (every one of the n² experts scored and sorted: the definition),
            "torch_fast" (only the ~k·ln k candidate pairs that can win are ranked: the CPU
            path, any device, fp64 too) or "triton" (half scores by torch matmuls, then one
            kernel ranks the candidate pairs; CUDA, or CPU under TRITON_INTERPRET=1;
            fp16/bf16/fp32).
    Returns:
        scores [M, He, k] (fp32 for half inputs, else q's dtype), sorted descending, differentiable
        w.r.t. q and sub_keys; indices [M, He, k] int64 in [0, N). Equal scores order by lower id.
    """
    op = "cdmoe.product_key_topk"
    check_impl(impl, IMPLS["product_key_topk"], op)
    _check_product_key_inputs(q, sub_keys, k)
    if impl == "triton":
        check_triton_device(q, op)
        from wm_bench.kernels.cdmoe.triton_topk import product_key_topk_triton as run
    else:
        run = torch_fast.product_key_topk if impl == "torch_fast" else reference.product_key_topk
    return run(q, sub_keys, k)


def _check_expert_mix_inputs(
    x: Tensor, down: Tensor, up: Tensor, indices: Tensor, gates: Tensor, activation: str
) -> None:
    op = "expert_mix"
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: unknown activation={activation!r}; valid: {list(ACTIVATIONS)}")
    if x.ndim != 2:
        raise ValueError(f"{op}: x must be [M, D], got shape {tuple(x.shape)}")
    m, d = x.shape
    for name, table in (("down", down), ("up", up)):
        if table.ndim != 2 or table.shape[1] != d:
            raise ValueError(f"{op}: {name} must be [N, D={d}], got shape {tuple(table.shape)}")
    if down.shape != up.shape:
        raise ValueError(f"{op}: down {tuple(down.shape)} and up {tuple(up.shape)} differ")
    if indices.ndim != 2 or indices.shape[0] != m:
        raise ValueError(f"{op}: indices must be [M={m}, J], got shape {tuple(indices.shape)}")
    if gates.shape != indices.shape:
        raise ValueError(
            f"{op}: gates shape {tuple(gates.shape)} must equal indices shape "
            f"{tuple(indices.shape)}"
        )
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == bool:
        raise ValueError(f"{op}: indices must be an integer tensor, got {indices.dtype}")
    if not (x.is_floating_point() and gates.is_floating_point()):
        raise ValueError(f"{op}: x and gates must be floating, got {x.dtype}, {gates.dtype}")


def expert_mix(
    x: Tensor,
    down: Tensor,
    up: Tensor,
    indices: Tensor,
    gates: Tensor,
    *,
    activation: str = "silu",
    impl: str = "reference",
) -> Tensor:
    """Mix single-neuron experts: y = Σ_j gates[:, j] · act(x · down[e_j]) · up[e_j].

    Args:
        x: [M, D] float tokens.
        down: [N, D] down rows u_e.
        up: [N, D] up rows w_e.
        indices: [M, J] integer expert ids in [0, N) (out-of-range ids raise IndexError).
        gates: [M, J] float weights.
        activation: "silu" | "gelu" | "relu" | "identity".
        impl: "reference" (autograd over an [M, J, D] gather, any device) or "triton" (per-token
            gather kernels and an expert-sorted kernel for the table gradients: no [M, J, D]
            tensor, deterministic; CUDA, or CPU under TRITON_INTERPRET=1; fp16/bf16/fp32).
    Returns:
        y [M, D] in x's dtype; differentiable w.r.t. x, down, up and gates.
    """
    op = "cdmoe.expert_mix"
    check_impl(impl, IMPLS["expert_mix"], op)
    _check_expert_mix_inputs(x, down, up, indices, gates, activation)
    run = reference.expert_mix
    if impl == "triton":
        check_triton_device(x, op)
        from wm_bench.kernels.cdmoe.triton_mix import expert_mix_triton as run
    return run(x, down, up, indices, gates, activation)
