"""Measure `--workers`: the smoke sweep's wall time with 2 workers against 1 (target ≤ 0.65×).

    python -m wm_bench.sweeps.measure [--out results/bench/sweep_workers_smoke_cpu.json]

Runs `wm-bench sweep smoke` from scratch (fresh results, outputs and SQLite storage in a
temporary folder, no report) once with --workers 1 and once with --workers 2, alternating
when --repeats > 1, as a user would: one worker trains with torch's default threads (every
core), two with cores / 2 each. The wall time is the whole command's (interpreter start,
validation, the second worker's start, every trial). Writes a JSON with each run's wall time,
the per-trial training times, the ratio (median of 2 workers / median of 1), whether it meets
the target, and the machine (cores, load average before and after: run it on idle cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 0.65


def one(sweep: str, workers: int, extra: list[str]) -> dict[str, Any]:
    """One `wm-bench sweep` from scratch with `workers` workers: its wall time and trials."""
    with tempfile.TemporaryDirectory(prefix="wm_bench_measure_") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "wm_bench.cli",
            "sweep",
            sweep,
            "--workers",
            str(workers),
            "--results-dir",
            f"{tmp}/results",
            "--out-dir",
            f"{tmp}/outputs",
            "--storage",
            f"sqlite:///{tmp}/sweeps.db",
            "--no-report",
            "--quiet",
            *extra,
        ]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # torch's default
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
        runs = [json.loads(p.read_text()) for p in Path(tmp, "results").rglob("*__*.json")]
    return {
        "workers": workers,
        "wall_s": round(wall, 3),
        "trials": len(runs),
        "train_wall_s": sorted(
            round(r["timing"]["wall_s"], 3) for r in runs if (r.get("timing") or {}).get("wall_s")
        ),
        "threads": sorted(
            {(r["provenance"]["device"] or {}).get("threads") for r in runs} - {None}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    from wm_bench.results import portable_path, provenance, write_json_atomic

    ap = argparse.ArgumentParser(
        prog="python -m wm_bench.sweeps.measure",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--out", default="results/bench/sweep_workers_smoke_cpu.json", help="the JSON written"
    )
    ap.add_argument("--sweep", default="smoke", help="the sweep timed (default: smoke)")
    ap.add_argument("--workers", type=int, default=2, help="workers compared with one (2)")
    ap.add_argument("--repeats", type=int, default=1, help="times each is run, alternating (1)")
    ap.add_argument(
        "extra",
        nargs=argparse.REMAINDER,
        help="after --: more `wm-bench sweep` flags for both, e.g. -- --trials 4",
    )
    args = ap.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    load_before = os.getloadavg()
    runs = []
    for i in range(args.repeats):
        for n in (1, args.workers):
            print(f"[{i + 1}/{args.repeats}] {args.sweep} with {n} worker(s) …", flush=True)
            runs.append(one(args.sweep, n, extra))
            print(f"  {runs[-1]['wall_s']:.1f} s, {runs[-1]['trials']} trials", flush=True)
    med = {
        n: statistics.median(r["wall_s"] for r in runs if r["workers"] == n)
        for n in (1, args.workers)
    }
    ratio = med[args.workers] / med[1]
    doc = {
        "what": f"wall time of `wm-bench sweep {args.sweep}` from scratch, {args.workers} "
        "workers against 1",
        "target_ratio": TARGET,
        "ratio": round(ratio, 4),
        "meets_target": ratio <= TARGET,
        "median_wall_s": {str(k): round(v, 3) for k, v in med.items()},
        "runs": runs,
        "extra_flags": extra,
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "provenance": provenance({"type": "cpu"}),
    }
    path = write_json_atomic(Path(args.out), doc)
    print(
        f"{args.workers} workers / 1 worker = {ratio:.3f} (target ≤ {TARGET}): "
        f"{'met' if ratio <= TARGET else 'NOT met'}; wrote {portable_path(path)}"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
