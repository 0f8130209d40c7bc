"""Per-variant LR tuning (tasks._lm.tune_variant): a winning grid edge extends the grid."""

from __future__ import annotations

from task_results import write_fake_result

from wm_bench_tasks._lm import TUNE_SEED, staged_runs, tune_variant
from wm_bench_tasks.rope import make_run


def _make(v: str, lr: float, seed: int):
    return make_run("smoke", v, seed, lr)


def _write(tmp_path, v: str, lr: float, ppl: float | None, seed: int = TUNE_SEED) -> None:
    metrics = {} if ppl is None else {"valid/ppl": ppl}
    status = "ok" if metrics else "diverged"
    write_fake_result(tmp_path, _make(v, lr, seed), metrics, higher_is_better=False, status=status)


def test_an_interior_best_is_chosen_without_extending(tmp_path):
    for lr, ppl in ((1e-3, 120.0), (2e-3, 100.0), (4e-3, 110.0)):
        _write(tmp_path, "attn", lr, ppl)
    best, tune = tune_variant("attn", (1e-3, 2e-3, 4e-3), _make, results_dir=tmp_path, max_extend=1)
    assert best == 2e-3 and len(tune) == 3


def test_a_winning_top_edge_adds_the_next_lr_then_decides(tmp_path):
    for lr, ppl in ((1e-3, 120.0), (2e-3, 110.0), (4e-3, 100.0)):
        _write(tmp_path, "attn", lr, ppl)
    best, tune = tune_variant("attn", (1e-3, 2e-3, 4e-3), _make, results_dir=tmp_path, max_extend=1)
    assert best is None and sorted(c.optim.lr for c in tune) == [1e-3, 2e-3, 4e-3, 8e-3]
    _write(tmp_path, "attn", 8e-3, None)  # diverged: the worst value, so 4e-3 stays best
    best, tune = tune_variant("attn", (1e-3, 2e-3, 4e-3), _make, results_dir=tmp_path, max_extend=1)
    assert best == 4e-3 and len(tune) == 4
    # Without extensions the edge is taken as it is.
    assert tune_variant("attn", (1e-3, 2e-3, 4e-3), _make, results_dir=tmp_path)[0] == 4e-3


def test_a_winning_bottom_edge_extends_downwards_and_seeds_follow(tmp_path):
    for lr, ppl in ((1e-3, 90.0), (2e-3, 100.0), (4e-3, 110.0), (5e-4, 95.0)):
        _write(tmp_path, "attn", lr, ppl)
    runs = staged_runs(
        ["attn"], (1e-3, 2e-3, 4e-3), lambda v: (0, 1, 2), _make, results_dir=tmp_path, max_extend=1
    )
    tune = [c for c in runs if c.seed == TUNE_SEED]
    seeds = [c for c in runs if c.seed != TUNE_SEED]
    assert sorted(c.optim.lr for c in tune) == [5e-4, 1e-3, 2e-3, 4e-3]
    assert [(c.seed, c.optim.lr) for c in seeds] == [(1, 1e-3), (2, 1e-3)]
