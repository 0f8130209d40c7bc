"""Static H100 roofline: bound = max(compute, memory), reproducing docs/anchors.md's numbers."""

from __future__ import annotations

import math

import pytest

from wm_bench.bench import roofline as rl


def test_lower_bound_is_the_larger_term_at_the_measured_ceilings():
    assert math.isclose(rl.lower_bound_ms(787e12, 0), 1000.0)
    assert math.isclose(rl.lower_bound_ms(0, 3.03e12), 1000.0)
    assert math.isclose(rl.lower_bound_ms(787e9, 3.03e12), 1000.0)  # memory dominates
    assert math.isclose(rl.lower_bound_ms(989e12, 0, spec=True), 1000.0)
    assert rl.bound_by(1e12, 1e6) == "compute" and rl.bound_by(1e6, 1e9) == "memory"
    assert 255 < rl.H100.ridge < 265  # docs/anchors.md §1: ≈ 260 FLOP/byte


def test_anchor_numbers_are_reproduced():
    # SSD (8, 2048, 32, 64, 1, 128), graph-replayed mamba_ssm fwd 0.298 ms = 482 GB/s
    nbytes = rl.ssd_min_bytes(8, 2048, 32, 64, 1, 128)
    assert round(rl.achieved_gbps(nbytes, 0.298)) == 482
    assert rl.ssd_min_bytes(8, 2048, 32, 64, 1, 128, backward=True) == 2 * nbytes
    # causal attention (8, 16, 2048, 64), CUDNN fwd 0.185 ms = 372 TF/s
    assert round(rl.achieved_tflops(rl.attention_causal_flops(8, 16, 2048, 64), 0.185)) == 371
    rec = rl.roofline_record(0, nbytes, 0.298)
    assert rec["bound"] == "memory" and 15 < rec["pct_of_roofline"] < 17
    assert rec["pct_of_roofline_spec"] < rec["pct_of_roofline"]
    assert "H100 bound" in rl.describe(0, nbytes) and "% of the roofline" in rl.describe(
        0, nbytes, 0.298
    )


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="flops=-1"):
        rl.lower_bound_ms(-1, 10)
    with pytest.raises(ValueError, match="ms=0"):
        rl.achieved_gbps(1, 0)
