"""`wm-bench sweep SWEEP [--storage URL] [--workers N]`: run a sweeps/<name>.yaml study, then
write its ablation report; plus the --storage / --workers flags `reproduce` shares."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wm_bench.cli.types import add_count, int_at_least

STORAGE_HELP = (
    "Optuna storage shared by every worker: sqlite:///PATH (this machine; default for sweeps: "
    "sqlite:///<out-dir>/optuna/sweeps.db), journal:PATH (a journal file), or "
    "postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DB (many machines; pip install "
    "'wm_bench[postgres]'); workers elsewhere join with the same URL (docs/sweeps.md)"
)


def add_storage_args(p: argparse.ArgumentParser, default_storage: str) -> None:
    """--storage URL and --workers N (for `sweep` and `reproduce`)."""
    p.add_argument(
        "--storage", default=None, metavar="URL", help=f"{STORAGE_HELP}; default: {default_storage}"
    )
    p.add_argument(
        "--workers",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="worker processes on this machine, ≥ 1 (default 1); each gets cores / N "
        "torch threads unless --threads is given; they split the work through the "
        "storage, and so do workers started elsewhere with the same --storage",
    )


def add_parser(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `wm-bench sweep` on the CLI's subparsers."""
    p = sub.add_parser(
        "sweep",
        help="run a sweep (sweeps/<name>.yaml: any config field, grid/TPE, pruning, N workers)",
        description="Run the trials of sweeps/<name>.yaml (each a normal run with its result "
        "JSON under results/sweeps/<name>/; finished configs are taken from there), then write "
        "reports/sweeps/<name>.md with its plots. The YAML format: docs/sweeps.md.",
    )
    p.add_argument("sweep", help="a sweep name in sweeps/ (e.g. smoke) or a YAML path")
    add_storage_args(p, "sqlite:///<out-dir>/optuna/sweeps.db")
    add_count(p, "--trials", "trial budget, overriding the file's (grid: its first N points)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="change the base run like the file's base.set (repeatable), e.g. --set "
        "train.max_steps=40; another base is another study",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the file and list the points (done or pending); run nothing",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: export the study and write the report",
    )
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument("--reports-dir", default=None, help="where reports/sweeps/ goes")
    add_common(p)


def _sets(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--set {item!r}: expected PATH=VALUE, e.g. train.max_steps=40")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            out[key] = text
    return out


def load(args: argparse.Namespace) -> Any:
    from wm_bench.sweeps.spec import load_sweep

    started = bool(getattr(args, "sweep_worker_index", 0))  # validated by the command already
    return load_sweep(args.sweep, trials=args.trials, sets=_sets(args.set), check=not started)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Validate, run this worker's share (and start the others), export, report."""
    from wm_bench.cli.train import _runtime
    from wm_bench.sweeps import driver
    from wm_bench.sweeps import storage as st
    from wm_bench.sweeps.spec import pruning_caveats
    from wm_bench.sweeps.workers import start_workers

    spec = load(args)  # every error of the file, before anything runs or starts
    storage = args.storage or driver.default_storage(args.out_dir)
    url = st.parse_storage(storage)
    runtime = lambda cfg: _runtime(cfg, args, checkpoint_default=True)  # noqa: E731
    runtime(spec.base)  # the runtime flags' own errors, once
    if args.dry_run:
        return _dry_run(spec, storage, args)
    st.check_storage(url)
    rc, recs, t0 = 0, [], time.perf_counter()
    if not args.report_only:
        from wm_bench.preflight import check_writable

        check_writable(Path(args.out_dir), "output folder (--out-dir)")
        if not getattr(args, "sweep_worker_index", 0):  # once, not once per local worker
            for caveat in pruning_caveats(spec):
                print(f"note: {caveat}")
        workers = start_workers(cmd_sweep, args)
        recs = driver.run_sweep(
            spec,
            storage=storage,
            results_dir=args.results_dir,
            out_dir=args.out_dir,
            force=args.force,
            quiet=bool(args.quiet),
            runtime=runtime,
            **workers.share(),
        )
        rc = workers.join()
        counts: dict[str, int] = {}
        for r in recs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        workers.log(
            f"done: {len(recs)} points by this worker in "
            f"{(time.perf_counter() - t0) / 60:.1f} min: "
            + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")
        )
        if counts.get("failed"):
            rc = max(rc, 1)
    if getattr(args, "sweep_worker_index", 0) or args.no_report:
        return rc
    trials = driver.load_trials(spec, storage, args.out_dir)
    print(f"wrote {driver.export_study(spec, trials, args.results_dir, storage, args.out_dir)}")
    from wm_bench.report.sweeps import build_sweep_report
    from wm_bench.results import default_results_dir, repo_root

    rdir = Path(args.results_dir) if args.results_dir else default_results_dir()
    odir = Path(args.reports_dir) if args.reports_dir else repo_root() / "reports"
    for path in build_sweep_report(spec.name, rdir, odir):
        print(f"wrote {path}")
    return rc


def _dry_run(spec: Any, storage: str, args: argparse.Namespace) -> int:
    from wm_bench.sweeps import driver
    from wm_bench.sweeps.plans import FinitePlan, done_in
    from wm_bench.sweeps.spec import pruning_caveats
    from wm_bench.sweeps.storage import parse_storage

    p = driver.plan(spec, results_dir=args.results_dir, force=args.force)
    print(f"sweep {spec.name}: {spec.description}")
    print(f"  base: {spec.base_text}")
    opts = lambda o: f" {o}" if o else ""  # noqa: E731
    print(
        f"  objective: {spec.metric} ({spec.direction}); sampler {spec.sampler}"
        f"{opts(spec.sampler_options)}; pruner {spec.pruner}{opts(spec.pruner_options)}; "
        f"budget {spec.trials} trials"
    )
    print(f"  storage: {parse_storage(storage).shown()}, study {p.study_name}")
    for prm in spec.params:
        print(f"  space {prm.path}: {prm.describe()}")
    for caveat in pruning_caveats(spec):
        print(f"  note: {caveat}")
    if isinstance(p, FinitePlan):
        done, pending = done_in(args.results_dir), 0
        for pt in p.points:
            rec = None if args.force else done(pt)
            pending += rec is None
            state = f"done ({rec['status']})" if rec else "pending"
            print(f"    {pt.label:<40} {pt.key}  {state}")
        print(
            f"  {len(p.points)} points, {len(p.points) - pending} done, {pending} pending "
            "(dry run: nothing trained or written)"
        )
    return 0
