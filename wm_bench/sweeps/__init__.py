"""Sweeps: `sweeps/<name>.yaml` studies over any config field, many workers, one Optuna storage.

- `spec`: the YAML (base run, search space, objective, sampler, pruner, budget), validated
  through the config dataclasses before anything runs; `base` builds its base run, `space` its
  dotted paths, parameters, sampler and pruner.
- `storage`: storage by URL (SQLite, Optuna's journal file, PostgreSQL), the claim lock,
  heartbeats and stale-trial handling.
- `plans`: what a sweep runs (points, finite and sampled plans) and how trials record them;
  `engine`: the worker loop shared with `wm-bench reproduce` (`wm_bench.sweep`): claim a point
  under the lock, run it with a heartbeat, tell COMPLETE / FAIL / PRUNED.
- `pruning`: optuna-integration's Lightning pruning callback, per optimiser step.
- `workers`: `--workers N` local processes; `driver`: one sweep end to end; `cli`: `wm-bench
  sweep`; `measure`: 2 workers against 1 on the smoke sweep.

docs/sweeps.md describes the YAML, the storage URLs and what happens when a worker dies.
"""

from __future__ import annotations
