"""`wm-bench bench mqar`: MQAR training speed at Zoology's CPU configuration, ours vs zoology-style.

Issue 18 point 7. Two ways of training the same MQAR task, interleaved in one process:

- "ours": the suite's real training path, `wm_bench.train.run` (Lightning, `LMModule`,
  `MqarDataModule`), on a 2-layer, 1-head attention model without FFN. MQAR labels only kv of the
  L positions, and `LMModule._steps` applies the LM head and the loss to those positions only.
- "zoology_style": our own re-implementation (not Zoology's code, which is not installed) of
  Zoology's MQAR trainer at HazyResearch/zoology d88d6f5 and its model at the Fig. 2 settings:
  learned positions, 1-head attention with biases and dropout, LayerNorm, no state mixer, a tied
  8192-way head and the loss over every position, AdamW on all parameters, cosine per epoch.

Both train on the same MQAR rows (`wm_bench.data.mqar`, one seed) for the same number of steps
and tokens. The "ours" run is driven by Lightning; a callback runs the zoology-style loop in
chunks of `chunk` steps between ours' chunks (order flipped on odd repeats), so load on a shared
machine hits both alike. Per chunk: wall seconds of `chunk` complete optimiser steps of each
(ours: everything Lightning does between them; zoology-style: its whole loop body). The first
`warmup_chunks` chunks of each are untimed. Afterwards both models are scored on the same test
set by one evaluator (Zoology's metric), and ours also by the suite's own validation.
What differs from real Zoology is listed in `DESIGN_POINTS` and in docs/bench_mqar.md.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from wm_bench.bench.common import load_average, machine_line, torch_threads
from wm_bench.data.mqar import IGNORE_INDEX, check_mqar_args
from wm_bench.results import now_iso, provenance, repo_root, write_json_atomic

SCHEMA_VERSION = 1
VARIANTS: tuple[str, ...] = ("ours", "zoology_style")
LABELS: dict[str, str] = {
    "ours": "ours (wm_bench training path)",
    "zoology_style": "zoology-style (our re-implementation)",
}
GOAL_RATIO = 1.5  # issue 18 point 7: ours ≥ 1.5× the zoology-style tokens/s
ZOOLOGY_LR = 2.1544e-3  # numpy.logspace(-4, -2, 4)[2]: the LR of Zoology's Fig. 2 grid we use
LEVEL = 0.95
VALID_METRICS = ("valid/accuracy", "valid/loss")  # the suite's own validation, recorded for ours

# Measured with Zoology's own code, NOT by this benchmark (docs/anchors.md §5).
# fmt: off
_ANCHOR_ROWS = (  # mixer, d, L, kv, training tokens/s, accuracy after 2 epochs
    ("attention (1 head, learned positions)", 64, 64, 4, 13124, 0.23),
    ("attention", 128, 64, 4, 9966, 0.26),
    ("attention", 128, 128, 8, 11141, 0.11),
)
ANCHORS: dict[str, Any] = {
    "source": "docs/anchors.md §5 (the same table as the shared perf/ANCHORS.md, 'MQAR on this "
              "CPU with Zoology's own trainer')",
    "measured_with": "HazyResearch/zoology at d88d6f5 (Zoology's own trainer, four CPU "
                     "patches), this CPU model, 2 threads; vocabulary 8192, 2 layers, no MLP, "
                     "AdamW wd 0.1, lr 2.15e-3, batch 32, 2 epochs = 1.54M tokens, 1 seed",
    "note": "not measured by this benchmark: a yardstick only; the ratio and the goal use the "
            "zoology-style loop timed beside ours in the same run",
    "rows": [dict(zip(("mixer", "d", "L", "kv", "train_tokens_per_s",
                       "accuracy_after_2_epochs"), r, strict=True)) for r in _ANCHOR_ROWS],
}

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
ZOOLOGY_STYLE_DEVIATIONS: dict[str, str] = {
    "data": "the suite's MQAR generator, the very rows ours trains on, in fixed order",
    "loop": "tqdm and wandb left out (their two loss.item() calls kept)",
    "evaluation": "once at the end, untimed, on the same test set as ours",
}
# fmt: on


@dataclass(frozen=True)
class MqarBenchConfig:
    """What is benchmarked; the defaults are Zoology's CPU configuration (docs/anchors.md §5).

    `steps` optimiser steps of `batch_size` rows of length `seq_len` over `epochs` epochs: the
    training set has ceil(steps / epochs) · batch_size rows. Timing is per chunk of `chunk` steps;
    the first `warmup_chunks` chunks of each variant are untimed.
    """

    vocab_size: int = 8192
    d_model: int = 64
    n_layers: int = 2
    seq_len: int = 64
    num_kv_pairs: int = 8
    batch_size: int = 32
    steps: int = 750
    epochs: int = 2
    lr: float = ZOOLOGY_LR
    weight_decay: float = 0.1
    n_test: int = 1000
    chunk: int = 25
    warmup_chunks: int = 1
    seed: int = 0

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


# ---- the zoology-style model and loop (our re-implementation; see DESIGN_POINTS) ---------------


class ZooEmbeddings(nn.Module):
    """Token embedding plus a learned absolute position embedding (GPT-2 style)."""

    def __init__(self, vocab_size: int, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, d_model)
        self.position_embeddings = nn.Embedding(max_positions, d_model)

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, T] int64 → [B, T, D]."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # [T]
        return self.word_embeddings(input_ids) + self.position_embeddings(positions)


class ZooAttention(nn.Module):
    """Causal multi-head softmax attention with a fused, biased qkv projection.

    scores = Q Kᵀ/√K + triu(−10000, 1); P = dropout(softmax(scores)); y = out_proj(P V).
    """

    def __init__(self, d_model: int, n_heads: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.head_dim, self.dropout = n_heads, d_model // n_heads, dropout
        self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=True)
        self.out_proj = nn.Linear(d_model, d_model, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, D] → [B, T, D], causal."""
        B, T, D = x.shape
        qkv = self.Wqkv(x).view(B, T, 3, self.n_heads, self.head_dim)  # [B, T, 3, H, K]
        q, k, v = qkv.unbind(dim=2)  # each [B, T, H, K]
        scores = torch.einsum("bthk,bshk->bhts", q, k * self.head_dim**-0.5)  # [B, H, T, T]
        mask = torch.triu(torch.full((T, T), -10000.0, device=x.device), 1)  # [T, T]
        probs = torch.softmax(scores + mask.to(scores.dtype), dim=-1, dtype=v.dtype)
        probs = F.dropout(probs, self.dropout if self.training else 0.0)
        out = torch.einsum("bhts,bshk->bthk", probs, v).reshape(B, T, D)
        return self.out_proj(out)


