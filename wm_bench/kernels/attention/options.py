"""What every attention implementation receives besides q, k and v, once `api` has checked it."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from wm_bench.kernels.attention.last_row import TieBreak


class AttentionOptions(NamedTuple):
    """The switches of `attention` (docs/spec.md §2.3–2.4), as `api.attention` passes them on."""

    causal: bool  # query i sees keys j ≤ i + S − T (queries aligned to the end of the keys)
    key_bias: Tensor | None  # [B, H, S], added to every query's score for that key
    window: int | None  # keep each row's w highest-bias visible keys (needs key_bias, causal)
    scale: float | None  # score scale; api replaces None by 1/sqrt(K) before any impl runs
    tie_break: TieBreak  # which of equal biases is kept first: smaller or larger key index
