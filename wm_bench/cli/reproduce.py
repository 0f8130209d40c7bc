"""`wm-bench reproduce` (an experiment's grid, staged and seed-sequential) and `wm-bench report`."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

from wm_bench.cli.parser import EXPERIMENTS
from wm_bench.cli.train import _runtime


def resolve_scale(scale: str) -> str:
    if scale != "auto":
        return scale
    import torch

    chosen = "small" if torch.cuda.is_available() else "smoke"
    print(f"--scale auto → {chosen} ({'CUDA found' if chosen == 'small' else 'no CUDA'})")
    return chosen


def cmd_reproduce(args: argparse.Namespace) -> int:
    from wm_bench.config import config_hash
    from wm_bench.sweep import sweep_cells
    from wm_bench.sweeps.workers import start_workers
    from wm_bench.train import run

    scale = resolve_scale(args.scale)
    task = importlib.import_module(f"wm_bench_tasks.{args.experiment}")
    if hasattr(task, "reproduce"):  # a task that measures rather than trains runs its own grid
        return _reproduce_own(task, scale, args)
    if args.dry_run:
        return _dry_run(task, scale, args)
    print(f"{args.experiment} @ {scale}")
    t0 = time.perf_counter()
    journal = Path(args.out_dir) / "optuna" / f"{args.experiment}-{scale}.journal"
    workers = start_workers(cmd_reproduce, args)  # --workers N: N − 1 more
    # One storage (--storage, else the journal) for every worker: they split each round's runs.
    share = workers.share(storage=args.storage or journal, results_dir=args.results_dir)
    recs: list[dict[str, Any]] = []
    planned: set[str] = set()
    # A staged task (tune, then seeds at each variant's best LR) plans its later stages from the
    # results of the earlier ones: ask again after every round until it plans nothing new.
    for stage in range(1, 11):
        configs = [c for c in _plan(task, scale, args) if config_hash(c) not in planned]
        if args.limit is not None:
            configs = configs[: max(0, args.limit - len(planned))]
        if not configs:
            break
        planned |= {config_hash(c) for c in configs}
        _preflight_grid(configs, args)  # every config of the round, before its first run
        print(f"stage {stage}: {len(configs)} runs")
        recs += sweep_cells(
            configs,
            cell_key=task.cell_key,
            metric=task.METRIC,
            direction="maximize" if task.HIGHER_IS_BETTER else "minimize",
            force=args.force,
            **share,
            run_fn=lambda c: run(  # a per-run step bar on a terminal unless --quiet
                c,
                results_dir=args.results_dir,
                out_dir=args.out_dir,
                force=args.force,
                quiet=bool(args.quiet),
            ),
        )
    if args.until_decided:

        def run_all(configs: list[Any]) -> None:
            configs = [_runtime(c, args, checkpoint_default=True) for c in configs]
            _preflight_grid(configs, args)
            recs.extend(
                sweep_cells(
                    configs,
                    cell_key=task.cell_key,
                    metric=task.METRIC,
                    direction="maximize" if task.HIGHER_IS_BETTER else "minimize",
                    **share,
                    run_fn=lambda c: run(
                        c,
                        results_dir=args.results_dir,
                        out_dir=args.out_dir,
                        force=False,
                        quiet=bool(args.quiet),
                    ),
                )
            )

        _until_decided(task, scale, args, run_all)
    counts = {s: sum(r["status"] == s for r in recs) for s in ("ok", "diverged", "failed")}
    failed = [r for r in recs if r["status"] != "ok"]
    print(
        f"done: {len(recs)} runs in {(time.perf_counter() - t0) / 60:.1f} min: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
    )
    for r in failed:
        first = (r.get("error") or "").splitlines()[:1]
        print(f"  {r['status']}: {r['run_id']}: {first[0] if first else ''}", file=sys.stderr)
    failed_workers = workers.join()  # the report waits for every local worker
    if not args.no_report:
        _report([args.experiment], args.results_dir, args.reports_dir, pdf=False)
    return 1 if failed or failed_workers else 0


def _dry_run(task: Any, scale: str, args: argparse.Namespace) -> int:
    """`reproduce --dry-run`: the planned runs with their config hash, done or pending."""
    from wm_bench.config import config_hash
    from wm_bench.results import find_done

    configs = _plan(task, scale, args)
    if args.limit is not None:
        configs = configs[: args.limit]
    rows, pending = [], 0
    for c in configs:
        h = config_hash(c)
        rec = (
            None if args.force else find_done(h, c.experiment, c.scale, c.variant, args.results_dir)
        )
        state = (
            f"done ({rec['status']})" if rec else ("pending (--force)" if args.force else "pending")
        )
        pending += rec is None
        tags = " ".join(f"{k}={v}" for k, v in c.tags.items() if k != "variant")
        rows.append((c.variant, tags, f"{c.optim.lr:g}", str(c.seed), h, state))
    heads = ("variant", "tags", "lr", "seed", "config hash", "state")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    print(
        f"{args.experiment} @ {scale}: {len(rows)} planned runs, {len(rows) - pending} done, "
        f"{pending} pending (dry run: nothing trained or written)"
    )
    for r in (heads, *rows):
        print("  " + "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    import inspect

    if "results_dir" in inspect.signature(task.runs).parameters and pending:
        print(
            "  (staged task: runs planned from these results, e.g. seeds at each variant's "
            "best LR, appear once the pending runs have finished)"
        )
    return 0


def _until_decided(task: Any, scale: str, args: argparse.Namespace, run_all: Any) -> None:
    """Seeds for the task's claim comparison until decided (`wm_bench.sequential`)."""
    from wm_bench.sequential import until_decided

    if not hasattr(task, "decision"):
        raise ValueError(
            f"--until-decided: {args.experiment} has no seed-paired claim comparison; valid "
            f"experiments: {[e for e in EXPERIMENTS if hasattr(_task_module(e), 'decision')]}"
        )
    dec = task.decision(scale, results_dir=args.results_dir)
    n0 = max(2, dec.seeds_done())
    if n0 > args.max_seeds:
        print(f"--until-decided: {n0} seeds already exceed --max-seeds {args.max_seeds}")
        return
    run_all(dec.configs(n0))
    print(
        f"--until-decided: {dec.treated} vs {dec.baseline}, from {n0} to at most "
        f"{args.max_seeds} seeds, {args.seed_step} per look"
    )
    until_decided(n0, args.max_seeds, args.seed_step, dec.judge, lambda n: run_all(dec.configs(n)))


