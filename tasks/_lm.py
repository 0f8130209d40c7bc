"""What the language-model experiments (rope, ffn, arch) share: the run recipe and cell key.

The recipe is docs/spec.md §7's, scaled down by each experiment's scale constants: AdamW with weight
decay 0.01, warm-up 10 %, cosine to 10 % of the peak LR, grad clip 1.0; the corpus' byte-level
BPE; validation and test perplexity over the first `eval_max_tokens` tokens of each split.

Per-variant tuning. A scale with an `lr_grid` runs in two stages, both returned by the
task's `runs(scale)`:
- "tune": every variant at every LR of the grid, one seed (`TUNE_SEED`);
- "seeds": for each variant whose tune runs all have a result in results/, the variant's other
  seeds at its best LR (`choose_lr`: the lowest validation perplexity; a failed or diverged run
  counts as the worst value).
`runs(scale, results_dir)` reads the tune results to plan the second stage; `wm-bench reproduce`
asks a task again after each round until it plans nothing new, so one command runs both stages
(and a rerun changes nothing). The seed-0 run at the best LR is the tune run itself (same config,
same hash): it is not rerun.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.config import ModelConfig, OptimConfig, RunConfig, TrainConfig
from wm_bench.results import load_result


@dataclass(frozen=True)
class LMScale:
    """The fields every LM experiment's scale has: model shape, tokenizer size, schedule.

    Subclasses add their own (seeds, corpus, eval_max_tokens, ...); `lm_run` reads these plus
    `corpus` and `eval_max_tokens`."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    seq_len: int
    batch_size: int
    max_steps: int
    lr: float


def lm_run(
    experiment: str,
    variant: str,
    model: ModelConfig,
    s: LMScale,
    *,
    scale: str,
    seed: int,
    eval_lengths: Sequence[int] | None = None,
    tags: dict[str, Any] | None = None,
    downstream: Any = None,
    lr: float | None = None,
) -> RunConfig:
    """One LM run of `model` under scale constants `s` (corpus, vocab_size, seq_len, lr,
    max_steps, batch_size, eval_max_tokens); test perplexity at `eval_lengths` (default T).
    `lr` overrides the scale's LR (a point of its grid); the same LR gives the same config."""
    from wm_bench.data.lm import LMDataConfig

    # A scale whose step does not fit one device sums K micro-batches per step (paper scales):
    # the same tokens per optimiser step; unset (1) keeps every other config's hash.
    k = getattr(s, "accumulate_grad_batches", None) or 1
    if s.batch_size % k:
        raise ValueError(
            f"batch_size={s.batch_size} is not a multiple of accumulate_grad_batches={k}"
        )

    data = LMDataConfig(
        corpus=s.corpus,
        vocab_size=s.vocab_size,
        seq_len=s.seq_len,
        eval_lengths=tuple(eval_lengths or (s.seq_len,)),
        eval_max_tokens=s.eval_max_tokens,
        valid_tokens=s.eval_max_tokens,  # validation on as many tokens as the test
    )
    return RunConfig(
        experiment=experiment,
        variant=variant,
        model=model,
        data=data,
        optim=OptimConfig(
            lr=s.lr if lr is None else lr, weight_decay=0.01, min_lr_ratio=0.1, grad_clip=1.0
        ),
        train=TrainConfig(
            max_steps=s.max_steps, batch_size=s.batch_size // k, accumulate_grad_batches=k
        ),
        seed=seed,
        scale=scale,
        tags=tags if tags is not None else {"variant": variant},
        downstream=downstream,
    )


def cell_key(cfg: RunConfig) -> tuple:
    """Runs of one cell differ only in their seed; the tune seed is a cell of its own, so that
    the seeds added at the best LR later form a new sweep study instead of changing the grid of
    the tune study (which Optuna would not count as done)."""
    from wm_bench.config import config_hash

    stage = "tune" if cfg.seed == TUNE_SEED else "seeds"
    return (cfg.scale, cfg.variant, config_hash(dataclasses.replace(cfg, seed=0)), stage)


# --------------------------------------------------------------------------------------------
# Per-variant tuning: pick the LR from the tune runs, then run the seeds there

TUNE_SEED = 0
SELECT_METRIC = "valid/ppl"  # lower is better; what the best LR is chosen by


