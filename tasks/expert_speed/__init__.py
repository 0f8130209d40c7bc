"""Expert-retrieval speed (docs/spec.md §6, claim C3): time of each expert layer vs N experts and k.

What runs. For every method, N ∈ experts(scale) and ratio ∈ ratios(scale), one FFN layer with
N experts and k = round(ratio·√N) experts per token (the paper's k: N = 1024 → 8, 16, 24, 32) is
timed on random tokens [B, T, d]: forward, and forward + backward into the input and every
parameter (`wm_bench.bench.ffn_speed`). One result file per point; nothing is trained.

Methods and the choices the paper does not state:
- SEIMoE: the paper's "MoE" — softmax router over N, top-k probabilities, a Python loop over
  the N experts (gather, MLP, index_add), one sigmoid-gated shared expert. Each expert is a
  non-gated MLP of width 4 (SEIMOE_D_FF): then a token activates 2·d·4·k expert parameters,
  exactly CDMoE's private 2·d·H_e·k with H_e = 4 heads, and the N experts hold 8·N·d parameters
  (at N = 16384, d = 1024: 134M, which fits; the paper's wider experts would not,
  docs/anchors.md §2).
- MoE: the fair baseline — the same kind of router, tokens sorted by expert, one grouped matmul
  per projection (`torch._grouped_mm` on Hopper GPUs; the loop over expert slices elsewhere),
  gated experts of width 8 (MOE_D_FF: the narrowest whose rows are 16-byte multiples in bf16,
  which torch._grouped_mm requires), no shared expert, Switch aux loss 0.01.
- PKM, PEER: product-key retrieval with 4 heads, query width 128 per head (layer defaults).
- CDMoE: 4 heads, retrieval width 256, shared gated MLP of width 4d (the Dec-2024 default), i.e.
  the whole layer as a model would run it.
Every layer runs with impl="auto" (Triton / grouped paths on CUDA, references on the CPU); the
impls that ran are recorded in each result.

How it times (tasks/expert_speed/timing.py, round-robin by default). The methods of one
(N, ratio) are built together and timed round-robin (`wm_bench.bench.common.interleaved_times`):
after one untimed first call each and `warmup` untimed rounds, each of `repeats` rounds times
every method's forward and forward + backward once, in an order rotated every round, so that
load from other processes hits all methods alike. Each result keeps its per-repeat milliseconds
(`extra.fwd_ms_repeats`, `extra.fwd_bwd_ms_repeats`; the metrics are their medians), the
session it was timed in (`extra.session`: results of one session are paired by repeat), and the
1/5/15-minute load averages before and after (`timing.loadavg_before` / `loadavg_after`). The
report bootstraps the CDMoE speed-up from the repeats. Results timed the old way (median of 3,
one method at a time, no repeats kept) still load; a round-robin result of the same point
replaces them in the report.

Scales (edit the SpeedScale constants below): smoke is CPU plumbing in seconds (B·T = 64 tokens,
d = 32, N ∈ {16, 64}, two ratios, 3 repeats); cpu is one CPU process with 2 threads, B·T = 512
tokens, d = 64, N ∈ {16, …, 16384}, the four ratios, fp32, 10 round-robin repeats (≈ 13–15 min
on 2 idle cores); small / paper is one GPU with the paper's input (B = 8, T = 2048, d = 1024) in
bf16. CPU times are not comparable with the paper's GPU milliseconds; only the ratios between
methods are. How the cpu scale was sized, and its cost against the committed runs, is in
tasks/expert_speed/README.md.
"""

from __future__ import annotations

from .grid import (
    CDMOE_D_RETRIEVAL,
    CLAIM_C3,
    CLAIM_MIN_EXPERTS,
    EXPERIMENT,
    EXPERTS,
    HEADS,
    HIGHER_IS_BETTER,
    LABELS,
    METHOD_TABLE,
    METHODS,
    METRIC,
    MOE_D_FF,
    PAPER_FILE,
    PROTOCOLS,
    RATIOS,
    SCALES,
    SEIMOE_D_FF,
    SpeedMethod,
    SpeedPoint,
    SpeedScale,
    ffn_config,
    k_for,
    load_paper,
    paper_points,
    point_hash,
    points,
    retrieval_bytes,
    spec,
)
from .timing import measure, measure_group, reproduce

__all__ = [
    "CDMOE_D_RETRIEVAL",
    "CLAIM_C3",
    "CLAIM_MIN_EXPERTS",
    "EXPERIMENT",
    "EXPERTS",
    "HEADS",
    "HIGHER_IS_BETTER",
    "LABELS",
    "METHODS",
    "METHOD_TABLE",
    "METRIC",
    "MOE_D_FF",
    "PAPER_FILE",
    "PROTOCOLS",
    "RATIOS",
    "SCALES",
    "SEIMOE_D_FF",
    "SpeedMethod",
    "SpeedPoint",
    "SpeedScale",
    "ffn_config",
    "k_for",
    "load_paper",
    "measure",
    "measure_group",
    "paper_points",
    "point_hash",
    "points",
    "reproduce",
    "retrieval_bytes",
    "spec",
]
