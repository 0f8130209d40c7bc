"""Shared benchmark helpers: thread control, interleaved median timing, tables, machine info,
and the pieces every kernel benchmark's command line shares (interpreter mode, output path,
error lines, goal lines)."""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tabulate import tabulate


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with `threads` intra-op CPU threads (None: leave torch's), then restore.

    Args:
        threads: intra-op threads ≥ 1, or None.
    Returns:
        (yields) the thread count in effect inside the block.
    """
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads={threads!r}, expected an int ≥ 1 or None")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def synchronizer(device: str | torch.device) -> Callable[[], None]:
    """A function that waits for queued work on `device` (a no-op on the CPU).

    Args:
        device: "cpu", "cuda", "cuda:1", ...
    Returns:
        sync() to call before reading a clock.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def interleaved_times(
    fns: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, list[float]]:
    """Time every function `repeats` times, round-robin, so machine drift hits all of them alike.

    Each function first runs `warmup` untimed calls (also round-robin). In timed round r the
    functions run in the mapping's order rotated by r, so none is always first after a pause.

    Args:
        fns: name → zero-argument callable (one call = one measured unit, e.g. one train step).
        repeats: timed calls per function, ≥ 1.
        warmup: untimed calls per function before timing, ≥ 0.
        sync: called before each clock read (e.g. torch.cuda.synchronize); None on the CPU.
        on_round: progress callback(round_done, rounds_total) after each timed round.
    Returns:
        name → list of `repeats` wall-clock seconds, in call order.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats} must be ≥ 1 and warmup={warmup} ≥ 0")
    sync = sync or (lambda: None)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sync()
            t0 = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
        if on_round is not None:
            on_round(r + 1, repeats)
    return times


def median_time(
    fn: Callable[[], Any],
    *,
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> float:
    """Median wall-clock seconds of `fn` after `warmup` untimed calls.

    Args:
        fn: zero-argument callable.
        repeats: timed calls, ≥ 1.
        warmup: untimed calls first, ≥ 0.
        sync: as in `interleaved_times`.
    Returns:
        the median of the timed calls, in seconds.
    """
    return statistics.median(
        interleaved_times({"fn": fn}, repeats=repeats, warmup=warmup, sync=sync)["fn"]
    )


def paired_ratio(times: Mapping[str, Sequence[float]], num: str, den: str) -> float | None:
    """Median over rounds of den's time / num's time: num's speed relative to den's.

    Both calls of a round of `interleaved_times` ran seconds apart, so a burst of load that
    slows a few rounds moves this less than the ratio of two medians; on a quiet machine the
    two agree.

    Args:
        times: name → seconds per round, as `interleaved_times` returns.
        num, den: the two names.
    Returns:
        the median ratio, or None when either name is missing.
    """
    if num not in times or den not in times:
        return None
    return statistics.median(d / n for n, d in zip(times[num], times[den]))


def load_average() -> float | None:
    """The 1-minute system load average (None where the OS has none): other work competing."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def summarize(times: Sequence[float]) -> dict[str, float]:
    """Median, min, max and relative spread ((max − min) / median) of a list of seconds."""
    med = statistics.median(times)
    lo, hi = min(times), max(times)
    return {"median_s": med, "min_s": lo, "max_s": hi, "spread": (hi - lo) / med if med else 0.0}


# Every column a benchmark table prints: row key → (header, float format; "" for a text column).
# A table names its columns by key, so a quantity several benchmarks print reads alike in each.
COLUMNS: dict[str, tuple[str, str]] = {
    "case": ("case", ""),
    "variant": ("variant", ""),
    "name": ("model", ""),
    "impl": ("impl", ""),
    "status": ("status", ""),
    "dims": ("B, T, H, P, G, N", ""),
    "window": ("w", ""),
    "bound": ("bound", ""),
    "ci": ("95 % interval", ""),
    "rows": ("head rows/step", ""),
    "err": ("max rel RMS", ".1e"),
    "pairs": ("visible pairs (M)", ",.1f"),
    "fwd_mb": ("fwd MB", ",.1f"),
    "fwd_bwd_mb": ("fwd+bwd MB", ",.1f"),
    "fwd_gflop": ("fwd GFLOP", ",.1f"),
    "fwd_bwd_gflop": ("fwd+bwd GFLOP", ",.1f"),
    "fwd_lb": ("fwd bound ms", ".4f"),
    "fwd_bwd_lb": ("fwd+bwd bound ms", ".4f"),
    "fwd_ms": ("fwd ms", ".3f"),
    "fwd_tf": ("fwd TF/s useful", ".0f"),
    "exec_tf": ("fwd TF/s executed", ".0f"),
    "fwd_gbps": ("fwd GB/s", ",.0f"),
    "fwd_pct": ("fwd %roof", ".1f"),
    "fwd_graph_ms": ("graph fwd ms", ".3f"),
    "graph_pct": ("graph %roof", ".1f"),
    "fwd_bwd_ms": ("fwd+bwd ms", ".3f"),
    "fb_tf": ("fwd+bwd TF/s useful", ".0f"),
    "fb_gbps": ("fwd+bwd GB/s", ",.0f"),
    "fb_pct": ("fwd+bwd %roof", ".1f"),
    "peak": ("peak MiB", ",.0f"),
    "first": ("first call s", ".1f"),
    "vs_mamba": ("ours/mamba fwd+bwd", ".2f"),
    "params_m": ("params (M)", ".2f"),
    "tokens_per_s": ("tokens/s", ",.0f"),
    "tps": ("tokens/s (median)", ",.0f"),
    "step_ms": ("step (ms, median)", ",.0f"),
    "ms": ("ms/step", ".1f"),
    "spread_pct": ("spread (%)", ".0f"),
    "tflops": ("model TFLOP/s", ".3f"),
    "vs_llama": ("× our llama", ".2f"),
    "acc": ("test accuracy", ".3f"),
}


def columns(keys: str, rows: Sequence[Mapping[str, Any]] | None = None) -> list[tuple[str, ...]]:
    """The `format_table` columns of the space-separated COLUMNS `keys`, in that order.

    Args:
        rows: when given, a number column that no row fills is left out (text columns stay).
    """
    filled = None if rows is None else {k for r in rows for k, v in r.items() if v is not None}
    out: list[tuple[str, ...]] = []
    for key in keys.split():
        head, fmt = COLUMNS[key]
        if fmt and filled is not None and key not in filled:
            continue
        out.append((key, head, fmt) if fmt else (key, head))
    return out


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, ...]],
    *,
    floatfmt: str = ",.1f",
) -> str:
    """A plain-text table of dict rows.

    Args:
        rows: one mapping per row; a missing key or None prints as "".
        columns: (key, header) or (key, header, float format) tuples, in order.
        floatfmt: format of float cells in columns that name none.
    Returns:
        the table as a string (tabulate "github" style).
    """
    body = [["" if row.get(c[0]) is None else row.get(c[0]) for c in columns] for row in rows]
    fmts = [c[2] if len(c) > 2 else floatfmt for c in columns]
    return tabulate(body, headers=[c[1] for c in columns], tablefmt="github", floatfmt=fmts)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, ...]],
    *,
    title: str | None = None,
    floatfmt: str = ",.1f",
) -> None:
    """Print `format_table(rows, columns)` under an optional title line.

    Args:
        rows, columns, floatfmt: as `format_table`.
        title: printed above the table when given.
    """
    if title:
        print(title)
    print(format_table(rows, columns, floatfmt=floatfmt))


