"""Launch helpers every Triton kernel file shares: launch configs, tile sizes, row layout.

Under TRITON_INTERPRET=1 (`_impl.interpreting()`) every program runs in Python on the CPU, so
each kernel keeps a tiny interpreter config beside its GPU one; `launch_config` picks between
them. Tables keyed by a maximum width (head width, candidate-list width) are read by `by_width`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import triton
from torch import Tensor

from wm_bench.kernels._impl import interpreting

V = TypeVar("V")


def launch_config(gpu: Mapping[str, int], interpret: Mapping[str, int]) -> dict[str, int]:
    """A copy of the GPU launch config, or of the tiny interpreter one under TRITON_INTERPRET=1."""
    return dict(interpret if interpreting() else gpu)


def by_width(table: Mapping[int, V], width: int, what: str) -> V:
    """The entry of the smallest key ≥ `width` in a table keyed by ascending maximum widths.

    Raises:
        ValueError: `width` is above every key (`what` names the kernel and the quantity).
    """
    for limit, value in table.items():
        if width <= limit:
            return value
    raise ValueError(f"{what} {width} > {max(table)} is not supported")


def pow2_block(dim: int, cap: int | None = None, *, least: int = 16) -> int:
    """Power-of-two tile covering `dim`, at least `least` (16: tl.dot's smallest), at most `cap`."""
    block = max(least, triton.next_power_of_2(dim))
    return block if cap is None else max(least, min(cap, block))


def rows_contiguous(t: Tensor) -> Tensor:
    """Kernels take strides for every dim but the last, which must be unit (coalesced rows)."""
    return t if t.stride(-1) == 1 else t.contiguous()
