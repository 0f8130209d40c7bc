"""Optuna driver of `wm-bench reproduce`: per-cell (learning rate × seed) studies, split between
workers through one storage (`wm_bench.sweeps`), results/ as the record."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wm_bench.config import RunConfig, canonical_json

RunFn = Callable[[RunConfig], dict[str, Any]]
_ASK_RUN_FN: Any = object()  # results_dir not given: run_fn alone decides what is done


def select_by_tags(items: Sequence[Any], only: Sequence[str], *, what: str) -> list[Any]:
    """The items (run configs, timing points: anything with a `tags` dict) that match every
    `KEY=VALUE` of `only` (`--only`); KEY `variant` also matches an item's `variant`.

    Raises ValueError naming a condition that is not KEY=VALUE, or keys that are no item's tag
    (with `what`, the experiment, and the valid keys).
    """
    conditions = []
    for cond in only:
        key, eq, value = cond.partition("=")
        if not eq:
            raise ValueError(f"--only {cond!r}: expected KEY=VALUE, e.g. mixer=dma")
        conditions.append((key, value))
    tags = sorted({k for item in items for k in item.tags})
    bad = sorted({k for k, _ in conditions} - set(tags) - {"variant"})
    if bad:
        raise ValueError(f"--only key(s) {bad} are not tags of {what}; valid: {tags}")

    def value_of(item: Any, key: str) -> str:
        if key == "variant" and hasattr(item, "variant"):
            return item.variant
        return str(item.tags.get(key))

    return [x for x in items if all(value_of(x, k) == v for k, v in conditions)]


def group_cells(
    configs: Sequence[RunConfig], cell_key: Callable[[RunConfig], tuple]
) -> dict[tuple, list[RunConfig]]:
    """Group run configs by cell (everything but the swept values), keeping first-seen order."""
    cells: dict[tuple, list[RunConfig]] = {}
    for cfg in configs:
        cells.setdefault(cell_key(cfg), []).append(cfg)
    return cells


def _study_name(experiment: str, scale: str, cell: tuple) -> str:
    # "-v2": lr a log-float and seed an int parameter, so that a cell whose seeds grow
    # (--until-decided) keeps its study; the v1 studies (categorical) of old journals stay as
    # they were, and the points they recorded are settled by their result files.
    digest = hashlib.sha256(canonical_json([str(c) for c in cell]).encode()).hexdigest()[:12]
    return f"{experiment}-{scale}-{digest}-v2"


def sweep_cells(
    configs: Sequence[RunConfig],
    *,
    cell_key: Callable[[RunConfig], tuple],
    metric: str,
    direction: str = "maximize",
    storage: str | Path | None = None,
    journal: Path | None = None,
    run_fn: RunFn,
    results_dir: str | Path | None = _ASK_RUN_FN,
    force: bool = False,
    session: str | None = None,
    log: Callable[[str], None] = print,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> list[dict[str, Any]]:
    """Run every config, cell by cell, sharing the work with every worker on the same storage.

    Each cell is an Optuna study whose points are its configs ((lr, seed) parameters, the run id
    as the key). A worker claims one point at a time under the storage's lock (`sweeps.engine`),
    so two workers, here or on other machines, split the grid and never run one point at once.
    `run_fn(cfg)` writes a normal result JSON; a config whose finished result (ok or diverged)
    is in `results_dir` is not run again and is recorded as a trial of its cell (without
    `results_dir`, every point is claimed and `run_fn` skips what is done): the results
    folder says which points are done (delete a result file, or pass `force`, to rerun it). Runs
    that end "ok" are COMPLETE with the metric, "failed" and "diverged" FAIL (the status in the
    trial's user attributes); a failed run is retried by the next command, not by this one. A
    killed worker's point is failed after the grace period and taken by another worker.

    Args:
        storage: an Optuna storage URL (`sweeps.storage.parse_storage`) or a journal file
            (`journal`, the old name, is accepted for it).
        session: shared by the local workers of one command (`sweeps.workers`).
        heartbeat_interval, grace_period: seconds (default: `sweeps.storage`'s).
    Returns:
        This worker's records (its runs and the points it found done), in order.
    """
    from wm_bench.config import config_hash
    from wm_bench.results import run_id
    from wm_bench.sweeps import storage as st
    from wm_bench.sweeps.engine import Worker
    from wm_bench.sweeps.plans import FinitePlan, Point, done_in

    target = storage if storage is not None else journal
    if target is None:
        raise ValueError("sweep_cells: give storage (a URL or a journal file)")
    spec = st.parse_storage(target)
    st.check_storage(spec)
    plans = []
    for cell, cfgs in group_cells(configs, cell_key).items():
        by_point = {(c.optim.lr, c.seed): c for c in cfgs}
        if len(by_point) != len(cfgs):
            raise ValueError(f"cell {cell}: two configs share the same (lr, seed)")
        points = [
            Point(
                run_id(c.variant, config_hash(c)),
                {"lr": c.optim.lr, "seed": c.seed},
                c,
                f"{c.variant} {_tags(c)} lr={c.optim.lr:g} seed={c.seed}".replace("  ", " "),
            )
            for c in cfgs
        ]
        plans.append(
            FinitePlan(
                _study_name(cfgs[0].experiment, cfgs[0].scale, cell),
                points,
                _distributions(cfgs),
                done=None if results_dir is _ASK_RUN_FN else done_in(results_dir),
                force=force,
            )
        )
    beat = {
        k: v
        for k, v in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period))
        if v is not None
    }
    backend = st.Backend(spec, **beat)
    try:
        worker = Worker(
            backend,
            session=session or uuid.uuid4().hex[:12],
            direction=direction,
            metric=metric,
            run_fn=lambda cfg, _callbacks: run_fn(cfg),
            on_invalid="raise",
            log=log,
        )
        return worker.work(plans)
    finally:
        backend.close()


def _distributions(cfgs: Sequence[RunConfig]) -> dict[str, Any]:
    from optuna.distributions import FloatDistribution, IntDistribution

    lrs, seeds = [c.optim.lr for c in cfgs], [c.seed for c in cfgs]
    return {
        "lr": FloatDistribution(min(lrs), max(lrs), log=True),
        "seed": IntDistribution(min(seeds), max(seeds)),
    }


def _tags(cfg: RunConfig) -> str:
    skip = {"lr", "seed", "mixer"}
    return " ".join(f"{k}={v}" for k, v in sorted(cfg.tags.items()) if k not in skip)
