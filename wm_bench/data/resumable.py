"""Training batches as a pure function of (run seed, step), so a resumed run sees the same data.

Lightning restarts a map-style DataLoader from the start of its epoch when a run resumes, which
replays batches an interrupted run had already trained on. The DataModules here instead serve
training data as an endless `IterableDataset` that starts at batch `global_step` of the
checkpoint (`ResumableTrainData.state_dict` stores it).

`ShuffledBatches` reproduces exactly the order that
``DataLoader(ds, batch_size=B, shuffle=True, generator=Generator().manual_seed(seed),
drop_last=...)`` gives when Lightning iterates it epoch after epoch: each epoch draws the
loader's base seed from the generator, then one permutation, and the epoch's iterator is left
once its last batch is taken (so the sampler's trailing empty permutation is never drawn).
Results trained before this module existed therefore keep their data order (checked batch by
batch against the old loader), and fast-forwarding to batch k costs only the index
permutations, not the data.

Several processes (DDP, FSDP: docs/scale_out.md). `batch_size` is the global batch. Rank r of
W takes rows [r·B/W, (r+1)·B/W) of every global training batch (`rank_block`), so the ranks'
rows are disjoint and together are exactly the batch one process would train on; validation
and test sets are split the same way into W contiguous blocks (sizes differing by at most one,
no row repeated or dropped), and the module sums losses and counts over the ranks. The rank and
world size come from the Trainer the DataModule is attached to ((0, 1) without one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset


class _Indices(torch.utils.data.Dataset):
    """range(n) as a map-style dataset: drives a DataLoader's sampler without touching data."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _as_list(batch: list[int]) -> list[int]:
    return batch


