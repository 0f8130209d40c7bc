"""What the language-model experiments (rope, ffn, arch) share: the run recipe and cell key.

The recipe is SPEC §7's, scaled down by each experiment's scale constants: AdamW with weight
decay 0.01, warm-up 10 %, cosine to 10 % of the peak LR, grad clip 1.0; the corpus' byte-level
BPE; validation and test perplexity over the first `eval_max_tokens` tokens of each split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wm_bench.config import ModelConfig, OptimConfig, RunConfig, TrainConfig


@dataclass(frozen=True)
class LMScale:
    """The fields every LM experiment's scale has: model shape, tokenizer size, schedule.

    Subclasses add their own (seeds, corpus, eval_max_tokens, ...); `lm_run` reads these plus
    `corpus` and `eval_max_tokens`."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    seq_len: int
    batch_size: int
    max_steps: int
    lr: float


def lm_run(
    experiment: str,
    variant: str,
    model: ModelConfig,
    s: LMScale,
    *,
    scale: str,
    seed: int,
    eval_lengths: Sequence[int] | None = None,
    tags: dict[str, Any] | None = None,
    downstream: Any = None,
) -> RunConfig:
    """One LM run of `model` under scale constants `s` (corpus, vocab_size, seq_len, lr,
    max_steps, batch_size, eval_max_tokens); test perplexity at `eval_lengths` (default T)."""
    from wm_bench.data.lm import LMDataConfig

    data = LMDataConfig(
        corpus=s.corpus, vocab_size=s.vocab_size, seq_len=s.seq_len,
        eval_lengths=tuple(eval_lengths or (s.seq_len,)), eval_max_tokens=s.eval_max_tokens,
        valid_tokens=s.eval_max_tokens,  # validation on as many tokens as the test
    )  # fmt: skip
    return RunConfig(
        experiment=experiment, variant=variant, model=model, data=data,
        optim=OptimConfig(lr=s.lr, weight_decay=0.01, min_lr_ratio=0.1, grad_clip=1.0),
        train=TrainConfig(max_steps=s.max_steps, batch_size=s.batch_size),
        seed=seed, scale=scale, tags=tags if tags is not None else {"variant": variant},
        downstream=downstream,
    )  # fmt: skip


def cell_key(cfg: RunConfig) -> tuple:
    """Runs of one cell differ only in their seed."""
    from wm_bench.config import config_hash

    return (cfg.scale, cfg.variant, config_hash(dataclasses.replace(cfg, seed=0)))
