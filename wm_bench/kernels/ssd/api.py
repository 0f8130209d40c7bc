"""Public SSD kernel surface: chunked scan, recurrent scan, a decoding step (docs/spec.md §2.2)."""

from __future__ import annotations

from torch import Tensor

from wm_bench.kernels._impl import Impl, check_impl, check_triton_device, has_triton
from wm_bench.kernels.ssd import reference as ref
from wm_bench.kernels.ssd import torch_fast

AVAILABLE: tuple[str, ...] = ("reference", "torch_fast") + (("triton",) if has_triton() else ())
# recurrent_ssd and ssd_step have one form (the reference): they reject other impls by name.
RECURRENT_AVAILABLE: tuple[str, ...] = ("reference",)
STEP_AVAILABLE: tuple[str, ...] = ("reference",)


def _check_float(name: str, t: Tensor | None) -> None:
    if t is not None and not t.is_floating_point():
        raise ValueError(f"ssd: {name} must be a floating-point tensor, got dtype={t.dtype}")


def _check_shape(name: str, t: Tensor | None, expected: tuple[int, ...], layout: str) -> None:
    if t is not None and tuple(t.shape) != expected:
        raise ValueError(f"ssd: {name} has shape {tuple(t.shape)}, expected {layout} = {expected}")


def _check_ssd_inputs(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    initial_state: Tensor | None,
) -> None:
    """Validate the [B, T, H, P] sequence layout shared by `chunk_ssd` and `recurrent_ssd`."""
    for name, t in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C), ("D", D)):
        _check_float(name, t)
    _check_float("initial_state", initial_state)
    if x.dim() != 4:
        raise ValueError(f"ssd: x has shape {tuple(x.shape)}, expected 4-D [B, T, H, P]")
    bsz, T, H, P = x.shape
    if T < 1:
        raise ValueError(f"ssd: x has T={T} time steps, expected T >= 1")
    if B.dim() != 4:
        raise ValueError(f"ssd: B has shape {tuple(B.shape)}, expected 4-D [B, T, G, N]")
    G, N = B.shape[2], B.shape[3]
    if G < 1 or H % G != 0:
        raise ValueError(f"ssd: H={H} heads is not a multiple of G={G} groups (B/C dim 2)")
    _check_shape("dt", dt, (bsz, T, H), "[B, T, H]")
    _check_shape("A", A, (H,), "[H]")
    _check_shape("B", B, (bsz, T, G, N), "[B, T, G, N]")
    _check_shape("C", C, (bsz, T, G, N), "[B, T, G, N] (same as B)")
    _check_shape("D", D, (H,), "[H]")
    _check_shape("initial_state", initial_state, (bsz, H, P, N), "[B, H, P, N]")


