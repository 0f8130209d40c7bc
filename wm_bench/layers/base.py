"""The constructor every registered layer shares, and the bookkeeping of the impls it ran."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wm_bench.kernels._impl import LAYER_IMPLS, resolve_impl

INIT_STD = 0.02  # every projection is initialised N(0, 0.02)


class Layer(nn.Module):
    """Base of every registered mixer, FFN and position encoding.

    `Layer(d_model, cfg, *, layer_idx=0, impl="auto")` checks `impl` against
    `wm_bench.kernels._impl.LAYER_IMPLS` and stores the four arguments. `resolve(op, ...)` picks
    the impl one kernel op runs with on a device and records it in `resolved_impls`
    ({op: impl}), so that a run can report what actually ran; a layer without kernel ops leaves
    it empty.
    """

    def __init__(self, d_model: int, cfg: Any, *, layer_idx: int = 0, impl: str = "auto") -> None:
        super().__init__()
        if impl not in LAYER_IMPLS:
            raise ValueError(f"{type(self).__name__}: impl={impl!r}; valid: {list(LAYER_IMPLS)}")
        self.d_model, self.cfg, self.layer_idx, self.impl = d_model, cfg, layer_idx, impl
        self.resolved_impls: dict[str, str] = {}

    def resolve(self, op: str, available: tuple[str, ...], device: torch.device) -> str:
        """The impl `op` runs with on `device` (see `resolve_impl`), recorded in resolved_impls."""
        impl = resolve_impl(self.impl, device, available=available, op=op)
        self.resolved_impls[op] = impl
        return impl


def check_name(cfg: Any, name: str) -> None:
    """Raise ValueError unless `cfg.name` is `name`: a config's registry name is fixed."""
    if cfg.name != name:
        raise ValueError(f"{type(cfg).__name__}.name={cfg.name!r} is invalid; valid: {name!r}")


def init_normal(*linears: nn.Linear) -> None:
    """Re-initialise the weights of `linears` N(0, INIT_STD), in the order given."""
    for lin in linears:
        nn.init.normal_(lin.weight, std=INIT_STD)
