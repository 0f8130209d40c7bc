"""What a run trains on and what it measures there: device and precision, tokens/s, peak
memory, training FLOPs and MFU."""

from __future__ import annotations

import resource
import time
from typing import Any

import lightning as L
import torch

from wm_bench.config import RunConfig
from wm_bench.train.module import LMModule


class Throughput(L.Callback):
    """Training tokens/s measured over optimiser steps only (validation excluded)."""

    def __init__(self, skip_first: int = 1) -> None:
        self.skip_first = skip_first  # the first steps pay one-off costs (allocation, compile)
        self.tokens = 0
        self.seconds = 0.0
        self.steps = 0
        self.seq_len = 0
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.steps > self.skip_first:
            self.seconds += time.perf_counter() - self._t0
            self.tokens += batch[0].numel()
            self.seq_len = int(batch[0].shape[-1])

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None


def resolve_device(cfg: RunConfig) -> tuple[str, str]:
    """(accelerator, precision) after resolving "auto" (CUDA when present, else CPU)."""
    acc = cfg.train.accelerator
    if acc == "auto":
        acc = "cuda" if torch.cuda.is_available() else "cpu"
    prec = cfg.train.precision
    if prec == "auto":
        prec = "bf16-mixed" if acc == "cuda" else "32-true"
    return acc, prec


def device_info(accelerator: str, cfg: RunConfig | None = None) -> dict[str, Any]:
    """What the run trains on; with several ranks also the strategy, devices per node, nodes."""
    if accelerator == "cuda" and torch.cuda.is_available():
        out: dict[str, Any] = {
            "type": "cuda",
            "name": torch.cuda.get_device_name(),
            "count": torch.cuda.device_count(),
        }
    else:
        out = {"type": "cpu", "threads": torch.get_num_threads()}
    if cfg is not None and cfg.train.world_size > 1:
        t = cfg.train
        out.update(
            strategy=t.strategy, devices=t.devices, num_nodes=t.num_nodes, world_size=t.world_size
        )
    return out


def peak_memory_bytes(accelerator: str) -> int:
    if accelerator == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # process-wide on CPU


def utilisation(module: LMModule, tput: Throughput, accelerator: str) -> dict[str, Any]:
    """Training FLOPs per token (`wm_bench.flops`), achieved TFLOP/s and MFU (None off-GPU)."""
    from wm_bench.flops import flops_per_token, mfu

    if not tput.seq_len:
        return {}
    f = flops_per_token(module.model, tput.seq_len)
    name = torch.cuda.get_device_name() if accelerator == "cuda" else None
    return {
        "train_flops_per_token": f["train_flops_per_token"],
        **mfu(tput.tokens_per_s, f["train_flops_per_token"], name),
    }
