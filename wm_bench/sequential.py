"""Adding seeds until a comparison is decided, with the repeated looks paid for (alpha spending).

Looking at a comparison after every new seed and stopping once it is decided inflates the
error rate: each look is one more chance for noise to cross a boundary. The plan here spends
the total error α (5 %, two-sided: 2.5 % per side, as the verdicts' 95 % intervals) over the
looks with a Lan–DeMets O'Brien–Fleming-type spending function

    α(t) = 2 · (1 − Φ(z_{1−α/2} / √t)),   t = n / n_max  (the information fraction),

and judges look k with an interval at level 1 − (α(t_k) − α(t_{k−1})). The increments sum to
α(1) = α, so by the union bound the chance that any look reaches a wrong "holds" or "refuted"
is at most α, however many looks are taken. Early looks spend almost nothing (at t = 1/2 the
look is at 99.4 %), the last one nearly all of α. This is conservative (it ignores the
correlation between looks) and simple to check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from wm_bench.stats import LEVEL, Verdict, normal_cdf, normal_quantile


def spent(t: float, alpha: float = 1.0 - LEVEL) -> float:
    """α(t) of the O'Brien–Fleming-type spending function (module docstring); α(1) = alpha."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"information fraction t={t} must be in [0, 1]")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha} must be in (0, 1)")
    if t == 0.0:
        return 0.0
    z = normal_quantile(1.0 - alpha / 2.0)
    return 2.0 * (1.0 - normal_cdf(z / t**0.5))


def look_levels(ns: list[int], n_max: int, alpha: float = 1.0 - LEVEL) -> list[float]:
    """Interval level of each look at sample sizes `ns` (increasing, last ≤ n_max)."""
    if not ns or any(b <= a for a, b in itertools.pairwise(ns)) or ns[-1] > n_max or ns[0] < 1:
        raise ValueError(f"looks at n={ns} must increase from ≥ 1 to ≤ n_max={n_max}")
    levels, before = [], 0.0
    for n in ns:
        now = spent(n / n_max, alpha)
        levels.append(1.0 - (now - before))
        before = now
    return levels


@dataclass(frozen=True)
class Look:
    """One look: the seeds behind it, the level it was judged at, and the verdict."""

    n: int
    level: float
    verdict: Verdict


def until_decided(
    n_start: int,
    n_max: int,
    step: int,
    judge: Callable[[int, float], Verdict],
    add: Callable[[int], None],
    log: Callable[[str], None] = print,
) -> list[Look]:
    """Look at n_start seeds, then add `step` seeds at a time until decided or n_max.

    Args:
        n_start: seeds already run (the first look).
        n_max: the seed budget (the last possible look).
        step: seeds added between looks.
        judge: (n seeds, interval level) → the verdict from the first n seeds.
        add: n → run seeds until n exist.
    Returns:
        the looks taken, in order; the last one holds the decision, or "inconclusive" when the
        budget cannot decide (the log says so).
    """
    if step < 1:
        raise ValueError(f"step={step} must be ≥ 1")
    if n_start < 2:
        raise ValueError(f"n_start={n_start}: a first look needs ≥ 2 seeds (a spread)")
    if n_max < n_start:
        raise ValueError(f"n_max={n_max} must be ≥ the seeds already run ({n_start})")
    ns = list(range(n_start, n_max + 1, step))
    if ns[-1] != n_max:
        ns.append(n_max)
    levels = look_levels(ns, n_max)
    looks: list[Look] = []
    for i, (n, level) in enumerate(zip(ns, levels)):
        if i:
            add(n)
        v = judge(n, level)
        looks.append(Look(n, level, v))
        log(
            f"look {i + 1}/{len(ns)} at {n} seeds (level {100 * level:.2f} %): {v.verdict}: "
            f"{v.reason}"
        )
        if v.verdict != "inconclusive":
            return looks
    log(f"the budget of {n_max} seeds cannot decide: still inconclusive after {len(looks)} looks")
    return looks
