"""What a sweep runs: its points and plans, the trial attributes that record them, and which
trials count as run or stale.

What runs next:
- `FinitePlan` (a grid, or one (lr, seed) cell of `reproduce`): the first point that is not
  running and not settled. Settled: a final result file exists here (`done`: this machine's
  results/ is its record, so a deleted result file reruns its point), or a trial finished it
  on another machine (whose results folder holds the file), or it was pruned, or this session
  (one command and the local workers it started) already ran it. So a failed run is retried
  by the next command, never twice by one; with `force` only this session's runs settle.
- `SampledPlan` (TPE, random): first a redo of each stale trial (same parameters), else a new
  sample while the trials that ran or run are fewer than the budget.
When nothing is left but others' points are RUNNING, the worker waits (a stale one comes back
to it). A trial whose worker died (no beat for the grace period) becomes FAIL without a run
status, and its point is redone; a run that ended failed or diverged is FAIL with
`status`; a pruned run is PRUNED (it writes no result, `PrunedRun`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A trial's user attributes
KEY = "run_id"  # the point: the run id of its config (one result file)
STATUS = (
    "status"  # how its run ended (ok, failed, diverged, pruned, invalid); absent if it never did
)
SESSION = "session"  # the command (with its local workers) that made the trial
WORKER = "worker"  # host:pid
REDO_OF = "redo_of"  # SampledPlan: the stale trial this one redoes

RunFn = Callable[[Any, list], dict[str, Any]]  # (config, extra Lightning callbacks) → result


class PrunedRun(BaseException):
    """Raised inside a run by the pruning callback: the trial is PRUNED and no result is written.

    A BaseException (like `signals.RunInterrupted`) so that `train.run`'s `except Exception`,
    which records failed runs, lets it through: a pruned run is neither ok nor failed."""

    def __init__(self, step: int, value: float) -> None:
        self.step, self.value = int(step), float(value)
        super().__init__(f"pruned at step {step} ({value:.4g})")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its key (run id), its trial parameters, its config, a log label."""

    key: str
    params: dict[str, Any]
    config: Any
    label: str = ""


@dataclass
class FinitePlan:
    """A fixed list of points, each run once (see the module docstring).

    `done(point)` returns the point's final result record (ok or diverged) or None."""

    study_name: str
    points: Sequence[Point]
    distributions: dict[str, Any]
    done: Callable[[Point], dict[str, Any] | None] | None = None
    force: bool = False
    _final: dict[str, dict[str, Any]] = field(default_factory=dict)  # cache: final stays final

    def final(self, p: Point) -> dict[str, Any] | None:
        if self.force or self.done is None:
            return None
        if p.key not in self._final:
            rec = self.done(p)
            if rec is None:
                return None
            self._final[p.key] = rec
        return self._final[p.key]


@dataclass
class SampledPlan:
    """Points drawn by the study's sampler until `budget` trials have run (or run).

    `make_point(params)` builds the point (ValueError: an invalid combination, recorded as a
    FAIL trial with status "invalid"); `sampler(seed)` a fresh sampler, seeded per trial."""

    study_name: str
    distributions: dict[str, Any]
    make_point: Callable[[dict[str, Any]], Point]
    budget: int
    sampler: Callable[[int], Any]


@dataclass(frozen=True)
class Claim:
    study: Any
    trial: Any
    point: Point
    waits_for: tuple[int, ...] = ()  # a sampled duplicate of these RUNNING trials
    copy_of: Any = None  # ... or of this trial, finished on another machine


WAIT, DONE = "wait", "done"


def running(t: Any) -> bool:
    from optuna.trial import TrialState

    return t.state == TrialState.RUNNING


def ran(t: Any) -> bool:
    """The trial's run ended (COMPLETE, PRUNED, or FAIL with a run status)."""
    from optuna.trial import TrialState

    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and STATUS in t.user_attrs
    )


def stale(t: Any) -> bool:
    """FAIL without a run status: its worker died (no heartbeat) or was interrupted."""
    from optuna.trial import TrialState

    return (
        t.state == TrialState.FAIL and STATUS not in t.user_attrs and not t.user_attrs.get("stray")
    )


def done_in(results_dir: str | Path | None) -> Callable[[Point], dict[str, Any] | None]:
    """`FinitePlan.done` reading `results_dir`: a point's final result (ok or diverged), by the
    hash of its config, or None."""
    from wm_bench.config import config_hash
    from wm_bench.results import find_done

    def done(p: Point) -> dict[str, Any] | None:
        c = p.config
        return find_done(config_hash(c), c.experiment, c.scale, c.variant, results_dir)

    return done
