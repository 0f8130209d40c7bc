"""Why DMA fails MQAR here (claim C2): a seeded ablation of the factors suspected of it.

What runs. Every variant is a 2-layer MQAR model (mixer + MLP blocks, tied embeddings) trained
with the recipe of `tasks.mqar` (AdamW wd 0.1, warm-up 10 %, cosine to 0, early stop at
valid/accuracy ≥ 0.99). The variants differ in one factor at a time from a neighbour:
- QCAttn without (as in `tasks.mqar`) and with QK-norm;
- DMA at A₀ = 0 (the 2025 form, 1 head, RoPE, exp bias, smaller-index ties): window w = kv with
  QK-norm (the suite's default DMA, the `dma` column of `tasks.mqar`), then without QK-norm at
  w = kv, 2·kv and no window, and with QK-norm and no window;
- "DMA, paper-figure form": what the authors' Dec-2024 code computed for the paper's MQAR figure.
  Its mask test `exp(A·softplus(Δ)) < 1` never fires with A initialised to 1 (the exponent is
  ≥ 0), so no key is ever masked: dense attention plus the key bias exp(A·softplus(Δ)), A₀ = 1,
  and no QK-norm (the older small-doge code has none, docs/spec.md §2.4). The variant closest to the
  figure, so claim C2 is judged on it;
- SSD: the Cheems SSD (no short convolution, N = 128, 1 head, as in `tasks.mqar`) beside the
  Mamba-2 block at the same width (expand 1, one head of 64, N = 128) with what the Cheems SSD
  lacks: the short causal convolution (width 4), the gate, the D skip and the gated norm, since
  Mamba-2 relies on its convolution for recall;
- ours (labelled as such, not the paper's): two fixes of DMA's trainability. (1) A₀ = 1 at w = kv
  (no QK-norm): at A = 0 the gradient to W_Δ is exactly zero (∂b/∂Δ ∝ A), so the kept set stays
  the tie rule's; A₀ ≠ 0 lets the bias, hence the ranking, learn from the start. (2) QK-norm with
  a learned per-head temperature (`DMAConfig.qk_temperature`, dense): QK-norm fixes the scale of
  the scores at initialisation and bounds them by √P times the norm weights; a learned τ lets
  each head set its own sharpness. τ₀ follows QKNorm (Henry et al. 2020, which learns a gain
  g₀ = log2(L² − L) on cosine scores): our scores are √P·cos, so τ₀ = log2(L² − L) / √P
  (`qk_temperature_init`: 1.50 at L 64 and 1.75 at L 128 with P = 64).
Every DMA result records mask diagnostics at initialisation and at the end
(`wm_bench.eval.mask_diagnostics`: kept previous-token and query→value edges, A per head, bias
spread per row).

Stages (each variant gets its own LR; `wm-bench reproduce` asks `runs(scale, results_dir=...)`
again after each round until nothing new is planned):
1. tune: every variant at every LR of the scale's grid, seed 0, in the first cell;
2. seeds: once a variant's tune runs all have results, its best LR (`best_lr`: the highest
   valid/accuracy at seed 0, through `tasks._lm.choose_lr` on −accuracy; a failed or diverged
   run counts as the worst, ties go to the smaller LR) is used for its other seeds in the first
   cell and all its seeds in the other cells (the first cell's LR carries over: tuning every
   cell would not fit the budget). The variants the conclusion rests on (`Scale.core`) get
   every seed of the scale; the others one seed per cell.

Scales (edit the constants below; `planned_runs(scale)` counts the runs, `estimate_minutes`
prices them with the per-step times measured on this machine):
- smoke: plumbing only (≈ 20 s): two tiny cells, two LRs, seeds 0 and 1 for two core
  variants, 20 steps per run.
- cpu (2 cores, ≤ 90 min as two lanes): cells (L 64, d 64, kv 8) and (L 128, d 64, kv 16),
  vocabulary 512, batch 32, at most 3000 steps, evaluation every 250 steps on 256 test examples;
  LRs 1e-3, 3e-3, 1e-2; seeds 0, 1, 2 in the first cell and 0, 1 in the second for the six core
  variants (CORE_CPU: QCAttn, SSD, the paper-figure DMA, DMA dense with and without QK-norm, DMA
  w = kv), the other six variants one seed in the first cell: 36 tune + 24 seed runs = 60.
  How it was sized (2-minute probes of QCAttn, the slowest learner the ablation needs, with a
  bare loop of the same model, data, optimiser and schedule, one thread, 2026-12-06):
  L 64 / kv 8 at batch 32 leaves its 1/kv plateau at step 1250-1750 and passes 0.99 by step
  2250 (4000-step cosine) or 2750 (3000-step cosine; a 3000-step run at LR 1e-2 stayed at 0.18,
  a constant LR reached 0.93 by 2750); at batch 16 it stayed on the plateau for 3000 steps.
  For the longer cell, L 128 / kv 8 stayed at 0.12 after 3267 steps (batch 32) and 2977 (batch
  16), while L 128 / kv 16 (kv = L/8, as in the first cell: twice the labelled queries) jumped
  from 0.12 at step 1250 to 0.995 at step 1500 (batch 32; at batch 16 it stayed at 0.06 for
  3000 steps). So both cells use batch 32 and 3000 steps. The vocabulary stays 512 (> L; the
  LM head runs only on the labelled positions, so it costs little). Cost: SEC_PER_STEP (one
  thread; a model this small is no faster on two) gives `estimate_minutes("cpu")` ≈ 160 min for
  one process with every run at 3000 steps, and ≈ 78 and 81 min for `--only lane=0` and
  `--only lane=1` run side by side with `--threads 1` (LANES balance the two); early stops
  (learners reach 0.99 at 1500-2750 steps) take 10-15 % off. One process with two threads would
  take about twice as long: the budget holds only with the two lanes.
- small (one H100): the paper's L ∈ {256, 512} at d 64 and 128, vocabulary 8192, kv = L/4.
- paper: the paper's grid cell for C2, L = 2048, d = 256, kv = 512, vocabulary 8192.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.config import RunConfig
from wm_bench.results import load_result

from .. import _recall as recall
from .. import pick

EXPERIMENT = "mqar_dma"
HIGHER_IS_BETTER = True
METRIC = recall.METRIC
EARLY_STOP_ACCURACY = recall.EARLY_STOP_ACCURACY
TUNE_SEED = 0


@dataclass(frozen=True)
class Variant:
    """One model variant: a mixer from the layer registry with fixed fields.

    window: for DMA, "kv" (w = number of KV pairs), "2kv", or None (no window: dense).
    factor: the question it answers (report grouping); ours: a fix of ours, not the paper's.
    lane: which of the two cpu-scale lanes runs it (`--only lane=0` / `--only lane=1`, side by
    side with one thread each: a model this small runs as fast on one thread as on two, so two
    single-thread processes use both cores); the lanes are balanced to about equal cost.
    """

    label: str
    mixer: str
    fields: tuple[tuple[str, Any], ...] = ()
    window: str | None = None
    factor: str = ""
    ours: bool = False
    lane: int = 1


_ATTN = (("n_heads", 1), ("position", "rope"))
# The one table of the ablation's models: adding a variant here adds it to every scale that runs
# all variants, to the report and to a lane.
VARIANTS: dict[str, Variant] = {
    "qcattn": Variant("QCAttn", "qcattn", (*_ATTN, ("qk_norm", False)), factor="qk-norm", lane=0),
    "qcattn_qknorm": Variant(
        "QCAttn + QK-norm", "qcattn", (*_ATTN, ("qk_norm", True)), factor="qk-norm"
    ),
    "dma_kv_qknorm": Variant(
        "DMA w = kv, QK-norm (suite default)",
        "dma",
        (*_ATTN, ("qk_norm", True)),
        "kv",
        factor="window",
    ),
    "dma_kv": Variant("DMA w = kv", "dma", (*_ATTN, ("qk_norm", False)), "kv", factor="window"),
    "dma_2kv": Variant("DMA w = 2·kv", "dma", (*_ATTN, ("qk_norm", False)), "2kv", factor="window"),
    "dma_dense": Variant(
        "DMA no window", "dma", (*_ATTN, ("qk_norm", False)), None, factor="window", lane=0
    ),
    "dma_dense_qknorm": Variant(
        "DMA no window, QK-norm", "dma", (*_ATTN, ("qk_norm", True)), None, factor="qk-norm"
    ),
    "dma_paper_fig": Variant(
        "DMA, paper-figure form (dense, exp bias, A₀ = 1)",
        "dma",
        (*_ATTN, ("qk_norm", False), ("a_init", 1.0), ("bias_form", "exp")),
        None,
        factor="paper figure",
        lane=0,
    ),
    "ssd": Variant(
        "SSD (Cheems, no conv)",
        "ssd",
        (("n_heads", 1), ("n_groups", 1), ("d_state", 128)),
        factor="short conv",
        lane=0,
    ),
    "mamba2": Variant(
        "Mamba-2 (short conv)",
        "mamba2",
        (("expand", 1), ("head_dim", 64), ("d_state", 128)),
        factor="short conv",
    ),
    "ours_dma_kv_a1": Variant(
        "ours: DMA w = kv, A₀ = 1",
        "dma",
        (*_ATTN, ("qk_norm", False), ("a_init", 1.0)),
        "kv",
        factor="ours",
        ours=True,
    ),
    "ours_dma_qknorm_temp": Variant(
        "ours: DMA no window, QK-norm + learned τ (τ₀ as QKNorm's)",
        "dma",
        (*_ATTN, ("qk_norm", True), ("qk_temperature", "qknorm")),
        None,
        factor="ours",
        ours=True,
    ),
}
PAPER_FIG = "dma_paper_fig"  # the variant C2 is judged on
LANES: dict[str, int] = {key: v.lane for key, v in VARIANTS.items()}
BASELINES = ("qcattn", "ssd")  # C2's baselines (the paper's QCAttn and SSD)
# Claim C2 (docs/spec.md §1): DMA at 100 % (early-stop level 0.99), acc_DMA / acc_x − 1 ≥ 1.5.
CLAIM_C2: dict[str, Any] = {"min_accuracy": EARLY_STOP_ACCURACY, "min_gain": 1.5}


@dataclass(frozen=True)
class Cell:
    """One MQAR setting: length, width, KV pairs, vocabulary and the training budget there."""

    seq_len: int
    d_model: int
    num_kv_pairs: int
    vocab_size: int
    batch_size: int
    max_steps: int
    eval_every: int
    n_test: int

    @property
    def key(self) -> str:
        return f"L{self.seq_len}-d{self.d_model}-kv{self.num_kv_pairs}"

    def window(self, spec: str | None) -> int | None:
        """A variant's DMA window in this cell."""
        if spec is None:
            return None
        if spec not in ("kv", "2kv"):
            raise ValueError(f"mqar_dma: window spec {spec!r}; valid: 'kv', '2kv', None")
        return self.num_kv_pairs * (2 if spec == "2kv" else 1)


