"""The zoology-style MQAR model and training loop: our re-implementation of Zoology's trainer at
HazyResearch/zoology d88d6f5 with its Fig. 2 attention settings (see DESIGN_POINTS)."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from wm_bench.bench.mqar_config import MqarBenchConfig


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