def choose_lr(
    points: Iterable[tuple[float | None, int, float | None]],
) -> tuple[float | None, dict[float | None, float]]:
    """The best LR of one variant from its runs.

    Args:
        points: (lr, seed, validation perplexity) per run; the perplexity is None for a run that
            failed or diverged (it counts as the worst value, +inf).
    Returns:
        (best LR, {lr: score}). The score of an LR is its mean perplexity over the seeds that
        every LR has (the tune seed once seeds were added at the best LR); ties go to the smaller
        LR. With one LR that LR is chosen whatever its runs did; with several and none finite,
        the best LR is None.
    """
    by_lr: dict[float | None, dict[int, float]] = {}
    for lr, seed, value in points:
        ok = value is not None and math.isfinite(value)
        by_lr.setdefault(lr, {})[int(seed)] = float(value) if ok else math.inf
    if not by_lr:
        return None, {}
    common = set.intersection(*(set(d) for d in by_lr.values()))
    scores = {}
    for lr, d in by_lr.items():
        seeds = sorted(common) if common else [min(d)]
        vals = [d[x] for x in seeds]
        scores[lr] = math.inf if any(math.isinf(v) for v in vals) else sum(vals) / len(vals)
    if len(scores) == 1:
        return next(iter(scores)), scores
    finite = {lr: v for lr, v in scores.items() if math.isfinite(v)}
    if not finite:
        return None, scores
    best = min(finite, key=lambda lr: (finite[lr], lr if lr is not None else 0.0))
    return best, scores


def record_value(rec: dict[str, Any] | None) -> float | None:
    """A result's selection value (validation perplexity), None unless the run is "ok"."""
    if not rec or rec.get("status") != "ok":
        return None
    v = (rec.get("metrics") or {}).get(SELECT_METRIC)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def tune_variant(
    variant: str,
    lr_grid: Sequence[float],
    make: Callable[[str, float, int], RunConfig],
    *,
    results_dir: Path | str | None = None,
    max_extend: int = 0,
) -> tuple[float | None, list[RunConfig]]:
    """(the variant's best LR, or None while undecided; its tune configs so far).

    The tune runs are make(variant, lr, TUNE_SEED) for every LR of the grid. When the best LR
    sits on the grid's edge, the grid is extended by one geometric step beyond that edge (up to
    `max_extend` times), since the optimum may lie past it; the best LR is decided once it is
    inside the grid or the extensions are used up. Failed and diverged runs count as worst.
    """
    if len(set(lr_grid)) != len(lr_grid) or not lr_grid:
        raise ValueError(f"lr_grid={tuple(lr_grid)} must hold distinct LRs (at least one)")
    grid = sorted(lr_grid)
    step = grid[1] / grid[0] if len(grid) > 1 else 2.0
    for extension in range(max_extend + 1):
        tune = [make(variant, lr, TUNE_SEED) for lr in grid]
        recs = [load_result(c, results_dir) for c in tune]
        if any(r is None for r in recs):
            return None, tune  # the tune stage has not finished
        best, _ = choose_lr((lr, TUNE_SEED, record_value(r)) for lr, r in zip(grid, recs))
        if best is None or len(grid) < 2 or extension == max_extend:
            return best, tune
        if best == grid[-1]:
            grid.append(grid[-1] * step)
        elif best == grid[0]:
            grid.insert(0, grid[0] / step)
        else:
            return best, tune
    return None, tune  # unreachable: the loop returns at extension == max_extend


def staged_runs(
    variants: Sequence[str],
    lr_grid: Sequence[float],
    seeds_of: Callable[[str], Sequence[int]],
    make: Callable[[str, float, int], RunConfig],
    *,
    results_dir: Path | str | None = None,
    max_extend: int = 0,
) -> list[RunConfig]:
    """The tune stage (every variant × every LR at TUNE_SEED, the grid extended past an edge
    that wins, `tune_variant`), then for each variant whose best LR is decided the seeds stage:
    make(variant, best LR, seed) for its other seeds.

    Args:
        variants: the compared variants.
        lr_grid: the LRs every variant is tried at (≥ 3 at the cpu scale).
        seeds_of: variant → its seeds at the best LR (TUNE_SEED among them, or it is added).
        make: (variant, lr, seed) → RunConfig.
        results_dir: where the tune results are looked up (default: results/ or
            $WM_BENCH_RESULTS).
        max_extend: how many times a variant's grid may grow past a winning edge.
    """
    tune: list[RunConfig] = []
    seeds: list[RunConfig] = []
    for v in variants:  # every tune run first, then the seeds of the variants that are tuned
        best, v_tune = tune_variant(
            v, lr_grid, make, results_dir=results_dir, max_extend=max_extend
        )
        tune += v_tune
        if best is not None:
            seeds += [make(v, best, seed) for seed in seeds_of(v) if seed != TUNE_SEED]
    return tune + seeds