@dataclass(frozen=True)
class Scale:
    """One scale: cells (the first is the tune cell), LR grid, seeds, variants, core variants."""

    cells: tuple[Cell, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    variants: tuple[str, ...] = tuple(VARIANTS)
    core: tuple[str, ...] = ()
    later_seeds: tuple[int, ...] | None = None  # core seeds in the cells after the first

    def __post_init__(self) -> None:
        bad = [v for v in (*self.variants, *self.core) if v not in VARIANTS]
        if bad:
            raise ValueError(f"mqar_dma: unknown variant(s) {bad}; valid: {list(VARIANTS)}")
        if TUNE_SEED not in self.seeds:
            raise ValueError(f"mqar_dma: seeds {self.seeds} must include the tune seed {TUNE_SEED}")
        if len(set(self.lrs)) != len(self.lrs) or not self.lrs:
            raise ValueError(f"mqar_dma: lrs={self.lrs} must be one or more distinct LRs")

    def seeds_of(self, variant: str, cell_index: int = 0) -> tuple[int, ...]:
        """A core variant's seeds in cell `cell_index` (the first cell: `seeds`, later ones:
        `later_seeds` when set); the tune seed for the others."""
        if variant not in self.core:
            return (TUNE_SEED,)
        if cell_index > 0 and self.later_seeds is not None:
            return self.later_seeds
        return self.seeds

    def cells_of(self, variant: str) -> tuple[Cell, ...]:
        """Every cell for a core variant, the tune cell for the others."""
        return self.cells if variant in self.core else self.cells[:1]


# ---- the scales: edit these constants to resize a scale ------------------------------------
SMOKE = Scale(
    cells=(Cell(32, 16, 4, 64, 8, 20, 10, 16), Cell(64, 16, 4, 96, 8, 20, 10, 16)),
    lrs=(1e-3, 3e-3), seeds=(0, 1), core=("qcattn", "dma_paper_fig"),
)  # fmt: skip
# The variants the conclusion rests on: C2's subject and baselines, and the two factors (QK-norm,
# window) the mechanism is read from; every seed in every cell. The rest: one seed, first cell.
CORE_CPU = ("qcattn", "ssd", "dma_paper_fig", "dma_dense", "dma_dense_qknorm", "dma_kv")
CELLS_CPU = (
    Cell(64, 64, 8, 512, 32, 3000, 250, 256),
    Cell(128, 64, 16, 512, 32, 3000, 250, 256),
)
LRS_CPU = (1e-3, 3e-3, 1e-2)
SEEDS_CPU = (0, 1, 2)
CPU = Scale(cells=CELLS_CPU, lrs=LRS_CPU, seeds=SEEDS_CPU, core=CORE_CPU, later_seeds=(0, 1))
SMALL = Scale(
    cells=(Cell(256, 64, 64, 8192, 128, 2000, 100, 1000),
           Cell(512, 128, 128, 8192, 64, 2000, 100, 1000)),
    lrs=(3e-4, 1e-3, 3e-3), seeds=(0, 1, 2), core=tuple(VARIANTS),
)  # fmt: skip
PAPER = Scale(
    cells=(Cell(2048, 256, 512, 8192, 512, 12_500, 196, 3000),),
    lrs=(1e-4, 4.6416e-4, 2.1544e-3, 1e-2), seeds=(0, 1, 2), core=tuple(VARIANTS),
)  # fmt: skip
SCALES: dict[str, Scale] = {"smoke": SMOKE, "cpu": CPU, "small": SMALL, "paper": PAPER}
# Seconds per optimiser step of the runner (Lightning, one thread, training and the evaluations
# every 250 steps), measured 2026-12-06 on this 2-core machine while other work shared it: 200
# steps per variant in the first cell, 100 in the second ("*": the DMA variants not timed there).
SEC_PER_STEP: dict[tuple[str, str], float] = {
    ("L64-d64-kv8", "qcattn"): 0.0354, ("L64-d64-kv8", "qcattn_qknorm"): 0.0384,
    ("L64-d64-kv8", "dma_kv_qknorm"): 0.0412, ("L64-d64-kv8", "dma_kv"): 0.0382,
    ("L64-d64-kv8", "dma_2kv"): 0.0385, ("L64-d64-kv8", "dma_dense"): 0.0364,
    ("L64-d64-kv8", "dma_dense_qknorm"): 0.0401, ("L64-d64-kv8", "dma_paper_fig"): 0.0382,
    ("L64-d64-kv8", "ssd"): 0.0529, ("L64-d64-kv8", "mamba2"): 0.083,
    ("L64-d64-kv8", "ours_dma_kv_a1"): 0.0406, ("L64-d64-kv8", "ours_dma_qknorm_temp"): 0.041,
    ("L128-d64-kv16", "qcattn"): 0.0749, ("L128-d64-kv16", "dma_kv"): 0.0846,
    ("L128-d64-kv16", "dma_dense_qknorm"): 0.0877, ("L128-d64-kv16", "ssd"): 0.1131,
    ("L128-d64-kv16", "*"): 0.085,
}  # fmt: skip
RUN_OVERHEAD_S = 4.0  # per run: model build, data generation, Lightning set-up, mask diagnostics


def spec(scale: str) -> Scale:
    """The Scale of `scale`; ValueError naming the valid scales."""
    return pick(SCALES, scale, "mqar_dma: unknown scale")


def mixer_config(variant: str, cell: Cell) -> Any:
    """The variant's mixer config in `cell` (from the layer registry, imported lazily)."""
    v = pick(VARIANTS, variant, "mqar_dma: unknown variant")
    from wm_bench.layers.mixers import MIXERS as REGISTRY

    kwargs = dict(v.fields)
    if v.mixer == "dma":
        kwargs["window"] = cell.window(v.window)
    if kwargs.get("qk_temperature") == "qknorm":
        kwargs["qk_temperature"] = qk_temperature_init(cell.seq_len, cell.d_model)
    return REGISTRY[v.mixer][1](**kwargs)


def qk_temperature_init(seq_len: int, head_dim: int) -> float:
    """QKNorm's initial gain log2(L² − L) (Henry et al. 2020, on cosine scores) in the units of
    our QK-normed scores (√P · cos): log2(L² − L) / √P, rounded to 4 digits."""
    return round(math.log2(seq_len * seq_len - seq_len) / math.sqrt(head_dim), 4)


def make_run(scale: str, variant: str, cell: Cell, lr: float, seed: int) -> RunConfig:
    """One run (tags: variant, cell, seq_len, d_model, num_kv_pairs, lr, lane)."""
    from wm_bench.data.mqar import MqarDataConfig

    model = recall.mixer_mlp_model(
        {"M": mixer_config(variant, cell)},
        "M",
        vocab_size=cell.vocab_size,
        d_model=cell.d_model,
        n_layers=2,
    )
    data = MqarDataConfig(
        seq_len=cell.seq_len,
        num_kv_pairs=cell.num_kv_pairs,
        vocab_size=cell.vocab_size,
        n_train=cell.max_steps * cell.batch_size,
        n_test=cell.n_test,
    )
    tags = {
        "variant": variant,
        "cell": cell.key,
        "seq_len": cell.seq_len,
        "d_model": cell.d_model,
        "num_kv_pairs": cell.num_kv_pairs,
        "lr": lr,
        "lane": LANES[variant],
    }
    budget = recall.Budget(cell.max_steps, cell.batch_size, cell.eval_every)
    return recall.recall_run(
        EXPERIMENT, variant, model, data, tags, lr=lr, seed=seed, scale=scale, budget=budget
    )


def accuracy_of(rec: dict[str, Any] | None) -> float | None:
    """A result's valid/accuracy, None unless the run is "ok" with a finite value."""
    if not rec or rec.get("status") != "ok":
        return None
    v = (rec.get("metrics") or {}).get(METRIC)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def choose(points: list[tuple[float, float | None]]) -> tuple[float | None, dict[float, float]]:
    """Best LR from (lr, accuracy or None) at the tune seed: `tasks._lm.choose_lr` on −accuracy.

    Returns:
        (best LR or None when every LR failed, {lr: accuracy (−inf for a failed run)}).
    """
    from .._lm import choose_lr

    best, scores = choose_lr((lr, TUNE_SEED, None if a is None else -a) for lr, a in points)
    return best, {lr: -s for lr, s in scores.items()}


def best_lr(scale: str, variant: str, results_dir: Path | str | None = None) -> float | None:
    """The variant's LR from its tune runs in the first cell; None until they all have results
    (or when every LR failed)."""
    s = spec(scale)
    recs = [
        load_result(make_run(scale, variant, s.cells[0], lr, TUNE_SEED), results_dir)
        for lr in s.lrs
    ]
    if any(r is None for r in recs):
        return None
    return choose([(lr, accuracy_of(r)) for lr, r in zip(s.lrs, recs)])[0]


def tune_runs(scale: str) -> list[RunConfig]:
    """Stage 1: every variant × every LR at the tune seed in the first cell."""
    s = spec(scale)
    return [make_run(scale, v, s.cells[0], lr, TUNE_SEED) for v in s.variants for lr in s.lrs]


def seed_runs(scale: str, variant: str, lr: float) -> list[RunConfig]:
    """Stage 2 of one variant at its best LR: its seeds in every cell, minus the tune run."""
    s = spec(scale)
    return [
        make_run(scale, variant, cell, lr, seed)
        for i, cell in enumerate(s.cells_of(variant))
        for seed in s.seeds_of(variant, i)
        if not (i == 0 and seed == TUNE_SEED)
    ]


def runs(scale: str, results_dir: Path | str | None = None) -> list[RunConfig]:
    """Every run planned at `scale` so far: the tune stage, then the seeds stage of each variant
    whose tune runs are in `results_dir` (default results/ or $WM_BENCH_RESULTS).

    Args:
        scale: one of SCALES.
        results_dir: where the tune results are looked up.
    Returns:
        RunConfigs, tune stage first (variant by variant), then the seeds stage.
    """
    s = spec(scale)
    out = tune_runs(scale)
    for v in s.variants:
        lr = best_lr(scale, v, results_dir)
        if lr is not None:
            out += seed_runs(scale, v, lr)
    return out


def planned_runs(scale: str) -> dict[str, int]:
    """Runs of a whole scale once every stage is planned: {"tune", "seeds", "total"}."""
    s = spec(scale)
    tune = len(s.variants) * len(s.lrs)
    seeds = sum(len(s.seeds_of(v, i)) for v in s.variants for i in range(len(s.cells_of(v)))) - len(
        s.variants
    )
    return {"tune": tune, "seeds": seeds, "total": tune + seeds}


def cell_key(cfg: RunConfig) -> tuple:
    """A sweep cell: everything but lr and seed; the tune stage is a cell of its own, so that the
    seeds added later form a new study instead of changing the tune study's grid."""
    t = cfg.tags
    tune = cfg.seed == TUNE_SEED and t.get("cell") == spec(cfg.scale).cells[0].key
    stage = "tune" if tune else "seeds"
    return (cfg.scale, cfg.variant, t.get("cell"), recall.hash_but_lr_and_seed(cfg), stage)


def estimate_minutes(scale: str, lane: int | None = None) -> float:
    """Minutes of a whole scale (or of one lane) from SEC_PER_STEP and RUN_OVERHEAD_S, every run
    to max_steps (an upper bound: runs that reach 0.99 stop early); 0 without timings."""
    s = spec(scale)
    total = 0.0
    for v in s.variants:
        if lane is not None and LANES[v] != lane:
            continue
        for i, cell in enumerate(s.cells_of(v)):
            sec = SEC_PER_STEP.get((cell.key, v), SEC_PER_STEP.get((cell.key, "*"), 0.0))
            n = len(s.seeds_of(v, i)) + (len(s.lrs) - 1 if i == 0 else 0)
            total += n * (sec * cell.max_steps + (RUN_OVERHEAD_S if sec else 0.0))
    return total / 60.0
