"""MQAR accuracy grid (docs/spec.md §5, claim C2): configs per scale, paper values, report layout.

What runs. Every cell (L, d, mixer) is a 2-layer model whose blocks are mixer + MLP FFN
(docs/spec.md §5: two layers, an MLP as the state mixer), trained with AdamW (wd 0.1), linear
warm-up then cosine to 0, early stop once `valid/accuracy` ≥ 0.99, swept over `lr_grid(scale)` ×
the scale's seeds. The cell's reported accuracy is the best LR's (highest mean over seeds).
Choices the paper does not state:
- Tied input/output embeddings (Zoology ties them; on a CPU it also keeps the head cheap).
- QCAttn: 1 head, RoPE (Zoology's attention has 1 head and learned absolute positions; the suite
  has RoPE or none, and RoPE is the closest position-aware choice).
- DMA: 1 head like QCAttn, so the two differ only in the dynamic mask; window = #KV pairs
  (docs/spec.md §5); other fields default (RoPE, QK-norm).
- SSD: the suite's (Cheems) SSD with N = d_state = 128, 1 head, 1 group, default RoPE and expand.
- Based: the layer's defaults (feature dim 16, sliding window 64). At L = 64 that window covers
  the whole sequence, so Based is exact attention there; from L = 128 on it is not.
- FFN: the gated MLP with its default width (8/3·d rounded up to 64).

Scales (edit the ScaleSpec constants below; `planned_tokens(scale)` recomputes the cost): smoke
is plumbing only (L = 64, d = 32, 40 steps); cpu is two cells (L = 64 and 128, d = 64,
kv = L/8, vocabulary 512) for the four mixers plus DMA under the other tie rule, 2 seeds, one LR,
batch 32, ≤ 3000 steps with early stop, ≈ 35 min as `--workers 2 --threads 1` on 2 cores; small
is the paper's grid on one H100 (≈ 20 min); paper is Zoology's Fig. 2 setting. Why each scale
has its shape — the calibrations on this machine, what was tried and dropped — is in
tasks/mqar/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from wm_bench.config import RunConfig

from .. import pick
from .._recall import (
    EARLY_STOP_ACCURACY,
    METRIC,
    Budget,
    hash_but_lr_and_seed,
    mixer_mlp_model,
    recall_run,
)

EXPERIMENT = "mqar"
HIGHER_IS_BETTER = True


@dataclass(frozen=True)
class MixerEntry:
    """One column of the grid: a mixer from the layer registry with fixed fields, and its label.
    DMA's window is not fixed: every cell sets it to the number of KV pairs."""

    registry: str  # key of wm_bench.layers.mixers.MIXERS
    kwargs: dict[str, Any]
    label: str
    paper: bool = True  # one of the paper's four columns (compared with its figure)


# The one table of the grid's mixers: adding a mixer here adds its column everywhere. The
# paper's four mixers, plus DMA under the other tie rule (docs/spec.md §2.4: C2 is run under both
# rules at least once): "dma" ranks equal biases smaller-index first (at init it keeps the FIRST
# w keys), "dma_li" larger-index first (at init a sliding window over the LAST w keys).
MIXER_TABLE: dict[str, MixerEntry] = {
    "based": MixerEntry("based", {}, "Based"),
    "qcattn": MixerEntry("qcattn", {"n_heads": 1, "position": "rope"}, "QCAttn"),
    "ssd": MixerEntry("ssd", {"n_heads": 1, "n_groups": 1, "d_state": 128}, "SSD"),
    "dma": MixerEntry("dma", {"n_heads": 1}, "DMAttn"),
    "dma_li": MixerEntry(
        "dma", {"n_heads": 1, "tie_break": "larger_index"}, "DMAttn (ties: larger index)", False
    ),
}
PAPER_MIXERS: tuple[str, ...] = tuple(key for key, entry in MIXER_TABLE.items() if entry.paper)
MIXERS: tuple[str, ...] = tuple(MIXER_TABLE)
MIXER_LABELS: dict[str, str] = {key: entry.label for key, entry in MIXER_TABLE.items()}
# Claim C2 (docs/spec.md §1): DMA at 100 % (we accept the early-stop level 0.99) and a gain
# acc_dma / acc_x − 1 ≥ 1.5 over QCAttn and SSD.
CLAIM_C2: dict[str, Any] = {
    "subject": "dma",
    "baselines": ("qcattn", "ssd"),
    "min_accuracy": EARLY_STOP_ACCURACY,
    "min_gain": 1.5,
}
PAPER_FILE = Path(__file__).with_name("paper_values.json")


