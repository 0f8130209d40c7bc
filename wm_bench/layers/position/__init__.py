"""Position-encoding registry: name → (module class, config class); `build_position` helper."""

from __future__ import annotations

from torch import nn

from wm_bench.layers.position.none import NoPosition, NoPositionConfig
from wm_bench.layers.position.rope import RopeConfig, RotaryPosition

POSITIONS: dict[str, tuple[type, type]] = {
    "none": (NoPosition, NoPositionConfig),
    "rope": (RotaryPosition, RopeConfig),
}


def build_position(
    name: str, dim: int, *, rope_base: float = 10000.0, impl: str = "auto"
) -> nn.Module:
    """Build the position module a mixer config names.

    Args:
        name: a POSITIONS key ("rope" or "none").
        dim: the rotated width (head dim for attention, state size N for SSD).
        rope_base: RoPE base; ignored by "none".
        impl: kernel implementation choice ("auto", "reference", "triton").

    Returns:
        A module called as `module(x [B, T, H, dim], offset=0) -> [B, T, H, dim]`.
    """
    if name not in POSITIONS:
        raise ValueError(f"unknown position {name!r}; valid: {sorted(POSITIONS)}")
    cls, cfg_cls = POSITIONS[name]
    cfg = cfg_cls(base=rope_base) if name == "rope" else cfg_cls()
    return cls(dim, cfg, impl=impl)
