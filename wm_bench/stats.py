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
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

LEVEL = 0.95
POWER = 0.80
VERDICTS: tuple[str, ...] = ("holds", "refuted", "inconclusive")
DIRECTIONS: tuple[str, ...] = ("greater", "less")
KINDS: tuple[str, ...] = ("threshold", "non-inferiority", "equivalence", "majority")
BOOTSTRAP_METHODS: tuple[str, ...] = ("percentile", "bca")
N_MAX = 100_000  # n_needed gives up (None) beyond this many units

# ---------------------------------------------------------------------------------------------
# Distributions


def normal_cdf(x: float) -> float:
    """Φ(x) of the standard normal."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_quantile(p: float) -> float:
    """Φ⁻¹(p) of the standard normal; ValueError unless 0 < p < 1."""
    _check_prob(p, "p")
    return statistics.NormalDist().inv_cdf(p)


def _check_prob(p: float, name: str) -> None:
    if not (isinstance(p, (int, float)) and 0.0 < p < 1.0):
        raise ValueError(f"{name}={p!r} must be a probability strictly between 0 and 1")


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz evaluation)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    out = d
    for m in range(1, 10_000):
        # even step, then odd step of the fraction
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            out *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return out


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a > 0 and b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x={x} must lie in [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with df > 0 degrees of freedom (df = inf: the normal)."""
    if not df > 0:
        raise ValueError(f"t_cdf: df={df!r} must be > 0")
    if math.isinf(df) or df > 1e7:
        return normal_cdf(t)
    if t == 0:
        return 0.5
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (bisection on t_cdf)."""
    _check_prob(p, "p")
    if not df > 0:
        raise ValueError(f"t_quantile: df={df!r} must be > 0")
    if math.isinf(df) or df > 1e7:
        return normal_quantile(p)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def binom_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (McNemar's exact test)."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"binomial test: need 0 ≤ k ≤ n, got k={k}, n={n}")
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = Fraction(sum(math.comb(n, i) for i in range(low + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


# ---------------------------------------------------------------------------------------------
# Intervals


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval for one quantity.

    Attributes:
        estimate: the point estimate.
        low, high: the interval (±inf when it cannot be computed, e.g. one seed).
        level: its confidence level.
        n: the units it rests on (seeds, repeats, examples).
        method: how it was computed ("paired t", "Welch t", "bootstrap BCa", "Wilson", …).
        se: the estimate's standard error, when the method has one (t methods).
        df: degrees of freedom (t methods).
        sd: per-unit standard deviation (what power planning scales by √n), when known.
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str
    se: float | None = None
    df: float | None = None
    sd: float | None = None

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

        return Interval(self.estimate * factor, self.low * factor, self.high * factor, self.level,
                        self.n, self.method, mul(self.se), self.df, mul(self.sd))  # fmt: skip


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
    return Interval(est, est - half, est + half, level, n, "Welch t", se, df,
                    math.sqrt((va + vb) / 2.0))  # fmt: skip


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
        return bootstrap_interval(np.stack([a, b], axis=1), median_ratio, level=level,
                                  n_boot=n_boot, seed=seed, method=method)  # fmt: skip
    return stratified_bootstrap(
        [a, b], lambda g: np.median(g[0], -1) / np.median(g[1], -1), level=level,
        n_boot=n_boot, seed=seed,
    )  # fmt: skip


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
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level, n, "Wilson",
                    math.sqrt(p * (1 - p) / n), None, math.sqrt(p * (1 - p)))  # fmt: skip


def two_proportions_interval(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Interval:
    """Interval of p1 − p2 for two independent proportions (Newcombe's hybrid score interval,
    from the two Wilson intervals); for accuracies without per-example pairing."""
    a, b = wilson_interval(k1, n1, level), wilson_interval(k2, n2, level)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    se = math.sqrt((a.se or 0.0) ** 2 + (b.se or 0.0) ** 2)
    return Interval(d, low, high, level, min(n1, n2), "Newcombe (unpaired)", se, math.inf,
                    se * math.sqrt(min(n1, n2)))  # fmt: skip


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


# ---------------------------------------------------------------------------------------------
# Power


def mde(se: float | None, df: float | None, level: float = LEVEL, power: float = POWER) -> float:
    """Minimum detectable effect: the distance from a threshold that a test at `level` detects
    with probability `power`, (t_{1−α/2} + t_{power}) · se; inf when se is unknown."""
    if se is None or df is None or not math.isfinite(se):
        return math.inf
    return (t_quantile(0.5 + level / 2.0, df) + t_quantile(power, df)) * se


def n_needed(
    sd: float | None, gap: float, level: float = LEVEL, power: float = POWER, n_max: int = N_MAX
) -> int | None:
    """The smallest n (≥ 2) whose MDE, (t_{1−α/2,n−1} + t_{power,n−1}) · sd/√n, is at most `gap`
    (the distance between the estimate and the threshold). None when sd is unknown, the gap is
    zero or n would exceed n_max."""
    if sd is None or not math.isfinite(sd) or not math.isfinite(gap) or gap <= 0:
        return None
    if sd == 0:
        return 2

    def ok(n: int) -> bool:
        return mde(sd / math.sqrt(n), n - 1, level, power) <= gap

    if not ok(n_max):
        return None
    lo, hi = 2, 2
    while not ok(hi):
        lo, hi = hi, min(2 * hi, n_max)
    while lo < hi:  # the smallest n with ok(n); ok is monotone in n
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _planning_scale(iv: Interval) -> tuple[float | None, float | None, float | None]:
    """(se, df, sd) for power planning; from the half-width when the method has no se."""
    if iv.se is not None and iv.df is not None:
        return iv.se, iv.df, iv.sd
    if iv.bounded and iv.n >= 2 and iv.high > iv.low:
        z = normal_quantile(0.5 + iv.level / 2.0)
        se = (iv.high - iv.low) / (2.0 * z)
        return se, math.inf, se * math.sqrt(iv.n)
    return None, None, None


# ---------------------------------------------------------------------------------------------
# Verdicts


@dataclass(frozen=True)
class Verdict:
    """A claim judged from an interval: holds, refuted or inconclusive, and why.

    Attributes:
        verdict: one of VERDICTS.
        estimate, ci_low, ci_high: the quantity's estimate and interval (None: not computable).
        threshold: the threshold of a threshold claim, or the margin of a non-inferiority /
            equivalence test (a positive number), or 0.5 for a majority.
        direction: "greater" (the claim says the quantity exceeds the threshold) or "less".
        kind: one of KINDS.
        n: units behind the interval (seeds, repeats, examples, metrics).
        rule: the decision rule in words (printed in the report).
        reason: why this verdict, in words.
        mde: minimum detectable effect at this n (same units as the estimate); None: unknown.
        n_needed: units needed to decide at 80 % power if the estimate and spread were true;
            None: unknown or not needed.
        level: the interval's confidence level.
    """

    verdict: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float | None
    direction: str
    kind: str
    n: int
    rule: str
    reason: str
    mde: float | None = None
    n_needed: int | None = None
    level: float = LEVEL

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r}; valid: {list(VERDICTS)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction={self.direction!r}; valid: {list(DIRECTIONS)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; valid: {list(KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite numbers become None."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        return out


def _num(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _fmt(x: float, unit: Callable[[float], str] | None) -> str:
    if unit is not None:
        return unit(x)
    return f"{x:.4g}"


def threshold_verdict(
    iv: Interval,
    threshold: float,
    *,
    direction: str = "greater",
    rule: str,
    fmt: Callable[[float], str] | None = None,
    power: float = POWER,
    units: str = "units",
) -> Verdict:
    """Judge "the quantity is > threshold" (direction "greater") or "< threshold" ("less").

    Holds when the whole interval lies beyond the threshold on the claimed side, refuted when it
    lies wholly on the other side, otherwise inconclusive (also when n < 2: no spread).

    Args:
        iv: the quantity's interval.
        threshold: the claim's threshold, in the interval's units.
        rule: the rule in words (goes into the report and verdicts.json).
        fmt: formats a number in the claim's units for the reason text (e.g. percent).
        units: what n counts, for the reason text ("seeds", "examples", …).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}; valid: {list(DIRECTIONS)}")
    sign = 1.0 if direction == "greater" else -1.0
    se, df, sd = _planning_scale(iv)
    gap = abs(iv.estimate - threshold)
    need = n_needed(sd, gap, iv.level, power)
    m = mde(se, df, iv.level, power)
    side = ">" if direction == "greater" else "<"
    lvl = f"{100 * iv.level:g} %"
    span = f"[{_fmt(iv.low, fmt)}, {_fmt(iv.high, fmt)}]"
    thr = _fmt(threshold, fmt)
    if not iv.bounded:
        verdict = "inconclusive"
        reason = (f"inconclusive (n = {iv.n}): no spread can be measured from {iv.n} unit(s), "
                  "so there is no interval")  # fmt: skip
        need = None
    elif sign * (iv.low - threshold) > 0 and sign * (iv.high - threshold) > 0:
        verdict = "holds"
        reason = f"the whole {lvl} interval {span} lies {side} {thr}"
    elif sign * (iv.low - threshold) < 0 and sign * (iv.high - threshold) < 0:
        verdict = "refuted"
        other = "<" if side == ">" else ">"
        reason = f"the whole {lvl} interval {span} lies {other} {thr}, against the claim"
    else:
        verdict = "inconclusive"
        reason = f"the {lvl} interval {span} contains the threshold {thr}"
        if need is not None:
            reason += (f"; about {need} {units} would decide it at 80 % power if the estimate "
                       "and spread were true")  # fmt: skip
    return Verdict(verdict, _num(iv.estimate), _num(iv.low), _num(iv.high), threshold, direction,
                   "threshold", iv.n, rule, reason, _num(m), need if verdict ==
                   "inconclusive" else None, iv.level)  # fmt: skip