def rank_world(trainer: Any) -> tuple[int, int]:
    """(global rank, world size) of the Trainer a DataModule is attached to; (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return int(getattr(trainer, "global_rank", 0)), int(getattr(trainer, "world_size", 1))


def rank_block(n: int, rank: int, world: int) -> range:
    """Rank `rank`'s contiguous block of n rows: [rank·n//world, (rank+1)·n//world).

    The W blocks are disjoint, cover range(n) in order and differ in size by at most one.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank={rank} must be in [0, world={world})")
    return range(rank * n // world, (rank + 1) * n // world)


def per_rank_batch(batch_size: int, world: int) -> int:
    """Rows of each global batch that one of `world` ranks trains on; ValueError unless exact."""
    if batch_size % world:
        raise ValueError(
            f"batch_size={batch_size} (the global batch) does not split evenly over {world} "
            f"ranks (devices × num_nodes): use a multiple of {world}"
        )
    return batch_size // world


def sharded_eval_loader(dataset: Dataset, batch_size: int, trainer: Any) -> DataLoader:
    """An evaluation DataLoader over this rank's contiguous block of `dataset`, in order.

    Batches of batch_size / W rows (at least 1) per rank; one process (W = 1) gets the whole set
    in batches of batch_size, as before.
    """
    rank, world = rank_world(trainer)
    if world == 1:
        return DataLoader(dataset, batch_size=batch_size)
    block = rank_block(len(dataset), rank, world)  # type: ignore[arg-type]
    return DataLoader(Subset(dataset, block), batch_size=max(1, batch_size // world))


class ShuffledBatches(IterableDataset):
    """Endless (input_ids [B, T], labels [B, T]) batches of shuffled rows, from batch `start` on.

    Args:
        inputs, labels: [n, T] tensors (all rows of the training set).
        batch_size: B.
        seed: seeds the shuffling generator (as the map-style loader's `generator` did).
        drop_last: drop each epoch's last partial batch.
        start: index of the first batch to yield (0 = from the beginning).
        rank, world: yield only rows `rank_block(B, rank, world)` of each batch (B / world of
            them; W must divide B); (0, 1) = all.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        seed: int,
        drop_last: bool,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if len(inputs) != len(labels):
            raise ValueError(f"inputs ({len(inputs)} rows) and labels ({len(labels)}) differ")
        per_epoch = len(inputs) // batch_size if drop_last else -(-len(inputs) // batch_size)
        if per_epoch < 1:
            raise ValueError(
                f"training set of {len(inputs)} rows gives no batch of batch_size={batch_size} "
                "(drop_last): use a batch size ≤ the number of training rows"
            )
        self.inputs, self.labels = inputs, labels
        self.batch_size, self.seed, self.drop_last, self.start = batch_size, seed, drop_last, start
        self.per_epoch = per_epoch
        per_rank_batch(batch_size, world)
        self.rank, self.world = rank, world

    def index_batches(self) -> Iterator[list[int]]:
        """Row indices of batch 0, 1, 2, … (endless), as the map-style loader drew them."""
        g = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(
            _Indices(len(self.inputs)),
            batch_size=self.batch_size,
            shuffle=True,
            generator=g,
            drop_last=self.drop_last,
            collate_fn=_as_list,
        )
        while True:  # one epoch: the loader draws its base seed, then a permutation
            it = iter(loader)
            for _ in range(self.per_epoch):  # not past the end, as Lightning never asked for it
                yield next(it)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = self.index_batches()
        for _ in range(self.start):  # fast-forward: permutations only, no data
            next(batches)
        for idx in batches:
            if self.world > 1:  # this rank's block of the global batch (a partial last batch too)
                idx = [idx[i] for i in rank_block(len(idx), self.rank, self.world)]
            rows = torch.as_tensor(idx, dtype=torch.int64)
            yield self.inputs[rows], self.labels[rows]


class ResumableTrainData:
    """Mixin for a LightningDataModule whose training stream restarts at `global_step`.

    The DataModule's `state_dict` (saved in every Lightning checkpoint) records the next
    training batch; `load_state_dict` (called before `train_dataloader` on resume) sets it.
    """

    _start_batch: int = 0

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "trainer", None)
        step = getattr(trainer, "global_step", 0) if trainer is not None else 0
        # Checkpoints are saved at optimiser-step boundaries; each step consumed `accumulate`
        # batches (gradient accumulation), so the next batch is step × accumulate.
        accumulate = getattr(trainer, "accumulate_grad_batches", 1) if trainer is not None else 1
        return {"next_train_batch": int(step) * int(accumulate or 1)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._start_batch = int(state.get("next_train_batch", 0))

    def shuffled_loader(
        self, inputs: torch.Tensor, labels: torch.Tensor, *, drop_last: bool | None = None
    ) -> DataLoader:
        """The training loader over (inputs, labels) rows: `ShuffledBatches` from the next batch.

        Uses the DataModule's `batch_size` (global) and `seed`; drop_last None drops each epoch's
        partial batch unless the set is smaller than one batch. Under several ranks each takes
        its block of every batch (module docstring).
        """
        bs = self.batch_size  # type: ignore[attr-defined]
        drop = len(inputs) >= bs if drop_last is None else drop_last
        rank, world = rank_world(getattr(self, "trainer", None))
        stream = ShuffledBatches(
            inputs,
            labels,
            batch_size=bs,
            seed=self.seed,  # type: ignore[attr-defined]
            drop_last=drop,
            start=self._start_batch,
            rank=rank,
            world=world,
        )
        return DataLoader(stream, batch_size=None)


class DisjointSeeds:
    """Seeds of a data config with `train_seed_offset` < `test_seed_offset` fields: run seed s
    trains on seed train_seed_offset + s and evaluates on test_seed_offset + s, so for
    0 ≤ s < `seed_range` no run's evaluation data shares a seed with any run's training data."""

    name: str
    train_seed_offset: int
    test_seed_offset: int

    @property
    def seed_range(self) -> int:
        """Run seeds must lie in [0, seed_range) for the train and test seeds to stay disjoint."""
        return self.test_seed_offset - self.train_seed_offset

    def split_seeds(self, seed: int) -> tuple[int, int]:
        """(train seed, test seed) for run seed `seed`; ValueError outside [0, seed_range)."""
        if not 0 <= seed < self.seed_range:
            raise ValueError(
                f"{self.name} run seed={seed} must be in [0, {self.seed_range}) so that train "
                f"seeds [{self.train_seed_offset}, {self.test_seed_offset}) and test seeds "
                f"[{self.test_seed_offset}, …) stay disjoint"
            )
        return self.train_seed_offset + seed, self.test_seed_offset + seed


class TensorSplitsData(ResumableTrainData, L.LightningDataModule):
    """A DataModule over (inputs [n, T], labels [n, T]) splits built in memory by `make_split`.

    Training batches come shuffled, epoch after epoch, as a pure function of (seed, step)
    (`shuffled_loader`), so a run resumed from a checkpoint continues the same stream; the
    validation (and test) set is split `eval_split`, in order, each rank taking its block.
    Each split is built once per DataModule.
    """

    eval_split = "valid"
    train_drop_last: bool | None = None  # `shuffled_loader`'s drop_last

    def __init__(self, cfg: Any, *, batch_size: int, seed: int) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.seed = cfg, batch_size, seed
        self.vocab_size = cfg.vocab_size
        self._cache: dict[str, TensorDataset] = {}

    def make_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of `split` ("train" or `eval_split`)."""
        raise NotImplementedError

    def dataset(self, split: str) -> TensorDataset:
        if split not in self._cache:
            self._cache[split] = TensorDataset(*self.make_split(split))
        return self._cache[split]

    def train_dataloader(self) -> DataLoader:
        return self.shuffled_loader(*self.dataset("train").tensors, drop_last=self.train_drop_last)

    def val_dataloader(self) -> DataLoader:
        return sharded_eval_loader(self.dataset(self.eval_split), self.batch_size, self.trainer)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class SeededSplitsData(TensorSplitsData):
    """TensorSplitsData over a `DisjointSeeds` config: the train split is `cfg.n_train` rows made
    from the run's train seed, the evaluation split the `eval_rows` field's count made from its
    test seed. A subclass says how rows are made (`generate`)."""

    eval_rows = "n_valid"  # the config field that counts the evaluation rows

    def __init__(self, cfg: Any, *, batch_size: int, seed: int) -> None:
        super().__init__(cfg, batch_size=batch_size, seed=seed)
        self.train_seed, self.test_seed = cfg.split_seeds(seed)

    def generate(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n rows (inputs, labels) as a pure function of `seed`."""
        raise NotImplementedError

    def make_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            return self.generate(self.cfg.n_train, self.train_seed)
        return self.generate(getattr(self.cfg, self.eval_rows), self.test_seed)
