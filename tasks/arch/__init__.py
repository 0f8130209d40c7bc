"""Architecture comparison (docs/spec.md §4 "arch", Table 3, claim C4): Llama3-style vs Mamba2 vs
Jamba-style vs Cheems (MLP and CDMoE) vs Doge, parameter-matched, same data and tokens;
validation perplexity and the downstream tasks through lm-eval.

What runs. Six language models (presets in `wm_bench.presets`, shaped by the scale):
- llama: QCAttn (RoPE) + SwiGLU MLP every layer — the reference all others are matched to;
- mamba2: Mamba-2 blocks only, no MLP, twice the layers (as Mamba2 is built);
- jamba: per 8 layers 7 Mamba-2 + 1 attention, MoE (16 experts, top-2) every other layer;
- cheems_mlp / cheems_cdmoe: per 8 layers 7 SSD with RoPE + 1 DMA, with an MLP or CDMoE;
- doge: DMA + CDMoE every layer.
Matching: every model's *active* parameters per token (embeddings included) equal llama's within
5 % (`match_params`). Why active rather than total: the MoE and CDMoE models are built to hold
more parameters than a token uses; matching total parameters would shrink their compute and
penalise the very property they exist for. Total parameters are reported beside active ones.
The knob is the FFN width (MLP / MoE expert d_ff, CDMoE shared_d_ff); for mamba2, which has no
FFN, it is the SSM state size d_state.

Evaluation, per run: test perplexity at the training length (sliding window, the first
`eval_max_tokens` test tokens), then the paper's eight downstream tasks at 0 and 5 shots through
`wm_bench.eval.downstream` (offline YAMLs over the eval-data directory; MMLU and HellaSwag are
"not run: no data" unless their files are added). The paper used lighteval prompts, 5-shot; our
prompts are the Eval Gauntlet's, so only the within-table comparison is meaningful.

Scales (edit the ArchScale constants below): smoke is CPU plumbing in ≤ 3 minutes (d 64,
4 layers, 30 steps, 4 examples per task); cpu is d 64, 8 layers, vocabulary 2048, T 128,
300 steps, the first 100 examples of each multiple-choice task with per-example log-likelihoods,
LR tuning per architecture (3 LRs, seed 0, then seed 1 at the best), without Doge or TriviaQA;
small is d 512, 8 layers on one H100 with full task sets; paper is docs/spec.md §7, ≈ 320M
(d 1024, 16 layers), context 2048 (not run here). smoke and cpu train on the default corpus
`bundled`, small and paper on the larger `debian`. How the cpu scale was sized — the committed
run times, and what was cut to fit the hour — is in tasks/arch/README.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.config import DownstreamConfig, ModelConfig, RunConfig
from wm_bench.eval.catalog import PAPER_TASKS
from wm_bench.metric_names import ppl_at

from .. import pick
from .._lm import TUNE_SEED, LMScale, choose_lr, lm_run, planned_runs
from .._lm import cell_key as cell_key  # the sweep driver asks every task for it

EXPERIMENT = "arch"
# The one table of the architectures: variant → (preset of wm_bench.presets, its keyword
# arguments, label). Adding a row adds the architecture to every scale that runs all of them and
# to the report.
ARCH_TABLE: dict[str, tuple[str, dict[str, Any], str]] = {
    "llama":        ("llama",     {},               "Llama3-style (attention + MLP)"),
    "mamba2":       ("mamba2",    {},               "Mamba2"),
    "jamba":        ("jamba",     {},               "Jamba-style (7 Mamba : 1 attention, MoE)"),
    "cheems_mlp":   ("cheems",    {"ffn": "mlp"},   "Cheems (7 SSD+RoPE : 1 DMA, MLP)"),
    "cheems_cdmoe": ("cheems",    {"ffn": "cdmoe"}, "Cheems (7 SSD+RoPE : 1 DMA, CDMoE)"),
    "doge":         ("doge",      {"ffn": "cdmoe"}, "Doge (DMA + CDMoE)"),
    "transxssm":    ("transxssm", {},
                     "TransXSSM (7 SSD : 1 attention, one RoPE; ours, beyond the paper)"),
    "otce":         ("otce",      {"ffn": "moe"},
                     "OTCE (SSD/attention stages, cross-domain MoE; ours, beyond the paper)"),
}  # fmt: skip
VARIANTS: tuple[str, ...] = tuple(ARCH_TABLE)
LABELS: dict[str, str] = {variant: row[2] for variant, row in ARCH_TABLE.items()}
REFERENCE = "llama"
METRIC = "valid/loss"  # what the sweep driver ranks a cell's runs by (one LR: only seeds)
HIGHER_IS_BETTER = False


@dataclass(frozen=True)
class ArchScale(LMScale):
    """One scale: model shape, data, schedule, seeds and the downstream protocol."""

    seeds: tuple[int, ...]
    corpus: str = "bundled"  # the default corpus (wm_bench.data.corpus.DEFAULT_CORPUS)
    eval_max_tokens: int = 65536
    tasks: tuple[str, ...] = PAPER_TASKS  # the paper's eight downstream tasks
    shots: tuple[int, ...] = (0, 5)
    limit: int | None = None
    max_length: int | None = None  # longest downstream prompt (None: seq_len)
    variants: tuple[str, ...] = VARIANTS
    lr_grid: tuple[float, ...] = ()  # per-variant tuning when set (tasks/_lm.py)
    lr_extend: int = 0  # times a variant's grid may grow past a winning edge (tune_variant)
    # Micro-batches per optimiser step: batch_size (the global batch) is trained as this many
    # micro-batches of batch_size / K rows, gradients summed (docs/scale_out.md); None = 1.
    accumulate_grad_batches: int | None = None

    def seeds_of(self, variant: str) -> tuple[int, ...]:
        return self.seeds


_CPU_VARIANTS = ("llama", "mamba2", "jamba", "cheems_mlp", "cheems_cdmoe")
_CPU_TASKS = ("mmlu", "arc_easy", "arc_challenge", "piqa", "hellaswag", "openbookqa", "winogrande")
SCALES: dict[str, ArchScale] = {
    "smoke": ArchScale(64, 4, 2, 512, 64, 8, 30, 3e-3, (0,), eval_max_tokens=4096, limit=4,
                       max_length=256),
    "cpu": ArchScale(64, 8, 2, 2048, 128, 16, 300, 3e-3, (TUNE_SEED, 1), eval_max_tokens=32768,
                     tasks=_CPU_TASKS, limit=100, max_length=512, variants=_CPU_VARIANTS,
                     lr_grid=(1.5e-3, 3e-3, 6e-3), lr_extend=1),
    "small": ArchScale(512, 8, 8, 16384, 512, 64, 2000, 1e-3, (0,), max_length=2048,
                       corpus="debian"),
    # 256 × 2048 tokens per step as 128 micro-batches of 2 on one 80 GB GPU (docs/scale_out.md)
    "paper": ArchScale(1024, 16, 8, 32768, 2048, 256, 20000, 4e-4, (0,), corpus="debian",
                       accumulate_grad_batches=128),
}  # fmt: skip


def spec(scale: str) -> ArchScale:
    """The ArchScale of `scale`; ValueError naming the valid scales."""
    return pick(SCALES, scale, "arch: unknown scale")


def _preset(s: ArchScale, variant: str) -> ModelConfig:
    from wm_bench.presets import Size, preset

    name, kw, _ = pick(ARCH_TABLE, variant, "arch: unknown variant")
    size = Size(d_model=s.d_model, n_layers=s.n_layers, n_heads=s.n_heads, vocab=s.vocab_size)
    return preset(name, size, vocab_size=s.vocab_size, **kw)


def with_knob(cfg: ModelConfig, x: int) -> ModelConfig:
    """`cfg` with its matching knob set to x: every FFN's width, or (no FFN) Mamba-2's d_state."""
    blocks = {}
    for key, b in cfg.blocks.items():
        f = b.ffn
        if f is None:
            if b.mixer.name != "mamba2":
                raise ValueError(f"arch: block {key!r} has no FFN and no d_state knob")
            blocks[key] = dataclasses.replace(b, mixer=dataclasses.replace(b.mixer, d_state=x))
        elif f.name == "cdmoe":
            blocks[key] = dataclasses.replace(b, ffn=dataclasses.replace(f, shared_d_ff=x))
        elif f.name in ("mlp", "moe"):
            blocks[key] = dataclasses.replace(b, ffn=dataclasses.replace(f, d_ff=x))
        else:
            raise ValueError(f"arch: no width knob for FFN {f.name!r}")
    return dataclasses.replace(cfg, blocks=blocks)


def model_config(scale: str, variant: str) -> ModelConfig:
    """The variant at `scale`, its knob chosen so active parameters match llama's within 5 %."""
    from wm_bench.model import count_params
    from wm_bench.presets import match_params

    s = spec(scale)
    base = _preset(s, variant)
    if variant == REFERENCE:
        return base
    target = count_params(_preset(s, REFERENCE))["active"]
    lo, hi = (4, 1024) if variant == "mamba2" else (4, 16 * s.d_model)
    cfg, _ = match_params(lambda x: with_knob(base, x), target, lo=lo, hi=hi, key="active")
    return cfg