def _check_triton_inputs(chunk_size: int, tensors: dict[str, Tensor | None]) -> None:
    """The Triton kernels' extra contract: 16-bit or fp32 inputs, a power-of-two chunk."""
    from wm_bench.kernels.ssd.triton import CHUNK_SIZES, TRITON_DTYPES

    for name, t in tensors.items():
        if t is not None and t.dtype not in TRITON_DTYPES:
            raise ValueError(
                f"chunk_ssd: impl='triton' takes {[str(d) for d in TRITON_DTYPES]} inputs, "
                f"got {name}.dtype={t.dtype}; use impl='reference' for float64"
            )
    if chunk_size not in CHUNK_SIZES:
        raise ValueError(
            f"chunk_ssd: chunk_size={chunk_size} with impl='triton', expected one of {CHUNK_SIZES}"
        )


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
    impl: Impl = "reference",
) -> tuple[Tensor, Tensor | None]:
    """Chunked SSD scan: S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_tᵀ, y_t = S_t C_t (+ D x_t).

    Any T (padded internally to a multiple of chunk_size with dt = 0); math in fp32.

    Args:
        x: [B, T, H, P] float.
        dt: [B, T, H] positive step sizes (already softplus'ed).
        A: [H] negative decay rates (exponents are clamped at 0, so decays never exceed 1).
        B: [B, T, G, N] with H % G == 0; head h uses group h // (H // G).
        C: [B, T, G, N].
        chunk_size: Q ≥ 1.
        D: [H] skip weights (y += D[h] x) or None.
        initial_state: [B, H, P, N] or None (zeros).
        return_final_state: return S_T instead of None.
        impl: "reference" (the readable definition, plain autograd), "torch_fast" (the same
            forward with a hand-written backward for the decay matrix: the CPU training path), or
            "triton" (CUDA tensors, or any device under TRITON_INTERPRET=1; fp32/bf16/fp16
            inputs, chunk_size in 16..256 a power of two; fp32 accumulation).
    Returns:
        y: [B, T, H, P], x's dtype.
        final_state: [B, H, P, N] fp32 (fp64 for fp64 inputs), or None.
    """
    check_impl(impl, AVAILABLE, "chunk_ssd")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_ssd: chunk_size={chunk_size!r}, expected an int >= 1")
    _check_ssd_inputs(x, dt, A, B, C, D, initial_state)
    optional = {"D": D, "initial_state": initial_state}
    if impl == "triton":
        check_triton_device(x, "chunk_ssd")
        _check_triton_inputs(chunk_size, {"x": x, "dt": dt, "A": A, "B": B, "C": C, **optional})
        from wm_bench.kernels.ssd.triton import chunk_ssd_triton as run
    else:
        run = torch_fast.chunk_ssd if impl == "torch_fast" else ref.chunk_ssd
    return run(
        x, dt, A, B, C, chunk_size=chunk_size, return_final_state=return_final_state, **optional
    )


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
    impl: Impl = "reference",
) -> tuple[Tensor, Tensor | None]:
    """Recurrent SSD scan (a loop over time): same contract as `chunk_ssd`, no chunk_size.

    Args/Returns: as `chunk_ssd`.
    """
    check_impl(impl, RECURRENT_AVAILABLE, "recurrent_ssd")
    _check_ssd_inputs(x, dt, A, B, C, D, initial_state)
    return ref.recurrent_ssd(
        x,
        dt,
        A,
        B,
        C,
        D=D,
        initial_state=initial_state,
        return_final_state=return_final_state,
    )


def ssd_step(
    x_t: Tensor,
    dt_t: Tensor,
    A: Tensor,
    B_t: Tensor,
    C_t: Tensor,
    state: Tensor,
    *,
    D: Tensor | None = None,
    impl: Impl = "reference",
) -> tuple[Tensor, Tensor]:
    """One decoding step of the SSD recurrence.

    Args:
        x_t: [B, H, P] float.
        dt_t: [B, H] positive step sizes.
        A: [H] negative decay rates.
        B_t: [B, G, N] with H % G == 0.
        C_t: [B, G, N].
        state: [B, H, P, N] fp32 (the previous step's new_state, or zeros).
        D: [H] or None.
        impl: "reference".
    Returns:
        y_t: [B, H, P], x_t's dtype.
        new_state: [B, H, P, N] fp32 (fp64 for fp64 inputs).
    """
    check_impl(impl, STEP_AVAILABLE, "ssd_step")
    for name, t in (("x_t", x_t), ("dt_t", dt_t), ("A", A), ("B_t", B_t), ("C_t", C_t)):
        _check_float(name, t)
    _check_float("state", state)
    _check_float("D", D)
    if x_t.dim() != 3:
        raise ValueError(f"ssd_step: x_t has shape {tuple(x_t.shape)}, expected 3-D [B, H, P]")
    if B_t.dim() != 3:
        raise ValueError(f"ssd_step: B_t has shape {tuple(B_t.shape)}, expected 3-D [B, G, N]")
    bsz, H, P = x_t.shape
    G, N = B_t.shape[1], B_t.shape[2]
    if G < 1 or H % G != 0:
        raise ValueError(f"ssd_step: H={H} heads is not a multiple of G={G} groups (B_t dim 1)")
    _check_shape("dt_t", dt_t, (bsz, H), "[B, H]")
    _check_shape("A", A, (H,), "[H]")
    _check_shape("B_t", B_t, (bsz, G, N), "[B, G, N]")
    _check_shape("C_t", C_t, (bsz, G, N), "[B, G, N] (same as B_t)")
    _check_shape("state", state, (bsz, H, P, N), "[B, H, P, N]")
    _check_shape("D", D, (H,), "[H]")
    return ref.ssd_step(x_t, dt_t, A, B_t, C_t, state, D=D)


__all__ = ["chunk_ssd", "recurrent_ssd", "ssd_step"]
