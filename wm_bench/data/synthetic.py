"""Synthetic token streams for smoke training: a random order-1 Markov chain over the vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from wm_bench.data.resumable import TensorSplitsData


@dataclass(frozen=True)
class SyntheticDataConfig:
    """A learnable stream: each token's successor is drawn from a sparse per-token distribution.

    The loss can fall well below log(vocab) (each token has `branching` likely successors), so a
    short training run that lowers the loss shows that the whole stack learns.
    """

    name: Literal["synthetic"] = "synthetic"
    vocab_size: int = 256  # token ids 0 … vocab_size − 1
    seq_len: int = 64  # tokens per row
    n_train: int = 512  # training rows
    n_valid: int = 64  # validation rows, drawn from the same chain
    branching: int = 4  # likely successors per token

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"synthetic vocab_size={self.vocab_size} must be ≥ 2")
        if self.seq_len < 2:
            raise ValueError(f"synthetic seq_len={self.seq_len} must be ≥ 2")
        if not 1 <= self.branching <= self.vocab_size:
            raise ValueError(
                f"synthetic branching={self.branching} must be in [1, vocab_size={self.vocab_size}]"
            )


def markov_stream(cfg: SyntheticDataConfig, n_seq: int, seed: int) -> torch.Tensor:
    """[n_seq, seq_len + 1] int64 sequences from a fixed random transition table (seeded)."""
    table_gen = torch.Generator().manual_seed(1234)  # the same "language" for every split
    succ = torch.randint(0, cfg.vocab_size, (cfg.vocab_size, cfg.branching), generator=table_gen)
    g = torch.Generator().manual_seed(seed)
    seq = torch.empty(n_seq, cfg.seq_len + 1, dtype=torch.int64)
    seq[:, 0] = torch.randint(0, cfg.vocab_size, (n_seq,), generator=g)
    choice = torch.randint(0, cfg.branching, (n_seq, cfg.seq_len), generator=g)
    for t in range(cfg.seq_len):  # T is small; vectorised over sequences
        seq[:, t + 1] = succ[seq[:, t], choice[:, t]]
    return seq


class SyntheticDataModule(TensorSplitsData):
    """Batches of (input_ids [B, T], labels [B, T]) with labels = next token.

    Training batches come shuffled, epoch after epoch, as a pure function of (seed, step)
    (`wm_bench.data.resumable`), so a run resumed from a checkpoint continues the same stream.
    Under W ranks each takes its block of every training batch and of the validation set.
    """

    train_drop_last = True

    def make_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            n, seed = self.cfg.n_train, 10_000 + self.seed
        else:
            n, seed = self.cfg.n_valid, 1_000_000 + self.seed  # disjoint seed range
        seq = markov_stream(self.cfg, n, seed)
        return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