class ZooBlock(nn.Module):
    """Dropout → add to residual → LayerNorm → mixer → dropout → add → LayerNorm → state mixer.

    The state mixer is Identity (no MLP), so the block returns norm2(residual) as its hidden
    state and the next block adds it to the residual stream once more.
    """

    def __init__(
        self,
        d_model: int,
        layer_idx: int,
        *,
        embed_dropout: float,
        resid_dropout: float,
        attn_dropout: float,
    ) -> None:
        super().__init__()
        self.sequence_mixer = ZooAttention(d_model, n_heads=1, dropout=attn_dropout)
        self.state_mixer = nn.Identity()
        self.dropout1 = nn.Dropout(embed_dropout if layer_idx == 0 else resid_dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.dropout2 = nn.Dropout(resid_dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        """hidden, residual [B, T, D] (residual None at layer 0) → new (hidden, residual)."""
        dropped = self.dropout1(hidden)
        residual = dropped + residual if residual is not None else dropped
        hidden = self.sequence_mixer(self.norm1(residual))
        residual = self.dropout2(hidden) + residual
        return self.state_mixer(self.norm2(residual)), residual


class ZoologyStyleLM(nn.Module):
    """Embeddings → blocks → final dropout/add/LayerNorm → head tied to the token embedding."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        max_positions: int,
        *,
        embed_dropout: float = 0.1,
        resid_dropout: float = 0.0,
        attn_dropout: float = 0.1,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.embeddings = ZooEmbeddings(vocab_size, d_model, max_positions)
        self.layers = nn.ModuleList(
            ZooBlock(
                d_model,
                i,
                embed_dropout=embed_dropout,
                resid_dropout=resid_dropout,
                attn_dropout=attn_dropout,
            )
            for i in range(n_layers)
        )
        self.drop_f = nn.Dropout(resid_dropout)
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for block in self.layers:  # GPT-2's residual scaling of the output projections
            nn.init.normal_(
                block.sequence_mixer.out_proj.weight, std=init_std / math.sqrt(2 * n_layers)
            )
        self.lm_head.weight = self.embeddings.word_embeddings.weight

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, T] int64 → logits [B, T, V] over every position."""
        hidden, residual = self.embeddings(input_ids), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        residual = self.drop_f(hidden) + residual
        return self.lm_head(self.ln_f(residual))


class InOrderBatches(Dataset):
    """Batch i = rows [i·B, (i+1)·B) in order, with per-row slice dicts (as Zoology serves them)."""

    def __init__(self, inputs: Tensor, labels: Tensor, batch_size: int) -> None:
        self.inputs, self.labels, self.batch_size = inputs, labels, batch_size
        self.starts = list(range(0, len(inputs), batch_size))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, list[dict]]:
        rows = slice(self.starts[i], self.starts[i] + self.batch_size)
        return self.inputs[rows], self.labels[rows], [{}] * self.batch_size


class ZoologyStyleTrainer:
    """Zoology's `Trainer.fit` / `train_epoch` loop, advanced `n` steps at a time.

    Args:
        cfg: the benchmark configuration.
        inputs, labels: [n_train, L] int64 training rows (served in order, epoch after epoch).
        seed: seeds the weights (in a forked RNG, leaving the global one alone).
    """

    def __init__(self, cfg: MqarBenchConfig, inputs: Tensor, labels: Tensor, seed: int) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = ZoologyStyleLM(cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.seq_len)
        self.model.train()
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.epochs, eta_min=0.0
        )
        self.loader = DataLoader(
            InOrderBatches(inputs, labels, cfg.batch_size),
            batch_size=None,
            num_workers=0,
            shuffle=False,
        )
        self._batches = iter(self.loader)
        self._in_epoch, self.epoch, self.steps = 0, 0, 0
        self.losses: list[float] = []
        self.seen: list[tuple[Tensor, Tensor]] = []  # the batches trained on (data check)
        self.last_log: dict[str, float] = {}
        self.head_rows: int | None = None
        self._hook = self.model.lm_head.register_forward_hook(self._count_head_rows)

    def _count_head_rows(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self.head_rows = int(args[0].shape[:-1].numel())
        self._hook.remove()

    def train_steps(self, n: int) -> float:
        """Run n optimiser steps; return their wall seconds."""
        t0 = time.perf_counter()
        for _ in range(n):
            self._step()
        return time.perf_counter() - t0

    def _step(self) -> None:
        inputs, targets, _slices = next(self._batches)
        self.optimizer.zero_grad()
        logits = self.model(inputs)  # [B, L, V]: the head over every position
        loss = self.loss_fn(logits.reshape(-1, logits.shape[-1]), targets.flatten())
        _preds = logits.argmax(dim=-1)  # Zoology's compute_loss returns them every step
        aux: list[Tensor] = []
        self.model.apply(
            lambda m: (
                aux.append(m.get_auxiliary_loss()) if hasattr(m, "get_auxiliary_loss") else None
            )
        )
        if aux:
            loss = loss + sum(aux)
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())  # Zoology: tqdm's set_postfix({"loss": loss.item()})
        self.last_log = {"train/loss": loss.item(), "epoch": self.epoch}  # and the logger's log
        self.seen.append((inputs, targets))
        self.steps += 1
        self._in_epoch += 1
        if self._in_epoch == len(self.loader):  # end of epoch: (test,) then the scheduler
            self.scheduler.step()
            self.epoch, self._in_epoch = self.epoch + 1, 0
            self._batches = iter(self.loader)


