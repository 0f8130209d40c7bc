"""Adding seeds until decided: the alpha-spending plan and its error rate under repeated looks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wm_bench import stats
from wm_bench.sequential import look_levels, spent, until_decided


def test_spending_starts_at_zero_ends_at_alpha_and_grows():
    ts = np.linspace(0.0, 1.0, 21)
    vals = [spent(float(t)) for t in ts]
    assert vals[0] == 0.0 and vals[-1] == pytest.approx(0.05)
    assert all(b >= a for a, b in itertools.pairwise(vals))
    assert spent(0.5) == pytest.approx(0.0056, abs=2e-4)  # early looks spend almost nothing


def test_look_levels_spend_exactly_alpha_in_total():
    levels = look_levels([4, 6, 8, 10, 12], 12)
    assert sum(1.0 - x for x in levels) == pytest.approx(0.05)
    assert all(0.95 <= x < 1.0 for x in levels)
    with pytest.raises(ValueError, match="must increase"):
        look_levels([6, 4], 12)


def _judge_from(gains: np.ndarray, threshold: float):
    """The threshold rule on a t interval (stats.threshold_verdict's rule, without its power
    planning, which is slow for thousands of simulated looks)."""

    def judge(n: int, level: float) -> stats.Verdict:
        iv = stats.mean_interval(list(gains[:n]), level)
        word = (
            "holds"
            if iv.low > threshold
            else "refuted"
            if iv.high < threshold
            else ("inconclusive")
        )
        return stats.Verdict(
            word,
            iv.estimate,
            iv.low,
            iv.high,
            threshold,
            "greater",
            "threshold",
            n,
            "gain > threshold",
            word,
        )

    return judge


def _error_rate(sequential: bool, sims: int = 1500) -> float:
    """P(a "holds" verdict) when the true gain sits exactly on the threshold (a false claim)."""
    rng = np.random.default_rng(7)
    wrong = 0
    for _ in range(sims):
        gains = 0.04 + 0.01 * rng.standard_normal(12)
        judge = _judge_from(gains, 0.04)
        if sequential:
            looks = until_decided(3, 12, 1, judge, lambda n: None, log=lambda s: None)
            wrong += looks[-1].verdict.verdict == "holds"
        else:  # naive: a 95 % interval at every look, stop at the first decision
            for n in range(3, 13):
                v = judge(n, 0.95).verdict
                if v != "inconclusive":
                    wrong += v == "holds"
                    break
    return wrong / sims


def test_alpha_spending_keeps_the_false_holds_rate_at_most_2_5_percent():
    # One side of a 95 % two-sided plan: ≤ 2.5 %, plus Monte-Carlo slack (1500 runs: SE ≈ 0.4 %).
    assert _error_rate(sequential=True) <= 0.025 + 0.01
    # Looking ten times at 95 % each would inflate it well past 2.5 %.
    assert _error_rate(sequential=False) > 0.05


def test_a_clear_effect_is_decided_early_and_the_budget_is_reported(capsys):
    gains = np.full(12, 0.10) + 0.002 * np.arange(12)
    added = []
    looks = until_decided(3, 12, 2, _judge_from(gains, 0.04), added.append)
    assert looks[-1].verdict.verdict == "holds" and len(looks) <= 2
    flat = 0.04 + 0.02 * np.random.default_rng(0).standard_normal(12)
    looks = until_decided(3, 5, 1, _judge_from(flat, 0.04), lambda n: None)
    assert [lk.n for lk in looks] == [3, 4, 5]
    assert "cannot decide" in capsys.readouterr().out


def test_bad_plans_name_the_bad_value():
    judge = _judge_from(np.zeros(4), 0.0)
    with pytest.raises(ValueError, match="n_start=1"):
        until_decided(1, 5, 1, judge, lambda n: None)
    with pytest.raises(ValueError, match="step=0"):
        until_decided(2, 5, 0, judge, lambda n: None)
    with pytest.raises(ValueError, match="n_max=2"):
        until_decided(3, 2, 1, judge, lambda n: None)


def test_pair_decision_reads_seeds_at_each_variants_best_lr(tmp_path):
    """tasks/_lm.py PairDecision on hand-written results: best LR per variant from the tune seed,
    then the seeds both variants have, paired."""
    from wm_bench.config import run_identity
    from wm_bench.results import make_result, write_result
    from wm_bench_tasks._lm import PairDecision
    from wm_bench_tasks.rope import make_run

    def write(variant: str, lr: float, seed: int, ppl: float) -> None:
        cfg = make_run("smoke", variant, seed, lr)
        rec = make_result(
            **run_identity(cfg),
            status="ok",
            metrics={"valid/ppl": ppl, "test/ppl@64": ppl},
            higher_is_better={"valid/ppl": False, "test/ppl@64": False},
        )
        write_result(rec, tmp_path)

    dec = PairDecision(
        "rope",
        "smoke",
        "hybrid_rope",
        "hybrid_norope",
        "test/ppl@64",
        0.04,
        "rule",
        (1e-3, 3e-3),
        lambda v, lr, s: make_run("smoke", v, s, lr),
        tmp_path,
    )
    assert dec.best_lr("hybrid_rope") is None  # no tune runs yet
    for v, better in (("hybrid_rope", 3e-3), ("hybrid_norope", 1e-3)):
        for lr in (1e-3, 3e-3):
            write(v, lr, 0, 90.0 if lr == better else 120.0)
    assert dec.best_lr("hybrid_rope") == 3e-3 and dec.best_lr("hybrid_norope") == 1e-3
    assert dec.seeds_done() == 1
    for seed, (a, b) in enumerate([(90.0, 100.0), (91.0, 100.0), (92.0, 100.0)]):
        write("hybrid_rope", 3e-3, seed, a) if seed else None
        write("hybrid_norope", 1e-3, seed, b)
    assert dec.seeds_done() == 3
    base, treated = dec.values(3)
    assert base == [100.0, 100.0, 100.0] and treated == [90.0, 91.0, 92.0]
    v = dec.judge(3, 0.95)
    assert v.verdict == "holds" and v.estimate == pytest.approx(0.09)
    assert {c.optim.lr for c in dec.configs(4) if c.variant == "hybrid_rope"} == {3e-3}
