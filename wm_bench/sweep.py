"""Optuna driver: per-cell grid sweeps (learning rate × seed) in a journal file, with resume."""

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
    """Run every config through Optuna, one GridSampler study per cell over (lr, seed).

    Every trial calls `run_fn(cfg)`, which writes a normal result JSON (and skips a config whose
    "ok" result exists). The study lives in a journal file, so a rerun resumes: finished grid
    points are not sampled again. Returns the result records in run order.
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
        sampler = optuna.samplers.GridSampler(space, seed=0)
        first = cfgs[0]
        study = optuna.create_study(
            study_name=_study_name(first.experiment, first.scale, cell),
            storage=storage,
            sampler=sampler,
            direction=direction,
            load_if_exists=True,
        )

        def objective(trial: optuna.Trial, space=space, by_point=by_point) -> float:
            nonlocal done
            lr = trial.suggest_categorical("lr", space["lr"])
            seed = trial.suggest_categorical("seed", space["seed"])
            cfg = by_point.get((lr, seed))
            if cfg is None:  # a grid point with no config (the grid is a product): nothing to run
                raise optuna.TrialPruned()
            t0 = time.perf_counter()
            rec = run_fn(cfg)
            records.append(rec)
            done += 1
            trial.set_user_attr("run_id", rec["run_id"])
            value = rec.get("metrics", {}).get(metric)
            elapsed = time.perf_counter() - t_start
            eta = elapsed / done * (total - done)
            status = "skipped (done)" if rec.get("skipped") else rec["status"]
            shown = f"{metric}={value:.4f}" if isinstance(value, (int, float)) else "no metric"
            log(
                f"[{done}/{total}] {cfg.variant} {_tags(cfg)} lr={lr:g} seed={seed}: {status}, "
                f"{shown} ({time.perf_counter() - t0:.1f}s; ETA {eta / 60:.1f} min)"
            )
            if rec["status"] != "ok" or not isinstance(value, (int, float)) or math.isnan(value):
                raise optuna.TrialPruned()  # recorded as failed in results/, not retried blindly
            return float(value)

        n_grid = len(space["lr"]) * len(space["seed"])
        finished = sum(
            t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            for t in study.trials
        )
        if finished < n_grid:
            study.optimize(objective, n_trials=n_grid - finished)
        else:  # everything in this cell already ran: report it from the results files
            for cfg in cfgs:
                rec = run_fn(cfg)
                records.append(rec)
                done += 1
                log(f"[{done}/{total}] {cfg.variant} {_tags(cfg)} lr={cfg.optim.lr:g}: done before")
    return records


def _tags(cfg: RunConfig) -> str:
    skip = {"lr", "seed", "mixer"}
    return " ".join(f"{k}={v}" for k, v in sorted(cfg.tags.items()) if k not in skip)
