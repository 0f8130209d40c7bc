"""RoPE inside SSD (docs/spec.md §4 "rope", Table 1, claim C1): perplexity with and without it.

What runs. Five language models trained on the same tokens, evaluated by sliding-window test
perplexity at 1×, 2× and 4× the training length (`wm_bench.eval.perplexity`):
- attn: QCAttn (RoPE) + MLP in every layer — the attention-only reference;
- ssd_rope / ssd_norope: the Cheems SSD in every layer, with / without RoPE on its B, C;
- hybrid_rope / hybrid_norope: per 8 layers 7 SSD (± RoPE) then 1 QCAttn (RoPE always), the
  hybrid of claim C1 (fewer than 8 layers: the attention block last).
The attention-only and SSD-only models are parameter-matched to the hybrid through their MLP
width (`match_params`, within 5 %); RoPE adds no parameters, so each ± pair differs only in it.
Claim C1: (ppl_norope − ppl_rope) / ppl_norope > 4 % for the hybrid; the gain is paired per seed
(both models of a seed see the same data stream) and judged by its t interval against 4 %
(`wm_bench.report.rope`), at each evaluation length; the training length is the headline.

Recipe (docs/spec.md §7, scaled down): AdamW wd 0.01, warm-up 10 %, cosine to 10 % of the peak,
grad clip 1.0, untied embeddings, byte-level BPE trained on the corpus' training split.

Scales (edit the RopeScale constants below): smoke is plumbing (d 64, 4 layers, 30 steps); cpu
is d 64, 8 layers, vocabulary 2048, T = 128, 600 steps, with per-variant LR tuning (3 LRs, seed
0) and then the hybrid pair at its best LR with seeds 0–5; both on the default corpus `bundled`.
small is d 512, 8 layers on one H100; paper is docs/spec.md §7 (not run here); both on the
larger `debian` corpus. How the cpu scale was sized — the run counts and times, why six seeds,
the throughput measured on this machine — is in tasks/rope/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.config import BlockConfig, ModelConfig, RunConfig
from wm_bench.metric_names import ppl_at

from .._lm import TUNE_SEED, LMScale, choose_lr, lm_run, planned_runs
from .._lm import cell_key as cell_key  # the sweep driver asks every task for it

EXPERIMENT = "rope"


@dataclass(frozen=True)
class RopeVariant:
    """One model: its label, its block pattern for a layer count (A: QCAttn with RoPE, S: the
    Cheems SSD), the position encoding of its SSD blocks, and the variant whose total parameters
    its MLP width is matched to (None: the MLP is 4·d)."""

    label: str
    pattern: Callable[[int], str]
    ssd_position: str = "rope"
    match_to: str | None = "hybrid_rope"


def _hybrid(n_layers: int) -> str:
    """Per 8 layers 7 SSD then 1 QCAttn; fewer than 8 layers: the attention block last."""
    return "SSSSSSSA" if n_layers >= 8 else "S" * (n_layers - 1) + "A"


# The one table of the models: adding a variant here runs it at every scale and reports it.
VARIANT_TABLE: dict[str, RopeVariant] = {
    "attn": RopeVariant("QCAttn only", lambda n_layers: "A"),
    "ssd_rope": RopeVariant("SSD only, RoPE", lambda n_layers: "S"),
    "ssd_norope": RopeVariant("SSD only, no RoPE", lambda n_layers: "S", "none"),
    "hybrid_rope": RopeVariant("Hybrid 7 SSD : 1 QCAttn, RoPE in SSD", _hybrid, match_to=None),
    "hybrid_norope": RopeVariant(
        "Hybrid 7 SSD : 1 QCAttn, no RoPE in SSD", _hybrid, "none", match_to=None
    ),
}
VARIANTS: tuple[str, ...] = tuple(VARIANT_TABLE)
LABELS: dict[str, str] = {key: v.label for key, v in VARIANT_TABLE.items()}
METRIC = "valid/loss"  # what the sweep driver ranks a cell's runs by (one LR: only seeds)
HIGHER_IS_BETTER = False
PAIRS = {"hybrid": ("hybrid_rope", "hybrid_norope"), "ssd": ("ssd_rope", "ssd_norope")}
CLAIM_C1 = {"pair": "hybrid", "min_gain": 0.04}  # (ppl_norope − ppl_rope) / ppl_norope


def c1_rule() -> str:
    """How claim C1 is judged, in words (the report's verdict and `--until-decided` use it)."""
    need = f"{100 * CLAIM_C1['min_gain']:g} %"
    return (
        "C1 holds when the whole 95 % t interval of the hybrid's per-seed perplexity "
        "reduction from RoPE in SSD, (ppl without − ppl with) / ppl without at the training "
        "length, paired by seed (both models of a seed see the same data stream, each at "
        f"its own best LR), lies above {need}; refuted when it lies wholly below "
        f"{need}; otherwise inconclusive."
    )


@dataclass(frozen=True)
class RopeScale(LMScale):
    """One scale: model size, data, schedule, seeds."""

    seeds: tuple[int, ...]
    corpus: str = "bundled"  # the default corpus (wm_bench.data.corpus.DEFAULT_CORPUS)
    eval_max_tokens: int = 65536
    eval_multiples: tuple[int, ...] = (1, 2, 4)
    variants: tuple[str, ...] = VARIANTS
    lr_grid: tuple[float, ...] = ()  # per-variant tuning when set (tasks/_lm.py)
    lr_extend: int = 0  # times a variant's grid may grow past a winning edge (tune_variant)
    seeds_by_variant: tuple[tuple[str, tuple[int, ...]], ...] = ()  # seeds at the best LR
    # Micro-batches per optimiser step: batch_size (the global batch) is trained as this many
    # micro-batches of batch_size / K rows, gradients summed (docs/scale_out.md); None = 1.
    accumulate_grad_batches: int | None = None

    def seeds_of(self, variant: str) -> tuple[int, ...]:
        return dict(self.seeds_by_variant).get(variant, self.seeds)


_PAIR_SEEDS = (0, 1, 2, 3, 4, 5)
SCALES: dict[str, RopeScale] = {
    "smoke": RopeScale(64, 4, 2, 512, 64, 8, 30, 3e-3, (0,), eval_max_tokens=4096),
    "cpu": RopeScale(64, 8, 2, 2048, 128, 16, 600, 3e-3, (TUNE_SEED,), eval_max_tokens=32768,
                     lr_grid=(1.5e-3, 3e-3, 6e-3), lr_extend=1, seeds_by_variant=(
                         ("hybrid_rope", _PAIR_SEEDS), ("hybrid_norope", _PAIR_SEEDS))),
    "small": RopeScale(512, 8, 8, 16384, 512, 64, 2000, 1e-3, (0, 1), corpus="debian"),
    # 256 × 2048 tokens per step as 32 micro-batches of 8 on one 80 GB GPU (docs/scale_out.md)
    "paper": RopeScale(1024, 16, 8, 32768, 2048, 256, 20000, 4e-4, (0,), corpus="debian",
                       accumulate_grad_batches=32),
}  # fmt: skip


def spec(scale: str) -> RopeScale:
    """The RopeScale of `scale`; ValueError naming the valid scales."""
    if scale not in SCALES:
        raise ValueError(f"rope: unknown scale {scale!r}; valid: {list(SCALES)}")
    return SCALES[scale]


def _model(s: RopeScale, variant: str, d_ff: int | None = None) -> ModelConfig:
    from wm_bench.presets import ffn_cfg, mixer_cfg

    if variant not in VARIANT_TABLE:
        raise ValueError(f"rope: unknown variant {variant!r}; valid: {list(VARIANTS)}")
    entry = VARIANT_TABLE[variant]
    d = s.d_model
    mlp = ffn_cfg("mlp", d_ff=d_ff if d_ff is not None else 4 * d)
    ssd = mixer_cfg("ssd", n_heads=s.n_heads, position=entry.ssd_position)
    blocks = {
        "A": BlockConfig(mixer=mixer_cfg("qcattn", n_heads=s.n_heads), ffn=mlp),
        "S": BlockConfig(mixer=ssd, ffn=mlp),
    }
    pattern = entry.pattern(s.n_layers)
    return ModelConfig(
        vocab_size=s.vocab_size,
        d_model=d,
        n_layers=s.n_layers,
        pattern=pattern,
        blocks={k: v for k, v in blocks.items() if k in pattern},
        tie_embeddings=False,
    )


def model_config(scale: str, variant: str) -> ModelConfig:
    """The variant's model at `scale`; its MLP width matched to the total parameters of the
    variant its table entry names (attn and ssd: the hybrid's)."""
    s = spec(scale)
    reference = VARIANT_TABLE[variant].match_to if variant in VARIANT_TABLE else None
    if reference is None:
        return _model(s, variant)
    from wm_bench.model import count_params
    from wm_bench.presets import match_params

    target = count_params(_model(s, reference))["total"]
    cfg, _ = match_params(
        lambda f: _model(s, variant, d_ff=f), target, lo=s.d_model // 2, hi=16 * s.d_model
    )
    return cfg


def make_run(scale: str, variant: str, seed: int, lr: float | None = None) -> RunConfig:
    """One run: the variant's model on the scale's corpus, evaluated at 1×/2×/4× T; `lr`
    (default: the scale's) is a point of the LR grid."""
    s = spec(scale)
    return lm_run(
        EXPERIMENT,
        variant,
        model_config(scale, variant),
        s,
        scale=scale,
        seed=seed,
        eval_lengths=[m * s.seq_len for m in s.eval_multiples],
        tags={"variant": variant, "seq_len": s.seq_len},
        lr=lr,
    )


def runs(scale: str, results_dir: str | Path | None = None) -> list[RunConfig]:
    """Every run at `scale`. With an LR grid: the tune stage, then the seeds stage of every
    variant whose tune runs are in `results_dir` (see tasks/_lm.py). Without one: ordered by
    (seed, variant) so that a cut-short grid has whole seeds."""
    return planned_runs(scale, spec(scale), spec(scale).variants, make_run, results_dir)


def decision(scale: str, results_dir: str | Path | None = None) -> Any:
    """C1 as a paired comparison for `reproduce --until-decided`: the hybrid's test-perplexity
    gain at T from RoPE in SSD, each model at its own best LR, against CLAIM_C1's threshold."""
    from .._lm import PairDecision

    s = spec(scale)
    if not s.lr_grid:
        raise ValueError(f"rope @ {scale} has no LR grid; --until-decided needs a tuned scale")
    treated, baseline = PAIRS[CLAIM_C1["pair"]]
    return PairDecision(
        EXPERIMENT,
        scale,
        treated,
        baseline,
        ppl_metric(s.seq_len),
        CLAIM_C1["min_gain"],
        c1_rule(),
        s.lr_grid,
        lambda v, lr, seed: make_run(scale, v, seed, lr),
        results_dir,
        s.lr_extend,
    )


def eval_lengths(scale: str) -> list[int]:
    """The evaluation context lengths of `scale`."""
    s = spec(scale)
    return [m * s.seq_len for m in s.eval_multiples]


def ppl_metric(length: int) -> str:
    return ppl_at(length)


__all__ = ["EXPERIMENT", "LABELS", "PAIRS", "SCALES", "VARIANTS", "choose_lr", "make_run", "runs"]
