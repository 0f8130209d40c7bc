"""`wm-bench sweep` and `reproduce --workers/--storage` with real smoke runs: with two workers
every point runs once (how the work is split is timing: tests/test_sweep_engine.py pins it down
with fake runs), a rerun trains nothing, the report has its table and plots, and a pruned run
writes no result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wm_bench.cli import main
from wm_bench.results import iter_results


def test_smoke_sweep_with_two_workers_runs_each_point_once_then_reruns_nothing(
    reproduce_dirs, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    args = ["sweep", "smoke", "--set", "train.max_steps=20", "--quiet", *reproduce_dirs]
    assert main([*args, "--workers", "2"]) == 0
    recs = list(iter_results(tmp_path / "res", "sweeps/smoke"))
    assert len(recs) == 6 and {r["status"] for r in recs} == {"ok"}
    assert len({r["run_id"] for r in recs}) == 6 and {r["experiment"] for r in recs} == {
        "sweeps/smoke"
    }
    study = json.loads((tmp_path / "res/sweeps/smoke/smoke/study.json").read_text())
    trials = study["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE"] * 6
    assert study["provenance"]["git_commit"] and study["provenance"]["versions"]["optuna"]
    assert sorted(t["user_attrs"]["run_id"] for t in trials) == sorted(r["run_id"] for r in recs)
    assert "[worker 1] done:" in capfd.readouterr().out  # the second worker ran and ended
    report = (tmp_path / "rep/sweeps/smoke.md").read_text()
    assert "### Best configuration" in report and "### Parameter importances" in report
    assert "| 5 | complete |" in report and "## Provenance" in report
    for kind in ("importances", "slice", "parallel"):
        assert (tmp_path / f"rep/sweeps/smoke-smoke-{kind}.png").stat().st_size > 0

    assert main(args) == 0  # again, one worker: every point is done, nothing trains
    out = capfd.readouterr().out
    assert out.count("skipped (ok before)") == 6
    assert len(list(iter_results(tmp_path / "res", "sweeps/smoke"))) == 6
    again = json.loads((tmp_path / "res/sweeps/smoke/smoke/study.json").read_text())
    assert len(again["trials"]) == 6


def test_a_pruned_run_raises_through_train_run_and_writes_no_result(tmp_path: Path) -> None:
    import optuna

    from wm_bench.sweeps.engine import PrunedRun
    from wm_bench.sweeps.pruning import StepPruning
    from wm_bench.sweeps.spec import load_sweep
    from wm_bench.train import run

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return True

    cfg = load_sweep("smoke", sets={"train.max_steps": 40}).config(
        {"model.blocks.M.mixer.window": 4, "optim.lr": 1e-3}
    )
    trial = optuna.create_study(pruner=Always(), direction="maximize").ask()
    with pytest.raises(PrunedRun) as e:
        run(
            cfg,
            results_dir=tmp_path / "res",
            out_dir=tmp_path / "out",
            quiet=True,
            callbacks=[StepPruning(trial, "valid/accuracy")],
        )
    assert e.value.step == 20  # the first validation (every 20 steps), reported at that step
    assert list(trial.study.trials[0].intermediate_values) == [20]
    assert not list(iter_results(tmp_path / "res"))


def test_reproduce_with_two_workers_on_sqlite_runs_each_config_once(
    reproduce_dirs, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    import optuna

    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["reproduce", "mqar", "--scale", "smoke", "--quiet", "--storage", db, *reproduce_dirs]
    assert main([*args, "--workers", "2"]) == 0
    recs = list(iter_results(tmp_path / "res", "mqar"))
    assert len(recs) == 5 and len({r["run_id"] for r in recs}) == 5
    assert (tmp_path / "rep/mqar.md").exists()
    trials = [
        t
        for s in optuna.get_all_study_summaries(db)
        for t in optuna.load_study(study_name=s.study_name, storage=db).trials
    ]
    assert sorted(t.user_attrs["run_id"] for t in trials) == sorted(r["run_id"] for r in recs)
    assert "[worker 1]" in capfd.readouterr().out  # the second worker ran (its share may be 0)
    assert main(args) == 0  # a rerun trains nothing
    assert capfd.readouterr().out.count("skipped (ok before)") == 5
