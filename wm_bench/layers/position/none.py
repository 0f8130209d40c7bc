"""No position encoding, the identity: "no RoPE" ablations (docs/spec.md §2.1), Based, Mamba-2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class NoPositionConfig:
    """The identity position encoding (no fields)."""

    name: Literal["none"] = "none"

    def __post_init__(self) -> None:
        if self.name != "none":
            raise ValueError(f"NoPositionConfig.name={self.name!r}; valid: 'none'")


class NoPosition(nn.Module):
    """Returns its input unchanged; same call signature as `RotaryPosition`."""

    def __init__(
        self, dim: int, cfg: NoPositionConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__()
        self.dim = dim
        self.cfg = cfg
        self.resolved_impls: dict[str, str] = {}

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Args: x [B, T, H, dim]; offset: position of x[:, 0] (unused). Returns: x itself."""
        return x
