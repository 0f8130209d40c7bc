"""FFN comparison (docs/spec.md §4 "ffn", Table 2): MLP vs MoE vs SEIMoE vs PEER vs CDMoE at
matched active parameters — perplexity, total and active parameters, training tokens/s.

What runs. The same backbone (QCAttn with RoPE in every layer, untied embeddings) with each FFN,
trained on the same tokens and evaluated by sliding-window test perplexity at the training length.
Active parameters (per token) are matched to the dense MLP's within 5 % (`match_params` with
key "active") by one knob per method:
- moe: grouped top-2 of 16 gated experts, knob = expert width;
- seimoe: the paper's loop MoE, top-2 of 16 non-gated experts + sigmoid-gated shared expert,
  knob = expert width;
- peer: product-key retrieval of N single-neuron experts, 4 heads, k = √N/4 each; knob = the
  query width per head (N is fixed per scale);
- cdmoe_<N>: shared gated MLP + N private single-neuron experts (4 heads, k = √N/4 each,
  retrieval width min(256, d)), for N ∈ experts(scale); knob = the shared MLP's width.
So total parameters differ (that is the point: retrieval methods add capacity at equal compute).

Scales (edit the FfnScale constants below): smoke is CPU plumbing (d 64, 4 layers, 30 steps,
N ∈ {256}); cpu is d 128, 4 layers, vocabulary 4096, T 128, 500 steps, with per-variant LR
tuning for MLP, MoE, SEIMoE and CDMoE-1024 (3 LRs, seed 0) and then MLP and CDMoE-1024 paired
over seeds 0–2 (PEER and CDMoE-256 keep their one-LR runs); both on the default corpus
`bundled`. small is d 512, 8 layers on one H100 with N ∈ {1024, 4096, 16384}, on the larger
`debian` corpus, like paper. How the cpu scale was sized — what was cut to fit the hour, the
run times and the throughput measured on this machine — is in tasks/ffn/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.config import BlockConfig, ModelConfig, RunConfig

from .. import pick
from .._lm import TUNE_SEED, LMScale, choose_lr, lm_run, planned_runs
from .._lm import cell_key as cell_key  # the sweep driver asks every task for it

EXPERIMENT = "ffn"
METRIC = "valid/loss"
HIGHER_IS_BETTER = False
REFERENCE = "mlp"  # the dense MLP every method's active parameters are matched to


@dataclass(frozen=True)
class FfnMethod:
    """One FFN method: the layer registry's FFN, its config fields at a scale for a value of the
    matching knob and an expert count N, the knob's search range (lo, hi · d) and the label
    ("{n}" stands for N). per_n: one variant `<method>_<N>` per N in the scale's `experts`."""

    registry: str
    label: str
    fields: Callable[[Any, int, int | None], dict[str, Any]]  # (scale, knob, N) → fields
    knob_lo: int = 8
    knob_hi_per_d: int = 64
    per_n: bool = False