def noninferiority_verdict(
    iv: Interval,
    margin: float,
    *,
    rule: str,
    fmt: Callable[[float], str] | None = None,
    power: float = POWER,
    units: str = "units",
) -> Verdict:
    """Non-inferiority: the interval is of a difference oriented so that > 0 means the subject is
    better. Holds (not worse by more than the margin) when the interval lies above −margin;
    refuted (worse by more than the margin) when it lies wholly below −margin; else inconclusive.
    """
    if not margin > 0:
        raise ValueError(f"non-inferiority margin={margin!r} must be > 0")
    v = threshold_verdict(iv, -margin, direction="greater", rule=rule, fmt=fmt, power=power,
                          units=units)  # fmt: skip
    reason = v.reason
    if v.verdict == "holds":
        reason = f"non-inferior: {reason} (−margin)"
    elif v.verdict == "refuted":
        reason = f"inferior by more than the margin: {reason} (−margin)"
    return Verdict(v.verdict, v.estimate, v.ci_low, v.ci_high, margin, "greater",
                   "non-inferiority", v.n, rule, reason, v.mde, v.n_needed, v.level)  # fmt: skip


def equivalence_verdict(
    iv: Interval,
    margin: float,
    *,
    rule: str,
    fmt: Callable[[float], str] | None = None,
) -> Verdict:
    """Equivalence (two one-sided tests): holds when the interval lies inside (−margin, margin),
    refuted when it lies wholly outside it, else inconclusive. For TOST at 5 %, pass a 90 %
    interval."""
    if not margin > 0:
        raise ValueError(f"equivalence margin={margin!r} must be > 0")
    se, df, sd = _planning_scale(iv)
    m = mde(se, df, iv.level)
    span = f"[{_fmt(iv.low, fmt)}, {_fmt(iv.high, fmt)}]"
    lim = _fmt(margin, fmt)
    if not iv.bounded:
        verdict, reason = "inconclusive", f"inconclusive (n = {iv.n}): no interval"
    elif -margin < iv.low and iv.high < margin:
        verdict, reason = "holds", f"the interval {span} lies inside ±{lim}"
    elif iv.low > margin or iv.high < -margin:
        verdict, reason = "refuted", f"the interval {span} lies wholly outside ±{lim}"
    else:
        verdict, reason = "inconclusive", f"the interval {span} crosses ±{lim}"
    need = None
    if verdict == "inconclusive" and iv.bounded:
        need = n_needed(sd, margin - abs(iv.estimate), iv.level)
    return Verdict(verdict, _num(iv.estimate), _num(iv.low), _num(iv.high), margin, "less",
                   "equivalence", iv.n, rule, reason, _num(m), need, iv.level)  # fmt: skip


def majority_verdict(verdicts: Sequence[Verdict], *, rule: str) -> Verdict:
    """On "most metrics": holds when more than half of the verdicts hold; refuted when even
    counting every inconclusive one as holding would not make a majority; else inconclusive.

    Estimate: the share that holds; interval: [share holding, share holding or inconclusive]."""
    m = len(verdicts)
    if m == 0:
        return Verdict("inconclusive", None, None, None, 0.5, "greater", "majority", 0, rule,
                       "no metric to judge")  # fmt: skip
    h = sum(v.verdict == "holds" for v in verdicts)
    i = sum(v.verdict == "inconclusive" for v in verdicts)
    r = m - h - i
    lo, hi = h / m, (h + i) / m
    counts = f"{h} hold, {r} refuted, {i} inconclusive of {m}"
    if lo > 0.5:
        verdict, reason = "holds", f"{counts}: a majority holds"
    elif hi <= 0.5:
        verdict, reason = "refuted", f"{counts}: no majority even if every open one held"
    else:
        verdict, reason = "inconclusive", f"{counts}: the open ones decide the majority"
    return Verdict(verdict, lo, lo, hi, 0.5, "greater", "majority", m, rule, reason)


__all__ = [
    "LEVEL",
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
