"""Two-sided confidence intervals: t (one sample, paired, Welch), bootstrap (percentile, BCa,
stratified, ratio of medians), Wilson and two-proportion intervals, chance checks, McNemar."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wm_bench.stats.distributions import binom_two_sided_p, normal_cdf, normal_quantile, t_quantile

LEVEL = 0.95
BOOTSTRAP_METHODS: tuple[str, ...] = ("percentile", "bca")


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval for one quantity.

    low and high are ±inf when the interval cannot be computed (e.g. one seed); se, df and sd are
    None where the method has none.
    """

    estimate: float  # the point estimate
    low: float  # lower bound
    high: float  # upper bound
    level: float  # confidence level, e.g. 0.95
    n: int  # the units it rests on (seeds, repeats, examples)
    method: str  # "paired t", "Welch t", "bootstrap BCa", "Wilson", …
    se: float | None = None  # the estimate's standard error (t methods)
    df: float | None = None  # degrees of freedom (t methods)
    sd: float | None = None  # per-unit standard deviation (what power planning scales by √n)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (e.g. ×100 for percent); factor > 0."""
        if not factor > 0:
            raise ValueError(f"Interval.scaled: factor={factor!r} must be > 0")

        def mul(x: float | None) -> float | None:
            return None if x is None else x * factor

        return Interval(
            self.estimate * factor,
            self.low * factor,
            self.high * factor,
            self.level,
            self.n,
            self.method,
            mul(self.se),
            self.df,
            mul(self.sd),
        )


def _check_level(level: float) -> None:
    if not (isinstance(level, float) and 0.5 <= level < 1.0):
        raise ValueError(f"level={level!r}; valid: a float in [0.5, 1), e.g. 0.95")