@dataclass(frozen=True)
class ScaleSpec:
    """One scale's grid and training budget.

    Exactly one of `batch_size` (fixed) and `tokens_per_step` (batch = tokens_per_step // L) is
    > 0. `n_train` None means max_steps × batch, so that each training example is seen once.
    """

    lengths: tuple[int, ...]
    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    kv_divisor: int  # num_kv_pairs = L // kv_divisor (≥ 4: docs/spec.md §5 needs 4·kv ≤ L)
    vocab_size: int
    max_steps: int
    eval_every: int
    n_test: int
    n_train: int | None = None
    batch_size: int = 0
    tokens_per_step: int = 0
    mixers: tuple[str, ...] = PAPER_MIXERS

    def __post_init__(self) -> None:
        if (self.batch_size > 0) == (self.tokens_per_step > 0):
            raise ValueError(
                f"ScaleSpec: set exactly one of batch_size={self.batch_size} and "
                f"tokens_per_step={self.tokens_per_step} (> 0)"
            )
        if self.kv_divisor < 4:
            raise ValueError(f"ScaleSpec.kv_divisor={self.kv_divisor} must be ≥ 4 (4·kv ≤ L)")

    def batch(self, seq_len: int) -> int:
        """Batch size B at length L."""
        return self.batch_size or max(1, self.tokens_per_step // seq_len)

    def num_kv_pairs(self, seq_len: int) -> int:
        """KV pairs at length L."""
        return seq_len // self.kv_divisor

    def train_examples(self, seq_len: int) -> int:
        """Training set size at length L."""
        return self.n_train if self.n_train is not None else self.max_steps * self.batch(seq_len)


# ---- the scales: edit these constants to resize a scale ------------------------------------
SMOKE = ScaleSpec(
    lengths=(64,), widths=(32,), lrs=(3e-3,), seeds=(0,), kv_divisor=8, vocab_size=128,
    max_steps=40, eval_every=20, n_test=64, batch_size=16, mixers=MIXERS,
)  # fmt: skip
CPU_LENGTHS = (64, 128)
CPU_WIDTHS = (64,)
CPU_LRS = (3e-3,)
CPU_SEEDS = (0, 1)
CPU_KV_DIVISOR = 8
CPU_VOCAB = 512
CPU_BATCH = 32  # at both lengths: L 128 / kv 16 stays on its plateau at batch 16 (README.md)
CPU_MAX_STEPS = 3000
CPU = ScaleSpec(
    lengths=CPU_LENGTHS, widths=CPU_WIDTHS, lrs=CPU_LRS, seeds=CPU_SEEDS,
    kv_divisor=CPU_KV_DIVISOR, vocab_size=CPU_VOCAB, max_steps=CPU_MAX_STEPS, eval_every=250,
    n_test=256, batch_size=CPU_BATCH, mixers=MIXERS,
)  # fmt: skip
SMALL = ScaleSpec(
    lengths=(256, 512, 1024, 2048), widths=(32, 64, 128, 256), lrs=(1e-3, 3e-3), seeds=(0,),
    kv_divisor=4, vocab_size=8192, max_steps=500, eval_every=100, n_test=1000, n_train=10_000,
    tokens_per_step=32768,
)  # fmt: skip
PAPER = ScaleSpec(
    lengths=(256, 512, 1024, 2048), widths=(32, 64, 128, 256),
    lrs=(1e-4, 4.6416e-4, 2.1544e-3, 1e-2),  # numpy.logspace(−4, −2, 4) to 5 significant digits
    seeds=(0,), kv_divisor=4, vocab_size=8192, max_steps=12_500, eval_every=196,
    n_test=3000, n_train=100_000, batch_size=512,
)  # fmt: skip
SCALES: dict[str, ScaleSpec] = {"smoke": SMOKE, "cpu": CPU, "small": SMALL, "paper": PAPER}


@dataclass(frozen=True)
class TableLayout:
    """How the report lays the grid out: one row per `row_tags`, one column per mixer."""

    row_tags: tuple[str, ...] = ("seq_len", "d_model", "num_kv_pairs")
    row_labels: tuple[str, ...] = ("L", "d", "kv")
    column_tag: str = "mixer"
    columns: tuple[str, ...] = MIXERS
    column_labels: tuple[tuple[str, str], ...] = tuple(MIXER_LABELS.items())
    metric: str = METRIC
    digits: int = 2
    note: str = (
        "Mixers: Based (defaults), QCAttn (1 head, RoPE), SSD (N = 128, 1 head), DMAttn (1 head, "
        "keeps the top w = kv keys, equal biases ranked smaller index first; 'ties: larger "
        "index' ranks them larger index first); each block is mixer + MLP, 2 layers."
    )


TABLE = TableLayout()


def spec(scale: str) -> ScaleSpec:
    """The ScaleSpec of `scale`; ValueError naming the valid scales."""
    return pick(SCALES, scale, "mqar: unknown scale")


def lr_grid(scale: str) -> list[float]:
    """The learning rates swept in every cell at `scale`."""
    return list(spec(scale).lrs)


def mixer_config(mixer: str, num_kv_pairs: int) -> Any:
    """The mixer config of one cell, built from the layer registry (imported lazily).

    Args:
        mixer: one of MIXERS.
        num_kv_pairs: the cell's KV pairs (DMA's window).
    Returns:
        A frozen config dataclass from `wm_bench.layers.mixers.MIXERS`.
    """
    if mixer not in MIXER_TABLE:
        raise ValueError(f"mqar: unknown mixer {mixer!r}; valid: {list(MIXER_TABLE)}")
    from wm_bench.layers.mixers import MIXERS as REGISTRY

    entry = MIXER_TABLE[mixer]
    kwargs = dict(entry.kwargs)
    if entry.registry == "dma":
        kwargs["window"] = num_kv_pairs
    return REGISTRY[entry.registry][1](**kwargs)


def make_run(scale: str, seq_len: int, d_model: int, mixer: str, lr: float, seed: int) -> RunConfig:
    """One grid point as a RunConfig (tags: seq_len, d_model, mixer, lr, num_kv_pairs, cell)."""
    from wm_bench.data.mqar import MqarDataConfig

    s = spec(scale)
    kv = s.num_kv_pairs(seq_len)
    model = mixer_mlp_model(
        {"M": mixer_config(mixer, kv)}, "M", vocab_size=s.vocab_size, d_model=d_model, n_layers=2
    )
    data = MqarDataConfig(
        seq_len=seq_len,
        num_kv_pairs=kv,
        vocab_size=s.vocab_size,
        n_train=s.train_examples(seq_len),
        n_test=s.n_test,
    )
    tags = {
        "seq_len": seq_len,
        "d_model": d_model,
        "mixer": mixer,
        "lr": lr,
        "num_kv_pairs": kv,
        "cell": f"L{seq_len}-d{d_model}-{mixer}",
    }
    budget = Budget(s.max_steps, s.batch(seq_len), s.eval_every)
    return recall_run(
        EXPERIMENT, mixer, model, data, tags, lr=lr, seed=seed, scale=scale, budget=budget
    )


def runs(scale: str) -> list[RunConfig]:
    """Every run of the MQAR grid at `scale`, ordered by (L, d, mixer, lr, seed).

    Args:
        scale: one of SCALES ("smoke", "cpu", "small", "paper").
    Returns:
        |lengths| × |widths| × |mixers| × |lrs| × |seeds| RunConfigs.
    """
    s = spec(scale)
    return [
        make_run(scale, seq_len, d, mixer, lr, seed)
        for seq_len in s.lengths
        for d in s.widths
        for mixer in s.mixers
        for lr in s.lrs
        for seed in s.seeds
    ]


def cell_key(cfg: RunConfig) -> tuple:
    """The grid cell of a run: everything but lr and seed (readable fields + a hash of the rest)."""
    t = cfg.tags
    return (
        cfg.scale,
        t["mixer"],
        t["seq_len"],
        t["d_model"],
        t["num_kv_pairs"],
        hash_but_lr_and_seed(cfg),
    )


def planned_tokens(scale: str) -> dict[str, int]:
    """What a scale costs at most (no early stop): runs, training tokens, evaluation tokens."""
    s = spec(scale)
    per_cell_runs = len(s.mixers) * len(s.lrs) * len(s.seeds)
    train = evals = 0
    for seq_len in s.lengths:
        n_evals = s.max_steps // s.eval_every + 1 if s.eval_every else 1
        train += len(s.widths) * per_cell_runs * s.max_steps * s.batch(seq_len) * seq_len
        evals += len(s.widths) * per_cell_runs * n_evals * s.n_test * seq_len
    runs_ = len(s.lengths) * len(s.widths) * per_cell_runs
    return {"runs": runs_, "train_tokens": train, "eval_tokens": evals}


@lru_cache(maxsize=1)
def load_paper() -> dict[str, Any]:
    """The paper's MQAR grid as shipped in paper_values.json (source text included)."""
    return json.loads(PAPER_FILE.read_text())


def paper_grid() -> dict[tuple[int, int, int], dict[str, float]]:
    """(L, d, kv) → {mixer: accuracy} digitised from the paper's figure (±0.01)."""
    return {
        (r["seq_len"], r["d_model"], r["num_kv_pairs"]): {m: float(r[m]) for m in PAPER_MIXERS}
        for r in load_paper()["rows"]
    }
