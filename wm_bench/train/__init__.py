"""Training: the LightningModule, DataModules by registry, and run(cfg) -> result record."""

from __future__ import annotations

from wm_bench.train.run import run

__all__ = ["run"]