def _values(xs: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(list(xs), dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: need a non-empty sequence of numbers, got {len(arr)} value(s)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: non-finite value(s) {arr[~np.isfinite(arr)].tolist()}")
    return arr


def mean_interval(xs: Sequence[float], level: float = LEVEL, method: str = "t") -> Interval:
    """Student-t interval of the mean of xs (unbounded when n < 2)."""
    _check_level(level)
    arr = _values(xs, "mean_interval")
    n, mean = arr.size, float(arr.mean())
    if n < 2:
        return Interval(mean, -math.inf, math.inf, level, n, method)
    sd = float(arr.std(ddof=1))
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    return Interval(mean, mean - half, mean + half, level, n, method, se, float(n - 1), sd)


def paired_differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a_i − b_i for pairs that share a unit (a seed's data stream, an example)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return [float(x) - float(y) for x, y in zip(a, b, strict=True)]


def relative_gains(before: Sequence[float], after: Sequence[float]) -> list[float]:
    """Per pair (before − after) / before, e.g. the perplexity reduction of a change per seed."""
    if len(before) != len(after):
        raise ValueError(f"paired samples differ in length: {len(before)} vs {len(after)}")
    out = []
    for x, y in zip(before, after, strict=True):
        if not x > 0:
            raise ValueError(f"relative_gains: baseline value {x!r} must be > 0")
        out.append((float(x) - float(y)) / float(x))
    return out


def paired_interval(
    a: Sequence[float], b: Sequence[float], level: float = LEVEL, *, relative: bool = False
) -> Interval:
    """t interval of the mean paired difference a − b, or with relative=True of the mean
    relative gain (a − b) / a (a = baseline, b = treated)."""
    diffs = relative_gains(a, b) if relative else paired_differences(a, b)
    return mean_interval(diffs, level, method="paired t" + (" (relative)" if relative else ""))


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Welch t interval of mean(a) − mean(b) for independent samples (unbounded if either n < 2).

    `sd` is the pooled per-unit spread √((s_a² + s_b²)/2), for planning equal group sizes."""
    _check_level(level)
    x, y = _values(a, "welch_interval a"), _values(b, "welch_interval b")
    est = float(x.mean() - y.mean())
    n = int(min(x.size, y.size))
    if x.size < 2 or y.size < 2:
        return Interval(est, -math.inf, math.inf, level, n, "Welch t")
    va, vb = float(x.var(ddof=1)), float(y.var(ddof=1))
    qa, qb = va / x.size, vb / y.size
    se = math.sqrt(qa + qb)
    if se == 0:
        return Interval(est, est, est, level, n, "Welch t", 0.0, math.inf, 0.0)
    df = (qa + qb) ** 2 / (qa**2 / (x.size - 1) + qb**2 / (y.size - 1))
    half = t_quantile(0.5 + level / 2.0, df) * se
    return Interval(
        est, est - half, est + half, level, n, "Welch t", se, df, math.sqrt((va + vb) / 2.0)
    )


Statistic = Callable[[np.ndarray], np.ndarray]


def _bootstrap_bounds(
    reps: np.ndarray, est: float, level: float, method: str, jack: np.ndarray | None
) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return -math.inf, math.inf
    if np.all(reps == reps[0]):
        return float(reps[0]), float(reps[0])
    probs = (alpha, 1.0 - alpha)
    if method == "bca" and jack is not None:
        frac = (np.sum(reps < est) + 0.5 * np.sum(reps == est)) / reps.size
        dev = jack.mean() - jack
        den = 6.0 * float(np.sum(dev**2)) ** 1.5
        if 0.0 < frac < 1.0 and den > 0:
            z0 = normal_quantile(float(frac))
            acc = float(np.sum(dev**3)) / den
            adj = []
            for p in probs:
                z = z0 + normal_quantile(p)
                adj.append(normal_cdf(z0 + z / (1.0 - acc * z)))
            probs = (adj[0], adj[1])
    lo, hi = np.quantile(reps, probs)
    return float(lo), float(hi)


def bootstrap_interval(
    data: Sequence[Any] | np.ndarray,
    statistic: Statistic,
    *,
    level: float = LEVEL,
    n_boot: int = 4000,
    seed: int = 0,
    method: str = "bca",
) -> Interval:
    """Bootstrap interval of statistic(data), resampling the rows (units) of data.

    Args:
        data: [n] values, or [n, k] rows that stay together (paired columns).
        statistic: maps an array [..., n] (or [..., n, k]) of resampled units to [...]: it must
            reduce the unit axis (e.g. `lambda x: np.median(x, axis=-1)`), so that all resamples
            are computed at once.
        level: confidence level; n_boot: resamples; seed: the generator's seed (deterministic).
        method: "bca" (bias-corrected and accelerated, jackknife acceleration) or "percentile".
    Returns:
        An Interval (unbounded when n < 2).
    """
    _check_level(level)
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"bootstrap method={method!r}; valid: {list(BOOTSTRAP_METHODS)}")
    if n_boot < 100:
        raise ValueError(f"bootstrap n_boot={n_boot}; valid: ≥ 100")
    arr = np.asarray(data, dtype=float)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise ValueError(f"bootstrap data must be [n] or [n, k] with n ≥ 1, got {arr.shape}")
    n = arr.shape[0]
    est = float(statistic(arr))
    name = f"bootstrap {'BCa' if method == 'bca' else 'percentile'}"
    if n < 2:
        return Interval(est, -math.inf, math.inf, level, n, name)
    rng = np.random.default_rng(seed)
    reps = np.asarray(statistic(arr[rng.integers(0, n, size=(n_boot, n))]), dtype=float)
    jack = None
    if method == "bca":
        keep = ~np.eye(n, dtype=bool)
        jack = np.asarray(statistic(np.stack([arr[row] for row in keep])), dtype=float)
    lo, hi = _bootstrap_bounds(reps, est, level, method, jack)
    return Interval(est, lo, hi, level, n, name)


def median_ratio(x: np.ndarray) -> np.ndarray:
    """median(column 0) / median(column 1) over the unit axis of [..., n, 2]."""
    return np.median(x[..., 0], axis=-1) / np.median(x[..., 1], axis=-1)


def bootstrap_ratio_of_medians(
    num: Sequence[float],
    den: Sequence[float],
    *,
    paired: bool = True,
    level: float = LEVEL,
    n_boot: int = 4000,
    seed: int = 0,
    method: str = "bca",
) -> Interval:
    """Bootstrap interval of median(num) / median(den), e.g. a speed-up from repeated timings.

    paired=True resamples repeat indices jointly (round-robin timings: repeat i of both methods
    ran back to back, under the same load); paired=False resamples each side on its own
    (percentile method)."""
    a, b = _values(num, "numerator timings"), _values(den, "denominator timings")
    if np.any(b <= 0) or np.any(a <= 0):
        raise ValueError("ratio of medians: timings must be > 0")
    if paired:
        if a.size != b.size:
            raise ValueError(f"paired timings differ in length: {a.size} vs {b.size}")
        return bootstrap_interval(
            np.stack([a, b], axis=1),
            median_ratio,
            level=level,
            n_boot=n_boot,
            seed=seed,
            method=method,
        )
    return stratified_bootstrap(
        [a, b],
        lambda g: np.median(g[0], -1) / np.median(g[1], -1),
        level=level,
        n_boot=n_boot,
        seed=seed,
    )


def stratified_bootstrap(
    groups: Sequence[Sequence[Any] | np.ndarray],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    *,
    level: float = LEVEL,
    n_boot: int = 4000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of a statistic of several independent groups, each resampled on its
    own (rows of a group stay together).

    Args:
        groups: arrays [n_g] or [n_g, k].
        statistic: list of resampled groups, each [..., n_g(, k)] → [...] (vectorised).
    Returns:
        An Interval whose n is the smallest group size (unbounded when it is < 2).
    """
    _check_level(level)
    arrs = [np.asarray(g, dtype=float) for g in groups]
    if not arrs or any(a.ndim not in (1, 2) or a.shape[0] == 0 for a in arrs):
        raise ValueError("stratified_bootstrap: need non-empty groups of shape [n] or [n, k]")
    n = min(a.shape[0] for a in arrs)
    est = float(statistic(arrs))
    if n < 2:
        return Interval(est, -math.inf, math.inf, level, n, "stratified bootstrap percentile")
    rng = np.random.default_rng(seed)
    res = [a[rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))] for a in arrs]
    reps = np.asarray(statistic(res), dtype=float)
    lo, hi = _bootstrap_bounds(reps, est, level, "percentile", None)
    return Interval(est, lo, hi, level, n, "stratified bootstrap percentile")


def wilson_interval(k: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval of a proportion k/n (e.g. an accuracy over n scored items)."""
    _check_level(level)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need n ≥ 1 and 0 ≤ k ≤ n, got k={k}, n={n}")
    z = normal_quantile(0.5 + level / 2.0)
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(
        p,
        max(0.0, centre - half),
        min(1.0, centre + half),
        level,
        n,
        "Wilson",
        math.sqrt(p * (1 - p) / n),
        None,
        math.sqrt(p * (1 - p)),
    )


def two_proportions_interval(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Interval:
    """Interval of p1 − p2 for two independent proportions (Newcombe's hybrid score interval,
    from the two Wilson intervals); for accuracies without per-example pairing."""
    a, b = wilson_interval(k1, n1, level), wilson_interval(k2, n2, level)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    se = math.sqrt((a.se or 0.0) ** 2 + (b.se or 0.0) ** 2)
    return Interval(
        d,
        low,
        high,
        level,
        min(n1, n2),
        "Newcombe (unpaired)",
        se,
        math.inf,
        se * math.sqrt(min(n1, n2)),
    )


@dataclass(frozen=True)
class ChanceCheck:
    """Is an accuracy distinguishable from chance? informative: the interval excludes chance."""

    interval: Interval
    chance: float

    @property
    def informative(self) -> bool:
        return not self.interval.contains(self.chance)

    @property
    def above_chance(self) -> bool:
        return self.interval.low > self.chance


def chance_check(k: int, n: int, chance: float, level: float = LEVEL) -> ChanceCheck:
    """Wilson interval of k/n and whether it contains the chance accuracy."""
    if not 0.0 <= chance <= 1.0:
        raise ValueError(f"chance={chance!r} must lie in [0, 1]")
    return ChanceCheck(wilson_interval(k, n, level), chance)


def paired_examples(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Per-example paired comparison on the same examples: t interval of mean(a − b).

    Works for 0/1 scores (an accuracy difference; the t interval over many examples is the
    usual paired-proportion interval) and for continuous scores (log-likelihoods)."""
    return mean_interval(paired_differences(a, b), level, method="paired t over examples")


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs of two 0/1 scorings of the same examples, and the exact test."""

    only_a: int  # examples a gets right and b wrong
    only_b: int
    p_value: float


def mcnemar(a: Sequence[float], b: Sequence[float]) -> McNemar:
    """McNemar's exact test of two 0/1 scorings of the same examples (H0: equal accuracy)."""
    if len(a) != len(b):
        raise ValueError(f"mcnemar: scorings differ in length: {len(a)} vs {len(b)}")
    bad = sorted({x for x in [*a, *b] if x not in (0, 1)})
    if bad:
        raise ValueError(f"mcnemar: scores must be 0 or 1, got {bad[:5]}")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x == 1 and y == 0)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if x == 0 and y == 1)
    return McNemar(only_a, only_b, binom_two_sided_p(only_a, only_a + only_b))
