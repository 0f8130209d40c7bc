"""Pruning inside a run: optuna-integration's Lightning callback, reporting per optimiser step.

`PyTorchLightningPruningCallback` reports the monitored metric at every validation and asks the
study's pruner whether to stop. Two changes for this suite's runs, which validate every
`train.eval_every` optimiser steps inside one long epoch: the step of a report is the optimiser
step (the integration's is the epoch, which stays 0 here, so every report after the first would
be dropped), and pruning raises `plans.PrunedRun`, a BaseException, so that `train.run` writes
no result for the cut-short run (its `except Exception` records failed runs only). Validation
at the last step, and the final one after training (`trainer.validate`), are reported but never
pruned: the run has trained all it would.
"""

from __future__ import annotations

from typing import Any

from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from wm_bench.sweeps.plans import PrunedRun


class StepPruning(PyTorchLightningPruningCallback):
    """Report `monitor` at each validation (step = optimiser step); raise PrunedRun when the
    pruner says so during fit.

    Args:
        trial: the Optuna trial of the run.
        monitor: a metric the LightningModule logs at validation, e.g. "valid/loss".
    """

    def __init__(self, trial: Any, monitor: str) -> None:
        super().__init__(trial, monitor)
        self.reported: dict[int, float] = {}

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            return
        step, value = int(trainer.global_step), float(score)
        if step not in self.reported:
            self._trial.report(value, step=step)
            self.reported[step] = value
        finished = trainer.max_steps > 0 and step >= trainer.max_steps  # nothing left to save
        if trainer.state.fn == "fit" and not finished and self._trial.should_prune():
            raise PrunedRun(step, value)
