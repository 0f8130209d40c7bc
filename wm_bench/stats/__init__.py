"""Statistics behind the claim verdicts: t, bootstrap and binomial intervals, tests, power, Verdict.

Everything here is plain Python + numpy (no torch, no scipy), so reports stay pure functions of
results/. Conventions:
- An `Interval` is two-sided at `level` (default 95 %). A one-sided claim "x > c" is judged by
  where that interval lies: wholly above c → holds, wholly below → refuted, else inconclusive
  (each side is a one-sided test at (1 − level)/2 = 2.5 %).
- With fewer than two units (seeds, repeats, examples) there is no spread: the interval is
  unbounded (−inf, +inf), and every verdict built on it is inconclusive (n = 1).
- Power planning (`mde`, `n_needed`) uses the t approximation at `POWER` = 80 %: the minimum
  detectable effect is (t_{1−α/2} + t_{power}) · SE, and the units needed to decide are the
  smallest n at which that distance drops below the observed gap to the threshold.

`distributions` holds the normal, t and binomial functions, `intervals` the intervals and tests,
`verdicts` power planning and the verdicts; every public name is importable from here.
"""

from __future__ import annotations

from wm_bench.stats.distributions import (
    betainc,
    binom_two_sided_p,
    normal_cdf,
    normal_quantile,
    t_cdf,
    t_quantile,
)
from wm_bench.stats.intervals import (
    BOOTSTRAP_METHODS,
    LEVEL,
    ChanceCheck,
    Interval,
    McNemar,
    bootstrap_interval,
    bootstrap_ratio_of_medians,
    chance_check,
    mcnemar,
    mean_interval,
    median_ratio,
    paired_differences,
    paired_examples,
    paired_interval,
    relative_gains,
    stratified_bootstrap,
    two_proportions_interval,
    welch_interval,
    wilson_interval,
)
from wm_bench.stats.verdicts import (
    DIRECTIONS,
    KINDS,
    N_MAX,
    POWER,
    VERDICTS,
    Verdict,
    equivalence_verdict,
    majority_verdict,
    mde,
    n_needed,
    noninferiority_verdict,
    threshold_verdict,
)

__all__ = [
    "BOOTSTRAP_METHODS",
    "DIRECTIONS",
    "KINDS",
    "LEVEL",
    "N_MAX",
    "POWER",
    "VERDICTS",
    "ChanceCheck",
    "Interval",
    "McNemar",
    "Verdict",
    "betainc",
    "binom_two_sided_p",
    "bootstrap_interval",
    "bootstrap_ratio_of_medians",
    "chance_check",
    "equivalence_verdict",
    "majority_verdict",
    "mcnemar",
    "mde",
    "mean_interval",
    "median_ratio",
    "n_needed",
    "noninferiority_verdict",
    "normal_cdf",
    "normal_quantile",
    "paired_differences",
    "paired_examples",
    "paired_interval",
    "relative_gains",
    "stratified_bootstrap",
    "t_cdf",
    "t_quantile",
    "threshold_verdict",
    "two_proportions_interval",
    "welch_interval",
    "wilson_interval",
]
