"""Passkey retrieval (needle in a haystack): a key hidden in filler, asked for at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from wm_bench.data.resumable import DisjointSeeds, SeededSplitsData
from wm_bench.metric_names import passkey_cell

IGNORE_INDEX = -100
# Token ids: three markers, then the key tokens ("digits"), then the filler tokens.
PAD = 0  # right padding of shorter training examples (never labelled)
KEY_OPEN, KEY_CLOSE, QUERY = 1, 2, 3  # "the pass key is", "remember it", "what is the pass key?"
FIRST_KEY_TOKEN = 4
FILLERS = ("repeat", "random")
SENTENCE_SEED = 1234  # the fixed filler "sentence" (the same text for every run and split)


def min_length(key_len: int) -> int:
    """The shortest input length with room for the key block and the query: 2·key_len + 2."""
    return 2 * key_len + 2


def _bad(field: str, value: object, valid: str) -> ValueError:
    return ValueError(f"PasskeyDataConfig.{field}={value!r} is invalid; valid: {valid}")


@dataclass(frozen=True)
class PasskeyDataConfig(DisjointSeeds):
    """Passkey retrieval sets: train/valid at `seq_len` (random depths), a test grid of cells.

    Every example of input length n holds, in order: filler with the key block
    [KEY_OPEN, k₁ … k_K, KEY_CLOSE] inserted at depth δ ∈ [0, 1] (token offset
    round(δ · (n − 2K − 2)) of the haystack: δ = 0 first, δ = 1 just before the question), then
    the question [QUERY, k₁ … k_{K−1}] whose next-token labels are k₁ … k_K: labels sit only on
    the K answer positions (the logits at QUERY predict k₁, and so on). Key tokens are drawn
    uniformly (with repetition) from `key_vocab` ids; filler tokens are the ids above them.

    filler "repeat" tiles one fixed "sentence" of `filler_period` filler tokens (like the
    repeated text of the usual passkey prompt), "random" draws every filler token uniformly.
    Training and validation examples: depth uniform in [0, 1]; length n = seq_len, or with
    `train_min_len` uniform in [train_min_len, seq_len], right-padded with PAD (0, label −100) to
    seq_len. Right padding leaves every labelled position exactly as in the unpadded example (the
    model is causal), so one batch mixes lengths without changing any of them.
    Evaluation: `n_test` examples per (length, depth) of test_lengths × test_depths (test_lengths
    () = (seq_len,)); a length above seq_len measures extrapolation.

    Seeds: run seed s trains on seed `train_seed_offset + s` and validates and tests on
    `test_seed_offset + s` (one independent stream per cell), disjoint for 0 ≤ s < their gap.
    """

    name: Literal["passkey"] = "passkey"
    vocab_size: int = 256  # special tokens, then key_vocab key ids, then filler ids
    seq_len: int = 256  # training and validation length (and padding target)
    key_len: int = 5  # K, key tokens to retrieve
    key_vocab: int = 10  # distinct key tokens
    filler: Literal["repeat", "random"] = "repeat"  # tiled sentence or uniform tokens
    filler_period: int = 24  # tokens in the repeated filler sentence
    n_train: int = 20_000  # training examples
    n_valid: int = 256  # validation examples
    train_min_len: int | None = None  # None: every training example has length seq_len
    test_lengths: tuple[int, ...] = ()  # () means (seq_len,)
    test_depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # δ of each test cell
    n_test: int = 64  # examples per (length, depth) cell
    train_seed_offset: int = 0  # training set of run seed s uses offset + s
    test_seed_offset: int = 1_000_000  # validation and test sets likewise

    def __post_init__(self) -> None:
        for f in ("key_len", "filler_period", "n_train", "n_valid", "n_test"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _bad(f, v, "an int ≥ 1")
        if isinstance(self.key_vocab, bool) or not isinstance(self.key_vocab, int):
            raise _bad("key_vocab", self.key_vocab, "an int ≥ 2")
        if self.key_vocab < 2:
            raise _bad("key_vocab", self.key_vocab, "an int ≥ 2 (one key token is no key)")
        n_fill = self.vocab_size - FIRST_KEY_TOKEN - self.key_vocab
        if n_fill < 2:
            need = FIRST_KEY_TOKEN + self.key_vocab + 2
            raise _bad(
                "vocab_size",
                self.vocab_size,
                f"≥ {need} (3 markers + pad, {self.key_vocab} key "
                "tokens and at least 2 filler tokens)",
            )
        if self.filler not in FILLERS:
            raise _bad("filler", self.filler, str(list(FILLERS)))
        lo = min_length(self.key_len)
        for n in (self.seq_len, *self.test_lengths):
            if isinstance(n, bool) or not isinstance(n, int) or n < lo:
                where = "seq_len" if n == self.seq_len else "test_lengths"
                raise _bad(where, n, f"ints ≥ {lo} (2·key_len + 2: key block and question)")
        m = self.train_min_len
        if m is not None and (
            isinstance(m, bool) or not isinstance(m, int) or not lo <= m <= self.seq_len
        ):
            raise _bad("train_min_len", m, f"None or an int in [{lo}, seq_len={self.seq_len}]")
        if len(set(self.test_lengths)) != len(self.test_lengths):
            raise _bad("test_lengths", self.test_lengths, "distinct lengths")
        if not self.test_depths or len(set(self.test_depths)) != len(self.test_depths):
            raise _bad("test_depths", self.test_depths, "one or more distinct depths in [0, 1]")
        for d in self.test_depths:
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d <= 1.0:
                raise _bad("test_depths", self.test_depths, "depths in [0, 1]")
        if not 0 <= self.train_seed_offset < self.test_seed_offset:
            raise _bad(
                "train_seed_offset",
                self.train_seed_offset,
                f"0 ≤ train_seed_offset < test_seed_offset={self.test_seed_offset}",
            )

    @property
    def lengths(self) -> tuple[int, ...]:
        """The test lengths (seq_len when none are given)."""
        return self.test_lengths or (self.seq_len,)

    def cells(self) -> list[tuple[int, float]]:
        """The test grid: (length, depth) pairs, lengths outer."""
        return [(n, float(d)) for n in self.lengths for d in self.test_depths]


def key_offset(length: int, key_len: int, depth: np.ndarray) -> np.ndarray:
    """Token offset of the key block in the haystack: round(depth · (n − 2K − 2)). [n] int64."""
    room = length - min_length(key_len)
    return np.rint(np.asarray(depth, dtype=np.float64) * room).astype(np.int64)


def generate(
    cfg: PasskeyDataConfig,
    n_examples: int,
    length: int,
    *,
    seed: int | np.random.SeedSequence,
    depth: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Passkey examples of one input length.

    Worked example (K = 2, n = 10, depth 0.5: offset round(0.5 · (10 − 6)) = 2)::

        position:  0   1   2         3   4   5          6   7   8      9
        input:     f₀  f₁  KEY_OPEN  k₁  k₂  KEY_CLOSE  f₂  f₃  QUERY  k₁
        label:     −   −   −         −   −   −          −   −   k₁     k₂

    The haystack is the first n − K positions (filler, the key block at `key_offset`), then
    the question QUERY, k₁ … k_{K−1}; labels k₁ … k_K sit on the last K positions.

    Args:
        cfg: the data config (vocabulary layout, key length, filler).
        n_examples: rows.
        length: input length n (≥ 2·key_len + 2).
        seed: seeds numpy's PCG64 (an int or a SeedSequence); same arguments, same tensors.
        depth: the key's depth in [0, 1] for every row, or None for a uniform depth per row.
    Returns:
        inputs [n_examples, n] int64, labels [n_examples, n] int64 (−100 off the answer),
        depths [n_examples] float64 (the depth each row was built with).
    """
    K = cfg.key_len
    if length < min_length(K):
        raise ValueError(f"passkey length={length} must be ≥ {min_length(K)} (2·key_len + 2)")
    if n_examples < 0:
        raise ValueError(f"passkey n_examples={n_examples} must be ≥ 0")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"passkey depth={depth} must be in [0, 1] (or None: uniform)")
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # One independent stream per part, so that e.g. the filler never shifts the keys.
    rng_key, rng_depth, rng_fill = (np.random.Generator(np.random.PCG64(s)) for s in root.spawn(3))
    n = n_examples
    first_fill = FIRST_KEY_TOKEN + cfg.key_vocab
    keys = rng_key.integers(FIRST_KEY_TOKEN, first_fill, size=(n, K))  # [n, K]
    depths = (
        rng_depth.random(n) if depth is None else np.full(n, float(depth), dtype=np.float64)
    )  # [n]
    n_fill = length - min_length(K)  # filler tokens per row
    if cfg.filler == "repeat":
        words = np.random.Generator(np.random.PCG64(SENTENCE_SEED)).permutation(
            np.arange(first_fill, cfg.vocab_size)
        )  # distinct filler "words" while the period allows
        sentence = np.resize(words, cfg.filler_period)
        fill = np.broadcast_to(np.resize(sentence, n_fill), (n, n_fill))  # [n, n_fill]
    else:
        fill = rng_fill.integers(first_fill, cfg.vocab_size, size=(n, n_fill))
    p = key_offset(length, K, depths)[:, None]  # [n, 1]
    t = np.arange(length + 1)[None, :]  # [1, n + 1]: positions of the full sequence s
    block = np.concatenate(
        [np.full((n, 1), KEY_OPEN), keys, np.full((n, 1), KEY_CLOSE)], axis=1
    )  # [n, K + 2]
    question = np.concatenate([np.full((n, 1), QUERY), keys], axis=1)  # [n, K + 1]
    seq = np.zeros((n, length + 1), dtype=np.int64)
    hay = length - K  # haystack tokens: positions 0 … hay − 1
    before, inside = t < p, (t >= p) & (t < p + K + 2)
    after = (t >= p + K + 2) & (t < hay)
    if n_fill:
        seq = np.where(before, np.take_along_axis(fill, np.minimum(t, n_fill - 1), 1), seq)
        idx = np.clip(t - K - 2, 0, n_fill - 1)
        seq = np.where(after, np.take_along_axis(fill, np.broadcast_to(idx, seq.shape), 1), seq)
    bidx = np.clip(t - p, 0, K + 1)
    seq = np.where(inside, np.take_along_axis(block, bidx, 1), seq)
    seq[:, hay:] = question
    inputs = seq[:, :length]
    labels = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
    labels[:, length - K :] = seq[:, length - K + 1 :]
    return torch.from_numpy(inputs.copy()), torch.from_numpy(labels), torch.from_numpy(depths)


