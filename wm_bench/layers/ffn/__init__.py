"""FFN registry: name -> (layer class, config class); one import and one entry per variant."""

from __future__ import annotations

from typing import Union

from torch import nn

from wm_bench.layers.ffn.cdmoe import CDMoE, CDMoEConfig
from wm_bench.layers.ffn.mlp import MLP, MLPConfig
from wm_bench.layers.ffn.moe import MoE, MoEConfig
from wm_bench.layers.ffn.peer import PEER, PEERConfig
from wm_bench.layers.ffn.pkm import PKM, PKMConfig
from wm_bench.layers.ffn.seimoe import SEIMoE, SEIMoEConfig

FFNS: dict[str, tuple[type[nn.Module], type]] = {
    "mlp": (MLP, MLPConfig),
    "moe": (MoE, MoEConfig),
    "seimoe": (SEIMoE, SEIMoEConfig),
    "pkm": (PKM, PKMConfig),
    "peer": (PEER, PEERConfig),
    "cdmoe": (CDMoE, CDMoEConfig),
}

FFNConfig = Union[MLPConfig, MoEConfig, SEIMoEConfig, PKMConfig, PEERConfig, CDMoEConfig]  # noqa: UP007


def build_ffn(d_model: int, cfg: FFNConfig, *, layer_idx: int = 0, impl: str = "auto") -> nn.Module:
    """Build the FFN that `cfg.name` names.

    Args:
        d_model: model width D.
        cfg: one of the registered config dataclasses.
        layer_idx: the layer's index in the model.
        impl: "auto" | "reference" | "triton" (runtime choice, not part of the config).
    Returns:
        The layer: forward(x [B, T, D]) -> (y [B, T, D], aux_loss scalar).
    """
    name = getattr(cfg, "name", None)
    if name not in FFNS:
        raise ValueError(f"unknown ffn {name!r}; valid: {sorted(FFNS)}")
    cls, cfg_cls = FFNS[name]
    if not isinstance(cfg, cfg_cls):
        raise ValueError(f"ffn {name!r} needs a {cfg_cls.__name__}, got {type(cfg).__name__}")
    return cls(d_model, cfg, layer_idx=layer_idx, impl=impl)


__all__ = ["FFNS", "FFNConfig", "build_ffn"] + [c.__name__ for pair in FFNS.values() for c in pair]