# ---- evaluation and data checks ----------------------------------------------------------------


@torch.no_grad()
def recall_accuracy(
    logits_fn: Callable[[Tensor], Tensor], inputs: Tensor, labels: Tensor, batch_size: int
) -> dict[str, float | int]:
    """Zoology's test metric on one test set: per example the share of its labelled positions
    whose arg-max logit is the label, then the mean over examples.

    Args:
        logits_fn: input_ids [b, L] → logits [b, L, V] (the model in eval mode).
        inputs, labels: [n, L] int64 (labels −100 where unlabelled).
        batch_size: rows per forward.
    Returns:
        accuracy (mean over examples), hits and n (labelled positions), loss (mean cross-entropy
        over labelled positions).
    """
    per_example, hits, n, loss_sum = [], 0, 0, 0.0
    for s in range(0, len(inputs), batch_size):
        x, y = inputs[s : s + batch_size], labels[s : s + batch_size]
        logits = logits_fn(x).float()  # [b, L, V]
        mask = y != IGNORE_INDEX
        right = (logits.argmax(-1) == y) & mask
        per_example += (right.sum(1) / mask.sum(1).clamp_min(1)).tolist()
        hits, n = hits + int(right.sum()), n + int(mask.sum())
        loss_sum += float(F.cross_entropy(logits[mask], y[mask], reduction="sum"))
    return {
        "accuracy": statistics.fmean(per_example),
        "hits": hits,
        "n": n,
        "loss": loss_sum / max(n, 1),
    }


def _eval_model(
    model: nn.Module, fn: Callable[[Tensor], Tensor], test: tuple[Tensor, Tensor], batch_size: int
) -> dict[str, float | int]:
    was_training = model.training
    model.eval()
    try:
        return recall_accuracy(fn, test[0], test[1], batch_size)
    finally:
        model.train(was_training)


def tensors_sha256(*tensors: Tensor) -> str:
    """sha256 over the tensors' bytes (contiguous, in order)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def row_multiset(batches: Sequence[tuple[Tensor, Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (input, label) rows of a list of batches and how often each was trained on."""
    rows = torch.cat([torch.cat([x, y], dim=1) for x, y in batches]).numpy()  # [N, 2L]
    return np.unique(rows, axis=0, return_counts=True)


