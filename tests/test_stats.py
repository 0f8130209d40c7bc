"""wm_bench.stats on synthetic data whose right answer is known: quantiles, intervals, coverage,
verdicts (holds / refuted / inconclusive), non-inferiority, power planning."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from wm_bench import stats

# The committed C1 runs (results/rope/cpu): hybrid test perplexity at T per seed 0, 1, 2.
NOROPE = [61.892, 62.602, 63.505]
ROPE = [60.537, 60.660, 61.175]


@pytest.mark.parametrize(
    ("p", "df", "want"),
    [(0.975, 1, 12.7062047), (0.975, 2, 4.3026527), (0.975, 10, 2.2281389),
     (0.8, 6, 0.9057033), (0.995, 30, 2.7499957), (0.025, 4, -2.7764451),
     (0.975, 7.5, 2.3330396)],
)  # fmt: skip
def test_t_quantile_matches_tables(p: float, df: float, want: float) -> None:
    assert stats.t_quantile(p, df) == pytest.approx(want, abs=2e-6)
    assert stats.t_cdf(want, df) == pytest.approx(p, abs=1e-7)


def test_t_quantile_matches_scipy_where_installed() -> None:
    sp = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5.5, 9, 40, 300):
        for p in (0.6, 0.8, 0.9, 0.975, 0.999):
            assert stats.t_quantile(p, df) == pytest.approx(sp.t.ppf(p, df), rel=1e-7)
    for a, b, x in ((0.5, 3.0, 0.2), (4.0, 0.5, 0.9), (20.0, 30.0, 0.45)):
        assert stats.betainc(a, b, x) == pytest.approx(__import__("scipy").special.betainc(a, b, x))


def test_c1_committed_gains_are_inconclusive_not_refuted() -> None:
    gains = stats.relative_gains(NOROPE, ROPE)
    assert [round(100 * g, 2) for g in gains] == [2.19, 3.10, 3.67]
    iv = stats.paired_interval(NOROPE, ROPE, relative=True)
    assert (round(100 * iv.low, 1), round(100 * iv.high, 1)) == (1.1, 4.8)
    v = stats.threshold_verdict(iv, 0.04, rule="gain > 4 %", fmt=lambda x: f"{100 * x:.1f} %")
    assert v.verdict == "inconclusive" and v.n == 3 and v.threshold == 0.04
    assert "contains the threshold 4.0 %" in v.reason
    # Planning: the observed sd (0.75 points) and gap (1.0 point) need 7 seeds at 80 % power.
    assert v.n_needed == 7
    assert v.mde == pytest.approx((4.3026527 + 1.0606602) * iv.se, rel=1e-5)


def test_threshold_claim_holds_and_is_refuted_when_the_interval_is_clear_of_it() -> None:
    rng = np.random.default_rng(0)
    high = stats.mean_interval(0.06 + 0.003 * rng.standard_normal(6))
    low = stats.mean_interval(0.01 + 0.003 * rng.standard_normal(6))
    assert stats.threshold_verdict(high, 0.04, rule="r").verdict == "holds"
    v = stats.threshold_verdict(low, 0.04, rule="r")
    assert v.verdict == "refuted" and v.n_needed is None and "against the claim" in v.reason
    less = stats.threshold_verdict(low, 0.04, direction="less", rule="r")
    assert less.verdict == "holds"


def test_one_unit_is_inconclusive_with_n_1() -> None:
    iv = stats.mean_interval([0.10])
    assert not iv.bounded and iv.n == 1
    v = stats.threshold_verdict(iv, 0.04, rule="r")
    assert v.verdict == "inconclusive" and v.reason.startswith("inconclusive (n = 1)")
    d = v.to_dict()
    assert d["ci_low"] is None and d["ci_high"] is None and d["estimate"] == 0.10


def test_competitive_is_refuted_when_clearly_worse_by_more_than_the_margin() -> None:
    # log-perplexity ratio best baseline / subject per seed: the subject is ≈ 10 % worse.
    rng = np.random.default_rng(1)
    diffs = -0.10 + 0.01 * rng.standard_normal(4)
    v = stats.noninferiority_verdict(stats.mean_interval(diffs), math.log(1.02), rule="r")
    assert v.verdict == "refuted" and v.kind == "non-inferiority" and "inferior" in v.reason
    tie = stats.noninferiority_verdict(
        stats.mean_interval(0.002 + 0.002 * rng.standard_normal(8)), 0.02, rule="r"
    )
    assert tie.verdict == "holds" and tie.threshold == 0.02
    noisy = stats.noninferiority_verdict(stats.mean_interval([-0.05, 0.04]), 0.02, rule="r")
    assert noisy.verdict == "inconclusive"


def test_equivalence_needs_the_interval_inside_the_margin() -> None:
    inside = stats.Interval(0.0, -0.01, 0.01, 0.9, 10, "t", 0.005, 9.0, 0.016)
    assert stats.equivalence_verdict(inside, 0.02, rule="r").verdict == "holds"
    outside = stats.Interval(0.05, 0.03, 0.07, 0.9, 10, "t", 0.01, 9.0, 0.03)
    assert stats.equivalence_verdict(outside, 0.02, rule="r").verdict == "refuted"
    across = stats.Interval(0.0, -0.03, 0.03, 0.9, 10, "t", 0.015, 9.0, 0.05)
    assert stats.equivalence_verdict(across, 0.02, rule="r").verdict == "inconclusive"


def test_majority_counts_open_verdicts_both_ways() -> None:
    def v(word: str) -> stats.Verdict:
        return stats.Verdict(word, 0.0, 0.0, 0.0, 0.02, "greater", "non-inferiority", 3, "r", "")

    assert stats.majority_verdict([v("holds")] * 3 + [v("refuted")], rule="m").verdict == "holds"
    out = stats.majority_verdict([v("holds"), v("refuted"), v("inconclusive")], rule="m")
    assert out.verdict == "inconclusive" and (out.ci_low, out.ci_high) == (1 / 3, 2 / 3)
    assert (
        stats.majority_verdict([v("refuted")] * 2 + [v("inconclusive")] * 2, rule="m").verdict
        == "refuted"
    )


def _coverage(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


def test_t_intervals_cover_at_their_level() -> None:
    rng = np.random.default_rng(2)
    mu = 1.5
    one = [stats.mean_interval(mu + rng.standard_normal(5)).contains(mu) for _ in range(3000)]
    assert 0.93 <= _coverage(one) <= 0.97
    # Welch with unequal spreads and sizes: the difference of means is 0.
    welch = [
        stats.welch_interval(rng.normal(0, 1, 4), rng.normal(0, 4, 9)).contains(0.0)
        for _ in range(3000)
    ]
    assert 0.93 <= _coverage(welch) <= 0.975
    # Paired: a shared per-seed effect cancels, the difference (0.3) is covered.
    paired = []
    for _ in range(3000):
        base = rng.normal(60, 5, 6)
        paired.append(
            stats.paired_interval(base, base - 0.3 + 0.1 * rng.standard_normal(6)).contains(0.3)
        )
    assert 0.93 <= _coverage(paired) <= 0.97


def test_wilson_and_bootstrap_cover_at_their_level() -> None:
    rng = np.random.default_rng(3)
    p = 0.3
    wil = [stats.wilson_interval(int(rng.binomial(60, p)), 60).contains(p) for _ in range(3000)]
    assert 0.93 <= _coverage(wil) <= 0.975
    true_mean = 1.0  # exponential: skewed, where the bootstrap is used
    hits = [
        stats.bootstrap_interval(
            rng.exponential(true_mean, 40), lambda x: x.mean(-1), n_boot=1000, seed=i
        ).contains(true_mean)
        for i in range(400)
    ]
    assert 0.89 <= _coverage(hits) <= 0.985


def test_ratio_of_medians_bootstrap_is_seeded_and_finds_the_ratio() -> None:
    rng = np.random.default_rng(4)
    load = np.exp(0.2 * rng.standard_normal(12))  # shared per repeat (round robin)
    slow = 100.0 * load * np.exp(0.03 * rng.standard_normal(12))
    fast = 10.0 * load * np.exp(0.03 * rng.standard_normal(12))
    a = stats.bootstrap_ratio_of_medians(slow, fast, seed=7)
    b = stats.bootstrap_ratio_of_medians(slow, fast, seed=7)
    assert a == b and a.low < 10.0 < a.high and a.high - a.low < 1.5
    unpaired = stats.bootstrap_ratio_of_medians(slow, fast, paired=False, seed=7)
    assert unpaired.high - unpaired.low > a.high - a.low  # pairing removes the shared load
    assert stats.threshold_verdict(a, 8.0, rule="r").verdict == "holds"


def test_stratified_bootstrap_geometric_mean_over_points() -> None:
    rng = np.random.default_rng(5)
    noise = 0.05 * rng.standard_normal((2, 2, 10))
    groups = [
        np.stack([r * np.exp(noise[i, 0]), np.exp(noise[i, 1])], 1)
        for i, r in enumerate((9.0, 16.0))
    ]

    def geo(gs: list[np.ndarray]) -> np.ndarray:
        logs = [np.log(np.median(g[..., 0], -1) / np.median(g[..., 1], -1)) for g in gs]
        return np.exp(np.mean(logs, axis=0))

    iv = stats.stratified_bootstrap(groups, geo, seed=0)
    assert iv.low < 12.0 < iv.high and iv.n == 10


def test_per_example_comparisons_and_chance() -> None:
    a = [1] * 30 + [0] * 70
    b = [1] * 22 + [0] * 78
    iv = stats.paired_examples(a, b)
    assert iv.estimate == pytest.approx(0.08) and iv.n == 100
    m = stats.mcnemar([1] * 8 + [0] * 1 + [1] * 5, [0] * 8 + [1] * 1 + [1] * 5)
    assert (m.only_a, m.only_b) == (8, 1) and m.p_value == pytest.approx(20 / 512)
    at_chance = stats.chance_check(27, 100, 0.25)
    assert not at_chance.informative
    above = stats.chance_check(45, 100, 0.25)
    assert above.informative and above.above_chance
    newcombe = stats.two_proportions_interval(56, 70, 48, 80)  # Newcombe (1998), table II
    assert (round(newcombe.low, 4), round(newcombe.high, 4)) == (0.0524, 0.3339)
    zero = stats.wilson_interval(0, 100)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.0370, abs=2e-4)


def test_mde_and_n_needed_are_consistent_and_give_their_power() -> None:
    sd, gap = 1.0, 0.8
    n = stats.n_needed(sd, gap)
    assert n is not None and n > 2
    assert stats.mde(sd / math.sqrt(n), n - 1) <= gap < stats.mde(sd / math.sqrt(n - 1), n - 2)
    assert stats.n_needed(sd, 2 * gap) < n  # a bigger gap needs fewer units
    assert stats.n_needed(sd, 0.0) is None and stats.n_needed(None, 1.0) is None
    assert stats.mde(0.1, 4) > stats.mde(0.1, 40)  # fewer df, larger MDE at the same SE
    # Simulated power at n units when the truth sits `gap` above the threshold: ≈ 80 %.
    rng = np.random.default_rng(6)
    wins = [
        stats.threshold_verdict(
            stats.mean_interval(gap + sd * rng.standard_normal(n)), 0.0, rule="r"
        ).verdict
        == "holds"
        for _ in range(2000)
    ]
    assert 0.75 <= _coverage(wins) <= 0.88


def test_bad_inputs_name_the_value_and_what_is_valid() -> None:
    with pytest.raises(ValueError, match=r"direction='up'; valid: \['greater', 'less'\]"):
        stats.threshold_verdict(stats.mean_interval([1.0, 2.0]), 0.0, direction="up", rule="r")
    with pytest.raises(ValueError, match="level=95"):
        stats.mean_interval([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match=r"method='student'; valid: \['percentile', 'bca'\]"):
        stats.bootstrap_interval([1.0, 2.0], lambda x: x.mean(-1), method="student")
    with pytest.raises(ValueError, match="differ in length: 2 vs 3"):
        stats.paired_differences([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="k=5, n=3"):
        stats.wilson_interval(5, 3)
    with pytest.raises(ValueError, match="verdict='maybe'"):
        stats.Verdict("maybe", 0, 0, 0, 0, "greater", "threshold", 1, "", "")


def test_stats_imports_no_torch() -> None:
    code = "import sys, wm_bench.stats; assert not {'torch', 'scipy'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
