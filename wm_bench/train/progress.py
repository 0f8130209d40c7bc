"""A per-run progress bar: optimiser step of max_steps, smoothed training loss, steps/s and ETA.

Lightning's own bar counts batches per epoch, which for our endless training streams has no
total (and no ETA). `StepProgress` counts optimiser steps against `max_steps` instead, starts at
the resumed step of a resumed run, and says what the run is doing after training (validation,
downstream tasks). It draws only on a terminal: with `enabled=False`, or when stderr is not a
TTY (a log file, CI), it prints nothing, so logs keep one line per finished run.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning as L


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (bars redraw in place there only)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


class StepProgress(L.Callback):
    """tqdm bar over optimiser steps with the loss (exponential mean) and ETA.

    Args:
        label: shown left of the bar (e.g. "rope/cpu hybrid_rope s0").
        max_steps: the run's optimiser steps (the bar's total).
        enabled: False draws nothing; None (default) draws when stderr is a terminal.
        smoothing: weight of the newest loss in the displayed exponential mean (0 < w ≤ 1).
        min_interval_s: the loss is read (a device sync on GPU) and the bar redrawn at most this
            often.
    """

    def __init__(
        self,
        label: str,
        max_steps: int,
        *,
        enabled: bool | None = None,
        smoothing: float = 0.1,
        min_interval_s: float = 0.5,
    ) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"StepProgress smoothing={smoothing!r} must be in (0, 1]")
        self.label, self.max_steps = label, int(max_steps)
        self.enabled = stderr_is_terminal() if enabled is None else bool(enabled)
        self.smoothing, self.min_interval_s = smoothing, min_interval_s
        self.bar: Any = None
        self.loss: float | None = None
        self._shown_step = 0
        self._last = 0.0

    # -- training -------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        start = int(trainer.global_step)  # > 0 on a resumed run
        self.bar = tqdm(
            total=self.max_steps,
            initial=start,
            desc=self.label,
            unit="step",
            dynamic_ncols=True,
            leave=False,
            file=sys.stderr,
        )
        self._shown_step = start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        step = int(trainer.global_step)
        if step < self.max_steps and now - self._last < self.min_interval_s:
            return
        self._last = now
        value = _loss_of(outputs)
        if value is not None and math.isfinite(value):
            w = self.smoothing
            self.loss = value if self.loss is None else (1 - w) * self.loss + w * value
        if step > self._shown_step:
            self.bar.update(step - self._shown_step)
            self._shown_step = step
        if self.loss is not None:
            self.bar.set_postfix_str(f"loss {self.loss:.3f}", refresh=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.bar is not None:
            step = int(trainer.global_step)
            if step > self._shown_step:
                self.bar.update(step - self._shown_step)
                self._shown_step = step

    # -- after training ------------------------------------------------------------------------
    def phase(self, text: str) -> None:
        """Say what the run does now that training is over (e.g. "validation")."""
        if self.bar is not None:
            self.bar.set_postfix_str(
                (f"loss {self.loss:.3f}, " if self.loss is not None else "") + text, refresh=True
            )

    def close(self) -> None:
        """Remove the bar (the caller prints the run's one-line summary)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _loss_of(outputs: Any) -> float | None:
    """The training loss in a training_step's outputs (a tensor or a dict with "loss")."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    try:
        return float(loss.detach()) if loss is not None else None
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return None
