"""Passkey retrieval, a needle in a haystack: key accuracy per (length, depth).

What runs. Each model is trained on passkey examples (`wm_bench.data.passkey`) of lengths
uniform in [train_min_len, seq_len] (right-padded into one batch) with the key at a uniformly
random depth; labels sit only on the key tokens of the answer. After training, every
(length, depth) cell of the test grid is scored by key exact match (every key token right under
teacher forcing, which equals greedy decoding of the whole key) on `n_test` fresh examples;
lengths above the training length measure extrapolation.
Models (one block pattern each, mixer + MLP blocks, tied embeddings):
- qcattn: QCAttn (RoPE, no QK-norm) in every layer;
- dma_dense / dma_window: the suite's DMA as in the Doge and Cheems presets (QK-norm, exp bias,
  A₀ = 0), without a window and with w = `window` keys kept per query row;
- ssd: the Cheems SSD in every layer;
- cheems: the Cheems hybrid as in the preset (SSD blocks then one DMA block, dense DMA).
Recipe: AdamW wd 0.1, warm-up 10 %, cosine to 0, one LR (the scale's), the MQAR recipe; early stop
when the validation accuracy (answer tokens at the training length) reaches 0.99.

Scales (edit the PasskeyScale constants below; `estimate_minutes` prices them):
- smoke: plumbing only (≈ 10 s): training lengths 16-32, test lengths 16, 32, 48 × depths 0, 1,
  20 steps.
- cpu (≤ 45 min, ≈ 30 by `estimate_minutes`): training lengths 32-128, test lengths 64, 128,
  256 (256 = 2× extrapolation), depths 0, ¼, ½, ¾, 1, 64 examples per cell; 2 layers, d 64, one
  head, vocabulary 64 (4 markers, 16 key tokens, 44 filler words), keys of 4 tokens, DMA window
  16; batch 32, at most 4000 steps, LR 3e-3; the five models once each (one seed). How it was
  sized: 2-minute probes of QCAttn with a bare loop of the same model and data (one thread,
  2026-12-06). Trained at length 128 only, it reached 0.8-0.97 at length 128 by step 1250 but
  stayed near 0 at 64 and 256 (it had learned something tied to the one length), hence mixed
  training lengths: with lengths 32-128 it reached 0.5-0.9 at 64, 128 and 256 by step 750-1000,
  still climbing. Depth 1 (the key right before the question) stayed near 0 in both probes: a
  uniform depth puts barely 1 % of the training keys there, and the retrieval distance is
  shortest there. 4000 steps leave room for the slower mixers; SEC_PER_STEP (one thread) gives
  ≈ 29 min of training for the five runs, plus set-up and the test grids.
- small (one H100): training length 2048, test lengths 1024 … 8192, 4 layers, d 256, vocabulary
  512, 2 seeds.
- paper: the DMA paper's long-context retrieval setting scaled to the suite: training length
  4096, test lengths up to 16384, 8 layers, d 512, 2 seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wm_bench.config import ModelConfig, RunConfig
from wm_bench.config import config_hash as _config_hash

from .. import pick
from .._recall import EARLY_STOP_ACCURACY as EARLY_STOP_ACCURACY  # the sweep driver and
from .._recall import METRIC as METRIC  # the report read these from the task
from .._recall import Budget, mixer_mlp_model, recall_run

EXPERIMENT = "passkey"
HIGHER_IS_BETTER = True
SCALE_WINDOW = "<scale window>"  # a mixer field set to this takes the scale's DMA window


@dataclass(frozen=True)
class PasskeyModel:
    """One model: its label, its block pattern for a layer count, and per block letter a mixer
    of the layer registry with fixed fields (every mixer gets the scale's n_heads; a field set
    to SCALE_WINDOW the scale's window). Every block pairs its mixer with the default MLP."""

    label: str
    pattern: Callable[[int], str]
    mixers: dict[str, tuple[str, dict[str, Any]]]


def _every_layer(letter: str) -> Callable[[int], str]:
    return lambda n_layers: letter  # one letter, tiled over the layers


def _ssd_then_dma(n_layers: int) -> str:
    return "S" * (n_layers - 1) + "D"


# The one table of the models: adding a model here runs it at every scale and reports it.
MODEL_TABLE: dict[str, PasskeyModel] = {
    "qcattn": PasskeyModel(
        "QCAttn", _every_layer("A"), {"A": ("qcattn", {"position": "rope", "qk_norm": False})}
    ),
    # the presets' DMA: QK-norm, exp bias, A₀ = 0, no window
    "dma_dense": PasskeyModel("DMA, no window", _every_layer("D"), {"D": ("dma", {})}),
    "dma_window": PasskeyModel(
        "DMA, window", _every_layer("W"), {"W": ("dma", {"window": SCALE_WINDOW})}
    ),
    "ssd": PasskeyModel("SSD (Cheems)", _every_layer("S"), {"S": ("ssd", {})}),
    "cheems": PasskeyModel(
        "Cheems hybrid (SSD + DMA)", _ssd_then_dma, {"S": ("ssd", {}), "D": ("dma", {})}
    ),
}
MODELS: tuple[str, ...] = tuple(MODEL_TABLE)
LABELS: dict[str, str] = {key: m.label for key, m in MODEL_TABLE.items()}


@dataclass(frozen=True)
class PasskeyScale:
    """One scale: data, model size, schedule, seeds."""

    seq_len: int
    test_lengths: tuple[int, ...]
    test_depths: tuple[float, ...]
    n_test: int
    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    key_len: int
    key_vocab: int
    window: int  # DMA window of dma_window
    batch_size: int
    max_steps: int
    eval_every: int
    lr: float
    seeds: tuple[int, ...] = (0,)
    filler: str = "repeat"
    train_min_len: int | None = None  # training lengths uniform in [this, seq_len]
    models: tuple[str, ...] = MODELS

    @property
    def n_train(self) -> int:
        return self.max_steps * self.batch_size


SCALES: dict[str, PasskeyScale] = {
    "smoke": PasskeyScale(
        seq_len=32, test_lengths=(16, 32, 48), test_depths=(0.0, 1.0), n_test=8, d_model=16,
        n_layers=2, n_heads=1, vocab_size=48, key_len=3, key_vocab=8, window=4, batch_size=8,
        max_steps=20, eval_every=10, lr=3e-3, train_min_len=16,
    ),
    "cpu": PasskeyScale(
        seq_len=128, test_lengths=(64, 128, 256), test_depths=(0.0, 0.25, 0.5, 0.75, 1.0),
        n_test=64, d_model=64, n_layers=2, n_heads=1, vocab_size=64, key_len=4, key_vocab=16,
        window=16, batch_size=32, max_steps=4000, eval_every=250, lr=3e-3, train_min_len=32,
    ),
    "small": PasskeyScale(
        seq_len=2048, test_lengths=(1024, 2048, 4096, 8192),
        test_depths=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0), n_test=100, d_model=256, n_layers=4,
        n_heads=4, vocab_size=512, key_len=5, key_vocab=10, window=256, batch_size=32,
        max_steps=3000, eval_every=250, lr=1e-3, seeds=(0, 1), train_min_len=256,
    ),
    "paper": PasskeyScale(
        seq_len=4096, test_lengths=(2048, 4096, 8192, 16384),
        test_depths=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0), n_test=200, d_model=512, n_layers=8,
        n_heads=8, vocab_size=512, key_len=5, key_vocab=10, window=512, batch_size=32,
        max_steps=10_000, eval_every=500, lr=6e-4, seeds=(0, 1), train_min_len=512,
    ),
}  # fmt: skip
# Seconds per optimiser step of the runner at the cpu scale (Lightning, one thread, 100 steps
# per model, 2026-12-06, this 2-core machine with other work on it).
SEC_PER_STEP: dict[tuple[str, str], float] = {
    ("cpu", "qcattn"): 0.0761, ("cpu", "dma_dense"): 0.0833, ("cpu", "dma_window"): 0.0894,
    ("cpu", "ssd"): 0.0982, ("cpu", "cheems"): 0.0845,
}  # fmt: skip
RUN_OVERHEAD_S = 5.0  # per run: data generation, set-up, the test grid


