"""Static H100 roofline: lower-bound time of a case from its minimum FLOPs and bytes (no GPU)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ceilings:
    """A GPU's ceilings: measured ("achievable peak") and datasheet values.

    Args:
        name: the GPU.
        tflops: measured bf16 dense matrix rate, TFLOP/s.
        tflops_spec: datasheet bf16 dense rate (never the sparsity figure).
        tbps: measured HBM bandwidth, TB/s (device-to-device copy, read + write counted).
        tbps_spec: datasheet bandwidth.
        source: where the numbers come from.
    """

    name: str
    tflops: float
    tflops_spec: float
    tbps: float
    tbps_spec: float
    source: str

    def peak(self, spec: bool = False) -> tuple[float, float]:
        """(FLOP/s, bytes/s): measured by default, datasheet with spec=True."""
        tf, tb = (self.tflops_spec, self.tbps_spec) if spec else (self.tflops, self.tbps)
        return tf * 1e12, tb * 1e12

    @property
    def ridge(self) -> float:
        """FLOP per byte above which a kernel is compute-bound (measured ceilings)."""
        flops, bw = self.peak()
        return flops / bw


H100 = Ceilings(
    name="NVIDIA H100 80GB HBM3",
    tflops=787.0,
    tflops_spec=989.0,
    tbps=3.03,
    tbps_spec=3.35,
    source="docs/anchors.md §1 (bf16 8192³ GEMM; D2D copy), measured on the lent H100",
)


def _check(flops: float, nbytes: float) -> None:
    if flops < 0 or nbytes < 0 or flops + nbytes <= 0:
        raise ValueError(f"roofline: flops={flops}, bytes={nbytes}; need both ≥ 0, one > 0")


def lower_bound_ms(
    flops: float, nbytes: float, *, ceilings: Ceilings = H100, spec: bool = False
) -> float:
    """The fastest any implementation can be: max(flops / peak, bytes / bandwidth), in ms.

    Args:
        flops: minimum floating-point operations of the case.
        nbytes: minimum bytes through device memory (each input read once, each output written
            once).
        ceilings: the GPU (default the lent H100).
        spec: use datasheet ceilings instead of the measured ones.
    Returns:
        Milliseconds.
    """
    _check(flops, nbytes)
    peak, bw = ceilings.peak(spec)
    return max(flops / peak, nbytes / bw) * 1e3


def bound_by(flops: float, nbytes: float, *, ceilings: Ceilings = H100) -> str:
    """ "memory" or "compute": which term sets the lower bound (measured ceilings)."""
    _check(flops, nbytes)
    peak, bw = ceilings.peak()
    return "compute" if flops / peak > nbytes / bw else "memory"


def achieved_gbps(nbytes: float, ms: float) -> float:
    """Achieved bandwidth in GB/s for the minimum bytes moved in `ms` milliseconds."""
    if ms <= 0:
        raise ValueError(f"achieved_gbps: ms={ms}; need > 0")
    return nbytes / (ms * 1e-3) / 1e9


def achieved_tflops(flops: float, ms: float) -> float:
    """Achieved TFLOP/s for `flops` done in `ms` milliseconds."""
    if ms <= 0:
        raise ValueError(f"achieved_tflops: ms={ms}; need > 0")
    return flops / (ms * 1e-3) / 1e12


def pct_of_roofline(
    ms: float, flops: float, nbytes: float, *, ceilings: Ceilings = H100, spec: bool = False
) -> float:
    """Measured time as a percentage of the roofline: 100 · lower_bound / measured."""
    if ms <= 0:
        raise ValueError(f"pct_of_roofline: ms={ms}; need > 0")
    return 100.0 * lower_bound_ms(flops, nbytes, ceilings=ceilings, spec=spec) / ms


def roofline_record(
    flops: float, nbytes: float, measured_ms: float | None = None, *, ceilings: Ceilings = H100
) -> dict[str, Any]:
    """The roofline fields every benchmark stores beside a case (JSON-ready).

    Args:
        flops: minimum FLOPs of the case.
        nbytes: minimum bytes of the case.
        measured_ms: the measured median time, when a GPU run exists.
        ceilings: the GPU.
    Returns:
        flops, bytes, intensity, bound, lower_bound_ms (measured and spec ceilings), and with a
        measurement: achieved GB/s, TFLOP/s and % of the roofline (measured and spec).
    """
    rec: dict[str, Any] = {
        "gpu": ceilings.name,
        "flops": float(flops),
        "bytes": float(nbytes),
        "intensity_flop_per_byte": flops / nbytes if nbytes else float("inf"),
        "bound": bound_by(flops, nbytes, ceilings=ceilings),
        "lower_bound_ms": lower_bound_ms(flops, nbytes, ceilings=ceilings),
        "lower_bound_ms_spec": lower_bound_ms(flops, nbytes, ceilings=ceilings, spec=True),
    }
    if measured_ms is not None:
        rec["measured_ms"] = measured_ms
        rec["achieved_gbps"] = achieved_gbps(nbytes, measured_ms)
        rec["achieved_tflops"] = achieved_tflops(flops, measured_ms)
        rec["pct_of_roofline"] = pct_of_roofline(measured_ms, flops, nbytes, ceilings=ceilings)
        rec["pct_of_roofline_spec"] = pct_of_roofline(
            measured_ms, flops, nbytes, ceilings=ceilings, spec=True
        )
    return rec


def describe(flops: float, nbytes: float, measured_ms: float | None = None) -> str:
    """One line for a benchmark's output, e.g. `bound 0.047 ms (memory: 143.6 MB @ 3.03 TB/s)`."""
    r = roofline_record(flops, nbytes, measured_ms)
    term = (
        f"memory: {nbytes / 1e6:.1f} MB @ {H100.tbps} TB/s"
        if r["bound"] == "memory"
        else f"compute: {flops / 1e9:.1f} GFLOP @ {H100.tflops:.0f} TF/s"
    )
    line = f"H100 bound {r['lower_bound_ms']:.4f} ms ({term})"
    if measured_ms is not None:
        line += (
            f"; measured {measured_ms:.4f} ms = {r['pct_of_roofline']:.1f} % of the roofline "
            f"({r['pct_of_roofline_spec']:.1f} % of spec), {r['achieved_gbps']:.0f} GB/s, "
            f"{r['achieved_tflops']:.1f} TF/s"
        )
    return line