def generate_mixed(
    cfg: PasskeyDataConfig, n_examples: int, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training / validation examples: uniform depths and, with `cfg.train_min_len`, lengths
    uniform in [train_min_len, seq_len], right-padded with PAD (0, label −100) to seq_len.

    Args:
        cfg: the data config.
        n_examples: rows.
        seed: seeds the lengths and, per length, the examples (same seed, same tensors).
    Returns:
        inputs [n_examples, seq_len] int64, labels [n_examples, seq_len] int64.
    """
    if cfg.train_min_len is None:
        x, y, _ = generate(cfg, n_examples, cfg.seq_len, seed=seed)
        return x, y
    rng_len = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0])))
    lengths = rng_len.integers(cfg.train_min_len, cfg.seq_len + 1, size=n_examples)  # [n]
    x = torch.full((n_examples, cfg.seq_len), PAD, dtype=torch.int64)
    y = torch.full((n_examples, cfg.seq_len), IGNORE_INDEX, dtype=torch.int64)
    for n in np.unique(lengths):
        rows = torch.from_numpy(np.flatnonzero(lengths == n))
        xs, ys, _ = generate(cfg, len(rows), int(n), seed=np.random.SeedSequence([seed, int(n)]))
        x[rows, : int(n)], y[rows, : int(n)] = xs, ys
    return x, y


def cell_seed(test_seed: int, length: int, depth: float) -> np.random.SeedSequence:
    """The independent stream of one test cell (same cell, same examples for every model)."""
    return np.random.SeedSequence([test_seed, length, round(depth * 1_000_000)])


def evaluate_grid(
    model: torch.nn.Module, cfg: PasskeyDataConfig, seed: int, *, batch_size: int = 64
) -> dict[str, float]:
    """Key accuracy per (length, depth) cell of `cfg`'s test grid.

    Args:
        model: a LanguageModel.
        cfg: the data config (test_lengths × test_depths, n_test per cell).
        seed: the run seed (the cells use the test seed of it).
        batch_size: rows per forward.
    Returns:
        {passkey_cell(length, depth): fraction of the n_test keys retrieved whole}.
    """
    _, test_seed = cfg.split_seeds(seed)
    was_training = model.training
    model.eval()
    out = {}
    try:
        for length, depth in cfg.cells():
            x, y, _ = generate(
                cfg, cfg.n_test, length, seed=cell_seed(test_seed, length, depth), depth=depth
            )
            out[passkey_cell(length, depth)] = float(
                exact_match(model, x, y, batch_size=batch_size).mean()
            )
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def exact_match(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 64
) -> torch.Tensor:
    """Per example: 1.0 when the arg-max logits get every labelled token right (teacher forcing).

    Every row has its labels on the same last K positions (passkey), so only those positions
    go through the LM head. All right under teacher forcing is exactly greedy decoding writing
    the whole key.

    Args:
        model: a LanguageModel (`hidden`, `head`).
        inputs, labels: [N, n] int64.
        batch_size: rows per forward.
    Returns:
        [N] float32 on the CPU.
    """
    device = next(model.parameters()).device
    labelled = (labels != IGNORE_INDEX).any(0)  # [n]
    first = int(labelled.float().argmax())
    out = []
    for x, y in zip(inputs.split(batch_size), labels.split(batch_size)):
        h, _ = model.hidden(x.to(device))  # [b, n, D]
        pred = model.head(h[:, first:]).argmax(-1).cpu()  # [b, n − first]
        tail = y[:, first:]
        ok = (pred == tail) | (tail == IGNORE_INDEX)
        out.append(ok.all(-1).float())
    return torch.cat(out) if out else torch.zeros(0)


class PasskeyDataModule(SeededSplitsData):
    """Batches of (input_ids [B, n], labels [B, n]) int64 at n = seq_len, labels on the answer.

    Training batches come shuffled, epoch after epoch, as a pure function of (seed, step)
    (`wm_bench.data.resumable`), so a run resumed from a checkpoint continues the same stream;
    validation holds out examples of the training distribution (the test seed's stream).
    `eval_metrics` (called by the run after training) scores the test grid. Under W ranks each
    takes its block of every training batch and of the validation set; `eval_metrics` scores
    the whole grid on every rank (the same model: the same numbers).
    """

    cfg: PasskeyDataConfig

    def generate(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return generate_mixed(self.cfg, n, seed=seed)

    def eval_metrics(self, model: torch.nn.Module, *, device: Any = None) -> dict[str, float]:
        """Key accuracy per (length, depth) of the test grid (`evaluate_grid`)."""
        del device  # the model's own device is used
        return evaluate_grid(model, self.cfg, self.seed, batch_size=max(1, self.batch_size))
