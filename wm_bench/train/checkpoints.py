"""Checkpoints of a run: where they live, how often they are saved (atomically, at optimiser-step
boundaries), resuming from one, and stopping at a signal."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch

from wm_bench import results
from wm_bench.config import RunConfig, config_hash
from wm_bench.train import signals


def checkpoint_path(cfg: RunConfig, out_dir: str | Path) -> Path:
    """<out_dir>/checkpoints/<experiment>/<scale>/<run id>/last.ckpt"""
    rid = results.run_id(cfg.variant, config_hash(cfg))
    return Path(out_dir) / "checkpoints" / cfg.experiment / cfg.scale / rid / "last.ckpt"


def checkpoint_every(cfg: RunConfig) -> int:
    """Steps between checkpoints: the config's, else a twentieth of the run (at least 1)."""
    every = cfg.train.checkpoint_every
    return int(every) if every else max(1, cfg.train.max_steps // 20)


def prepare_checkpoint(cfg: RunConfig, ckpt: Path, force: bool, quiet: bool) -> None:
    """--force: move an old checkpoint aside (and say so); otherwise check the one to resume.

    Rank 0's work alone: with several ranks the others only read the checkpoint (at fit).
    """
    if not ckpt.exists():
        return
    if force or not cfg.train.checkpoint:
        aside = ckpt.with_name("last.ckpt.old")
        os.replace(ckpt, aside)
        why = "--force" if force else "checkpointing is off for this run"
        print(f"{why}: starting fresh; moved the old checkpoint aside to {aside}")
        return
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
        if not isinstance(state, dict) or "state_dict" not in state:
            raise ValueError("no state_dict in it")
    except Exception as e:
        raise ValueError(
            f"checkpoint {ckpt} cannot be read ({type(e).__name__}: {str(e)[:120]}); delete it "
            "to start this run from step 0, or rerun with --force"
        ) from None
    if not quiet:
        print(f"resuming from {ckpt} (step {state.get('global_step', '?')})")


def remove_checkpoint(ckpt: Path) -> None:
    ckpt.unlink(missing_ok=True)
    ckpt.with_name("last.ckpt.old").unlink(missing_ok=True)


class StepCheckpoint(L.Callback):
    """Atomic `last.ckpt` every N optimiser steps, and the step-boundary end of a signal.

    A save writes `last.ckpt.tmp` and renames it, so a kill during the save leaves the previous
    checkpoint whole. With `every=None` nothing is saved (checkpointing off), but a signal still
    stops the run at the step boundary.
    """

    def __init__(self, path: Path, every: int | None, max_steps: int) -> None:
        self.path, self.every, self.max_steps = path, every, max_steps

    def save(self, trainer: L.Trainer) -> None:
        """Every rank takes part (FSDP gathers the shards); Lightning writes on rank 0 only."""
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name("last.ckpt.tmp")
        trainer.save_checkpoint(tmp)  # ends with a barrier: the file is whole on rank 0
        if trainer.is_global_zero:
            os.replace(tmp, self.path)

    @staticmethod
    def _signalled(trainer: L.Trainer) -> bool:
        """A signal is pending on any rank: then every rank stops at this step boundary."""
        pending = signals.pending() is not None
        if trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(pending, all=False))
        return pending

    def on_train_start(self, trainer, pl_module) -> None:
        signals.reinstall()  # Lightning put its own SIGTERM handler in place when fit started

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        if (batch_idx + 1) % accumulate:
            return  # inside an accumulation: act at the optimiser step's boundary only
        if self._signalled(trainer):
            self._stop(trainer)
        if self.every and trainer.global_step % self.every == 0:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.every and trainer.global_step % self.every != 0:
            self.save(trainer)  # the final step, so a kill before the result is written loses none
        if self._signalled(trainer):
            self._stop(trainer)

    def _stop(self, trainer: L.Trainer) -> None:
        signum = signals.pending() or signal.SIGTERM  # (a rank the signal did not reach)
        step = trainer.global_step
        if self.every:
            self.save(trainer)
            what = (
                f"saved step {step}/{self.max_steps} to {self.path}; "
                "rerun the same command to resume"
            )
        else:
            what = (
                f"at step {step}/{self.max_steps}; nothing saved (checkpointing is off: "
                "--checkpoint-every N turns it on), a rerun starts from step 0"
            )
        name = signals.signal_name(signum)
        raise signals.RunInterrupted(signum, f"{name}: {what}")
