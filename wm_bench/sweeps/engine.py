"""The worker loop of every sweep (`wm-bench sweep` and `reproduce`): claim, run, tell.

A worker repeats: take the storage's claim lock (`storage.Backend.lock`); fail the RUNNING
trials whose worker stopped beating; read the study; choose what runs next; create its RUNNING
trial with the point's key and beat once; release the lock; run the point with a heartbeat
thread; tell the outcome. The choice and the RUNNING trial are made under one lock, so two
workers never run one point at once, and a finite plan's points are split, each run once.

What runs next is the plan's (`wm_bench.sweeps.plans`).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from wm_bench.sweeps.plans import (
    DONE,
    KEY,
    REDO_OF,
    SESSION,
    STATUS,
    WAIT,
    WORKER,
    Claim,
    FinitePlan,
    Point,
    PrunedRun,
    RunFn,
    SampledPlan,
    ran,
    running,
    stale,
)


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


class Worker:
    """One worker process's side of a sweep.

    Args:
        backend: the open storage (`storage.Backend`).
        session: shared by one command and the local workers it started.
        direction: "maximize" or "minimize".
        metric: the objective, a metric name of the result records.
        run_fn: (config, extra callbacks) → result record; writes the result JSON.
        callbacks: trial → extra Lightning callbacks for its run (pruning); None: none.
        pruner: the studies' Optuna pruner (None: never prune).
        on_invalid: "raise" (reproduce: bad input stops the command) or "record" (a sampled
            combination the configs reject is a FAIL trial with status "invalid").
        log: where one line per point goes.
        poll_s: seconds between two looks while only others' points run.
    """

    def __init__(
        self,
        backend: Any,
        *,
        session: str,
        direction: str,
        metric: str,
        run_fn: RunFn,
        callbacks: Callable[[Any], list] | None = None,
        pruner: Any = None,
        on_invalid: str = "record",
        log: Callable[[str], None] = print,
        poll_s: float = 2.0,
    ) -> None:
        self.backend, self.session, self.direction = backend, session, direction
        self.metric, self.run_fn, self.callbacks = metric, run_fn, callbacks
        self.pruner, self.on_invalid, self.log, self.poll_s = pruner, on_invalid, log, poll_s
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._studies: dict[str, Any] = {}
        self._reported: set[str] = set()
        self.records: list[dict[str, Any]] = []
        self.handled = 0
        self.total = 0

    # ---- studies --------------------------------------------------------------------------

    def study(self, name: str) -> Any:
        """The study `name` (created on first use, under the lock)."""
        if name not in self._studies:
            import optuna

            with self.backend.lock(name):
                self._studies[name] = optuna.create_study(
                    study_name=name,
                    storage=self.backend.storage,
                    direction=self.direction,
                    pruner=self.pruner,
                    load_if_exists=True,
                    sampler=optuna.samplers.RandomSampler(seed=0),  # fixed points: never asked
                )
        return self._studies[name]

    def _attrs(self, **extra: Any) -> dict[str, Any]:
        return {SESSION: self.session, WORKER: self.worker, **extra}

    # ---- claiming ---------------------------------------------------------------------------

    def claim(self, plan: FinitePlan | SampledPlan) -> Claim | str:
        """Under the claim lock: the next trial to run (a `Claim`), WAIT or DONE."""
        study = self.study(plan.study_name)
        with self.backend.lock(plan.study_name):
            self.backend.fail_stale(study)
            trials = study.get_trials(deepcopy=False)
            if isinstance(plan, FinitePlan):
                got = self._claim_finite(plan, study, trials)
            else:
                got = self._claim_sampled(plan, study, trials)
        return got

    def _claim_finite(self, plan: FinitePlan, study: Any, trials: list) -> Claim | str:
        from optuna.trial import TrialState

        by_key: dict[str, list] = defaultdict(list)
        for t in trials:
            by_key[t.user_attrs.get(KEY)].append(t)
        pending, waiting = None, False
        for p in plan.points:
            ts = by_key.get(p.key, [])
            if any(running(t) for t in ts):
                waiting = True
                continue
            if any(ran(t) and t.user_attrs.get(SESSION) == self.session for t in ts):
                continue  # this session ran it: done, or failed and left to the next command
            if not plan.force and any(t.state == TrialState.PRUNED for t in ts):
                continue
            rec = plan.final(p)
            if rec is not None:
                if not any(ran(t) for t in ts):  # the result came from elsewhere: record it
                    study.add_trial(self._finished_trial(p, plan.distributions, rec))
                self._settled(p, rec)
                continue
            other = self._done_elsewhere(ts) if not plan.force else None
            if other is not None:  # its result file is on that machine
                self._settled(p, self._as_record(other), f"done on {other.user_attrs.get(WORKER)}")
                continue
            if pending is None:
                pending = p
                gone = [t.number for t in ts if stale(t)]
                if gone:
                    self.log(
                        f"{p.label}: redoing it (trial {gone[-1]} stopped beating: its "
                        "worker died or was stopped)"
                    )
        if pending is None:
            return WAIT if waiting else DONE
        return Claim(
            study,
            self._ask(study, pending.params, plan.distributions, **{KEY: pending.key}),
            pending,
        )

    def _claim_sampled(self, plan: SampledPlan, study: Any, trials: list) -> Claim | str:
        redone = {t.user_attrs.get(REDO_OF) for t in trials}
        for t in trials:
            if stale(t) and t.number not in redone:
                p = plan.make_point(dict(t.params))
                self.log(f"{p.label}: redoing trial {t.number} (it stopped beating)")
                trial = self._ask(
                    study, p.params, plan.distributions, **{KEY: p.key, REDO_OF: t.number}
                )
                return self._with_dupes(study, trial, p, trials)
        if sum(1 for t in trials if running(t) or ran(t)) >= plan.budget:
            return WAIT if any(running(t) for t in trials) else DONE
        study.sampler = plan.sampler(len(trials))  # seeded per trial: workers draw differently
        trial = self._ask(study, {}, None)
        params = {n: _suggest(trial, n, d) for n, d in plan.distributions.items()}
        try:
            p = plan.make_point(params)
        except ValueError as e:
            trial.set_user_attr(STATUS, "invalid")
            trial.set_user_attr("error", " ".join(str(e).split())[:300])
            study.tell(trial, state=_state("FAIL"))
            self.log(f"trial {trial.number} {params}: invalid ({e})")
            return self._claim_sampled(plan, study, study.get_trials(deepcopy=False))
        trial.set_user_attr(KEY, p.key)
        return self._with_dupes(study, trial, p, trials)

    def _with_dupes(self, study: Any, trial: Any, p: Point, trials: list) -> Claim:
        """The claim of a sampled point: it waits for a RUNNING trial of the same config, and
        takes the value of one finished on another machine (its result file is there)."""
        same = [t for t in trials if t.user_attrs.get(KEY) == p.key]
        running = tuple(t.number for t in same if running(t))
        return Claim(study, trial, p, running, self._done_elsewhere(same))

    def _ask(
        self, study: Any, params: dict[str, Any], distributions: dict[str, Any] | None, **attrs: Any
    ) -> Any:
        """A RUNNING trial with `params` fixed (none: the sampler draws them) and user `attrs`.

        The trial is enqueued (WAITING), beaten once, then popped: so it is never RUNNING
        without a heartbeat, and a worker killed at any moment leaves a trial that the
        heartbeat check fails (a trial with no beat at all would stay RUNNING for ever)."""
        nonce = uuid.uuid4().hex
        study.enqueue_trial(
            params, user_attrs=self._attrs(claim=nonce, **attrs), skip_if_exists=False
        )
        waiting = study.get_trials(deepcopy=False, states=(_state("WAITING"),))
        mine = [t.number for t in waiting if t.user_attrs.get("claim") == nonce]
        self.backend.beat(self.backend.trial_id(study, mine[0]))
        for _ in range(len(waiting) + 1):
            trial = _ask(study, distributions)
            if trial.user_attrs.get("claim") == nonce:
                return trial
            trial.set_user_attr("stray", True)  # left WAITING by a worker that died mid-claim
            study.tell(trial, state=_state("FAIL"))
        raise RuntimeError(f"study {study.study_name}: could not pop its trial {mine[0]}")

    def _finished_trial(self, p: Point, distributions: dict, rec: dict[str, Any]) -> Any:
        import optuna

        value = self._value(rec)
        return optuna.trial.create_trial(
            params=p.params,
            distributions=distributions,
            value=value,
            state=_state("COMPLETE" if value is not None else "FAIL"),
            user_attrs=self._attrs(**{KEY: p.key, STATUS: rec.get("status"), "recorded": True}),
        )

    def _value(self, rec: dict[str, Any]) -> float | None:
        v = (rec.get("metrics") or {}).get(self.metric)
        ok = rec.get("status") == "ok" and isinstance(v, (int, float)) and math.isfinite(v)
        return float(v) if ok else None

    def _as_record(self, t: Any) -> dict[str, Any]:
        """The little of a result record that a finished trial holds."""
        metrics = {self.metric: t.value} if t.value is not None else {}
        return {"status": t.user_attrs.get(STATUS, "ok"), "metrics": metrics}

    def _done_elsewhere(self, trials: list) -> Any:
        """A finished trial (COMPLETE, or diverged) of these made on another machine, if any.

        Each machine's results folder is its record: a point finished here is done while its
        result file is (delete it to rerun); one finished on another machine is done by its
        trial, since its result file is over there."""
        host = self.worker.rsplit(":", 1)[0]
        for t in trials:
            final = t.state == _state("COMPLETE") or t.user_attrs.get(STATUS) == "diverged"
            if final and str(t.user_attrs.get(WORKER, "")).rsplit(":", 1)[0] not in ("", host):
                return t
        return None

    def _settled(self, p: Point, rec: dict[str, Any], how: str = "") -> None:
        if p.key in self._reported:
            return
        self._reported.add(p.key)
        self.handled += 1
        if not how:
            self.records.append({**rec, "skipped": True})
        self._line(p, how or f"skipped ({rec.get('status')} before)", rec, None)

    def _line(self, p: Point, what: str, rec: dict | None, seconds: float | None) -> None:
        v = self._value(rec) if rec else None
        shown = f"{self.metric}={v:.4f}" if v is not None else "no metric"
        took = f" ({seconds:.1f}s)" if seconds is not None else ""
        self.log(f"[{self.handled}/{self.total}] {p.label}: {what}, {shown}{took}")

    # ---- running ----------------------------------------------------------------------------

    def execute(self, c: Claim) -> dict[str, Any] | None:
        """Run a claimed point with a heartbeat and tell its outcome; the record, or None."""
        from optuna.exceptions import UpdateFinishedTrialError

        tid = self.backend.trial_id(c.study, c.trial.number)
        if c.copy_of is not None:  # the same config finished on another machine
            rec = self._as_record(c.copy_of)
            value = self._value(rec)
            attrs = {STATUS: rec["status"], "copied_from": c.copy_of.number}
            self._tell(c, "COMPLETE" if value is not None else "FAIL", value, attrs)
            self.handled += 1
            self._line(c.point, f"as trial {c.copy_of.number} (trial {c.trial.number})", rec, None)
            return None
        t0 = time.perf_counter()
        attrs: dict[str, Any] = {}
        state, value, rec, pruned = "FAIL", None, None, ""
        try:
            with self.backend.heartbeat(tid):
                while c.waits_for and self._still_running(c):
                    time.sleep(self.poll_s)  # the same config runs elsewhere: take its result
                try:
                    extra = self.callbacks(c.trial) if self.callbacks else []
                    rec = self.run_fn(c.point.config, extra)
                except PrunedRun as e:
                    state, attrs = "PRUNED", {STATUS: "pruned", "pruned_at_step": e.step}
                    pruned = f"pruned at step {e.step}, {self.metric}={e.value:.4f}"
                except ValueError as e:  # bad input found before the run (nothing written)
                    attrs = {STATUS: "invalid", "error": " ".join(str(e).split())[:300]}
                    if self.on_invalid == "raise":
                        raise
        except BaseException:  # a signal, or "raise": the trial never ran → redone later
            with contextlib.suppress(Exception):
                self._tell(c, "FAIL", None, {**attrs, "interrupted": STATUS not in attrs})
            raise
        if rec is not None:
            value = self._value(rec)
            attrs = {STATUS: rec.get("status"), "skipped": bool(rec.get("skipped"))}
            if rec.get("error"):
                attrs["error"] = str(rec["error"]).strip().splitlines()[0][:300]
            state = "COMPLETE" if value is not None else "FAIL"
        seconds = time.perf_counter() - t0
        try:
            self._tell(c, state, value, {**attrs, "wall_s": round(seconds, 3)})
        except UpdateFinishedTrialError:
            self.log(
                f"trial {c.trial.number} had been failed as stale while it ran (missed "
                "heartbeats); its result file stands and its redo takes it"
            )
        self.handled += 1
        if rec is not None:
            self.records.append(rec)
            self._reported.add(c.point.key)
            what = f"skipped ({rec['status']} before)" if rec.get("skipped") else rec["status"]
            self._line(c.point, f"{what} (trial {c.trial.number})", rec, seconds)
        else:  # pruned or invalid: no result file; an entry so that summaries count it
            self.records.append(
                {
                    "run_id": c.point.key,
                    "status": attrs.get(STATUS, "failed"),
                    "error": attrs.get("error"),
                    "no_result": True,
                }
            )
            what = pruned or f"{attrs.get(STATUS)}: {attrs.get('error')}"
            self.log(
                f"[{self.handled}/{self.total}] {c.point.label}: {what} (trial "
                f"{c.trial.number}, {seconds:.1f}s)"
            )
        if rec is not None and rec.get("status") == "ok" and value is None:
            raise ValueError(
                f"objective metric {self.metric!r} is not among the run's metrics "
                f"{sorted(rec.get('metrics') or {})}; fix the sweep's objective"
            )
        return rec

    def _tell(self, c: Claim, state: str, value: float | None, attrs: dict[str, Any]) -> None:
        for k, v in attrs.items():
            c.trial.set_user_attr(k, v)
        if state == "COMPLETE":
            c.study.tell(c.trial, value)
        else:
            c.study.tell(c.trial, state=_state(state))

    def _still_running(self, c: Claim) -> bool:
        ts = c.study.get_trials(deepcopy=False)
        return any(t.number in c.waits_for and running(t) for t in ts)

    # ---- the loop ---------------------------------------------------------------------------

    def work(self, plans: Sequence[FinitePlan | SampledPlan]) -> list[dict[str, Any]]:
        """Claim and run until every plan is done; returns this worker's records: its runs, the
        points it found settled by a result file, and for a pruned or invalid trial (no result
        file) {"run_id", "status": "pruned" | "invalid", "no_result": True}."""
        self.total = sum(len(p.points) if isinstance(p, FinitePlan) else p.budget for p in plans)
        while True:
            waiting = False
            for plan in plans:
                got = self.claim(plan)
                if isinstance(got, Claim):
                    self.execute(got)
                    break
                waiting |= got == WAIT
            else:
                if not waiting:
                    return self.records
                time.sleep(self.poll_s)


def _ask(study: Any, distributions: dict[str, Any] | None) -> Any:
    """study.ask, without Optuna's note that RDB heartbeats are meant for `optimize` (this loop
    beats itself: `storage.Backend.heartbeat`)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        return study.ask(distributions)


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]
