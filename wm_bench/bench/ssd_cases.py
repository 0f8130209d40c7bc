"""The SSD benchmark's problems: the listed shapes, the T sweep, and each case's static bounds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wm_bench.bench import roofline as rl

SHAPES = {  # (B, T, H, P, G, N): Mamba-2 and Cheems layouts at 2K and 8K tokens
    "mamba2_b8_t2k": (8, 2048, 32, 64, 1, 128),
    "mamba2_b2_t8k": (2, 8192, 32, 64, 1, 128),
    "cheems_b8_t2k": (8, 2048, 8, 128, 8, 128),
}
SWEEP_T = (512, 1024, 2048, 4096, 8192, 16384, 32768)  # at the first shape's B, H, P, G, N
INTERPRET_SHAPES = {"tiny_b1_t64": (1, 64, 2, 16, 1, 16)}
INTERPRET_CHUNK = 16


@dataclass(frozen=True)
class Case:
    """One benchmark problem: batch, time, heads, head dim, groups, state size."""

    name: str
    B: int
    T: int
    H: int
    P: int
    G: int
    N: int
    group: str  # "shape", "sweep" or "interpret"

    @property
    def layout(self) -> tuple[int, int, int, int]:
        return self.H, self.P, self.G, self.N

    @property
    def dims(self) -> tuple[int, int, int, int, int, int]:
        return self.B, self.T, self.H, self.P, self.G, self.N

    @property
    def dim_dict(self) -> dict[str, int]:
        return dict(zip("BTHPGN", self.dims))


def build_cases(selection: str, sweep_t: Sequence[int], interpret: bool) -> list[Case]:
    """The cases to run, listed shapes first, then the T sweep (T = 2048 is the first shape).

    Args:
        selection: "all", "shapes", "sweep" or comma-separated case names.
        sweep_t: sweep lengths.
        interpret: the tiny CPU-interpreter case only.
    Returns:
        Cases in run order.
    """
    if interpret:
        return [Case(n, *d, "interpret") for n, d in INTERPRET_SHAPES.items()]
    first = next(iter(SHAPES.values()))
    cases = [Case(n, *d, "shape") for n, d in SHAPES.items()]
    for T in sweep_t:
        dims = (first[0], T, *first[2:])
        if all(c.dims != dims for c in cases):
            cases.append(Case(f"sweep_t{T}", *dims, "sweep"))
    if selection in ("all", "shapes", "sweep"):
        return [c for c in cases if selection in ("all", c.group, c.group + "s")]
    names = [s for s in selection.split(",") if s]
    bad = [n for n in names if n not in {c.name for c in cases}]
    if bad:
        raise ValueError(
            f"--cases {bad} unknown; valid: all, shapes, sweep, {[c.name for c in cases]}"
        )
    return [c for c in cases if c.name in names]


def case_bounds(case: Case, elem: int) -> dict[str, Any]:
    """Minimum bytes and FLOPs of a case and its static H100 bounds (no measurement).

    Bytes (docs/anchors.md §2): forward reads x, dt, B, C and writes y; fwd+bwd also reads dy and
    writes dx, ddt, dB, dC. FLOPs: the recurrence's irreducible 4·B·T·H·P·N (state update +
    read-out), backward counted twice the forward; SSD sits far below the ridge, so the bound is
    bandwidth.

    Args:
        case: the problem.
        elem: bytes per element of x, dt, B, C, y (2 for bf16).
    Returns:
        {"fwd": roofline record, "fwd_bwd": roofline record} (roofline.roofline_record).
    """
    fwd_b = rl.ssd_min_bytes(*case.dims, elem=elem)
    all_b = rl.ssd_min_bytes(*case.dims, backward=True, elem=elem)
    fwd_f = 4.0 * case.B * case.T * case.H * case.P * case.N
    return {
        "fwd": rl.roofline_record(fwd_f, fwd_b),
        "fwd_bwd": rl.roofline_record(3 * fwd_f, all_b),
    }
