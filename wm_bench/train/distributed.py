"""Several processes per run (Lightning DDP / FSDP): the strategy, ranks, and rank-0-only writing.

What a run on W = devices × num_nodes ranks computes is what one process computes with the same
`TrainConfig.batch_size` (the global batch; docs/scale_out.md):
- data: each rank trains on its own block of batch_size / W rows of every global batch and
  evaluates its own block of the validation and test sets (`wm_bench.data.resumable`);
- loss: each rank scales its summed loss by W / (labelled positions of the global batch), so
  DDP's mean of the ranks' gradients is the gradient of the global batch's mean loss, whatever
  the number of labelled positions on each rank; the training loss logged, kept in the curve
  and checked for divergence is the global one (sums reduced over the ranks), so every rank
  stops at the same step;
- validation: summed losses, counts and hits are reduced over the ranks (not a mean of means);
- writing: only global rank 0 writes the result JSON, checkpoints and the saved model; every
  rank runs the whole `run()` (also the evaluations after training, on the whole model), so
  that no rank waits alone in a collective while another works.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from wm_bench.config import TrainConfig

FSDP_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def global_rank() -> int:
    """This process' global rank as Lightning knows it (0 in a one-process run).

    From the environment (RANK, LOCAL_RANK, SLURM_PROCID) until a strategy sets it up, then the
    strategy's global rank.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def is_global_zero() -> bool:
    return global_rank() == 0


def initialized() -> bool:
    """A process group is up (several ranks are training together)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    return torch.distributed.get_world_size() if initialized() else 1


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if initialized():
        torch.distributed.barrier()


def make_strategy(train: TrainConfig) -> Any:
    """The Lightning strategy `train.strategy` names.

    "auto": Lightning's choice (one device: single-device; several: DDP). "ddp": DDPStrategy.
    "fsdp": FSDPStrategy, full sharding, each `wm_bench.model.Block` its own FSDP unit, full
    (one-file) state dicts so checkpoints stay readable by one process; gradient clipping is
    done by `LMModule.configure_gradient_clipping` through FSDP's `clip_grad_norm_`.
    """
    if train.strategy == "auto":
        return "auto"
    if train.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # Every layer here touches all its parameters in every step (an MoE expert no token
        # chose still runs on zero rows), so DDP need not search the graph for unused ones.
        return DDPStrategy(find_unused_parameters=False)
    if train.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from wm_bench.model import Block

        return FSDPStrategy(
            auto_wrap_policy={Block}, sharding_strategy="FULL_SHARD", state_dict_type="full"
        )
    raise ValueError(f"TrainConfig.strategy={train.strategy!r}; valid: auto, ddp, fsdp")


# Set where a launcher (torchrun, srun, Lightning's own for its child ranks) started the process.
LAUNCHER_ENV = ("LOCAL_RANK", "RANK", "SLURM_PROCID", "TORCHELASTIC_RUN_ID")


def launched_externally() -> bool:
    return any(k in os.environ for k in LAUNCHER_ENV)


def main_is_cli() -> bool:
    """This program is the `wm-bench` command line (`wm-bench ...`, `python -m wm_bench.cli`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    return name in ("wm_bench.cli", "wm_bench.cli.__main__") or Path(sys.argv[0]).name == "wm-bench"


def check_devices(train: TrainConfig, accelerator: str) -> None:
    """Refuse, before anything runs or is written, what cannot start on `accelerator` (resolved:
    "cpu" or "cuda"): FSDP off CUDA, more CUDA devices than the machine has, and several ranks
    that Lightning would start by running again a program other than the `wm-bench` command line
    (it reruns `sys.argv`: from pytest or a notebook that is not this run)."""
    if train.world_size > 1 and not launched_externally() and not main_is_cli():
        raise ValueError(
            f"devices × num_nodes = {train.world_size} ranks: Lightning would start the other "
            f"ranks by rerunning this program ({Path(sys.argv[0]).name}), which is only this "
            "run from the `wm-bench` command line; use `wm-bench train/reproduce --devices N`, "
            "or start the ranks with torchrun or srun (docs/scale_out.md)"
        )
    if train.strategy == "fsdp" and accelerator not in ("cuda", "gpu"):
        raise ValueError(
            f"strategy 'fsdp' on accelerator {accelerator!r}: Lightning's FSDP (and torch's "
            "FullyShardedDataParallel under it) runs on CUDA devices only; on CPUs use "
            "--strategy ddp (docs/scale_out.md)"
        )
    if accelerator in ("cuda", "gpu") and torch.cuda.is_available():
        have = torch.cuda.device_count()
        if train.devices > have:
            raise ValueError(
                f"devices={train.devices} but this machine has {have} CUDA device(s); "
                f"use --devices {have} or fewer (and more nodes)"
            )


def is_fsdp(trainer: Any) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return trainer is not None and isinstance(getattr(trainer, "strategy", None), FSDPStrategy)


@contextmanager
def full_params(trainer: Any) -> Iterator[None]:
    """Under FSDP, every rank holds the whole model inside this block (for evaluations that call
    the model directly after training, and for saving it); elsewhere nothing happens."""
    if not (is_fsdp(trainer) and initialized()):
        with nullcontext():
            yield
        return
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with FSDP.summon_full_params(trainer.strategy.model, writeback=False, recurse=True):
        yield


def clean_name(name: str) -> str:
    """A parameter's name without FSDP's wrapper segments (the plain model's name)."""
    for p in FSDP_PREFIXES:
        name = name.replace(p, "")
    return name