def _k(n: int) -> int:
    return max(1, int(n**0.5) // 4)


def _peer(s: Any, knob: int, _n: int | None) -> dict[str, Any]:
    n = s.peer_experts
    return {"num_experts": n, "num_heads": 4, "top_k": _k(n), "d_key": 2 * knob}


def _cdmoe(s: Any, knob: int, n: int | None) -> dict[str, Any]:
    d_retrieval = min(256, s.d_model)
    return {
        "num_experts": n,
        "num_heads": 4,
        "top_k": _k(n),
        "shared_d_ff": knob,
        "d_retrieval": d_retrieval,
    }


def _sixteen_experts(s: Any, knob: int, n: int | None) -> dict[str, Any]:
    return {"num_experts": 16, "top_k": 2, "d_ff": knob}


# The one table of the methods: adding a method here adds it to every scale that runs all base
# methods, and to the report.
METHOD_TABLE: dict[str, FfnMethod] = {
    "mlp": FfnMethod("mlp", "MLP (dense)", lambda s, knob, n: {"d_ff": knob}),
    "moe": FfnMethod("moe", "MoE (grouped, top-2 of 16)", _sixteen_experts),
    "seimoe": FfnMethod("seimoe", "SEIMoE (top-2 of 16)", _sixteen_experts),
    "peer": FfnMethod("peer", "PEER", _peer, knob_lo=4, knob_hi_per_d=8),
    "cdmoe": FfnMethod("cdmoe", "CDMoE (N = {n})", _cdmoe, per_n=True),
}
BASE_METHODS: tuple[str, ...] = tuple(k for k, m in METHOD_TABLE.items() if not m.per_n)
LABELS: dict[str, str] = {k: METHOD_TABLE[k].label for k in BASE_METHODS}


@dataclass(frozen=True)
class FfnScale(LMScale):
    """One scale: backbone size, data, schedule, seeds, CDMoE expert counts."""

    experts: tuple[int, ...]
    seeds: dict[str, tuple[int, ...]]  # variant → seeds (missing: (0,))
    peer_experts: int = 1024
    corpus: str = "bundled"  # the default corpus (wm_bench.data.corpus.DEFAULT_CORPUS)
    eval_max_tokens: int = 65536
    methods: tuple[str, ...] = BASE_METHODS  # the base methods run at this scale
    lr_grid: tuple[float, ...] = ()  # per-variant tuning when set (tasks/_lm.py)
    lr_extend: int = 0  # times a variant's grid may grow past a winning edge (tune_variant)
    # Micro-batches per optimiser step: batch_size (the global batch) is trained as this many
    # micro-batches of batch_size / K rows, gradients summed (docs/scale_out.md); None = 1.
    accumulate_grad_batches: int | None = None

    def seeds_of(self, variant: str) -> tuple[int, ...]:
        return self.seeds.get(variant, (TUNE_SEED,))


SCALES: dict[str, FfnScale] = {
    "smoke": FfnScale(64, 4, 2, 512, 64, 8, 30, 3e-3, (256,), {}, peer_experts=256,
                      eval_max_tokens=4096),
    "cpu": FfnScale(128, 4, 2, 4096, 128, 16, 500, 2e-3, (1024,),
                    {"mlp": (0, 1, 2), "cdmoe_1024": (0, 1, 2)},
                    methods=("mlp", "moe", "seimoe"), lr_grid=(1e-3, 2e-3, 4e-3), lr_extend=1),
    "small": FfnScale(512, 8, 8, 16384, 512, 64, 2000, 1e-3, (1024, 4096, 16384), {},
                      peer_experts=4096, corpus="debian"),
    # 256 × 2048 tokens per step as 128 micro-batches of 2 on one 80 GB GPU (docs/scale_out.md)
    "paper": FfnScale(1024, 16, 8, 32768, 2048, 256, 20000, 4e-4, (1024, 4096, 16384), {},
                      peer_experts=16384, corpus="debian", accumulate_grad_batches=128),
}  # fmt: skip


def spec(scale: str) -> FfnScale:
    """The FfnScale of `scale`; ValueError naming the valid scales."""
    return pick(SCALES, scale, "ffn: unknown scale")


def variants(scale: str) -> list[str]:
    """The scale's base methods (mlp, moe, seimoe, peer), then <method>_<N> for each per-N
    method (cdmoe) and each N of the scale."""
    s = spec(scale)
    per_n = [k for k, m in METHOD_TABLE.items() if m.per_n]
    return [*s.methods, *(f"{k}_{n}" for k in per_n for n in s.experts)]


def method_of(variant: str) -> tuple[FfnMethod, int | None]:
    """A variant's method and its N (None for a base method); ValueError for an unknown one."""
    key, _, n = variant.rpartition("_")
    if key in METHOD_TABLE and METHOD_TABLE[key].per_n and n.isdigit():
        return METHOD_TABLE[key], int(n)
    if variant in METHOD_TABLE and not METHOD_TABLE[variant].per_n:
        return METHOD_TABLE[variant], None
    raise ValueError(f"ffn: unknown variant {variant!r}")


def label(variant: str) -> str:
    method, n = method_of(variant)
    return method.label.format(n=n)


def _ffn(s: FfnScale, variant: str, knob: int) -> Any:
    from wm_bench.presets import ffn_cfg

    method, n = method_of(variant)
    return ffn_cfg(method.registry, **method.fields(s, knob, n))


def _model(s: FfnScale, variant: str, knob: int) -> ModelConfig:
    from wm_bench.presets import mixer_cfg

    block = BlockConfig(mixer=mixer_cfg("qcattn", n_heads=s.n_heads), ffn=_ffn(s, variant, knob))
    return ModelConfig(
        vocab_size=s.vocab_size,
        d_model=s.d_model,
        n_layers=s.n_layers,
        pattern="A",
        blocks={"A": block},
        tie_embeddings=False,
    )


def model_config(scale: str, variant: str) -> ModelConfig:
    """The variant's model, its knob chosen so active parameters match the dense MLP's."""
    from wm_bench.model import count_params
    from wm_bench.presets import match_params

    s = spec(scale)
    dense = _model(s, REFERENCE, 4 * s.d_model)
    if variant == REFERENCE:
        return dense
    target = count_params(dense)["active"]
    method, _ = method_of(variant)
    lo, hi = method.knob_lo, method.knob_hi_per_d * s.d_model
    cfg, _ = match_params(lambda x: _model(s, variant, x), target, lo=lo, hi=hi, key="active")
    return cfg


def make_run(scale: str, variant: str, seed: int, lr: float | None = None) -> RunConfig:
    """One run: the variant's model on the scale's corpus, test perplexity at T; `lr` (default:
    the scale's) is a point of the LR grid."""
    return lm_run(
        EXPERIMENT,
        variant,
        model_config(scale, variant),
        spec(scale),
        scale=scale,
        seed=seed,
        lr=lr,
    )


def runs(scale: str, results_dir: str | Path | None = None) -> list[RunConfig]:
    """Every run at `scale`. With an LR grid: the tune stage, then the seeds stage of every
    variant whose tune runs are in `results_dir` (tasks/_lm.py). Without one: seed 0 of every
    variant first, then the extra seeds."""
    return planned_runs(scale, spec(scale), variants(scale), make_run, results_dir)


__all__ = ["EXPERIMENT", "LABELS", "SCALES", "choose_lr", "label", "make_run", "runs", "variants"]