def _task_module(experiment: str) -> Any:
    return importlib.import_module(f"wm_bench_tasks.{experiment}")


def _plan(task: Any, scale: str, args: argparse.Namespace) -> list[Any]:
    """The task's configs at `scale` after --only, with the run-time options; ValueError naming
    a bad --only.

    A task whose `runs` takes `results_dir` (staged tuning) is given --results-dir.
    """
    import inspect

    from wm_bench.sweep import select_by_tags

    kw = {}
    if "results_dir" in inspect.signature(task.runs).parameters:
        kw["results_dir"] = args.results_dir
    configs = select_by_tags(task.runs(scale, **kw), args.only, what=args.experiment)
    if args.only and not configs:
        raise ValueError(
            f"nothing to run: --only {' '.join(args.only)} matches none of the configs of "
            f"{args.experiment} @ {scale}"
        )
    return [_runtime(c, args, checkpoint_default=True) for c in configs]


def _preflight_grid(configs: list[Any], args: argparse.Namespace) -> None:
    """`preflight.check_run` for every config that will run (not those already done)."""
    from wm_bench.config import config_hash
    from wm_bench.preflight import check_run, check_writable
    from wm_bench.results import find_done

    check_writable(Path(args.out_dir), "output folder (--out-dir)")
    for c in configs:
        if not args.force and find_done(
            config_hash(c), c.experiment, c.scale, c.variant, args.results_dir
        ):
            continue
        try:
            check_run(c, args.results_dir)
        except ValueError as e:
            raise ValueError(
                f"{c.experiment} @ {c.scale}, run {c.variant} seed {c.seed}: {e}"
            ) from None


def _reproduce_own(task: Any, scale: str, args: argparse.Namespace) -> int:
    if args.impl not in (None, "auto"):
        print(
            f"error: --impl {args.impl}: {args.experiment} times every layer with impl=auto "
            "(and records what ran)",
            file=sys.stderr,
        )
        return 2
    unused = {
        "--compile/--no-compile": args.compile,
        "--save-model/--no-save-model": args.save_model,
        "--eval-data": args.eval_data,
        "--checkpoint/--no-checkpoint": args.checkpoint,
        "--checkpoint-every": args.checkpoint_every,
        "--accelerator": args.accelerator,
        "--devices": args.devices,
        "--precision": args.precision,
        "--accumulate-grad-batches": args.accumulate_grad_batches,
        "--logger": args.logger,
        "--storage": args.storage,
        "--workers": args.workers if args.workers != 1 else None,
    }
    given = [k for k, v in unused.items() if v is not None]
    if given:
        print(
            f"error: {', '.join(given)} given to {args.experiment}, which times layers and trains "
            "nothing; drop them",
            file=sys.stderr,
        )
        return 2
    rc = task.reproduce(
        scale,
        only=args.only,
        limit=args.limit,
        results_dir=args.results_dir,
        force=args.force,
        threads=args.threads,
        quiet=bool(args.quiet),
        dry_run=args.dry_run,
    )
    if rc != 2 and not args.no_report and not args.dry_run:
        _report([args.experiment], args.results_dir, args.reports_dir, pdf=False)
    return rc


def _report(
    experiments: list[str],
    results_dir: str | None,
    reports_dir: str | None,
    pdf: bool,
    *,
    sweeps: bool = False,
) -> None:
    """Rebuild the experiments' reports (and, with `sweeps`, every sweep's) and the PDF."""
    from wm_bench.report import build_pdf, build_report
    from wm_bench.results import default_results_dir, repo_root

    rdir = Path(results_dir) if results_dir else default_results_dir()
    odir = Path(reports_dir) if reports_dir else repo_root() / "reports"
    for exp in experiments:
        for path in build_report(exp, rdir, odir):
            print(f"wrote {path}")
    if sweeps:
        from wm_bench.report.sweeps import build_all

        for path in build_all(rdir, odir):
            print(f"wrote {path}")
    if pdf:
        print(f"wrote {build_pdf(odir)}")


def cmd_report(args: argparse.Namespace) -> int:
    exps = args.experiments or list(EXPERIMENTS)
    bad = [e for e in exps if e not in EXPERIMENTS]
    if bad:
        print(f"error: unknown experiment(s) {bad}; valid: {list(EXPERIMENTS)}", file=sys.stderr)
        return 2
    if args.results_dir is not None and not Path(args.results_dir).is_dir():
        raise ValueError(
            f"--results-dir {args.results_dir!r} is not a folder of results; give the folder that "
            "`train`/`reproduce --results-dir` wrote to"
        )
    _report(exps, args.results_dir, args.reports_dir, pdf=args.pdf, sweeps=not args.experiments)
    return 0
