"""wm_bench.testing: the one error metric and its named tolerances."""

from __future__ import annotations

import math

import pytest
import torch

from wm_bench.testing import TOLERANCES, assert_close, rel_rms, tolerance


def test_rel_rms_is_relative_and_size_free() -> None:
    e = torch.ones(1000, dtype=torch.float64)
    assert rel_rms(e * 1.001, e) == pytest.approx(1e-3)
    assert rel_rms(10 * e * 1.001, 10 * e) == pytest.approx(1e-3)
    assert rel_rms(torch.ones(4) * 1.001, torch.ones(4)) == pytest.approx(1e-3, rel=1e-4)


def test_non_finite_values_fail_and_zero_expected_needs_a_floor() -> None:
    e = torch.zeros(3)
    assert math.isnan(rel_rms(torch.tensor([0.0, math.nan, 0.0]), e))
    with pytest.raises(AssertionError, match="relative RMS error nan"):
        assert_close(torch.tensor([1.0, math.inf, 0.0]), torch.ones(3))
    assert rel_rms(torch.full((3,), 1e-7), e) > 1e20  # relative to ~0: huge
    assert_close(torch.full((3,), 1e-7), e, "fp32", floor=1.0)  # absolute where expected is 0


def test_failure_names_what_the_tolerance_and_the_worst_element() -> None:
    e = torch.arange(6, dtype=torch.float32).reshape(2, 3) + 1
    a = e.clone()
    a[1, 2] += 1
    with pytest.raises(AssertionError, match=r"dq: relative RMS error .*\('bf16'\).* at \(1, 2\)"):
        assert_close(a, e, "bf16", what="dq")
    assert assert_close(e, e, "exact64") == 0.0


def test_bad_tolerances_and_shapes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown tolerance 'fp8'; valid: \['exact64'"):
        tolerance("fp8")
    with pytest.raises(ValueError, match="positive finite"):
        tolerance(-1.0)
    with pytest.raises(ValueError, match=r"shapes differ: actual \(2,\) vs expected \(3,\)"):
        rel_rms(torch.ones(2), torch.ones(3))
    assert sorted(TOLERANCES, key=TOLERANCES.get) == [
        "exact64", "fp64", "fp32", "tf32", "fp16", "bf16"
    ]  # fmt: skip


def test_the_triton_device_fixture_matches_the_session(request) -> None:
    from wm_bench.testing import triton_device

    where = triton_device()
    if where is None:
        with pytest.raises(pytest.skip.Exception, match="TRITON_INTERPRET=1"):
            request.getfixturevalue("triton_device")
    else:
        assert request.getfixturevalue("triton_device") == where