def make_run(scale: str, variant: str, seed: int, lr: float | None = None) -> RunConfig:
    """One run: the variant on the scale's corpus; test perplexity at T; downstream tasks; `lr`
    (default: the scale's) is a point of the LR grid."""
    s = spec(scale)
    down = DownstreamConfig(
        tasks=s.tasks,
        shots=s.shots,
        limit=s.limit,
        max_length=s.max_length,
        # the training micro-batch (what fits the device when the step accumulates)
        batch_size=max(1, s.batch_size // (s.accumulate_grad_batches or 1)),
    )
    return lm_run(
        EXPERIMENT,
        variant,
        model_config(scale, variant),
        s,
        scale=scale,
        seed=seed,
        tags={"variant": variant, "seq_len": s.seq_len},
        downstream=down,
        lr=lr,
    )


def runs(scale: str, results_dir: str | Path | None = None) -> list[RunConfig]:
    """Every run at `scale`. With an LR grid: the tune stage, then the seeds stage of every
    variant whose tune runs are in `results_dir` (tasks/_lm.py). Without one: ordered by
    (seed, variant) so that a cut-short grid has whole seeds."""
    return planned_runs(scale, spec(scale), spec(scale).variants, make_run, results_dir)


def ppl_metric(scale: str) -> str:
    return ppl_at(spec(scale).seq_len)


def describe(scale: str) -> list[dict[str, Any]]:
    """Per variant: label, total and active parameters (meta-device counts), for reports/--help."""
    from wm_bench.model import count_params

    out = []
    for v in VARIANTS:
        p = count_params(model_config(scale, v))
        out.append({"variant": v, "label": LABELS[v], **p})
    return out


__all__ = ["EXPERIMENT", "LABELS", "SCALES", "VARIANTS", "choose_lr", "make_run", "runs"]
