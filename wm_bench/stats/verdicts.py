"""Claims judged from intervals: power planning (`mde`, `n_needed`) and the `Verdict` of a
threshold, non-inferiority, equivalence or majority claim."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from wm_bench.stats.distributions import normal_quantile, t_quantile
from wm_bench.stats.intervals import LEVEL, Interval

POWER = 0.80
VERDICTS: tuple[str, ...] = ("holds", "refuted", "inconclusive")
DIRECTIONS: tuple[str, ...] = ("greater", "less")
KINDS: tuple[str, ...] = ("threshold", "non-inferiority", "equivalence", "majority")
N_MAX = 100_000  # n_needed gives up (None) beyond this many units

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
        reason = (
            f"inconclusive (n = {iv.n}): no spread can be measured from {iv.n} unit(s), "
            "so there is no interval"
        )
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
            reason += (
                f"; about {need} {units} would decide it at 80 % power if the estimate "
                "and spread were true"
            )
    return Verdict(
        verdict,
        _num(iv.estimate),
        _num(iv.low),
        _num(iv.high),
        threshold,
        direction,
        "threshold",
        iv.n,
        rule,
        reason,
        _num(m),
        need if verdict == "inconclusive" else None,
        iv.level,
    )


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
    v = threshold_verdict(
        iv, -margin, direction="greater", rule=rule, fmt=fmt, power=power, units=units
    )
    reason = v.reason
    if v.verdict == "holds":
        reason = f"non-inferior: {reason} (−margin)"
    elif v.verdict == "refuted":
        reason = f"inferior by more than the margin: {reason} (−margin)"
    return Verdict(
        v.verdict,
        v.estimate,
        v.ci_low,
        v.ci_high,
        margin,
        "greater",
        "non-inferiority",
        v.n,
        rule,
        reason,
        v.mde,
        v.n_needed,
        v.level,
    )


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
    return Verdict(
        verdict,
        _num(iv.estimate),
        _num(iv.low),
        _num(iv.high),
        margin,
        "less",
        "equivalence",
        iv.n,
        rule,
        reason,
        _num(m),
        need,
        iv.level,
    )


def majority_verdict(verdicts: Sequence[Verdict], *, rule: str) -> Verdict:
    """On "most metrics": holds when more than half of the verdicts hold; refuted when even
    counting every inconclusive one as holding would not make a majority; else inconclusive.

    Estimate: the share that holds; interval: [share holding, share holding or inconclusive]."""
    m = len(verdicts)
    if m == 0:
        return Verdict(
            "inconclusive",
            None,
            None,
            None,
            0.5,
            "greater",
            "majority",
            0,
            rule,
            "no metric to judge",
        )
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