def spec(scale: str) -> PasskeyScale:
    """The PasskeyScale of `scale`; ValueError naming the valid scales."""
    return pick(SCALES, scale, "passkey: unknown scale")


def model_config(scale: str, model: str) -> ModelConfig:
    """The model's ModelConfig at `scale` (registry configs built lazily)."""
    from wm_bench.layers.mixers import MIXERS as REG

    s = spec(scale)
    entry = pick(MODEL_TABLE, model, "passkey: unknown model")

    def mixer(registry: str, fields: dict[str, Any]) -> Any:
        fixed = {k: s.window if v == SCALE_WINDOW else v for k, v in fields.items()}
        return REG[registry][1](n_heads=s.n_heads, **fixed)

    mixers = {k: mixer(*m) for k, m in entry.mixers.items()}
    pattern = entry.pattern(s.n_layers)
    return mixer_mlp_model(
        mixers, pattern, vocab_size=s.vocab_size, d_model=s.d_model, n_layers=s.n_layers
    )


# The PasskeyDataConfig fields a scale sets under the same names (n_valid is its n_test).
DATA_FIELDS = (
    "vocab_size",
    "seq_len",
    "key_len",
    "key_vocab",
    "filler",
    "n_train",
    "test_lengths",
    "test_depths",
    "n_test",
    "train_min_len",
)


def make_run(scale: str, model: str, seed: int) -> RunConfig:
    """One run (tags: model, seq_len)."""
    from wm_bench.data.passkey import PasskeyDataConfig

    s = spec(scale)
    data = PasskeyDataConfig(n_valid=s.n_test, **{f: getattr(s, f) for f in DATA_FIELDS})
    tags = {"model": model, "seq_len": s.seq_len}
    budget = Budget(s.max_steps, s.batch_size, s.eval_every)
    cfg = model_config(scale, model)
    return recall_run(
        EXPERIMENT, model, cfg, data, tags, lr=s.lr, seed=seed, scale=scale, budget=budget
    )


def runs(scale: str) -> list[RunConfig]:
    """Every run at `scale`, ordered by (seed, model)."""
    s = spec(scale)
    return [make_run(scale, m, seed) for seed in s.seeds for m in s.models]


def cell_key(cfg: RunConfig) -> tuple:
    """Runs of one cell differ only in their seed."""
    import dataclasses

    return (cfg.scale, cfg.variant, _config_hash(dataclasses.replace(cfg, seed=0)))


def estimate_minutes(scale: str) -> float:
    """Wall minutes of the scale at SEC_PER_STEP (every run to max_steps); 0 without timings."""
    s = spec(scale)
    per = [
        SEC_PER_STEP[(scale, m)] * s.max_steps + RUN_OVERHEAD_S
        for m in s.models
        if (scale, m) in SEC_PER_STEP
    ]
    return sum(per) * len(s.seeds) / 60.0
