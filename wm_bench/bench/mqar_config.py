"""The MQAR benchmark's settings: variants, goal, Zoology's anchors, design points, the config."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wm_bench.data.mqar import check_mqar_args

SCHEMA_VERSION = 1
VARIANTS: tuple[str, ...] = ("ours", "zoology_style")
LABELS: dict[str, str] = {
    "ours": "ours (wm_bench training path)",
    "zoology_style": "zoology-style (our re-implementation)",
}
GOAL_RATIO = 1.5  # the suite's goal: ours ≥ 1.5× the zoology-style tokens/s
ZOOLOGY_LR = 2.1544e-3  # numpy.logspace(-4, -2, 4)[2]: the LR of Zoology's Fig. 2 grid we use
LEVEL = 0.95
VALID_METRICS = ("valid/accuracy", "valid/loss")  # the suite's own validation, recorded for ours

# Measured with Zoology's own code, NOT by this benchmark (docs/anchors.md §5).
# fmt: off
_ANCHOR_FIELDS = ("mixer", "d", "L", "kv", "train_tokens_per_s", "accuracy_after_2_epochs")
_ANCHOR_ROWS = (
    ("attention (1 head, learned positions)", 64, 64, 4, 13124, 0.23),
    ("attention", 128, 64, 4, 9966, 0.26),
    ("attention", 128, 128, 8, 11141, 0.11),
)
# fmt: on
ANCHORS: dict[str, Any] = {
    "source": "docs/anchors.md §5 (the same table as the shared perf/ANCHORS.md, 'MQAR on this "
    "CPU with Zoology's own trainer')",
    "measured_with": "HazyResearch/zoology at d88d6f5 (Zoology's own trainer, four CPU "
    "patches), this CPU model, 2 threads; vocabulary 8192, 2 layers, no MLP, "
    "AdamW wd 0.1, lr 2.15e-3, batch 32, 2 epochs = 1.54M tokens, 1 seed",
    "note": "not measured by this benchmark: a yardstick only; the ratio and the goal use the "
    "zoology-style loop timed beside ours in the same run",
    "rows": [dict(zip(_ANCHOR_FIELDS, r, strict=True)) for r in _ANCHOR_ROWS],
}

# fmt: off
# Design point → (Zoology at d88d6f5 with its Fig. 2 attention settings, ours). The zoology-style
# loop follows the Zoology column except where "zoology_style" below says otherwise.
DESIGN_POINTS: dict[str, tuple[str, str]] = {
    "token embedding": ("nn.Embedding(V, d), N(0, 0.02)", "the same"),
    "positions": ("learned absolute, nn.Embedding(L, d), added to the tokens",
                  "RoPE in attention (the suite has no learned positions)"),
    "embedding dropout": ("0.1 (embed_dropout default) on layer 0's input", "none"),
    "sequence mixer": ("MHA, 1 head, fused Wqkv and out_proj with biases, explicit softmax of "
                       "QKᵀ/√K + triu(−10000), dropout 0.1 on the probabilities",
                       "QCAttn, 1 head, q/k/v/o without biases, SDPA, no dropout"),
    "state mixer (MLP)": ("torch.nn.Identity", "none (ffn=None)"),
    "norm and residual": ("LayerNorm (eps 1e-5); with the Identity state mixer norm2's output "
                          "is added to the residual stream again by the next block; final "
                          "LayerNorm", "pre-norm RMSNorm (eps 1e-6), learnable per-channel "
                          "residual weights, final RMSNorm"),
    "init": ("N(0, 0.02), biases 0, out_proj N(0, 0.02/√(2·layers))",
             "N(0, 0.02) for every matrix"),
    "LM head": ("tied to the token embedding, over EVERY position ([B, L, V] logits)",
                "tied, on the labelled positions only ([B·kv, V] logits)"),
    "loss": ("CrossEntropyLoss(ignore_index=−100), mean over labelled positions; arg-max "
             "predictions over all positions every training step",
             "cross-entropy over the labelled positions only; no training arg-max"),
    "optimiser": ("AdamW on all parameters, wd 0.1, betas (0.9, 0.999), eps 1e-8",
                  "AdamW, betas (0.9, 0.999), eps 1e-8, wd 0.1 on matrices only; grad-norm "
                  "clip 1.0; non-finite loss and grad-norm checks"),
    "LR schedule": ("CosineAnnealingLR(T_max=epochs), stepped per epoch: lr, then lr/2",
                    "per step, no warm-up, cosine from lr to lr/2 (min_lr_ratio 0.5)"),
    "data": ("Zoology's MQAR generator, batches in fixed order (shuffle=False)",
             "the suite's MQAR generator (Zoology's semantics), shuffled each epoch"),
    "loop": ("plain loop: DataLoader(batch_size=None), zero_grad, forward, loss, aux-loss "
             "scan, backward, step, loss.item() for tqdm and for wandb",
             "Lightning Trainer as `wm-bench train` runs it (CSV logger, suite callbacks)"),
    "evaluation": ("after every epoch", "once at the end (suite validation)"),
}
# fmt: on
ZOOLOGY_STYLE_DEVIATIONS: dict[str, str] = {
    "data": "the suite's MQAR generator, the very rows ours trains on, in fixed order",
    "loop": "tqdm and wandb left out (their two loss.item() calls kept)",
    "evaluation": "once at the end, untimed, on the same test set as ours",
}


@dataclass(frozen=True)
class MqarBenchConfig:
    """What is benchmarked; the defaults are Zoology's CPU configuration (docs/anchors.md §5).

    `steps` optimiser steps of `batch_size` rows of length `seq_len` over `epochs` epochs: the
    training set has ceil(steps / epochs) · batch_size rows. Timing is per chunk of `chunk` steps;
    the first `warmup_chunks` chunks of each variant are untimed.
    """

    vocab_size: int = 8192  # tokens; keys and values are drawn from disjoint halves
    d_model: int = 64  # model width of both implementations
    n_layers: int = 2  # blocks (mixer + MLP each)
    seq_len: int = 64  # tokens per row
    num_kv_pairs: int = 8  # key-value pairs stated at the start of each row
    batch_size: int = 32  # rows per optimiser step
    steps: int = 750  # optimiser steps, all timed except the warm-up chunks
    epochs: int = 2  # passes over the training rows (Zoology's CosineAnnealingLR unit)
    lr: float = ZOOLOGY_LR  # peak learning rate, the same for both sides
    weight_decay: float = 0.1  # AdamW decoupled decay
    n_test: int = 1000  # held-out rows for the untimed accuracy check
    chunk: int = 25  # steps per timed chunk
    warmup_chunks: int = 1  # leading chunks per variant left out of the timing
    seed: int = 0  # seeds data and initialisation

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "n_layers",
            "batch_size",
            "steps",
            "epochs",
            "n_test",
            "chunk",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MqarBenchConfig.{name}={v!r} must be an integer ≥ 1")
        for name in ("warmup_chunks", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"MqarBenchConfig.{name}={v!r} must be an integer ≥ 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"MqarBenchConfig.lr={self.lr!r} must be a finite number > 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"MqarBenchConfig.weight_decay={self.weight_decay!r} must be ≥ 0")
        check_mqar_args(self.seq_len, self.num_kv_pairs, self.vocab_size)
        if self.epochs > self.steps:
            raise ValueError(f"epochs={self.epochs} exceeds steps={self.steps}: need ≥ 1 step each")
        need = (self.warmup_chunks + 1) * self.chunk
        if self.steps < need:
            raise ValueError(
                f"steps={self.steps} leave no timed chunk: need steps ≥ (warmup_chunks + 1) · "
                f"chunk = ({self.warmup_chunks} + 1) · {self.chunk} = {need}; raise --steps or "
                "lower --chunk / --warmup-chunks"
            )

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.steps // self.epochs)

    @property
    def n_train(self) -> int:
        """Training rows: one epoch of `steps_per_epoch` full batches."""
        return self.steps_per_epoch * self.batch_size

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def chunk_sizes(self) -> list[int]:
        """Steps per chunk: `chunk` each, the remainder (if any) in a last, shorter chunk."""
        sizes = [self.chunk] * (self.steps // self.chunk)
        return sizes + ([self.steps % self.chunk] if self.steps % self.chunk else [])


def parse_variants(spec: str | Sequence[str]) -> tuple[str, ...]:
    """ "ours,zoology_style" (or a sequence) → validated names in VARIANTS order, at least one."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [s for s in names if s not in VARIANTS]
    if bad or not names:
        raise ValueError(
            f"--variants {','.join(names) or '(empty)'!r}: unknown {bad or 'none'}; "
            f"valid: a comma list of {list(VARIANTS)}"
        )
    return tuple(v for v in VARIANTS if v in names)
