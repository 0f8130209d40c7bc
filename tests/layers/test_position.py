"""Position encodings: RoPE keeps relative dot products and caches its table; none is identity."""

from __future__ import annotations

import pytest
import torch

from wm_bench.kernels._impl import resolve_impl
from wm_bench.kernels.rope import apply_rope, rope_cos_sin
from wm_bench.kernels.rope.api import AVAILABLE as ROPE_IMPLS
from wm_bench.layers.position import (
    POSITIONS,
    build_position,
    check_rotated_dim,
    pairs_channels,
    position_config,
)
from wm_bench.layers.position.none import NoPosition, NoPositionConfig
from wm_bench.layers.position.rope import RopeConfig, RotaryPosition


def test_registry_maps_names_to_module_and_config() -> None:
    assert {
        "none": (NoPosition, NoPositionConfig),
        "rope": (RotaryPosition, RopeConfig),
    } == POSITIONS
    for name, (_, cfg_cls) in POSITIONS.items():
        assert cfg_cls().name == name


@pytest.mark.parametrize("offset", [1, 7, 1000])
def test_rotating_q_and_k_by_the_same_offset_keeps_q_dot_k(offset: int) -> None:
    torch.manual_seed(0)
    pos = RotaryPosition(16, RopeConfig())
    q = torch.randn(2, 9, 3, 16, dtype=torch.float64)
    k = torch.randn(2, 9, 3, 16, dtype=torch.float64)
    scores = torch.einsum("bihd,bjhd->bhij", pos(q), pos(k))  # [B, H, T, T]
    shifted = torch.einsum("bihd,bjhd->bhij", pos(q, offset=offset), pos(k, offset=offset))
    # tables are fp32: angles at large positions differ from the unshifted ones by ~1e-7
    torch.testing.assert_close(shifted, scores, rtol=0, atol=1e-5)
    assert not torch.allclose(pos(q, offset=offset), pos(q), atol=1e-3)  # it did rotate


def test_rope_matches_kernel_apply_rope_at_an_offset() -> None:
    torch.manual_seed(0)
    pos = RotaryPosition(8, RopeConfig(base=500.0))
    x = torch.randn(2, 5, 4, 8)
    cos, sin = rope_cos_sin(5, 8, base=500.0, offset=11)
    torch.testing.assert_close(pos(x, offset=11), apply_rope(x, cos, sin), rtol=0, atol=0)
    assert pos.resolved_impls == {"rope": resolve_impl("auto", x.device, ROPE_IMPLS, "rope")}


def test_rope_table_is_built_once_and_grows_on_demand() -> None:
    pos = RotaryPosition(8, RopeConfig())
    assert pos.cached_length == 0
    x = torch.randn(1, 5, 2, 8)
    pos(x)
    first = pos.cos_sin(5)[0]
    length = pos.cached_length
    assert length >= 5
    pos(x, offset=length - 5)  # still inside the table: no rebuild
    assert pos.cached_length == length
    assert pos.cos_sin(5)[0].data_ptr() == first.data_ptr()
    pos(x, offset=3 * length)  # past the end: grows to cover it
    assert pos.cached_length >= 3 * length + 5
    for offset in (0, 2, 3 * length):
        cos, sin = pos.cos_sin(5, offset)
        ref_cos, ref_sin = rope_cos_sin(5, 8, offset=offset)
        assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)


def test_rope_table_stays_fp32_when_the_module_is_cast() -> None:
    pos = RotaryPosition(8, RopeConfig()).to(torch.bfloat16)
    y = pos(torch.randn(1, 4, 2, 8, dtype=torch.bfloat16), offset=2)
    assert y.dtype == torch.bfloat16
    assert pos.cos_sin(4)[0].dtype == torch.float32


def test_no_position_is_the_identity() -> None:
    x = torch.randn(2, 5, 3, 7)
    module = build_position("none", 7)
    assert isinstance(module, NoPosition)
    assert module(x, offset=13) is x


def test_a_mixer_configs_position_fields_give_the_encodings_own_config() -> None:
    assert position_config("rope", rope_base=500.0) == RopeConfig(base=500.0)
    assert position_config("none", rope_base=500.0) == NoPositionConfig()
    assert build_position("rope", 8, rope_base=500.0).cfg == RopeConfig(base=500.0)
    assert pairs_channels("rope") and not pairs_channels("none")
    check_rotated_dim("none", 7, "head dim")  # any width without rotation
    with pytest.raises(ValueError, match="head dim=7 is odd; position='rope'"):
        check_rotated_dim("rope", 7, "head dim")


def test_bad_position_inputs_raise_naming_the_value() -> None:
    with pytest.raises(ValueError, match="'alibi'"):
        build_position("alibi", 8)
    with pytest.raises(ValueError, match="'alibi'"):
        pairs_channels("alibi")
    with pytest.raises(ValueError, match="RopeConfig.name='none'"):
        RopeConfig(name="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="impl='fast'"):
        build_position("none", 8, impl="fast")
    with pytest.raises(ValueError, match="7"):
        RotaryPosition(7, RopeConfig())
    with pytest.raises(ValueError, match=r"0\.5"):
        RopeConfig(base=0.5)
    with pytest.raises(ValueError, match="-1"):
        RotaryPosition(8, RopeConfig()).cos_sin(3, offset=-1)
