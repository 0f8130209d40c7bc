"""Slot chains of the top-w window (pure torch, no interpreter): they describe the mask exactly."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from wm_bench.kernels.attention.last_row import window_last_row
from wm_bench.kernels.attention.reference import direct_window_mask
from wm_bench.kernels.attention.triton_slots import window_chains


@pytest.mark.parametrize("tie_break", ["smaller_index", "larger_index"])
@pytest.mark.parametrize(("S", "w", "ties"), [(40, 1, False), (40, 7, True), (64, 16, False),
                                              (33, 32, True)])  # fmt: skip
def test_chains_reproduce_the_kept_set_of_every_row(S: int, w: int, ties: bool, tie_break) -> None:
    g = torch.Generator().manual_seed(S * w)
    bias = (
        torch.randint(0, 3, (2, 3, S), generator=g).float()
        if ties
        else torch.randn(2, 3, S, generator=g)
    )
    last = window_last_row(bias, w, tie_break=tie_break).reshape(6, S).to(torch.int32)
    chain, seg, steps = window_chains(last, w)
    assert steps >= 1 and seg.shape == (6, w + 1) and chain.shape == (6, S)
    keep = direct_window_mask(bias, w, S, tie_break=tie_break).reshape(6, S, S)  # [BH, row, key]
    for bh in range(6):
        segs = [chain[bh, seg[bh, s] : seg[bh, s + 1]].tolist() for s in range(w)]
        members = [j for sgm in segs for j in sgm]
        kept = [j for j in range(S) if last[bh, j] >= j]
        assert sorted(members) == kept  # every kept key in exactly one slot
        for s, sgm in enumerate(segs):
            assert sgm[0] == s  # slot s starts with key s
            for a, b in pairwise(sgm):  # chained: the next key takes the slot when a dies
                assert b == last[bh, a] + 1
        for r in range(S):  # at row r: per slot, the last key born ≤ r, if still alive
            alive = set()
            for sgm in segs:
                born = [j for j in sgm if j <= r]
                if born and last[bh, born[-1]] >= r:
                    alive.add(born[-1])
            assert alive == set(torch.nonzero(keep[bh, r]).flatten().tolist())
