"""Multi-query associative recall (MQAR, Arora et al. 2023, "Zoology"): generator and DataModule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from wm_bench.data.resumable import DisjointSeeds, SeededSplitsData

IGNORE_INDEX = -100
_CHUNK_ELEMENTS = 1 << 22  # rows × pool entries held at once while sampling (≈ 32 MB of int64)


def check_mqar_args(seq_len: int, num_kv_pairs: int, vocab_size: int) -> None:
    """Raise ValueError naming the violated limit: L even, V > L, 4·kv ≤ L, enough tokens.

    The limits of docs/spec.md §5.

    Args:
        seq_len: L, the model's input length.
        num_kv_pairs: kv, key-value pairs per example.
        vocab_size: V, the vocabulary size.
    """
    if seq_len < 4 or seq_len % 2:
        raise ValueError(
            f"MQAR seq_len={seq_len} must be even and ≥ 4 (queries sit at even offsets)"
        )
    if num_kv_pairs < 1:
        raise ValueError(f"MQAR num_kv_pairs={num_kv_pairs} must be ≥ 1")
    if 4 * num_kv_pairs > seq_len:
        raise ValueError(
            f"MQAR num_kv_pairs={num_kv_pairs} too many for seq_len={seq_len}: need 4·kv ≤ L, "
            f"i.e. kv ≤ {seq_len // 4} (2·kv context + kv query slots at even offsets)"
        )
    n_keys, n_values = vocab_size // 2 - 1, vocab_size - vocab_size // 2
    if num_kv_pairs > min(n_keys, n_values):
        raise ValueError(
            f"MQAR vocab_size={vocab_size} has {n_keys} keys (1..V/2−1) and {n_values} values "
            f"(V/2..V−1): too few for num_kv_pairs={num_kv_pairs} distinct ones; need "
            f"kv ≤ {min(n_keys, n_values)}"
        )
    if vocab_size <= seq_len:
        raise ValueError(f"MQAR vocab_size={vocab_size} must exceed seq_len={seq_len} (V > L)")


def _ordered_sample(
    rng: np.random.Generator, n: int, pool: int, k: int, log_weights: np.ndarray | None = None
) -> np.ndarray:
    """k distinct draws from range(pool) for each of n rows, in draw order.

    Uniform (log_weights None): a partial Fisher–Yates shuffle, vectorised over rows.
    Weighted: Gumbel-top-k, which has exactly the law of successive draws without replacement
    with p ∝ exp(log_weights) (Plackett–Luce), the law numpy's `choice(replace=False, p=…)` aims at.

    Returns:
        [n, k] int64.
    """
    out = np.empty((n, k), dtype=np.int64)
    rows = max(1, _CHUNK_ELEMENTS // pool)
    for s in range(0, n, rows):
        m = min(rows, n - s)
        if log_weights is None:
            perm = np.broadcast_to(np.arange(pool, dtype=np.int64), (m, pool)).copy()  # [m, pool]
            r = np.arange(m)
            for i in range(k):
                j = rng.integers(i, pool, size=m)  # swap position i with a random later one
                perm[r, i], perm[r, j] = perm[r, j], perm[r, i]
            out[s : s + m] = perm[:, :k]
        else:
            score = log_weights[None, :] + rng.gumbel(size=(m, pool))  # [m, pool]
            top = np.argpartition(-score, k - 1, axis=1)[:, :k]  # the k largest, unordered
            order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1, kind="stable")
            out[s : s + m] = np.take_along_axis(top, order, axis=1)
    return out


def generate(
    n_examples: int,
    seq_len: int,
    num_kv_pairs: int,
    vocab_size: int,
    *,
    seed: int,
    power_a: float = 0.01,
    random_filler: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MQAR examples with the semantics of Zoology's `multiquery_ar` (docs/spec.md §5).

    Each example draws kv distinct keys uniformly from 1 … V/2−1 (V/2 = V // 2) and kv distinct
    values from V/2 … V−1, and writes them interleaved k₁ v₁ k₂ v₂ … at positions 0 … 2kv−1. The
    rest of the row is filler (0, or uniform tokens in [0, V) with `random_filler`), except that
    key j appears once more as a query at position 2kv + 2·gⱼ. The gaps gⱼ are kv distinct draws
    from {0, …, (L−2kv)/2 − 1} with p(g) ∝ (g+1)^(a−1) (Zoology's `arange(1, space+1)`), in draw
    order, so early keys tend to be queried first.

    Alignment (our reading of Zoology): Zoology builds a length-(L+1) sequence whose label for
    a query sits one position AFTER the query key, then returns inputs = seq[:-1] and
    labels = labels[1:]. After that shift the label sits at the query key's OWN position: the
    logits at position t, having read the query key, must predict its value. These tensors are
    therefore already aligned with the logits (no further shift in the loss), as the suite's
    DataModules require. Exactly kv labels per example; every other label is −100.

    Worked example (zeros filler)::

        x, y = generate(1, seq_len=16, num_kv_pairs=2, vocab_size=20, seed=1)
        position:  0    1    2    3    4    5    6    7    8    …    15
        x[0]:      1    19   7    15   7    0    1    0    0    …    0
        y[0]:      -100 -100 -100 -100 15   -100 19   -100 -100 …    -100

    Keys 1, 7 ∈ 1…9 carry values 19, 15 ∈ 10…19; the context is positions 0…3. Key 7 is queried
    at 4 + 2·0 = 4 (label 15, its value) and key 1 at 4 + 2·1 = 6 (label 19).

    Args:
        n_examples: number of rows n.
        seq_len: L (even; 4·kv ≤ L; V > L).
        num_kv_pairs: kv pairs per example.
        vocab_size: V.
        seed: seeds a numpy Generator (PCG64); the same arguments give the same tensors.
        power_a: a of the gap law p(g) ∝ (g+1)^(a−1); a = 1 is uniform.
        random_filler: replace the filler zeros with uniform tokens from [0, V) (Zoology's
            `random_non_queries`; they may collide with keys/values); default False = zeros.
    Returns:
        inputs [n, L] int64 and labels [n, L] int64 (−100 = ignore).
    """
    check_mqar_args(seq_len, num_kv_pairs, vocab_size)
    if n_examples < 0:
        raise ValueError(f"MQAR n_examples={n_examples} must be ≥ 0")
    if power_a <= 0:
        raise ValueError(f"MQAR power_a={power_a} must be > 0")
    n, kv, half = n_examples, num_kv_pairs, vocab_size // 2
    # One independent stream per part, so that e.g. the filler never shifts the keys.
    rng_k, rng_v, rng_g, rng_f = (
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(4)
    )
    keys = 1 + _ordered_sample(rng_k, n, half - 1, kv)  # [n, kv] in 1 … V/2−1
    values = half + _ordered_sample(rng_v, n, vocab_size - half, kv)  # [n, kv] in V/2 … V−1
    context = 2 * kv
    space = (seq_len - context) // 2
    log_w = (power_a - 1.0) * np.log(np.arange(1, space + 1, dtype=np.float64))  # [space]
    gaps = _ordered_sample(rng_g, n, space, kv, log_w)  # [n, kv] distinct in 0 … space−1

    inputs = np.zeros((n, seq_len), dtype=np.int64)
    labels = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int64)
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    query_pos = context + 2 * gaps  # [n, kv], even offsets after the context, ≤ L − 2
    np.put_along_axis(inputs, query_pos, keys, axis=1)
    np.put_along_axis(labels, query_pos, values, axis=1)
    if random_filler:
        filler = np.ones((n, seq_len), dtype=bool)
        filler[:, :context] = False
        np.put_along_axis(filler, query_pos, False, axis=1)
        inputs[filler] = rng_f.integers(0, vocab_size, size=int(filler.sum()))
    return torch.from_numpy(inputs), torch.from_numpy(labels)


