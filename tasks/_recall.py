"""The recipe the synthetic recall experiments share (mqar, mqar_dma, passkey): models of mixer +
MLP blocks with tied embeddings, AdamW (wd 0.1) with warm-up then cosine to 0, early stop once
valid/accuracy reaches 0.99. Imports no torch."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from wm_bench.config import (
    BlockConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    config_hash,
)

METRIC = "valid/accuracy"
EARLY_STOP_ACCURACY = 0.99


class Budget(NamedTuple):
    """A run's training budget: at most max_steps steps of batch_size examples, an evaluation
    every eval_every steps (and the early-stop check with it)."""

    max_steps: int
    batch_size: int
    eval_every: int


def mixer_mlp_model(
    mixers: dict[str, Any], pattern: str, *, vocab_size: int, d_model: int, n_layers: int
) -> ModelConfig:
    """A model whose block letters each pair a mixer config with the default MLP.

    Args:
        mixers: block letter → mixer config (from wm_bench.layers.mixers.MIXERS).
        pattern: the block pattern over those letters, tiled over n_layers.
    """
    from wm_bench.layers.ffn import FFNS

    mlp = FFNS["mlp"][1]()
    return ModelConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        n_layers=n_layers,
        pattern=pattern,
        blocks={k: BlockConfig(mixer=m, ffn=mlp) for k, m in mixers.items()},
        tie_embeddings=True,
    )


def recall_run(
    experiment: str,
    variant: str,
    model: ModelConfig,
    data: Any,
    tags: dict[str, Any],
    *,
    lr: float,
    seed: int,
    scale: str,
    budget: Budget,
) -> RunConfig:
    """One run of the recipe (the module doc) on `data`."""
    train = TrainConfig(
        max_steps=budget.max_steps,
        batch_size=budget.batch_size,
        eval_every=budget.eval_every,
        early_stop_metric=METRIC,
        early_stop_value=EARLY_STOP_ACCURACY,
    )
    optim = OptimConfig(lr=lr, weight_decay=0.1, min_lr_ratio=0.0)
    return RunConfig(
        experiment=experiment,
        variant=variant,
        model=model,
        data=data,
        optim=optim,
        train=train,
        seed=seed,
        scale=scale,
        tags=tags,
    )


def hash_but_lr_and_seed(cfg: RunConfig) -> str:
    """The config hash of everything in `cfg` but its LR and seed (the lr tag included): what
    the runs of one sweep cell share."""
    rest = dataclasses.replace(
        cfg,
        seed=0,
        optim=dataclasses.replace(cfg.optim, lr=1.0),
        tags={k: v for k, v in cfg.tags.items() if k != "lr"},
    )
    return config_hash(rest)
