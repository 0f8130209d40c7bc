"""One sweep end to end: its plan, a worker's share of the trials, the study exported to results/.

Every trial is a normal run (`train.run`) of the base config with the trial's values: its result
JSON lands in results/sweeps/<name>/<scale>/, and a config that already has a finished result
is taken from it without training. At the end the study (every trial, its state, parameters,
value, intermediate values) is written beside them as study.json, which the report reads
(`wm_bench.report.sweeps`), so the report is a function of results/ like the others.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wm_bench.config import RunConfig, canonical_json, config_hash
from wm_bench.sweeps.engine import Worker
from wm_bench.sweeps.plans import FinitePlan, Point, SampledPlan, done_in
from wm_bench.sweeps.space import make_pruner, make_sampler
from wm_bench.sweeps.spec import SweepSpec

STUDY_FILE = "study.json"


def default_storage(out_dir: str | Path = "outputs") -> str:
    """The embedded default: one SQLite file for every sweep, under the output folder."""
    return f"sqlite:///{Path(out_dir) / 'optuna' / 'sweeps.db'}"


def study_name(spec: SweepSpec) -> str:
    """<name>-<digest of base, space, objective, sampler, pruner>: editing any of them starts a
    new study (its points' results are still taken from results/); the budget may change."""
    what = {
        "base": config_hash(spec.base),
        "objective": [spec.metric, spec.direction],
        "space": [
            [p.path, p.describe(), sorted(map(str, (p.choices or {}).items()))] for p in spec.params
        ],
        "sampler": [spec.sampler, spec.sampler_options],
        "pruner": [spec.pruner, spec.pruner_options],
    }
    return f"{spec.name}-{hashlib.sha256(canonical_json(what).encode()).hexdigest()[:10]}"


def plan(
    spec: SweepSpec,
    *,
    results_dir: str | Path | None = None,
    force: bool = False,
    runtime: Callable[[RunConfig], RunConfig] = lambda c: c,
) -> FinitePlan | SampledPlan:
    """The sweep's points: the grid's first `trials` points, or samples up to the budget."""
    from wm_bench.results import run_id

    def point(params: dict[str, Any]) -> Point:
        cfg = runtime(spec.config(params))
        return Point(run_id(cfg.variant, config_hash(cfg)), dict(params), cfg, spec.label(params))

    name, dists = study_name(spec), spec.distributions()
    if spec.sampler != "grid":
        return SampledPlan(
            name,
            dists,
            point,
            spec.trials,
            lambda seed: make_sampler(spec.sampler, spec.sampler_options, seed),
        )
    return FinitePlan(
        name,
        [point(p) for p in spec.grid()[: spec.trials]],
        dists,
        done=done_in(results_dir),
        force=force,
    )


def train_run_fn(results_dir: Any, out_dir: Any, force: bool, quiet: bool) -> Callable:
    """(config, callbacks) → `train.run`'s record."""

    def run_fn(cfg: RunConfig, callbacks: list) -> dict[str, Any]:
        from wm_bench.train import run

        return run(
            cfg,
            results_dir=results_dir,
            out_dir=out_dir,
            force=force,
            quiet=quiet,
            callbacks=callbacks,
        )

    return run_fn


def run_sweep(
    spec: SweepSpec,
    *,
    storage: str | None = None,
    results_dir: str | Path | None = None,
    out_dir: str | Path = "outputs",
    force: bool = False,
    quiet: bool = False,
    session: str | None = None,
    runtime: Callable[[RunConfig], RunConfig] = lambda c: c,
    run_fn: Callable[[RunConfig, list], dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
    poll_s: float = 2.0,
) -> list[dict[str, Any]]:
    """This worker's share of the sweep; its records (runs and points found done).

    Args:
        storage: an Optuna storage URL (default: `default_storage(out_dir)`).
        session: shared with the local workers of the same command (`workers`).
        runtime: the command line's runtime flags applied to each trial's config.
        run_fn: (config, extra callbacks) → record; default `train.run`.
    """
    from wm_bench.sweeps import storage as st

    url = st.parse_storage(storage or default_storage(out_dir))
    st.check_storage(url)
    the_plan = plan(spec, results_dir=results_dir, force=force, runtime=runtime)
    backend = st.Backend(url, **spec.heartbeat)
    callbacks = None
    if spec.pruner != "none":
        from wm_bench.sweeps.pruning import StepPruning

        callbacks = lambda trial: [StepPruning(trial, spec.metric)]  # noqa: E731
    try:
        worker = Worker(
            backend,
            session=session or uuid.uuid4().hex[:12],
            direction=spec.direction,
            metric=spec.metric,
            run_fn=run_fn or train_run_fn(results_dir, out_dir, force, quiet),
            callbacks=callbacks,
            pruner=make_pruner(spec.pruner, spec.pruner_options),
            log=log,
            poll_s=poll_s,
        )
        log(
            f"sweep {spec.name}: {spec.description or spec.base_text}; storage "
            f"{url.shown()}, study {the_plan.study_name}"
        )
        return worker.work([the_plan])
    finally:
        backend.close()


def load_trials(spec: SweepSpec, storage: str | None, out_dir: str | Path = "outputs") -> list:
    """The study's trials as FrozenTrials (an empty list if the study does not exist yet)."""
    import optuna

    from wm_bench.sweeps import storage as st

    url = st.parse_storage(storage or default_storage(out_dir))
    backend = st.Backend(url, **spec.heartbeat)
    try:
        try:
            study = optuna.load_study(study_name=study_name(spec), storage=backend.storage)
        except KeyError:
            return []
        return study.get_trials(deepcopy=True)
    finally:
        backend.close()


def export_study(
    spec: SweepSpec,
    trials: list,
    results_dir: str | Path | None,
    storage: str | None,
    out_dir: str | Path = "outputs",
) -> Path:
    """Write results/sweeps/<name>/<scale>/study.json: the sweep's definition, its trials and the
    exporting checkout's provenance (paths relative to the repository, the storage by kind only)."""
    from optuna.distributions import distribution_to_json

    from wm_bench.results import (
        default_results_dir,
        migrate_record,
        portable_path,
        provenance,
        repo_root,
        write_json_atomic,
    )
    from wm_bench.sweeps import storage as st

    url = st.parse_storage(storage or default_storage(out_dir))
    doc = {
        "kind": "wm_bench sweep study",
        "schema_version": 1,
        "sweep": spec.name,
        "file": portable_path(spec.path),
        "description": spec.description,
        "experiment": spec.experiment,
        "scale": spec.base.scale,
        "base": spec.base_text,
        "base_config_hash": config_hash(spec.base),
        "objective": {"metric": spec.metric, "direction": spec.direction},
        "sampler": {"name": spec.sampler, **spec.sampler_options},
        "pruner": {"name": spec.pruner, **spec.pruner_options},
        "budget": spec.trials,
        "storage": url.kind,
        "study": study_name(spec),
        "space": [
            {
                "path": p.path,
                "values": p.describe(),
                "distribution": distribution_to_json(p.distribution()),
            }
            for p in spec.params
        ],
        "trials": [_trial_json(t) for t in sorted(trials, key=lambda t: t.number)],
        # who exported the study (a CPU job); each trial's run JSON carries its own provenance
        "provenance": provenance({"type": "cpu"}),
    }
    doc = migrate_record(doc, repo_root())[0]
    rdir = Path(results_dir) if results_dir is not None else default_results_dir()
    return write_json_atomic(rdir / spec.experiment / spec.base.scale / STUDY_FILE, doc)


def _trial_json(t: Any) -> dict[str, Any]:
    def when(d: Any) -> str | None:
        return d.isoformat(timespec="seconds") if d is not None else None

    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": dict(t.params),
        "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "user_attrs": dict(t.user_attrs),
        "started": when(t.datetime_start),
        "completed": when(t.datetime_complete),
    }
