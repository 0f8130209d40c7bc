"""Position-encoding registry: name → (module class, config class), and the helpers mixers use.

A mixer config names its position encoding by two serialised fields, `position` (a POSITIONS
key) and `rope_base`; `position_config` turns them into the encoding's own config, and
`check_position` / `check_rotated_dim` validate them, so that no mixer spells a position name.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from wm_bench.layers.position.none import NoPosition, NoPositionConfig
from wm_bench.layers.position.rope import RopeConfig, RotaryPosition

POSITIONS: dict[str, tuple[type, type]] = {
    "none": (NoPosition, NoPositionConfig),
    "rope": (RotaryPosition, RopeConfig),
}


def check_position(cls: str, name: object) -> None:
    """Raise ValueError unless `name` is a POSITIONS key (`cls` names the config in the message)."""
    if name not in POSITIONS:
        raise ValueError(f"{cls}.position={name!r} is invalid; valid: {sorted(POSITIONS)}")


def pairs_channels(name: str) -> bool:
    """Whether position `name` rotates channel pairs, so that the width it acts on must be even."""
    check_position("position", name)
    return POSITIONS[name][1].pairs_channels


def check_rotated_dim(name: str, dim: int, what: str) -> None:
    """Raise ValueError when position `name` pairs channels and `dim` (named `what`) is odd."""
    if pairs_channels(name) and dim % 2:
        raise ValueError(f"{what}={dim} is odd; position={name!r} needs an even width")


def position_config(name: str, *, rope_base: float = 10000.0) -> Any:
    """The config of position `name` from a mixer config's position fields.

    Args:
        name: a POSITIONS key.
        rope_base: the mixer config's `rope_base` (used by the encodings that have a base).

    Returns:
        A frozen config instance of POSITIONS[name].
    """
    check_position("position", name)
    return POSITIONS[name][1].from_mixer_fields(rope_base=rope_base)


def build_position(
    name: str, dim: int, *, rope_base: float = 10000.0, impl: str = "auto"
) -> nn.Module:
    """Build the position module a mixer config names.

    Args:
        name: a POSITIONS key.
        dim: the width it acts on (head dim for attention, state size N for SSD).
        rope_base: the mixer config's `rope_base`.
        impl: layer impl choice (`wm_bench.kernels._impl.LAYER_IMPLS`).

    Returns:
        A module called as `module(x [B, T, H, dim], offset=0) -> [B, T, H, dim]`.
    """
    cfg = position_config(name, rope_base=rope_base)
    return POSITIONS[name][0](dim, cfg, impl=impl)
