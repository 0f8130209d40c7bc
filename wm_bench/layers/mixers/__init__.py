"""Sequence-mixer registry: name → (mixer class, config class); `build_mixer` helper."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from wm_bench.layers.mixers.based import Based, BasedConfig
from wm_bench.layers.mixers.dma import DMA, DMAConfig
from wm_bench.layers.mixers.mamba2 import Mamba2, Mamba2Config
from wm_bench.layers.mixers.qcattn import QCAttn, QCAttnConfig
from wm_bench.layers.mixers.ssd import SSD, SSDConfig

MIXERS: dict[str, tuple[type, type]] = {
    "qcattn": (QCAttn, QCAttnConfig),
    "ssd": (SSD, SSDConfig),
    "mamba2": (Mamba2, Mamba2Config),
    "dma": (DMA, DMAConfig),
    "based": (Based, BasedConfig),
}


def build_mixer(d_model: int, cfg: Any, *, layer_idx: int = 0, impl: str = "auto") -> nn.Module:
    """Build the mixer a config names.

    Args:
        d_model: model width D.
        cfg: a config instance from MIXERS, or a mapping with a "name" key (parsed strictly:
            unknown keys raise).
        layer_idx: the layer's index in the model.
        impl: "auto", "reference" or "triton" (runtime choice, not part of the config).

    Returns:
        The mixer module: forward(x [B, T, D]) -> [B, T, D].
    """
    name = cfg.get("name") if isinstance(cfg, Mapping) else getattr(cfg, "name", None)
    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; valid: {sorted(MIXERS)}")
    cls, cfg_cls = MIXERS[name]
    if isinstance(cfg, Mapping):
        known = {f.name for f in dataclasses.fields(cfg_cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"{cfg_cls.__name__}: unknown keys {unknown}; valid: {sorted(known)}")
        cfg = cfg_cls(**cfg)
    elif not isinstance(cfg, cfg_cls):
        raise ValueError(f"mixer {name!r} needs a {cfg_cls.__name__}, got {type(cfg).__name__}")
    return cls(d_model, cfg, layer_idx=layer_idx, impl=impl)
