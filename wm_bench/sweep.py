"""Optuna driver: per-cell grids (learning rate × seed), results/ as the record, a journal study."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wm_bench.config import RunConfig, canonical_json

RunFn = Callable[[RunConfig], dict[str, Any]]


def group_cells(
    configs: Sequence[RunConfig], cell_key: Callable[[RunConfig], tuple]
) -> dict[tuple, list[RunConfig]]:
    """Group run configs by cell (everything but the swept values), keeping first-seen order."""
    cells: dict[tuple, list[RunConfig]] = {}
    for cfg in configs:
        cells.setdefault(cell_key(cfg), []).append(cfg)
    return cells


def _study_name(experiment: str, scale: str, cell: tuple) -> str:
    digest = hashlib.sha256(canonical_json([str(c) for c in cell]).encode()).hexdigest()[:12]
    return f"{experiment}-{scale}-{digest}"


def _storage(path: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return JournalStorage(JournalFileBackend(str(path)))


def sweep_cells(
    configs: Sequence[RunConfig],
    *,
    cell_key: Callable[[RunConfig], tuple],
    metric: str,
    direction: str = "maximize",
    journal: Path,
    run_fn: RunFn,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every config, cell by cell, and record each finished run as a trial of its cell's study.

    `run_fn(cfg)` writes a normal result JSON and skips a config whose finished result exists, so
    the results folder is what says which grid points are done: a rerun after a kill continues
    with the first point that has no result. Each cell's Optuna study (in the journal) gets one
    trial per finished run, added after the run: COMPLETE with the metric for "ok", FAIL for
    "failed" and "diverged" (the status is kept in the trial's user attributes). No trial is ever
    left RUNNING by a killed process. Returns the result records in run order.
    """
    import optuna

    storage = _storage(journal)
    cells = group_cells(configs, cell_key)
    total = len(configs)
    done = 0
    t_start = time.perf_counter()
    records: list[dict[str, Any]] = []
    for cell, cfgs in cells.items():
        by_point = {(c.optim.lr, c.seed): c for c in cfgs}
        if len(by_point) != len(cfgs):
            raise ValueError(f"cell {cell}: two configs share the same (lr, seed)")
        space = {
            "lr": sorted({c.optim.lr for c in cfgs}),
            "seed": sorted({c.seed for c in cfgs}),
        }
        first = cfgs[0]
        study = optuna.create_study(
            study_name=_study_name(first.experiment, first.scale, cell),
            storage=storage,
            direction=direction,
            load_if_exists=True,
        )
        recorded = {t.user_attrs.get("run_id") for t in study.get_trials(deepcopy=False)}
        for cfg in cfgs:
            t0 = time.perf_counter()
            rec = run_fn(cfg)
            records.append(rec)
            done += 1
            value = rec.get("metrics", {}).get(metric)
            elapsed = time.perf_counter() - t_start
            eta = elapsed / done * (total - done)
            status = f"skipped ({rec['status']} before)" if rec.get("skipped") else rec["status"]
            shown = f"{metric}={value:.4f}" if isinstance(value, (int, float)) else "no metric"
            log(
                f"[{done}/{total}] {cfg.variant} {_tags(cfg)} lr={cfg.optim.lr:g} "
                f"seed={cfg.seed}: {status}, {shown} ({time.perf_counter() - t0:.1f}s; "
                f"ETA {eta / 60:.1f} min)"
            )
            if rec["run_id"] not in recorded:
                study.add_trial(_trial(rec, cfg, space, value))
                recorded.add(rec["run_id"])
    return records


def _trial(rec: dict[str, Any], cfg: RunConfig, space: dict[str, list], value: Any):
    """A finished Optuna trial for one result record (see `sweep_cells`)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    ok = rec["status"] == "ok" and isinstance(value, (int, float)) and math.isfinite(value)
    return optuna.trial.create_trial(
        params={"lr": cfg.optim.lr, "seed": cfg.seed},
        distributions={k: CategoricalDistribution(v) for k, v in space.items()},
        value=float(value) if ok else None,
        state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
        user_attrs={"run_id": rec["run_id"], "status": rec["status"]},
    )


def _tags(cfg: RunConfig) -> str:
    skip = {"lr", "seed", "mixer"}
    return " ".join(f"{k}={v}" for k, v in sorted(cfg.tags.items()) if k not in skip)
