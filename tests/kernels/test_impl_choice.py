"""Implementation choice: explicit impl, clear errors, no silent fallback."""

from __future__ import annotations

import re

import pytest
import torch

from wm_bench.kernels._impl import check_impl, interpreting, resolve_impl
from wm_bench.kernels.rope import apply_rope, rope_cos_sin


def test_unknown_impl_names_the_valid_choices():
    with pytest.raises(ValueError, match=r"impl='cuda'.*\['reference', 'triton'\]"):
        check_impl("cuda", ("reference", "triton"), "op")


def test_auto_picks_triton_on_cuda_then_torch_fast_then_reference():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    every = ("reference", "torch_fast", "triton")
    assert resolve_impl("auto", cuda, every, "op") == "triton"
    assert resolve_impl("auto", cpu, every, "op") == "torch_fast"
    assert resolve_impl("auto", cuda, ("reference", "torch_fast"), "op") == "torch_fast"
    assert resolve_impl("auto", cpu, ("reference", "triton"), "op") == "reference"
    assert resolve_impl("auto", cuda, ("reference",), "op") == "reference"


@pytest.mark.parametrize("impl", ["reference", "torch_fast", "triton"])
def test_explicit_impls_are_never_switched(impl):
    every = ("reference", "torch_fast", "triton")
    for device in (torch.device("cpu"), torch.device("cuda")):
        assert resolve_impl(impl, device, every, "op") == impl
    lacking = tuple(i for i in every if i != impl)
    with pytest.raises(ValueError, match=f"impl='{impl}'.*" + re.escape(str(list(lacking)))):
        resolve_impl(impl, torch.device("cpu"), lacking, "op")


def test_every_op_lists_torch_fast_where_it_has_a_cpu_fast_path():
    from wm_bench.kernels.attention.api import AVAILABLE as attention
    from wm_bench.kernels.cdmoe.api import IMPLS as cdmoe
    from wm_bench.kernels.ssd.api import AVAILABLE as ssd

    for available in (attention, ssd, cdmoe["product_key_topk"]):
        assert available[:2] == ("reference", "torch_fast")


@pytest.mark.skipif(interpreting(), reason="the interpreter runs CPU tensors")
def test_triton_on_cpu_tensors_without_interpreter_is_a_clear_error():
    x = torch.randn(1, 3, 2, 4)
    cos, sin = rope_cos_sin(3, 4)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        apply_rope(x, cos, sin, impl="triton")
