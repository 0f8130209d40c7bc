"""One way to compare tensors, for the tests, the benchmarks and the GPU suite.

The error metric is the relative RMS error, ‖actual − expected‖₂ / ‖expected‖₂ computed in
float64: one number per comparison that does not depend on the tensor's size and is not ruled by
one outlier the way a max-abs error is. Tolerances are named after the precision the computation
ran in, so a test says *why* it accepts an error, not only how much:

    assert_close(ours, reference, tol="fp32")
    assert_close(grad, grad_ref, tol="bf16", what="dq")
    assert_close(dk, dk_ref, tol="fp32", floor=1.0)  # expected may be exactly 0: absolute there

A NaN or Inf anywhere fails (NaN never passes a `<` check, and the metric is NaN then).
"""

from __future__ import annotations

import math
import random

import torch

from wm_bench.kernels._impl import has_triton, interpreting

# Relative RMS errors accepted for a result computed in each precision against a float64 (or
# exactly equivalent) form. fp64 "exact" is for two forms of one formula evaluated in float64.
TOLERANCES: dict[str, float] = {
    "exact64": 1e-12,  # same maths, float64 both sides (different summation order only)
    "fp64": 1e-9,  # float64, different algorithms (chunked vs recurrent, pruned vs brute force)
    "fp32": 1e-5,  # float32 against float64 or float32 with another summation order
    "tf32": 2e-3,  # float32 inputs through tf32 tensor cores
    "fp16": 5e-3,  # float16 storage, float32 accumulation
    "bf16": 2e-2,  # bfloat16 storage, float32 accumulation
}


def tolerance(tol: str | float) -> float:
    """The number behind a tolerance name (or the number itself); ValueError for an unknown name."""
    if isinstance(tol, str):
        if tol not in TOLERANCES:
            raise ValueError(f"unknown tolerance {tol!r}; valid: {list(TOLERANCES)} or a number")
        return TOLERANCES[tol]
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tolerance must be a positive finite number, got {tol!r}")
    return float(tol)


def rel_rms(actual: torch.Tensor, expected: torch.Tensor, *, floor: float = 1e-30) -> float:
    """Relative RMS error of `actual` against `expected`, in float64.

    Args:
        actual, expected: tensors of one shape (any dtype or device; compared on expected's).
        floor: the smallest denominator; 1.0 makes the error absolute where `expected` is ~0
            (a gradient that is exactly zero by construction).
    Returns:
        ‖a − e‖_rms / max(‖e‖_rms, floor); NaN when either side has a NaN or Inf.
    """
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: actual {tuple(actual.shape)} vs expected "
                         f"{tuple(expected.shape)}")  # fmt: skip
    a = actual.detach().to(device=expected.device, dtype=torch.float64)
    e = expected.detach().to(torch.float64)
    if a.numel() == 0:
        return 0.0
    if not (torch.isfinite(a).all() and torch.isfinite(e).all()):
        return math.nan
    num = (a - e).pow(2).mean().sqrt()
    return (num / e.pow(2).mean().sqrt().clamp_min(floor)).item()


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    tol: str | float = "fp32",
    *,
    floor: float = 1e-30,
    what: str = "",
) -> float:
    """Fail unless rel_rms(actual, expected) < tolerance(tol); returns the error for logging.

    The message names `what`, the error, the tolerance and the worst element.
    """
    limit = tolerance(tol)
    err = rel_rms(actual, expected, floor=floor)
    if not err < limit:  # NaN fails here
        diff = (actual.detach().double().to(expected.device) - expected.detach().double()).abs()
        worst = int(diff.flatten().nan_to_num(math.inf).argmax())
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape))
        name = f"{what}: " if what else ""
        raise AssertionError(
            f"{name}relative RMS error {err:.3g} ≥ {limit:.3g} ({tol!r}); worst element at "
            f"{idx}: actual {actual.flatten()[worst].item():.6g}, expected "
            f"{expected.flatten()[worst].item():.6g}"
        )
    return err


def triton_device() -> torch.device | None:
    """Where a Triton kernel can run in this session: CUDA when present, the CPU under
    TRITON_INTERPRET=1, else None (tests skip then; tests/conftest.py makes it a fixture)."""
    if not has_triton():
        return None
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu") if interpreting() else None


# A 14-word vocabulary for toy text (tokenizers, corpora and model folders in tests).
TOY_WORDS = (
    "the",
    "a",
    "cat",
    "dog",
    "sees",
    "finds",
    "river",
    "house",
    "garden",
    "quiet",
    "old",
    "small",
    "writes",
    "visits",
)


def toy_sentence(rng: random.Random) -> str:
    """4 to 12 words of TOY_WORDS drawn with `rng`, then a full stop: "the old cat sees a dog."."""
    return " ".join(rng.choice(TOY_WORDS) for _ in range(rng.randint(4, 12))) + "."
