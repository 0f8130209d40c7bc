"""Data sources; this file IS the registry: name -> (LightningDataModule class, config class)."""

from __future__ import annotations

from wm_bench.data.lm import LMDataConfig, LMDataModule
from wm_bench.data.mqar import MqarDataConfig, MqarDataModule
from wm_bench.data.passkey import PasskeyDataConfig, PasskeyDataModule
from wm_bench.data.synthetic import SyntheticDataConfig, SyntheticDataModule

DATASETS: dict[str, tuple[type, type]] = {
    "synthetic": (SyntheticDataModule, SyntheticDataConfig),
    "mqar": (MqarDataModule, MqarDataConfig),
    "lm": (LMDataModule, LMDataConfig),
    "passkey": (PasskeyDataModule, PasskeyDataConfig),
}


def build_datamodule(cfg, *, batch_size: int, seed: int):
    """Instantiate the DataModule registered under `cfg.name`."""
    if cfg.name not in DATASETS:
        raise ValueError(f"unknown data source {cfg.name!r}; valid: {sorted(DATASETS)}")
    return DATASETS[cfg.name][0](cfg, batch_size=batch_size, seed=seed)
