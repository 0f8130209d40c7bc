"""`--workers N`: this process plus N − 1 more on this machine, one session, one storage.

Every worker runs the same command (`wm-bench sweep` or `reproduce`) with the same storage URL
and splits the work through the storage's claim lock (`engine`); workers on other machines join
by running the same command with the same `--storage`. The local ones share a session id, so a
failed run is tried once per command rather than once per worker. With N > 1 each worker gets
cores / N torch threads unless --threads is given, and progress bars are off (one line per run).
A worker started here is stopped (SIGTERM: it ends at a step boundary, keeping its checkpoint)
when this process exits before it does. Workers are forked where that is safe (`_start_method`).
"""

from __future__ import annotations

import argparse
import atexit
import copy
import multiprocessing
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Workers:
    """The workers of one command: this process (index 0) and the processes it started."""

    session: str
    index: int = 0
    count: int = 1
    procs: list[Any] = field(default_factory=list)

    def log(self, line: str) -> None:
        """A line of this worker's output (prefixed with its index when there are several)."""
        print((f"[worker {self.index}] " if self.count > 1 else "") + line, flush=True)

    def share(self, **options: Any) -> dict[str, Any]:
        """`options` plus what every worker of the command shares: the session and the log."""
        return {**options, "session": self.session, "log": self.log}

    def join(self) -> int:
        """Wait for the started workers; the worst exit code (0 when all succeeded)."""
        worst = 0
        for p in self.procs:
            p.join()
            code = (
                p.exitcode
                if p.exitcode is not None and p.exitcode >= 0
                else 128 - (p.exitcode or 0)
            )
            if code:
                print(f"worker {p.name} exited with {code}", file=sys.stderr)
            worst = max(worst, code)
        atexit.unregister(self.stop)
        return worst

    def stop(self, timeout: float = 120.0) -> None:
        """SIGTERM to the started workers still running, then wait for them (kill after
        `timeout` seconds)."""
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()


def start_workers(
    command: Callable[[argparse.Namespace], int],
    args: argparse.Namespace,
) -> Workers:
    """Start `args.workers` − 1 more processes running `command(copy of args)`.

    In a worker started this way (args carries the session) nothing more is started. Sets
    `args.sweep_session`, and with N > 1 `args.threads` (if not given) and `args.quiet`.
    """
    n = int(getattr(args, "workers", 1) or 1)
    if getattr(args, "sweep_session", None):  # a started worker (or a second call)
        return Workers(
            args.sweep_session,
            getattr(args, "sweep_worker_index", 0),
            getattr(args, "sweep_worker_count", n),
        )
    args.sweep_session, args.sweep_worker_count = uuid.uuid4().hex[:12], n
    if n > 1:
        if getattr(args, "threads", None) is None:
            args.threads = max(1, (os.cpu_count() or 1) // n)
        args.quiet = True
    ctx = multiprocessing.get_context(_start_method())
    sys.stdout.flush()  # a forked worker must not print this process's buffered output again
    sys.stderr.flush()
    procs = []
    for i in range(1, n):
        child = copy.copy(args)
        child.workers, child.no_report, child.sweep_worker_index = 1, True, i
        p = ctx.Process(target=_child, args=(command, child), name=f"worker-{i}")
        p.start()
        procs.append(p)
    w = Workers(args.sweep_session, 0, n, procs)
    if procs:
        atexit.register(w.stop)
        print(
            f"{n} workers (this process and {n - 1} more), session {w.session}, "
            f"{args.threads} torch thread(s) each"
        )
    return w


def _start_method() -> str:
    """ "fork" on Linux while CUDA is not initialised here: a worker starts at once with the
    modules this process has imported (torch resets its thread pools in a forked child, as for
    DataLoader workers); otherwise "spawn", a fresh interpreter (seconds of imports). No storage
    is open yet when the workers start, so none is shared across the fork."""
    torch = sys.modules.get("torch")
    cuda_up = torch is not None and torch.cuda.is_initialized()
    return "fork" if sys.platform == "linux" and not cuda_up else "spawn"


def _child(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> None:
    """A started worker: the CLI's signal handling and one-line errors, then `command`."""
    if getattr(args, "threads", None):
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from wm_bench.train.signals import RunInterrupted, install_handlers

    install_handlers()
    try:
        rc = command(args)
    except (ValueError, FileNotFoundError) as e:
        print(
            f"error: worker {args.sweep_worker_index}: " + " ".join(str(e).split()), file=sys.stderr
        )
        rc = 2
    except RunInterrupted as e:
        print(f"interrupted: worker {args.sweep_worker_index}: {e}", file=sys.stderr)
        rc = e.exit_code
    sys.exit(rc)
