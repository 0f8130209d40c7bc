"""Rotary position embedding (Su et al. 2021, RoFormer eq. 34; rotate-half; docs/spec.md §2.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from wm_bench.kernels.rope import apply_rope, rope_cos_sin
from wm_bench.kernels.rope.api import AVAILABLE as ROPE_IMPLS
from wm_bench.layers.base import Layer, check_name


@dataclass(frozen=True)
class RopeConfig:
    """RoPE with θ_i = base^(−2i/dim); channel j is paired with j + dim/2."""

    name: Literal["rope"] = "rope"
    base: float = 10000.0
    pairs_channels: ClassVar[bool] = True  # rotates channel pairs: the width must be even

    def __post_init__(self) -> None:
        check_name(self, "rope")
        if not self.base > 1.0:
            raise ValueError(f"RopeConfig.base={self.base!r}; valid: a float > 1")

    @classmethod
    def from_mixer_fields(cls, *, rope_base: float = 10000.0, **_fields: object) -> RopeConfig:
        """The config from a mixer config's position fields: its `rope_base`."""
        return cls(base=rope_base)


class RotaryPosition(Layer):
    """Rotates [B, T, H, dim] tensors by their absolute positions, with a cached cos/sin table.

    The table is built once and grown on demand (doubling), so a model calls this every layer
    without rebuilding it. It is kept in fp32 as plain attributes, not buffers, so that
    `module.to(torch.bfloat16)` cannot round the angles; it follows the input's device.
    """

    def __init__(
        self, dim: int, cfg: RopeConfig, *, layer_idx: int = 0, impl: str = "auto"
    ) -> None:
        super().__init__(dim, cfg, layer_idx=layer_idx, impl=impl)
        if dim <= 0 or dim % 2 != 0:
            raise ValueError(f"RotaryPosition: rotated dim={dim} must be a positive even number")
        self.dim = dim
        self._cos: torch.Tensor | None = None  # [L, dim] fp32
        self._sin: torch.Tensor | None = None  # [L, dim] fp32

    @property
    def cached_length(self) -> int:
        """Number of positions the cached table covers (0 before the first call)."""
        return 0 if self._cos is None else self._cos.shape[0]

    def cos_sin(
        self, length: int, offset: int = 0, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows offset … offset+length−1 of the table, growing it when needed.

        Args:
            length: number of positions T.
            offset: absolute position of the first row.
            device: where the table must live (defaults to where it is, else CPU).

        Returns:
            (cos, sin): each [T, dim] fp32, equal to `rope_cos_sin(T, dim, offset=offset)`.
        """
        if offset < 0:
            raise ValueError(f"RotaryPosition: offset={offset} must be ≥ 0")
        need = offset + length
        device = torch.device(device) if device is not None else None
        stale = self._cos is None or (device is not None and self._cos.device != device)
        if stale or need > self.cached_length:
            size = max(need, 2 * self.cached_length, 16)
            self._cos, self._sin = rope_cos_sin(size, self.dim, base=self.cfg.base, device=device)
        return self._cos[offset:need], self._sin[offset:need]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate x by positions offset … offset+T−1.

        Args:
            x: [B, T, H, dim] any float dtype.
            offset: absolute position of x[:, 0] (the number of tokens already decoded).

        Returns:
            [B, T, H, dim] in x's dtype.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"RotaryPosition: x.shape[-1]={x.shape[-1]}, expected {self.dim}")
        impl = self.resolve("rope", ROPE_IMPLS, x.device)
        cos, sin = self.cos_sin(x.shape[1], offset, x.device)
        return apply_rope(x, cos, sin, impl=impl)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.cfg.base}"
