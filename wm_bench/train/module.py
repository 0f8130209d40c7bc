"""LightningModule around the LanguageModel: loss, metrics, AdamW with warm-up + cosine.

On several ranks (DDP, FSDP) the loss, its divergence check and the validation metrics are those
of the global batch and of the whole validation set (`wm_bench.train.distributed`).
"""

from __future__ import annotations

import math
import random
from typing import Any

import lightning as L
import numpy as np
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
        logits: [B, T, V] (or [M, V] for M selected positions), any float dtype (loss in fp32).
        labels: [B, T] (or [M]) int64, IGNORE_INDEX where unlabelled.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # [B·T, V]
    flat_labels = labels.reshape(-1)  # [B·T]
    loss_sum = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    mask = flat_labels != IGNORE_INDEX
    hits = (flat_logits.argmax(-1) == flat_labels) & mask
    return loss_sum, mask.sum(), hits.sum()


def _numpy_state() -> dict[str, Any]:
    """numpy's global RNG state as plain values (checkpoints load with weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(s: dict[str, Any]) -> None:
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["gauss"]))


class Diverged(Exception):
    """A non-finite training loss or gradient norm: the run stops at that step.

    Attributes:
        step: the optimiser step (0-based, `global_step` before the update) where it happened.
        quantity: "loss" or "grad_norm".
        value: the non-finite value (as text: nan, inf, -inf).
        last_finite_loss: the last finite training loss seen before it (None if none).
    """

    def __init__(self, step: int, quantity: str, value: float, last_finite_loss: float | None):
        self.step, self.quantity, self.value = int(step), quantity, str(float(value))
        self.last_finite_loss = last_finite_loss
        last = "none" if last_finite_loss is None else f"{last_finite_loss:.6g}"
        super().__init__(
            f"diverged at step {self.step}: training {quantity} is {self.value} "
            f"(last finite loss {last})"
        )

    def record(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "quantity": self.quantity,
            "value": self.value,
            "last_finite_loss": self.last_finite_loss,
        }


class LMModule(L.LightningModule):
    """Trains a LanguageModel on (input_ids, labels) batches; logs split/metric names."""

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"run": to_dict(cfg)})
        self.model = build_model(cfg.model, impl=cfg.train.impl)
        # The compiled wrapper shares the model's parameters; kept out of the module tree so the
        # state dict (checkpoints) has one copy under the model's own names.
        self.__dict__["_step_model"] = (
            torch.compile(self.model.hidden) if cfg.train.compile else None
        )
        self.final_metrics: dict[str, float] = {}
        # About 100 (step, training loss) points per run, stored in the result's "extra".
        self.curve_every = max(1, cfg.train.max_steps // 100)
        self.curve: list[tuple[int, float]] = []
        self.last_finite_loss: float | None = None
        self.resumed_from_step: int | None = None  # set when training resumed from a checkpoint
        # Gradient scaling (16-mixed) makes inf gradients on purpose and skips those steps.
        self.check_grad_norm = cfg.train.precision != "16-mixed"
        self._val: list[Tensor] = []
        # Matrices get weight decay (`configure_optimizers`); decided by name here, on the plain
        # model, because FSDP later flattens the parameters it shards.
        self._decay_names = {n for n, p in self.model.named_parameters() if p.dim() >= 2}

    def _world(self) -> int:
        """Ranks training together (1 without a Trainer)."""
        trainer = getattr(self, "_trainer", None)
        return int(trainer.world_size) if trainer is not None else 1

    def _sum_over_ranks(self, t: Tensor) -> Tensor:
        """Element-wise sum of `t` over the ranks (all-reduce; `t` itself when alone)."""
        if self._world() == 1:
            return t
        return self.trainer.strategy.reduce(t.clone(), reduce_op="sum")

    def _steps(self, input_ids: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits [M, V] or [B, T, V], their labels, aux loss) for a training / validation step.

        The body runs compiled when TrainConfig.compile. Where fewer than half the positions
        carry a label (MQAR: kv of L), the LM head and the loss run on the labelled positions
        only; the loss and accuracy are the same sums over the same positions (up to float
        rounding), at a fraction of the head's cost when the vocabulary is large.
        """
        hidden = self.__dict__["_step_model"] or self.model.hidden
        h, aux = hidden(input_ids)  # [B, T, D]
        mask = labels != IGNORE_INDEX
        if int(mask.sum()) * 2 < mask.numel():
            return self.model.head(h[mask]), labels[mask], aux  # [M, V], [M]
        return self.model.head(h), labels, aux

    def forward(self, input_ids: Tensor) -> Any:
        return self.model(input_ids)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        input_ids, labels = batch
        logits, targets, aux_loss = self._steps(input_ids, labels)
        loss_sum, n, _ = masked_lm_stats(logits, targets)
        world = self._world()
        if world == 1:
            loss = loss_sum / n.clamp_min(1)
            global_loss = loss.detach()
        else:
            # This rank's rows are a block of the global batch: scaled by W / (labelled positions
            # of the whole batch), DDP's mean over the ranks is the global batch's mean loss.
            totals = self._sum_over_ranks(torch.stack([loss_sum.detach().double(), n.double()]))
            count = totals[1].clamp_min(1)
            loss = loss_sum * (world / count).to(loss_sum.dtype)
            global_loss = (totals[0] / count).float()
        value = float(global_loss)  # the same on every rank: all stop at the same step
        if not math.isfinite(value):
            raise Diverged(self.global_step, "loss", value, self.last_finite_loss)
        self.last_finite_loss = value
        self.log("train/loss", global_loss, prog_bar=True, on_step=True, on_epoch=False)
        if self.global_step % self.curve_every == 0:  # kept in the result for loss-curve figures
            self.curve.append((int(self.global_step), value))
        if aux_loss.requires_grad:  # per rank's rows; logged as the mean over the ranks
            self.log("train/aux_loss", aux_loss, on_step=True, on_epoch=False, sync_dist=world > 1)
        return loss + aux_loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Stop on a non-finite gradient norm (before clipping would hide it in the update)."""
        if not self.check_grad_norm:
            return
        grads = [p.grad.detach() for p in self.parameters() if p.grad is not None]
        norm = (
            float(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])))
            if grads
            else 0.0
        )
        bad = not math.isfinite(norm)
        if self._world() > 1:  # FSDP shards the gradients: any rank's bad shard stops them all
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise Diverged(
                self.global_step,
                "grad_norm",
                norm if not math.isfinite(norm) else float("nan"),
                self.last_finite_loss,
            )

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        """Clip by the global norm; under FSDP through the root module's `clip_grad_norm_`
        (the norm over every rank's shard), which Lightning's FSDP precision does not do."""
        from wm_bench.train.distributed import is_fsdp

        trainer = getattr(self, "_trainer", None)
        if is_fsdp(trainer):
            if self.cfg.optim.grad_clip:
                trainer.strategy.model.clip_grad_norm_(self.cfg.optim.grad_clip)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep what the result needs from the whole run, and the RNG states, in the checkpoint."""
        checkpoint["wm_bench"] = {
            "curve": [list(p) for p in self.curve],
            "last_finite_loss": self.last_finite_loss,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_state(),
                "python": random.getstate(),
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("wm_bench") or {}
        self.curve = [(int(s), float(v)) for s, v in state.get("curve", [])]
        self.last_finite_loss = state.get("last_finite_loss")
        self.resumed_from_step = int(checkpoint.get("global_step", 0))
        rng = state.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            _set_numpy_state(rng["numpy"])
            random.setstate(rng["python"])

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        input_ids, labels = batch
        logits, targets, _ = self._steps(input_ids, labels)
        stats = [t.double() for t in masked_lm_stats(logits, targets)]
        self._val.append(torch.stack([*stats, torch.ones_like(stats[0])]))  # + one batch

    def on_validation_epoch_end(self) -> None:
        """valid/loss, ppl, accuracy over the whole set: sums of every rank's block, reduced
        before dividing (every rank takes part, also one whose block is empty)."""
        if self._val:
            totals = torch.stack(self._val).sum(0)
        else:
            totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        loss_sum, n, hits, batches = self._sum_over_ranks(totals).tolist()
        if not batches:
            return
        n = max(n, 1.0)
        loss = loss_sum / n
        metrics = {
            "valid/loss": loss,
            "valid/ppl": math.exp(min(loss, 50.0)),
            "valid/accuracy": hits / n,
        }
        self.final_metrics = metrics
        for k, v in metrics.items():  # already global: the same value on every rank
            self.log(k, v, prog_bar=k == "valid/accuracy", sync_dist=self._world() > 1)

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        from wm_bench.train.distributed import clean_name

        # Weight decay on matrices only: norms, residual scales, A_log, dt_bias, D stay undecayed.
        named = [(clean_name(n), p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if n in self._decay_names]
        no_decay = [p for n, p in named if n not in self._decay_names]
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