def same_rows(a: Sequence[tuple[Tensor, Tensor]], b: Sequence[tuple[Tensor, Tensor]]) -> bool:
    """True when both batch lists trained on the same rows the same number of times."""
    (ra, ca), (rb, cb) = row_multiset(a), row_multiset(b)
    return ra.shape == rb.shape and bool(np.array_equal(ra, rb) and np.array_equal(ca, cb))


# ---- ours: the suite's training path, with the zoology-style loop interleaved ------------------


def ours_run_config(cfg: MqarBenchConfig, seed: int, threads: int | None) -> Any:
    """The RunConfig `wm_bench.train.run` trains for "ours" (see DESIGN_POINTS)."""
    from wm_bench.config import BlockConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from wm_bench.data.mqar import MqarDataConfig
    from wm_bench.layers.mixers.qcattn import QCAttnConfig

    model = ModelConfig(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        pattern="A",
        blocks={"A": BlockConfig(mixer=QCAttnConfig(n_heads=1, position="rope"), ffn=None)},
        tie_embeddings=True,
    )
    data = MqarDataConfig(
        seq_len=cfg.seq_len,
        num_kv_pairs=cfg.num_kv_pairs,
        vocab_size=cfg.vocab_size,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
    )
    optim = OptimConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        betas=(0.9, 0.999),
        warmup_steps=0,
        min_lr_ratio=0.5,
    )
    train = TrainConfig(
        max_steps=cfg.steps,
        batch_size=cfg.batch_size,
        precision="32-true",
        accelerator="cpu",
        num_threads=threads,
        progress=False,
    )
    return RunConfig(
        experiment="bench_mqar",
        variant="ours",
        model=model,
        data=data,
        optim=optim,
        train=train,
        seed=seed,
        scale="cpu",
    )


def mqar_split(run_cfg: Any) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(train inputs, labels), (test inputs, labels) exactly as the suite's DataModule has them."""
    from wm_bench.data import build_datamodule

    dm = build_datamodule(run_cfg.data, batch_size=run_cfg.train.batch_size, seed=run_cfg.seed)
    stream = dm.train_dataloader().dataset  # ShuffledBatches over all training rows
    return (stream.inputs, stream.labels), tuple(dm.val_dataloader().dataset.tensors)


