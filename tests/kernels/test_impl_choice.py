"""Implementation choice: explicit impl, clear errors, no silent fallback."""

from __future__ import annotations

import os

import pytest
import torch

from wm_bench.kernels._impl import check_impl, resolve_impl
from wm_bench.kernels.rope import apply_rope, rope_cos_sin


def test_unknown_impl_names_the_valid_choices():
    with pytest.raises(ValueError, match=r"impl='cuda'.*\['reference', 'triton'\]"):
        check_impl("cuda", ("reference", "triton"), "op")


def test_auto_resolves_to_reference_on_cpu_and_triton_on_cuda():
    avail = ("reference", "triton")
    assert resolve_impl("auto", torch.device("cpu"), avail, "op") == "reference"
    assert resolve_impl("auto", torch.device("cuda"), avail, "op") == "triton"
    assert resolve_impl("auto", torch.device("cuda"), ("reference",), "op") == "reference"
    with pytest.raises(ValueError, match="triton"):
        resolve_impl("triton", torch.device("cpu"), ("reference",), "op")


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1", reason="interpreter runs CPU tensors"
)
def test_triton_on_cpu_tensors_without_interpreter_is_a_clear_error():
    x = torch.randn(1, 3, 2, 4)
    cos, sin = rope_cos_sin(3, 4)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        apply_rope(x, cos, sin, impl="triton")
