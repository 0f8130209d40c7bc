"""Result files for task tests: what the staged planners and the reports read from a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wm_bench.config import RunConfig, run_identity
from wm_bench.results import make_result, write_result


def write_fake_result(
    rdir: Path,
    cfg: RunConfig,
    metrics: dict[str, float],
    *,
    higher_is_better: bool,
    status: str = "ok",
    error: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the result of `cfg` into `rdir` with `metrics` (each better when higher or lower,
    as `higher_is_better` says) and `status` (with `error` when it is not "ok")."""
    rec = make_result(
        **run_identity(cfg),
        status=status,
        metrics=metrics,
        higher_is_better=dict.fromkeys(metrics, higher_is_better),
        error=error,
        extra=extra,
    )
    write_result(rec, rdir)