class Interleave(L.Callback):
    """Times ours per chunk of optimiser steps and runs a zoology-style chunk between them.

    Ours' chunk k lasts from the end of the previous zoology-style chunk (or the training start)
    to the end of its last step: every step of it complete, as Lightning runs it. With
    `zoo_first`, zoology-style chunk k runs before ours' chunk k, otherwise after it.
    """

    def __init__(
        self,
        cfg: MqarBenchConfig,
        zoo: ZoologyStyleTrainer | None,
        *,
        zoo_first: bool,
        test: tuple[Tensor, Tensor],
        log: Callable[[str], None],
    ) -> None:
        self.cfg, self.zoo, self.zoo_first, self.test, self._log = cfg, zoo, zoo_first, test, log
        self.sizes = cfg.chunk_sizes()
        self.ours_s: list[float] = []
        self.zoo_s: list[float] = []
        self.load: list[float | None] = []
        self.losses: list[float] = []
        self.seen: list[tuple[Tensor, Tensor]] = []
        self.head_rows: int | None = None
        self.params: dict[str, int] = {}
        self.eval: dict[str, float | int] = {}
        self.test_sha256: str | None = None
        self._in_chunk, self._chunk, self._mark, self._hook = 0, 0, 0.0, None

    def _zoo_chunk(self, k: int) -> None:
        if self.zoo is not None and k < len(self.sizes):
            self.zoo_s.append(self.zoo.train_steps(self.sizes[k]))

    def _count_head_rows(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self.head_rows = int(args[0].shape[:-1].numel())

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.params = pl_module.model.param_counts()
        self._hook = pl_module.model.head.register_forward_hook(self._count_head_rows)
        if self.zoo_first:
            self._zoo_chunk(0)
        self._mark = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        t = time.perf_counter()
        if self._hook is not None:  # counted on the first step only
            self._hook.remove()
            self._hook = None
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        self.seen.append((batch[0], batch[1]))
        self._in_chunk += 1
        if self._in_chunk < self.sizes[self._chunk]:
            return
        self.ours_s.append(t - self._mark)
        self.load.append(load_average())
        k, self._chunk, self._in_chunk = self._chunk, self._chunk + 1, 0
        self._zoo_chunk(k + 1 if self.zoo_first else k)
        self._log(
            _chunk_line(
                self.cfg,
                k,
                len(self.sizes),
                self.sizes[k],
                self.ours_s[-1],
                self.zoo_s[k] if k < len(self.zoo_s) else None,
            )
        )
        self._mark = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        model = pl_module.model
        self.eval = _eval_model(model, lambda x: model(x).logits, self.test, self.cfg.batch_size)
        dm = trainer.datamodule
        self.test_sha256 = tensors_sha256(*dm.val_dataloader().dataset.tensors)


def _chunk_line(
    cfg: MqarBenchConfig, k: int, n: int, steps: int, ours: float | None, zoo: float | None
) -> str:
    def ms(s: float | None) -> str:
        return "—" if s is None else f"{1e3 * s / steps:.1f} ms/step"

    tag = " (warm-up)" if k < cfg.warmup_chunks else ""
    return f"[bench mqar] chunk {k + 1}/{n}{tag}: ours {ms(ours)}, zoology-style {ms(zoo)}"


def _run_ours(
    cfg: MqarBenchConfig,
    zoo: ZoologyStyleTrainer | None,
    *,
    seed: int,
    threads: int | None,
    zoo_first: bool,
    test: tuple[Tensor, Tensor],
    log: Callable[[str], None],
) -> tuple[Interleave, dict[str, Any]]:
    from wm_bench.train import run

    run_cfg = ours_run_config(cfg, seed, threads)
    cb = Interleave(cfg, zoo, zoo_first=zoo_first, test=test, log=log)
    with tempfile.TemporaryDirectory(prefix="wm_bench_mqar_") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        rec = run(
            run_cfg,
            results_dir=Path(tmp) / "results",
            out_dir=Path(tmp) / "outputs",
            force=True,
            quiet=True,
            callbacks=[cb],
        )
    if rec.get("status") != "ok":
        raise RuntimeError(
            f"ours: the training run ended {rec.get('status')!r}: {rec.get('error')}"
        )
    return cb, rec


def _run_zoo_alone(
    cfg: MqarBenchConfig, zoo: ZoologyStyleTrainer, log: Callable[[str], None]
) -> tuple[list[float], list[float | None]]:
    """The zoology-style loop on its own (no "ours" to interleave with): chunk seconds, loads."""
    times, loads, sizes = [], [], cfg.chunk_sizes()
    for k, n in enumerate(sizes):
        times.append(zoo.train_steps(n))
        loads.append(load_average())
        log(_chunk_line(cfg, k, len(sizes), n, None, times[-1]))
    return times, loads


# ---- one benchmark run -------------------------------------------------------------------------


def _interval(iv: Any) -> dict[str, Any]:
    """An stats.Interval as JSON: estimate, low, high (None when unbounded), level, n, method."""

    def num(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    return {
        "estimate": num(iv.estimate),
        "low": num(iv.low),
        "high": num(iv.high),
        "level": iv.level,
        "n": iv.n,
        "method": iv.method,
    }


def _median_interval(xs: Sequence[float]) -> dict[str, Any]:
    from wm_bench.stats import bootstrap_interval

    return _interval(
        bootstrap_interval(
            np.asarray(xs), lambda a: np.median(a, axis=-1), level=LEVEL, n_boot=2000
        )
    )


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


def bench_mqar(
    cfg: MqarBenchConfig | None = None,
    *,
    variants: Sequence[str] = VARIANTS,
    repeats: int = 1,
    threads: int | None = 2,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ours and the zoology-style loop side by side; timings, ratio, goal, accuracy.

    Args:
        cfg: the configuration (default: Zoology's CPU configuration, 750 steps).
        variants: any of VARIANTS; the ratio and the goal need both.
        repeats: whole runs, each with fresh models and data seed cfg.seed + r; on odd repeats
            the zoology-style chunk of each pair runs first.
        threads: intra-op CPU threads (None: torch's current setting).
        out: write the JSON here (atomically); None writes nothing.
        progress: one line per chunk on stderr.
    Returns:
        the result dict (also written to `out`); its fields are described in docs/bench_mqar.md.
    """
    cfg = cfg or MqarBenchConfig()
    variants = parse_variants(variants)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be an integer ≥ 1")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    started, load_before = now_iso(), load_average()
    with torch_threads(threads) as n_threads:
        reps = [_one_repeat(cfg, variants, r, repeats, n_threads, log) for r in range(repeats)]
    result = _summarise(cfg, variants, reps, n_threads, started, load_before)
    if out is not None:
        write_json_atomic(out, result)
    return result


def _one_repeat(
    cfg: MqarBenchConfig,
    variants: Sequence[str],
    r: int,
    repeats: int,
    threads: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One whole run of the chosen variants on data seed cfg.seed + r: its record."""
    seed = cfg.seed + r
    (train_x, train_y), test = mqar_split(ours_run_config(cfg, seed, threads))
    zoo = ZoologyStyleTrainer(cfg, train_x, train_y, seed) if "zoology_style" in variants else None
    zoo_first = zoo is not None and "ours" in variants and r % 2 == 1
    first = "zoology_style" if zoo_first else variants[0]
    log(f"[bench mqar] repeat {r + 1}/{repeats} (seed {seed}, {LABELS[first]} first)")
    rec: dict[str, Any] = {"repeat": r, "seed": seed, "first": first, "variants": {}}
    times: dict[str, list[float]] = {}
    if "ours" in variants:
        cb, run_rec = _run_ours(cfg, zoo, seed=seed, threads=threads, zoo_first=zoo_first,
                                test=test, log=log)  # fmt: skip
        times["ours"], loads = cb.ours_s, cb.load
        rec["variants"]["ours"] = {
            "accuracy": cb.eval,
            "suite_validation": {k: run_rec["metrics"][k] for k in VALID_METRICS},
            "suite_throughput_callback_tokens_per_s": run_rec["timing"]["tokens_per_s"],
            "head_rows_per_step": cb.head_rows,
            "params": cb.params,
            "steps": len(cb.losses),
            "loss_first_chunk": statistics.fmean(cb.losses[: cfg.chunk]),
            "loss_last_chunk": statistics.fmean(cb.losses[-cfg.chunk :]),
            "test_sha256": cb.test_sha256,
        }
    if zoo is not None:
        if "ours" in variants:
            times["zoology_style"] = cb.zoo_s
        else:
            times["zoology_style"], loads = _run_zoo_alone(cfg, zoo, log)
        rec["variants"]["zoology_style"] = {
            "accuracy": _eval_model(zoo.model, zoo.model, test, cfg.batch_size),
            "head_rows_per_step": zoo.head_rows,
            "params": {"total": sum(p.numel() for p in zoo.model.parameters())},
            "steps": zoo.steps,
            "loss_first_chunk": statistics.fmean(zoo.losses[: cfg.chunk]),
            "loss_last_chunk": statistics.fmean(zoo.losses[-cfg.chunk :]),
            "test_sha256": tensors_sha256(*test),
        }
    rec["chunks"] = [
        {"index": k, "steps": n, "timed": k >= cfg.warmup_chunks,
         **{f"{v}_s": times[v][k] for v in variants}, "load_1min": loads[k]}
        for k, n in enumerate(cfg.chunk_sizes())
    ]  # fmt: skip
    both = "ours" in variants and zoo is not None
    rec["data"] = {
        "train_sha256": tensors_sha256(train_x, train_y),
        "test_sha256": tensors_sha256(*test),
        "same_training_rows": same_rows(cb.seen, zoo.seen) if both else None,
    }
    return rec


def accuracy_difference(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Ours − zoology-style pooled labelled-query accuracy over the repeats, with its interval."""
    from wm_bench.stats import two_proportions_interval

    # Lists, not nested generators: an inner generator consumed after the outer one is done
    # sees the last `v` only (both sides the zoology-style counts, a difference of 0).
    (ka, na), (kb, nb) = [
        [sum(rep["variants"][v]["accuracy"][f] for rep in reps) for f in ("hits", "n")]
        for v in ("ours", "zoology_style")
    ]
    return {
        "ours_minus_zoology_style": ka / na - kb / nb,
        "interval": _interval(two_proportions_interval(ka, na, kb, nb, LEVEL)),
        "note": "pooled labelled-query accuracy on the same test set after the same "
        "tokens; the queries of one example are not independent, so the interval is "
        "optimistic",
    }


def _summarise(
    cfg: MqarBenchConfig,
    variants: Sequence[str],
    reps: list[dict[str, Any]],
    n_threads: int,
    started: str,
    load_before: float | None,
) -> dict[str, Any]:
    """The result dict: settings, per-variant speed and accuracy, ratio, goal, provenance."""
    from wm_bench.stats import (
        bootstrap_ratio_of_medians,
        threshold_verdict,
        wilson_interval,
    )

    timed = [c for rep in reps for c in rep["chunks"] if c["timed"]]
    per_step = {v: [c[f"{v}_s"] / c["steps"] for c in timed] for v in variants}  # seconds
    summary: dict[str, Any] = {}
    for v in variants:
        tps = [cfg.tokens_per_step / s for s in per_step[v]]
        accs = [rep["variants"][v]["accuracy"] for rep in reps]
        hits, n = sum(a["hits"] for a in accs), sum(a["n"] for a in accs)
        summary[v] = {
            "label": LABELS[v],
            "tokens_per_s": {
                "median": statistics.median(tps),
                "interval": _median_interval(tps),
                "min": min(tps),
                "max": max(tps),
                "n_chunks": len(tps),
            },
            "step_ms_median": 1e3 * statistics.median(per_step[v]),
            "tokens_trained_per_repeat": cfg.steps * cfg.tokens_per_step,
            "accuracy": {
                "mean_over_repeats": statistics.fmean(a["accuracy"] for a in accs),
                "pooled": _interval(wilson_interval(hits, n, LEVEL)),
                "per_repeat": [a["accuracy"] for a in accs],
            },
            "head_rows_per_step": [rep["variants"][v]["head_rows_per_step"] for rep in reps],
        }
    ratio = goal = acc_diff = None
    if len(variants) == 2:
        iv = bootstrap_ratio_of_medians(
            per_step["zoology_style"], per_step["ours"], paired=True, level=LEVEL, n_boot=2000
        )
        per_rep = []
        for rep in reps:
            t = [c for c in rep["chunks"] if c["timed"]]
            per_rep.append(
                statistics.median(c["zoology_style_s"] / c["steps"] for c in t)
                / statistics.median(c["ours_s"] / c["steps"] for c in t)
            )
        ratio = {
            "ours_over_zoology_style": iv.estimate,
            "interval": _interval(iv),
            "per_repeat": per_rep,
            "definition": "median zoology-style seconds/step ÷ median ours seconds/step "
            "over the timed chunks (paired by chunk, bootstrap BCa)",
        }
        verdict = threshold_verdict(
            iv,
            GOAL_RATIO,
            rule=f"ours/zoology-style tokens/s ≥ {GOAL_RATIO}: the interval lies above it",
            units="chunks",
        )
        goal = {
            "name": f"ours/zoology_style tokens/s >= {GOAL_RATIO}",
            "threshold": GOAL_RATIO,
            "ratio": iv.estimate,
            "met": iv.estimate >= GOAL_RATIO,
            "verdict": verdict.to_dict(),
            "note": "a goal (issue 18 point 7), judged on this run's numbers",
        }
        acc_diff = accuracy_difference(reps)
    loads = [c["load_1min"] for c in timed if c["load_1min"] is not None]
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "mqar",
        "what": "MQAR training tokens/s and accuracy after the same tokens: "
        + " vs ".join(LABELS[v] for v in variants),
        "settings": {
            **asdict(cfg),
            "variants": list(variants),
            "repeats": len(reps),
            "threads": n_threads,
            "n_train": cfg.n_train,
            "steps_per_epoch": cfg.steps_per_epoch,
            "tokens_per_step": cfg.tokens_per_step,
            "chunk_sizes": cfg.chunk_sizes(),
            "dtype": "float32",
            "device": "cpu",
            "timing": "wall seconds per chunk of complete optimiser steps, the two variants "
            "alternating chunk by chunk; warm-up chunks untimed",
        },
        "variants": summary,
        "ratio": ratio,
        "goal": goal,
        "accuracy_difference": acc_diff,
        "repeats": reps,
        "design_points": [
            {
                "point": k,
                "zoology": z,
                "ours": o,
                "zoology_style": ZOOLOGY_STYLE_DEVIATIONS.get(k, "as Zoology"),
            }
            for k, (z, o) in DESIGN_POINTS.items()
        ],
        "anchors": ANCHORS,
        "machine": machine_line(n_threads),
        "load_average_1min": {
            "before": load_before,
            "after": load_average(),
            "timed_chunks_median": statistics.median(loads) if loads else None,
        },
        "provenance": provenance({"type": "cpu", "threads": n_threads, "torch": torch.__version__}),
        "started_at": started,
        "finished_at": now_iso(),
    }


# ---- command line ------------------------------------------------------------------------------


def _fmt_iv(d: dict[str, Any], f: str) -> str:
    lo, hi = d["low"], d["high"]
    return "[—]" if lo is None or hi is None else f"[{lo:{f}}, {hi:{f}}]"


def print_result(result: dict[str, Any]) -> None:
    """Print a table per variant, the ratio, the goal, the accuracies and the anchors."""
    from wm_bench.bench.common import print_table

    s = result["settings"]
    rows = []
    for d in result["variants"].values():
        t = d["tokens_per_s"]
        rows.append(
            {
                "variant": d["label"],
                "tps": t["median"],
                "ci": _fmt_iv(t["interval"], ",.0f"),
                "ms": d["step_ms_median"],
                "acc": d["accuracy"]["mean_over_repeats"],
                "rows": ",".join(str(x) for x in d["head_rows_per_step"]),
            }
        )
    print_table(
        rows,
        (
            ("variant", "variant"),
            ("tps", "tokens/s (median)", ",.0f"),
            ("ci", "95 % interval"),
            ("ms", "ms/step", ".1f"),
            ("acc", "test accuracy", ".3f"),
            ("rows", "head rows/step"),
        ),
        title=f"MQAR training, V={s['vocab_size']} d={s['d_model']} layers={s['n_layers']}"
        f" L={s['seq_len']} kv={s['num_kv_pairs']} B={s['batch_size']}, {s['steps']} steps"
        f" × {s['repeats']} repeat(s), chunks of {s['chunk']}\n{result['machine']}",
    )
    if result["ratio"] is not None:
        r, g = result["ratio"], result["goal"]
        print(
            f"ratio ours/zoology-style tokens/s: {r['ours_over_zoology_style']:.2f} "
            f"{_fmt_iv(r['interval'], '.2f')}; goal ≥ {g['threshold']}: "
            f"{'met' if g['met'] else 'NOT met'} (interval verdict: {g['verdict']['verdict']})"
        )
        d = result["accuracy_difference"]
        print(
            f"accuracy ours − zoology-style after the same tokens: "
            f"{d['ours_minus_zoology_style']:+.3f} {_fmt_iv(d['interval'], '+.3f')}"
        )
    row = result["anchors"]["rows"][0]
    print(
        f"anchor (Zoology's own trainer, NOT this run; {result['anchors']['source'].split(' (')[0]}"
        f"): attention d {row['d']}, L {row['L']}, kv {row['kv']}: "
        f"{row['train_tokens_per_s']:,} tok/s, accuracy {row['accuracy_after_2_epochs']}"
    )
    before = result["load_average_1min"]["before"]
    if before is not None and before > 0.5 * (os.cpu_count() or 1):
        print(
            f"note: 1-min load average {before:.1f} on {os.cpu_count()} cores before the run: "
            "other processes competed for the CPU; rerun on a quiet machine"
        )


def default_out() -> Path:
    return repo_root() / "results" / "bench" / "mqar_cpu.json"


def build_parser() -> argparse.ArgumentParser:
    """The `bench mqar` argument parser."""
    d = MqarBenchConfig()
    p = argparse.ArgumentParser(
        prog="wm-bench bench mqar",
        description="MQAR training speed at Zoology's CPU configuration (vocabulary 8192, 2 "
        "layers, d 64,\nL 64, kv 8, batch 32, 2 epochs), two ways, interleaved chunk by chunk in "
        "one process:\n"
        "  ours           the suite's real training path (Lightning + LMModule), LM head and "
        "loss\n                 on the labelled positions only\n"
        "  zoology_style  our re-implementation of Zoology's trainer (not Zoology's code), head "
        "and\n                 loss over every position\n"
        "Reports tokens/s of each (median and 95 % interval over chunks), the ratio\n"
        f"ours/zoology-style (goal >= {GOAL_RATIO}) and the test accuracy of both after the same "
        "tokens.\nZoology's own numbers (docs/anchors.md §5) are quoted beside, never mixed in.",
        epilog="Example (the measurement, on an idle machine):\n"
        "  wm-bench bench mqar --steps 750 --threads 2 --repeats 3\n"
        "Quick plumbing check:\n"
        "  wm-bench bench mqar --steps 20 --chunk 5 --out /tmp/mqar.json\n"
        "JSON fields: docs/bench_mqar.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--steps",
        type=int,
        default=d.steps,
        help=f"optimiser steps per variant and repeat (default {d.steps} = 2 epochs "
        "of 12,000 rows)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="whole runs with fresh models, seed +1 each, order flipped on odd repeats (default 1)",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=d.chunk,
        help=f"steps per timed chunk; the variants alternate by chunk (default {d.chunk})",
    )
    p.add_argument(
        "--warmup-chunks",
        type=int,
        default=d.warmup_chunks,
        help=f"untimed first chunks of each variant (default {d.warmup_chunks})",
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma list of {', '.join(VARIANTS)} (default both; the ratio needs both)",
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=d.n_test,
        help=f"MQAR test examples both are scored on (default {d.n_test})",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help=f"data and weight seed (default {d.seed})"
    )
    p.add_argument("--out", default=None, help="result JSON (default results/bench/mqar_cpu.json)")
    p.add_argument("--quiet", action="store_true", help="no per-chunk progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line, print the summary and write the JSON.

    Bad values raise ValueError (the `wm-bench` CLI prints them as one "error:" line).
    """
    args = build_parser().parse_args(argv)
    variants = parse_variants(args.variants)
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads}: must be ≥ 1")
    cfg = MqarBenchConfig(
        steps=args.steps,
        chunk=args.chunk,
        warmup_chunks=args.warmup_chunks,
        n_test=args.n_test,
        seed=args.seed,
    )
    if args.repeats < 1:
        raise ValueError(f"--repeats {args.repeats}: must be ≥ 1")
    out = Path(args.out) if args.out else default_out()
    result = bench_mqar(
        cfg,
        variants=variants,
        repeats=args.repeats,
        threads=args.threads,
        out=out,
        progress=not args.quiet,
    )
    print_result(result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
