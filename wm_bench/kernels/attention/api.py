"""Public attention kernel surface: causal/GQA attention with DMA per-key bias and top-w window."""

from __future__ import annotations

from torch import Tensor

from wm_bench.kernels._impl import Impl, check_impl, check_triton_device, has_triton
from wm_bench.kernels.attention import last_row, reference, torch_fast
from wm_bench.kernels.attention.last_row import TieBreak
from wm_bench.kernels.attention.options import AttentionOptions

AVAILABLE: tuple[str, ...] = ("reference", "torch_fast") + (("triton",) if has_triton() else ())
TIE_BREAKS: tuple[str, ...] = ("smaller_index", "larger_index")


def _check_tie_break(op: str, tie_break: str) -> None:
    if tie_break not in TIE_BREAKS:
        raise ValueError(
            f"{op}: unknown tie_break={tie_break!r}; valid choices: {list(TIE_BREAKS)}"
        )


def _check_window(op: str, window: object) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"{op}: window={window!r}, expected an int >= 1 or None")


def _check_inputs(op: str, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions) -> None:
    """Validate shapes, dtypes and switches of `attention`."""
    causal, key_bias, window, scale, tie_break = opts
    for name, t in (("q", q), ("k", k), ("v", v), ("key_bias", key_bias)):
        if t is not None and not t.is_floating_point():
            raise ValueError(f"{op}: {name} must be a floating-point tensor, got dtype={t.dtype}")
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise ValueError(
            f"{op}: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}); expected one dtype"
        )
    for name, t, layout in (
        ("q", q, "[B, T, H, K]"),
        ("k", k, "[B, S, Hkv, K]"),
        ("v", v, "[B, S, Hkv, V]"),
    ):
        if t.dim() != 4:
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}, expected 4-D {layout}")
    Bsz, T, H, K = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    if tuple(k.shape) != (Bsz, S, Hkv, K):
        raise ValueError(
            f"{op}: k has shape {tuple(k.shape)}, expected [B, S, Hkv, K] with B={Bsz}, K={K}"
        )
    if tuple(v.shape[:3]) != (Bsz, S, Hkv):
        raise ValueError(
            f"{op}: v has shape {tuple(v.shape)}, expected [B, S, Hkv, V] = [{Bsz}, {S}, {Hkv}, V]"
        )
    if Hkv < 1 or H % Hkv != 0:
        raise ValueError(f"{op}: H={H} query heads is not a multiple of Hkv={Hkv} kv heads")
    if T < 1 or S < 1:
        raise ValueError(f"{op}: T={T}, S={S}; expected at least one query and one key")
    if causal and T > S:
        raise ValueError(
            f"{op}: causal with T={T} queries > S={S} keys; queries align to the end of "
            "the keys, so expected T <= S"
        )
    if key_bias is not None and tuple(key_bias.shape) != (Bsz, H, S):
        raise ValueError(
            f"{op}: key_bias has shape {tuple(key_bias.shape)}, expected [B, H, S] = {(Bsz, H, S)}"
        )
    if window is not None:
        _check_window(op, window)
        if key_bias is None:
            raise ValueError(
                f"{op}: window={window} requires key_bias (the keys are ranked by bias)"
            )
        if not causal:
            raise ValueError(
                f"{op}: window={window} requires causal=True (top-w among visible keys)"
            )
    if scale is not None and not scale > 0:
        raise ValueError(f"{op}: scale={scale!r}, expected a positive float or None (1/sqrt(K))")
    _check_tie_break(op, tie_break)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    key_bias: Tensor | None = None,
    window: int | None = None,
    scale: float | None = None,
    tie_break: TieBreak = "smaller_index",
    impl: Impl = "reference",
) -> Tensor:
    """Softmax attention, GQA, optional per-key bias and DMA top-w window (docs/spec.md §2.3–2.4).

    Args:
        q: [B, T, H, K] float.
        k: [B, S, Hkv, K], same dtype; query head h reads kv head h // (H // Hkv).
        v: [B, S, Hkv, V], same dtype.
        causal: query i sees keys j ≤ i + S − T (queries aligned to the end of the keys).
        key_bias: [B, H, S] or None, added to every query's score for that key (differentiable).
        window: None or w ≥ 1: each query row keeps only the w highest-bias visible keys
            (needs key_bias and causal). The selection itself is not differentiated.
        scale: score scale, default 1/sqrt(K).
        tie_break: among equal biases "smaller_index" or "larger_index" is kept first.
        impl: "reference" (the definition: a dense T×S masked softmax from the direct rank
            rule), "torch_fast" (SDPA, the window as one last row per key: the CPU training
            path, any device) or "triton" (flash-style kernels: CUDA, or CPU under
            TRITON_INTERPRET=1; head widths ≤ 256; fp16/bf16/fp32).
    Returns:
        o: [B, T, H, V], q's dtype.
    """
    check_impl(impl, AVAILABLE, "attention")
    opts = AttentionOptions(causal, key_bias, window, scale, tie_break)
    _check_inputs("attention", q, k, v, opts)
    if impl == "reference":
        return reference.attention(q, k, v, **opts._asdict())
    opts = opts._replace(scale=q.shape[-1] ** -0.5 if scale is None else float(scale))
    if impl == "triton":
        check_triton_device(q, "attention")
        from wm_bench.kernels.attention.triton import attention_triton

        return attention_triton(q, k, v, opts)
    return torch_fast.attention(q, k, v, opts)


def window_last_row(
    key_bias: Tensor,
    window: int,
    *,
    tie_break: TieBreak = "smaller_index",
    q_offset: int = 0,
) -> Tensor:
    """The DMA top-w mask in O(S) memory: the last query row keeping each key (docs/spec.md §2.4).

    Row i (query coordinates; key coordinates i + q_offset) keeps key j iff
    j ≤ i + q_offset and i ≤ last_row[j]. Keys never evicted get S − 1 − q_offset; keys never
    kept get j − 1 − q_offset (an empty range).

    Args:
        key_bias: [B, H, S] float.
        window: w ≥ 1.
        tie_break: "smaller_index" or "larger_index" kept first among equal biases.
        q_offset: key index of query row 0, 0 ≤ q_offset < S (S − T for end-aligned decoding).
    Returns:
        last_row: [B, H, S] int64.
    """
    op = "window_last_row"
    if not key_bias.is_floating_point() or key_bias.dim() != 3:
        raise ValueError(
            f"{op}: key_bias has shape {tuple(key_bias.shape)} and dtype {key_bias.dtype}, "
            "expected a 3-D float tensor [B, H, S]"
        )
    _check_window(op, window)
    _check_tie_break(op, tie_break)
    S = key_bias.shape[-1]
    if isinstance(q_offset, bool) or not isinstance(q_offset, int) or not 0 <= q_offset < max(S, 1):
        raise ValueError(f"{op}: q_offset={q_offset!r}, expected an int in [0, S={S})")
    return last_row.window_last_row(key_bias, window, tie_break=tie_break, q_offset=q_offset)