def machine_line(threads: int, device: str = "cpu") -> str:
    """One line naming the machine for a table header: CPU model, cores, threads, torch.

    Args:
        threads: the intra-op threads used.
        device: "cpu" or a CUDA device string.
    Returns:
        e.g. "AMD EPYC · 2 cores · 2 threads · torch 2.13.0+cpu".
    """
    from wm_bench.results import cpu_model

    where = cpu_model()
    if torch.device(device).type == "cuda":
        where = torch.cuda.get_device_name(torch.device(device))
    return f"{where} · {os.cpu_count()} cores · {threads} threads · torch {torch.__version__}"


def error_text(e: BaseException) -> str:
    """An exception as one short line for a result record: its type and first message line."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def slug(text: str) -> str:
    """A device name as a file-name part: lower case, runs of other characters as one "-"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def interpreter_mode(requested: bool, kernel_module: str) -> bool | None:
    """Whether a kernel benchmark runs under the Triton CPU interpreter.

    True when TRITON_INTERPRET=1 is set already, or when `requested` (--interpret) and it can
    still be set: the kernels read it when they are first imported, so None when
    `kernel_module` is imported already (too late); False otherwise.
    """
    from wm_bench.kernels._impl import interpreting

    if interpreting():
        return True
    if not requested:
        return False
    if kernel_module in sys.modules:
        return None
    os.environ["TRITON_INTERPRET"] = "1"
    return True


def timing_options(
    p: Any,
    *,
    budget_s: float,
    budget_help: str,
    check_max_tokens: int,
    check_help: str,
    timing_help: tuple[str | None, str | None] = (None, None),
) -> None:
    """Add the options every CUDA kernel benchmark measures with: --dtype, --device, --budget-s,
    --warmup-ms and --rep-ms (do_bench), --repeats (interpreter) and --check-max-tokens.

    Args:
        p: the benchmark's argparse parser.
        budget_s, check_max_tokens: the benchmark's defaults of those two options.
        budget_help, check_help: their help texts.
        timing_help: help texts of --warmup-ms and --rep-ms (None: none).
    """
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    p.add_argument("--budget-s", type=float, default=budget_s, help=budget_help)
    p.add_argument("--warmup-ms", type=float, default=25.0, help=timing_help[0])
    p.add_argument("--rep-ms", type=float, default=100.0, help=timing_help[1])
    p.add_argument("--repeats", type=int, default=2, help="timed calls per timing, interpreter")
    p.add_argument("--check-max-tokens", type=int, default=check_max_tokens, help=check_help)


def print_goals(goals: Mapping[str, Mapping[str, Any]]) -> None:
    """One line per goal: met, NOT met or not measured, and the values it was judged on."""
    for name, g in goals.items():
        met = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        vals = ", ".join("—" if v is None else f"{v:.2f}" for v in g["values"])
        print(f"goal {name}: {met} ({vals})")


def add_output_options(p: Any, default_out: str, progress: str = "progress lines") -> None:
    """The two options every benchmark has: --out (where the result JSON goes; `default_out`
    describes the default) and --quiet (no `progress`)."""
    p.add_argument(
        "--out", default=None, metavar="JSON", help=f"result JSON (default {default_out})"
    )
    p.add_argument("--quiet", action="store_true", help=f"no {progress}")


def print_and_exit(
    result: Mapping[str, Any], out: Path, print_result: Callable[[Any], None]
) -> int:
    """The end of a benchmark's `main`: print the result's summary, then where its JSON went (and
    in how long, when the result records its wall time).

    Returns:
        exit status 0.
    """
    print_result(result)
    took = f" in {result['wall_s']:.1f} s" if "wall_s" in result else ""
    print(f"wrote {out}{took}")
    return 0


def default_out(bench: str, device_slug: str) -> Path:
    """<results>/bench/<bench>-<device>.json under wm_bench.results.default_results_dir()."""
    from wm_bench.results import default_results_dir

    return default_results_dir() / "bench" / f"{bench}-{device_slug}.json"
