"""Language-modelling data: corpus → tokenizer → token shards → a LightningDataModule.

`prepare()` runs the pipeline (each stage cached under the cache root, see `corpus`,
`tokenizer`, `shards`); `LMDataModule` serves its shards:

- train: an endless stream of batches of windows at uniformly random offsets into the first
  `n_train_tokens` training tokens (all of them when None). Batch k of run seed s uses
  ``numpy.random.default_rng([s, k])``, so the stream is a pure function of (seed, k): the
  same for the same seed, and a run resumed from a checkpoint continues with batch
  ``global_step`` (the DataModule's state_dict stores it). Under W ranks, rank r reads only
  its block of every batch's windows (`wm_bench.data.resumable`).
- valid / test: consecutive non-overlapping windows of the first `valid_tokens` tokens of the
  split (all when None), in order; window j feeds tokens jT … jT+T−1 and predicts jT+1 … jT+T,
  so every token after the first is predicted exactly once; a tail shorter than T is dropped.
  Under W ranks each rank scores its own contiguous block of windows.

Batches are (input_ids [B, T] int64, labels [B, T] int64) with labels = the next tokens, already
aligned with the logits as in `wm_bench.data.synthetic` (no shift in the loss); windows cross
document boundaries and the EOS separator is predicted like any token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from wm_bench.config_fields import runtime_field
from wm_bench.data.corpus import DEFAULT_CORPUS, Corpus, load_corpus, parse_spec
from wm_bench.data.resumable import (
    ResumableTrainData,
    per_rank_batch,
    rank_block,
    rank_world,
    sharded_eval_loader,
)
from wm_bench.data.shards import Shards, build_shards
from wm_bench.data.tokenizer import Tokenizer, check_tokenizer_spec, load_tokenizer


@dataclass(frozen=True)
class LMDataConfig:
    """Next-token prediction on a text corpus.

    Fields:
        corpus: corpus spec (`wm_bench.data.corpus`): "bundled" (the default, shipped with
            the package), "debian", "files:<glob>", "wikitext2:<dir>",
            "hf:<dataset>[:<config>][@<N>]".
        vocab_size: the BPE's target size (≥ 257); for "hf:" tokenizers unused (their own size
            applies). The DataModule's `vocab_size` is the tokenizer's real size.
        seq_len: T, the training window.
        tokenizer: "bpe" (trained on the corpus' train split) or "hf:<name>" (local files only).
        n_train_tokens: train on the first N training tokens only (small runs); None = all.
        valid_tokens: validate (and test) on the first N tokens of the split; None = all.
        eval_lengths: context lengths of the sliding-window test perplexity run after training
            (`wm_bench.eval.perplexity`); () = none.
        eval_max_tokens: that evaluation reads the first N test tokens; None = all.
        cache_dir: cache root (runtime only: not hashed); None = $WM_BENCH_CACHE or
            ~/.cache/wm_bench.
    Seeds: the run seed picks the training windows (module docstring); valid/test are fixed.
    """

    name: Literal["lm"] = "lm"
    corpus: str = DEFAULT_CORPUS
    vocab_size: int = 8192
    seq_len: int = 256
    tokenizer: str = "bpe"
    n_train_tokens: int | None = None
    valid_tokens: int | None = None
    eval_lengths: tuple[int, ...] = ()
    eval_max_tokens: int | None = None
    cache_dir: str | None = runtime_field(None)

    def __post_init__(self) -> None:
        parse_spec(self.corpus)
        check_tokenizer_spec(self.tokenizer, self.vocab_size)
        if self.seq_len < 1:
            raise ValueError(f"LMDataConfig.seq_len={self.seq_len} must be ≥ 1")
        for fname in ("n_train_tokens", "valid_tokens"):
            v = getattr(self, fname)
            if v is not None and v < self.seq_len + 1:
                raise ValueError(
                    f"LMDataConfig.{fname}={v} must be None or ≥ seq_len + 1 = {self.seq_len + 1}"
                )
        if any(n < 1 for n in self.eval_lengths):
            raise ValueError(f"LMDataConfig.eval_lengths={self.eval_lengths} must all be ≥ 1")
        if self.eval_max_tokens is not None and self.eval_max_tokens < 2:
            raise ValueError(f"LMDataConfig.eval_max_tokens={self.eval_max_tokens} must be ≥ 2")


@dataclass(frozen=True)
class Prepared:
    """The pipeline's three products."""

    corpus: Corpus
    tokenizer: Tokenizer
    shards: Shards


def prepare(
    corpus: str = DEFAULT_CORPUS,
    *,
    tokenizer: str = "bpe",
    vocab_size: int = 8192,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Prepared:
    """Load the corpus, train/load the tokenizer, build/reuse the shards (all cached)."""
    c = load_corpus(corpus, cache_dir=cache_dir, progress=progress)
    tok = load_tokenizer(
        tokenizer, corpus=c, vocab_size=vocab_size, cache_dir=cache_dir, progress=progress
    )
    return Prepared(c, tok, build_shards(c, tok, cache_dir=cache_dir, progress=progress))


def prepare_config(cfg: LMDataConfig, *, progress: bool = True) -> Prepared:
    """`prepare` with a config's corpus, tokenizer, vocabulary and cache root."""
    return prepare(
        cfg.corpus,
        tokenizer=cfg.tokenizer,
        vocab_size=cfg.vocab_size,
        cache_dir=cfg.cache_dir,
        progress=progress,
    )


def token_array(cfg: LMDataConfig, split: str) -> np.ndarray:
    """[n] read-only memmap (uint16/uint32) of a whole split's tokens (no caps applied).

    Builds what is missing first (cached). Documents are separated by EOS (shards docstring).
    """
    return prepare_config(cfg).shards.tokens(split)


def describe(p: Prepared) -> str:
    """A plain-text summary: documents, characters, tokens per split and where the files are."""
    m = p.shards.meta
    lines = [
        f"corpus     {m['corpus']}  (hash {m['corpus_hash']})",
        f"tokenizer  {m['tokenizer']}  vocab {m['vocab_size']}, eos id {m['eos_id']}",
        f"{'split':<6} {'documents':>10} {'characters':>14} {'tokens':>12} {'chars/token':>11}",
    ]
    for s, c in m["splits"].items():
        ratio = c["characters"] / max(c["tokens"], 1)
        lines.append(
            f"{s:<6} {c['documents']:>10,} {c['characters']:>14,} {c['tokens']:>12,} {ratio:>11.2f}"
        )
    lines.append(f"shards     {p.shards.dir}  ({m['dtype']}, built {m['created_at']})")
    tok_file = getattr(p.tokenizer, "path", None)
    if tok_file:
        lines.append(f"tokenizer  {tok_file}")
    return "\n".join(lines)


def window_batch(tokens: np.ndarray, offsets: np.ndarray, seq_len: int) -> tuple[Any, Any]:
    """(input_ids [B, T], labels [B, T]) int64 of the windows tokens[o : o+T+1] for o in offsets."""
    idx = np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(seq_len + 1)  # [B, T+1]
    w = torch.from_numpy(np.asarray(tokens[idx], dtype=np.int64))
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


class _RandomWindows(IterableDataset):
    """Endless training batches from `LMDataModule.train_batch`, starting at batch `start`
    (rank `rank` of `world`: its block of each)."""

    def __init__(self, dm: LMDataModule, start: int, rank: int = 0, world: int = 1) -> None:
        self.dm, self.start, self.rank, self.world = dm, start, rank, world

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        k = self.start
        while True:
            yield self.dm.train_batch(k, rank=self.rank, world=self.world)
            k += 1


class _Windows(Dataset):
    """Consecutive non-overlapping windows of one token array."""

    def __init__(self, tokens: np.ndarray, seq_len: int) -> None:
        self.tokens, self.seq_len = tokens, seq_len
        self.n = (len(tokens) - 1) // seq_len

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j: int) -> tuple[Any, Any]:
        x, y = window_batch(self.tokens, np.array([j * self.seq_len]), self.seq_len)
        return x[0], y[0]


class LMDataModule(ResumableTrainData, L.LightningDataModule):
    """Batches of (input_ids [B, T], labels [B, T]) int64 from token shards (module docstring).

    The pipeline runs (or is found in the cache) on first use of `vocab_size`, `prepared` or a
    dataloader, not in the constructor.
    """

    def __init__(self, cfg: LMDataConfig, *, batch_size: int, seed: int) -> None:
        super().__init__()
        if seed < 0:
            raise ValueError(f"LMDataModule seed={seed} must be ≥ 0")
        self.cfg, self.batch_size, self.seed = cfg, batch_size, seed
        self._prepared: Prepared | None = None
        self._start_batch = 0

    @property
    def prepared(self) -> Prepared:
        if self._prepared is None:
            self._prepared = prepare_config(self.cfg)
        return self._prepared

    @property
    def vocab_size(self) -> int:
        """The tokenizer's real vocabulary size (≤ cfg.vocab_size for BPE)."""
        return self.prepared.tokenizer.vocab_size

    def prepare_data(self) -> None:
        self.prepared  # noqa: B018  (build or find the cache)

    def _split(self, split: str, cap: int | None) -> np.ndarray:
        tokens = self.prepared.shards.tokens(split)
        tokens = tokens[:cap] if cap is not None else tokens
        if len(tokens) < self.cfg.seq_len + 1:
            raise ValueError(
                f"{split} split of {self.cfg.corpus!r} has {len(tokens)} tokens; seq_len="
                f"{self.cfg.seq_len} needs ≥ {self.cfg.seq_len + 1}"
            )
        return tokens

    def train_batch(self, k: int, *, rank: int = 0, world: int = 1) -> tuple[Any, Any]:
        """Training batch number k (a pure function of the run seed and k): all `batch_size`
        windows, or rank `rank`'s block of batch_size / world of them."""
        tokens = self._split("train", self.cfg.n_train_tokens)
        rng = np.random.default_rng([self.seed, k])
        offsets = rng.integers(0, len(tokens) - self.cfg.seq_len, size=self.batch_size)
        if world > 1:
            per_rank_batch(self.batch_size, world)
            block = rank_block(self.batch_size, rank, world)
            offsets = offsets[block.start : block.stop]
        return window_batch(tokens, offsets, self.cfg.seq_len)

    def train_dataloader(self) -> DataLoader:
        rank, world = rank_world(self.trainer)
        return DataLoader(_RandomWindows(self, self._start_batch, rank, world), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        ds = _Windows(self._split("valid", self.cfg.valid_tokens), self.cfg.seq_len)
        return sharded_eval_loader(ds, self.batch_size, self.trainer)

    def test_dataloader(self) -> DataLoader:
        ds = _Windows(self._split("test", self.cfg.valid_tokens), self.cfg.seq_len)
        return sharded_eval_loader(ds, self.batch_size, self.trainer)

    def provenance(self) -> dict[str, Any]:
        """What the run trained and was scored on: corpus and its package versions, tokenizer,
        and each split's token count and sha256 (stored in results as `extra.data`)."""
        m = self.prepared.shards.meta
        keep = (
            "corpus",
            "corpus_hash",
            "corpus_info",
            "tokenizer",
            "tokenizer_fingerprint",
            "vocab_size",
        )
        out: dict[str, Any] = {k: m[k] for k in keep if k in m}
        out["splits"] = {
            s: {k: c[k] for k in ("tokens", "sha256") if k in c} for s, c in m["splits"].items()
        }
        return out

    def eval_tokens(self, split: str = "test") -> np.ndarray:
        """[n] int64: the first `eval_max_tokens` tokens of `split` (all when None)."""
        tokens = self.prepared.shards.tokens(split)
        cap = self.cfg.eval_max_tokens
        return np.asarray(tokens[:cap] if cap is not None else tokens, dtype=np.int64)
