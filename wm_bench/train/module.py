"""LightningModule around the LanguageModel: loss, metrics, AdamW with warm-up + cosine."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from wm_bench.config import RunConfig, to_dict
from wm_bench.model import build_model

IGNORE_INDEX = -100


def lr_lambda(step: int, *, max_steps: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak LR: linear warm-up, then cosine from 1 to `min_ratio` at max_steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def masked_lm_stats(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Summed cross-entropy, number of labelled positions, number of arg-max hits.

    Args:
        logits: [B, T, V] any float dtype (loss computed in fp32).
        labels: [B, T] int64, IGNORE_INDEX where unlabelled.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # [B·T, V]
    flat_labels = labels.reshape(-1)  # [B·T]
    loss_sum = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    mask = flat_labels != IGNORE_INDEX
    hits = (flat_logits.argmax(-1) == flat_labels) & mask
    return loss_sum, mask.sum(), hits.sum()


class LMModule(L.LightningModule):
    """Trains a LanguageModel on (input_ids, labels) batches; logs split/metric names."""

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"run": to_dict(cfg)})
        self.model = build_model(cfg.model, impl=cfg.train.impl)
        # The compiled wrapper shares the model's parameters; kept out of the module tree so the
        # state dict (checkpoints) has one copy under the model's own names.
        self.__dict__["_step_model"] = torch.compile(self.model) if cfg.train.compile else None
        self.final_metrics: dict[str, float] = {}
        # About 100 (step, training loss) points per run, stored in the result's "extra".
        self.curve_every = max(1, cfg.train.max_steps // 100)
        self.curve: list[tuple[int, float]] = []
        self._val: list[Tensor] = []

    def _steps(self, input_ids: Tensor) -> Any:
        """The model for training / validation steps: compiled when TrainConfig.compile."""
        model = self.__dict__["_step_model"]
        return (model if model is not None else self.model)(input_ids)

    def forward(self, input_ids: Tensor) -> Any:
        return self.model(input_ids)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        input_ids, labels = batch
        out = self._steps(input_ids)
        loss_sum, n, _ = masked_lm_stats(out.logits, labels)
        loss = loss_sum / n.clamp_min(1)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        if self.global_step % self.curve_every == 0:  # kept in the result for loss-curve figures
            self.curve.append((int(self.global_step), float(loss.detach())))
        if out.aux_loss.requires_grad:
            self.log("train/aux_loss", out.aux_loss, on_step=True, on_epoch=False)
        return loss + out.aux_loss

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        input_ids, labels = batch
        out = self._steps(input_ids)
        self._val.append(torch.stack([t.double() for t in masked_lm_stats(out.logits, labels)]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        loss_sum, n, hits = torch.stack(self._val).sum(0).tolist()
        n = max(n, 1.0)
        loss = loss_sum / n
        metrics = {
            "valid/loss": loss,
            "valid/ppl": math.exp(min(loss, 50.0)),
            "valid/accuracy": hits / n,
        }
        self.final_metrics = metrics
        for k, v in metrics.items():
            self.log(k, v, prog_bar=k == "valid/accuracy")

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        # Weight decay on matrices only: norms, residual scales, A_log, dt_bias, D stay undecayed.
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": o.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
        )
        max_steps = self.cfg.train.max_steps
        warmup = o.warmup_steps if o.warmup_steps is not None else int(o.warmup_ratio * max_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda s: lr_lambda(s, max_steps=max_steps, warmup=warmup, min_ratio=o.min_lr_ratio),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
