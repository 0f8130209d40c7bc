"""SSD implementations benchmarked: ours (Triton), mamba_ssm and fla (docs/anchors.md §3)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import Any

from torch import Tensor

SSD_ARGS = ("x", "dt", "A", "B", "C")  # the differentiable inputs of every implementation
IMPL_NAMES = ("ours", "mamba_ssm", "fla")
FLA_MAPPING = (
    "SSD as simple GLA: q = C, k = B (both repeated from G groups to H heads, as fla needs one "
    "key head per value head), v = x·dt, g = dt·A (per-head log-decay), scale = 1, chunk 64 (fla's "
    "own). Checked through that mapping (autograd gives dx, ddt, dA, dB, dC); timed on the "
    "pre-mapped q, k, v, g (the mapping's own kernels are not counted)."
)
MAMBA_NOTE = (
    "mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size), D = None, no dt_bias / softplus; "
    "imported through a bare `mamba_ssm` namespace module (its __init__ needs the CUDA extension)."
)
INTERPRET_SKIP = (
    "anchors need CUDA: their launchers enter torch.cuda.device and autotune over several "
    "configs, which the CPU interpreter cannot run"
)


@dataclass(frozen=True)
class Impl:
    """One implementation of the chunked SSD forward + backward.

    Fields:
        name: "ours", "mamba_ssm" or "fla".
        kind: "ours" or "anchor".
        versions: distribution → version (empty for ours: the commit is in the provenance).
        ssd_fn: (x, dt, A, B, C, chunk) → y [B, T, H, P], autograd-aware, the SSD contract of
            `chunk_ssd` (D = None, no initial state); used for the correctness check.
        timed: (inputs, chunk) → (f, leaves) with f(*leaves) → y: what is timed, and the tensors
            whose gradients fwd+bwd asks for (the SSD inputs, or fla's pre-mapped q, k, v, g).
        note: how the implementation is called (mapping, import route).
        fixed_chunk: the chunk the implementation always uses (fla: 64), None when it takes ours.
    """

    name: str
    kind: str
    versions: dict[str, str]
    ssd_fn: Callable[..., Tensor]
    timed: Callable[[dict[str, Tensor], int], tuple[Callable[..., Tensor], list[Tensor]]]
    note: str = ""
    fixed_chunk: int | None = None


def _ssd_leaves(fn: Callable[..., Tensor]) -> Callable[..., Any]:
    def timed(inp: dict[str, Tensor], chunk: int) -> tuple[Callable[..., Tensor], list[Tensor]]:
        return partial(fn, chunk=chunk), [inp[k] for k in SSD_ARGS]

    return timed


def _ours_fn(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, *, chunk: int) -> Tensor:
    from wm_bench.kernels.ssd import chunk_ssd

    return chunk_ssd(x, dt, A, B, C, chunk_size=chunk, impl="triton")[0]


def import_mamba_chunk_scan() -> Callable[..., Tensor]:
    """mamba_ssm's `mamba_chunk_scan_combined` without running `mamba_ssm/__init__.py`.

    Returns:
        The function.
    Raises:
        ImportError: mamba_ssm is not installed (or its Triton module fails to import).
    """
    mod = sys.modules.get("mamba_ssm")
    if mod is None:
        spec = importlib.util.find_spec("mamba_ssm")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("mamba_ssm is not installed")
        mod = types.ModuleType("mamba_ssm")
        mod.__path__ = list(spec.submodule_search_locations)
        mod.__spec__ = spec
        sys.modules["mamba_ssm"] = mod
    return importlib.import_module("mamba_ssm.ops.triton.ssd_combined").mamba_chunk_scan_combined


def _mamba(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def run(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, *, chunk: int) -> Tensor:
        return fn(x, dt, A, B, C, chunk)

    return run


def fla_inputs(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> dict[str, Tensor]:
    """The simple-GLA inputs equal to an SSD problem (see FLA_MAPPING).

    Args:
        x: [B, T, H, P]; dt: [B, T, H]; A: [H] fp32; B, C: [B, T, G, N].
    Returns:
        q, k: [B, T, H, N] (C, B repeated per head); v: [B, T, H, P] = x·dt in x's dtype;
        g: [B, T, H] fp32 = dt·A.
    """
    rep = x.shape[2] // B.shape[2]
    return {
        "q": C.repeat_interleave(rep, dim=2),
        "k": B.repeat_interleave(rep, dim=2),
        "v": (x * dt[..., None]).to(x.dtype),
        "g": dt.float() * A.float(),
    }


def _fla(fn: Callable[..., Any]) -> tuple[Callable[..., Tensor], Callable[..., Any]]:
    def ssd(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, *, chunk: int) -> Tensor:
        m = fla_inputs(x, dt, A, B, C)
        return fn(m["q"], m["k"], m["v"], m["g"], scale=1.0)[0]

    def timed(inp: dict[str, Tensor], chunk: int) -> tuple[Callable[..., Tensor], list[Tensor]]:
        m = fla_inputs(*(inp[k].detach() for k in SSD_ARGS))
        leaves = [m[k].contiguous().requires_grad_(True) for k in ("q", "k", "v", "g")]
        return (lambda q, k, v, g: fn(q, k, v, g, scale=1.0)[0]), leaves

    return ssd, timed


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load_impls(names: list[str], *, interpret: bool) -> tuple[list[Impl], dict[str, str]]:
    """Import the requested implementations; an anchor that cannot load is skipped with a reason.

    Args:
        names: subset of IMPL_NAMES, in order.
        interpret: TRITON_INTERPRET=1 on the CPU (anchors are skipped there).
    Returns:
        (the loaded implementations, name → why it was skipped).
    Raises:
        ValueError: an unknown name.
    """
    bad = [n for n in names if n not in IMPL_NAMES]
    if bad:
        raise ValueError(f"unknown implementation(s) {bad}; valid: {list(IMPL_NAMES)}")
    impls: list[Impl] = []
    skipped: dict[str, str] = {}
    for name in names:
        if name == "ours":
            impls.append(Impl("ours", "ours", {}, _ours_fn, _ssd_leaves(_ours_fn)))
            continue
        if interpret:
            skipped[name] = INTERPRET_SKIP
            continue
        try:
            if name == "mamba_ssm":
                fn = _mamba(import_mamba_chunk_scan())
                versions = {"mamba_ssm": _version("mamba_ssm") or "unknown"}
                impls.append(Impl(name, "anchor", versions, fn, _ssd_leaves(fn), MAMBA_NOTE))
            else:
                from fla.ops.simple_gla import chunk_simple_gla

                versions = {
                    d: _version(d) or "unknown" for d in ("fla-core", "flash-linear-attention")
                }
                ssd, timed = _fla(chunk_simple_gla)
                impls.append(Impl(name, "anchor", versions, ssd, timed, FLA_MAPPING, 64))
        except Exception as e:  # an anchor that is absent or broken is a recorded skip
            skipped[name] = f"not importable: {type(e).__name__}: {e}"[:300]
    return impls, skipped
