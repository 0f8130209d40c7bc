"""No position encoding, the identity: "no RoPE" ablations (docs/spec.md §2.1), Based, Mamba-2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from wm_bench.layers.base import Layer, check_name


@dataclass(frozen=True)
class NoPositionConfig:
    """The identity position encoding (no fields)."""

    name: Literal["none"] = "none"
    pairs_channels: ClassVar[bool] = False  # any width

    def __post_init__(self) -> None:
        check_name(self, "none")

    @classmethod
    def from_mixer_fields(cls, **_fields: object) -> NoPositionConfig:
        """The config from a mixer config's position fields (it reads none of them)."""
        return cls()


class NoPosition(Layer):
    """Returns its input unchanged; same call signature as `RotaryPosition`."""

    def __init__(
        self, dim: int, cfg: NoPositionConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(dim, cfg, layer_idx=layer_idx, impl=impl)
        self.dim = dim

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Args: x [B, T, H, dim]; offset: position of x[:, 0] (unused). Returns: x itself."""
        return x