# --- minimum work of the suite's operations (docs/anchors.md §2) -------------------------------


def ssd_min_bytes(
    B: int, T: int, H: int, P: int, G: int, N: int, *, backward: bool = False, elem: int = 2
) -> int:
    """Minimum bytes of the SSD chunked scan (docs/anchors.md §2): read x, dt, B, C and write y.

    Args:
        B, T, H, P, G, N: batch, time, heads, head dim, groups, state size.
        backward: fwd+bwd: also read dy and write dx, ddt, dB, dC.
        elem: bytes per element (2 for bf16).
    Returns:
        Bytes (x, y: [B, T, H, P]; dt: [B, T, H]; B, C: [B, T, G, N]).
    """
    x, dt, bc = B * T * H * P, B * T * H, B * T * G * N
    fwd = (2 * x + dt + 2 * bc) * elem
    return fwd * 2 if backward else fwd  # bwd reads dy + writes dx, ddt, dB, dC: the same again


def attention_causal_flops(B: int, H: int, T: int, D: int, *, backward: bool = False) -> float:
    """Causal attention FLOPs (docs/anchors.md §2): forward 2·B·H·T²·D; backward 2.5× forward."""
    fwd = 2.0 * B * H * T * T * D
    return fwd * 3.5 if backward else fwd


def attention_min_bytes(
    B: int, H: int, T: int, D: int, *, backward: bool = False, elem: int = 2
) -> int:
    """Attention minimum bytes: read q, k, v, write o; fwd+bwd adds the backward's reads of
    q, k, v, o, do and writes of dq, dk, dv (the log-sum-exp rows are negligible)."""
    one = B * H * T * D * elem
    return 4 * one + (8 * one if backward else 0)


_ANCHOR_CASES: list[tuple[str, float, float, float | None]] = [
    # (case, flops, bytes, anchor ms from docs/anchors.md §2)
    (f"ssd fwd {s}", 0.0, ssd_min_bytes(*s), ms)
    for s, ms in (
        ((8, 2048, 32, 64, 1, 128), 0.298),
        ((2, 8192, 32, 64, 1, 128), 0.312),
        ((8, 2048, 8, 128, 8, 128), 0.130),
    )
] + [
    (f"attn causal fwd {s}", attention_causal_flops(*s), attention_min_bytes(*s), ms)
    for s, ms in (((8, 16, 2048, 64), 0.185), ((4, 16, 4096, 128), 0.477))
]


def main(argv: list[str] | None = None) -> int:
    """Print the static H100 bound of the anchor cases (and the best anchor's % of it)."""
    argparse.ArgumentParser(prog="wm-bench roofline", description=main.__doc__).parse_args(argv)
    from tabulate import tabulate

    rows = []
    for name, flops, nbytes, ms in _ANCHOR_CASES:
        r = roofline_record(flops, nbytes, ms)
        rows.append(
            [name, r["bound"], f"{r['lower_bound_ms']:.4f}", ms, f"{r['pct_of_roofline']:.1f}"]
        )
    head = ["case", "bound", "H100 lower bound ms", "best anchor ms", "anchor % of roofline"]
    print(f"{H100.name}: {H100.tflops} TF/s bf16, {H100.tbps} TB/s measured ({H100.source})")
    print(tabulate(rows, headers=head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