@dataclass(frozen=True)
class MqarDataConfig(DisjointSeeds):
    """An MQAR train/test pair of fixed-size sets (docs/spec.md §5).

    Seeds: the train set of run seed s is generated with seed `train_seed_offset + s`, the test set
    with `test_seed_offset + s`. With the defaults (0 and 1_000_000) and 0 ≤ s < 1_000_000 the two
    ranges are disjoint, so no run's test set shares a seed with any run's train set. Runs with the
    same seed (e.g. the LRs of one grid cell) see identical data.
    """

    name: Literal["mqar"] = "mqar"
    seq_len: int = 64  # tokens per row (L)
    num_kv_pairs: int = 4  # key-value pairs per row (kv); each key is queried once
    vocab_size: int = 8192  # V: keys from 1 … V/2−1, values from V/2 … V−1
    n_train: int = 100_000  # training rows, generated once per seed
    n_test: int = 3_000  # test rows, also the validation set
    power_a: float = 0.01  # query gaps drawn with p(g) ∝ (g+1)^(a−1)
    random_filler: bool = False  # filler is uniform tokens instead of 0
    train_seed_offset: int = 0  # train set of run seed s uses seed offset + s
    test_seed_offset: int = 1_000_000  # likewise for the test set; must exceed the train offset

    def __post_init__(self) -> None:
        check_mqar_args(self.seq_len, self.num_kv_pairs, self.vocab_size)
        for fname in ("n_train", "n_test"):
            if getattr(self, fname) < 1:
                raise ValueError(f"MqarDataConfig.{fname}={getattr(self, fname)} must be ≥ 1")
        if self.power_a <= 0:
            raise ValueError(f"MqarDataConfig.power_a={self.power_a} must be > 0")
        if not 0 <= self.train_seed_offset < self.test_seed_offset:
            raise ValueError(
                f"MqarDataConfig seed offsets train={self.train_seed_offset}, "
                f"test={self.test_seed_offset}: need 0 ≤ train_seed_offset < test_seed_offset"
            )


class MqarDataModule(SeededSplitsData):
    """Batches of (input_ids [B, L], labels [B, L]) int64, labels aligned with the logits.

    Training batches come shuffled, epoch after epoch, as a pure function of (seed, step)
    (`wm_bench.data.resumable`), so a run resumed from a checkpoint continues the same stream.
    Under W ranks each takes its block of every training batch and of the test set, which is
    also the validation set (docs/spec.md §5 reports accuracy on it).
    """

    eval_split = "test"
    eval_rows = "n_test"
    cfg: MqarDataConfig

    def generate(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        return generate(
            n,
            c.seq_len,
            c.num_kv_pairs,
            c.vocab_size,
            seed=seed,
            power_a=c.power_a,
            random_filler=c.random_filler,
        )