def planned_runs(
    scale: str,
    s: Any,
    variants: Sequence[str],
    make_run: Callable[[str, str, int, float | None], RunConfig],
    results_dir: Path | str | None = None,
) -> list[RunConfig]:
    """Every run of a language-model experiment at `scale` (spec `s`, an LMScale with `lr_grid`,
    `lr_extend` and `seeds_of`), from the task's make_run(scale, variant, seed, lr). With an LR
    grid: `staged_runs`. Without one: the runs at the scale's LR (lr None) seed by seed, the
    first seed of every variant first, so that a grid cut short has whole seeds.
    """

    def make(variant: str, lr: float | None, seed: int) -> RunConfig:
        return make_run(scale, variant, seed, lr)

    if s.lr_grid:
        return staged_runs(
            variants, s.lr_grid, s.seeds_of, make, results_dir=results_dir, max_extend=s.lr_extend
        )
    seeds = {v: s.seeds_of(v) for v in variants}
    rounds = max(len(v_seeds) for v_seeds in seeds.values())
    return [
        make(v, None, seeds[v][i]) for i in range(rounds) for v in variants if i < len(seeds[v])
    ]


# --------------------------------------------------------------------------------------------
# reproduce --until-decided: add seeds to a paired comparison until it is decided


@dataclass(frozen=True)
class PairDecision:
    """A paired threshold comparison of two variants, each at its best LR, seed by seed.

    The quantity is the relative gain (baseline − treated) / baseline of `metric` (lower is
    better), paired by seed; the claim is "gain > threshold". `wm_bench.sequential` adds seeds
    0, 1, 2, … and judges each look at the level its alpha-spending plan allows.
    """

    experiment: str
    scale: str
    treated: str
    baseline: str
    metric: str
    threshold: float
    rule: str
    lr_grid: tuple[float, ...]
    make: Callable[[str, float, int], RunConfig]
    results_dir: Path | str | None = None
    max_extend: int = 0

    def best_lr(self, variant: str) -> float | None:
        """The variant's LR from its tune runs (`tune_variant`; None until decided)."""
        best, _ = tune_variant(
            variant,
            self.lr_grid,
            self.make,
            results_dir=self.results_dir,
            max_extend=self.max_extend,
        )
        return best

    def configs(self, n: int) -> list[RunConfig]:
        """Both variants at seeds 0 … n−1, each at its best LR (tune first if unknown)."""
        out = []
        for v in (self.treated, self.baseline):
            lr = self.best_lr(v)
            if lr is None:
                raise ValueError(
                    f"{self.experiment} @ {self.scale}: {v} has no best LR yet (its tune runs "
                    "are missing or all failed); run `wm-bench reproduce` without "
                    "--until-decided first"
                )
            out += [self.make(v, lr, seed) for seed in range(n)]
        return out

    def values(self, n: int) -> tuple[list[float], list[float]]:
        """(baseline, treated) metric values at the first n seeds where both are ok."""
        base, treated = [], []
        for seed in range(n):
            pair = []
            for v in (self.baseline, self.treated):
                lr = self.best_lr(v)
                rec = load_result(self.make(v, lr, seed), self.results_dir) if lr else None
                x = (rec or {}).get("metrics", {}).get(self.metric)
                ok = rec is not None and rec.get("status") == "ok"
                pair.append(float(x) if ok and isinstance(x, (int, float)) else None)
            if None not in pair:
                base.append(pair[0])
                treated.append(pair[1])
        return base, treated

    def seeds_done(self) -> int:
        """How many seeds from 0 on have an ok result for both variants at their best LR."""
        n = 0
        while len(self.values(n + 1)[0]) == n + 1:
            n += 1
        return n

    def judge(self, n: int, level: float) -> Any:
        """The threshold verdict on the paired relative gain over seeds 0 … n−1 at `level`."""
        from wm_bench import stats

        base, treated = self.values(n)
        iv = stats.paired_interval(base, treated, level, relative=True)
        return stats.threshold_verdict(
            iv, self.threshold, rule=self.rule, fmt=lambda x: f"{100 * x:.2f} %", units="seeds"
        )
