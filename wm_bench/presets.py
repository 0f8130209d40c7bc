"""Architecture presets (llama, mamba2, jamba, cheems, doge, transxssm, otce) at named sizes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wm_bench.config import BlockConfig, ModelConfig


@dataclass(frozen=True)
class Size:
    """Width, depth and heads of one size; `vocab` is the default vocabulary at that size."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab: int


# Sizes follow docs/spec.md §7 (≈ 320M: d 1024, 16 layers; ≈ 1.3B: d 2048, 24 layers); the small
# ones keep head width 64–128. `tiny` runs a training step on a CPU in well under a second.
SIZES: dict[str, Size] = {
    "tiny": Size(d_model=64, n_layers=4, n_heads=2, vocab=512),
    "cpu": Size(d_model=128, n_layers=4, n_heads=2, vocab=4096),
    "20m": Size(d_model=256, n_layers=8, n_heads=4, vocab=32768),
    "60m": Size(d_model=512, n_layers=10, n_heads=4, vocab=32768),
    "160m": Size(d_model=768, n_layers=12, n_heads=6, vocab=32768),
    "320m": Size(d_model=1024, n_layers=16, n_heads=8, vocab=32768),
    "1.3b": Size(d_model=2048, n_layers=24, n_heads=16, vocab=32768),
}


def _size(size: str | Size) -> Size:
    if isinstance(size, Size):  # an explicit shape (experiments size their own models)
        return size
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {list(SIZES)}")
    return SIZES[size]


def mixer_cfg(name: str, **kwargs: Any) -> Any:
    """Build a registered mixer config by name (lazy import keeps this module light)."""
    from wm_bench.layers.mixers import MIXERS

    if name not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; valid: {sorted(MIXERS)}")
    return MIXERS[name][1](**kwargs)


def ffn_cfg(name: str, **kwargs: Any) -> Any:
    """Build a registered FFN config by name."""
    from wm_bench.layers.ffn import FFNS

    if name not in FFNS:
        raise ValueError(f"unknown ffn {name!r}; valid: {sorted(FFNS)}")
    return FFNS[name][1](**kwargs)


def _mlp(d: int) -> Any:
    return ffn_cfg("mlp", d_ff=4 * d)  # the Dec-2024 paper's 4d (Cheems 320m ≈ 336M dense)


def _cdmoe(d: int, n_layers: int) -> Any:
    # 1024 single-neuron experts at small widths, 4096 from 160m up; k = √N / 4 per head.
    # Retrieval width min(256, d): at d < 256 a 256-wide query projection would outweigh the
    # whole layer (4 heads × 256 × d), so small models keep it at d.
    n = 1024 if d < 768 else 4096
    return ffn_cfg(
        "cdmoe",
        num_experts=n,
        top_k=max(1, int(n**0.5) // 4),
        shared_d_ff=4 * d,
        d_retrieval=min(256, d),
    )


def _vocab(s: Size, vocab_size: int | None) -> int:
    return vocab_size if vocab_size is not None else s.vocab


# The FFN switch each preset builds exactly (the first is its default); any other is an error,
# so a run labelled "<preset>-<ffn>" always holds that FFN.
PRESET_FFNS: dict[str, tuple[str, ...]] = {
    "llama": ("mlp", "cdmoe"),
    "mamba2": ("none", "mlp"),
    "jamba": ("moe", "mlp"),
    "cheems": ("mlp", "cdmoe"),
    "doge": ("cdmoe", "mlp"),
    "transxssm": ("mlp", "cdmoe"),
    "otce": ("moe", "mlp"),
}


def _check_ffn(name: str, ffn: str) -> None:
    if ffn not in PRESET_FFNS[name]:
        raise ValueError(
            f"preset {name!r} has no ffn {ffn!r}; valid for {name}: {list(PRESET_FFNS[name])}"
        )


def llama(size: str | Size, *, vocab_size: int | None = None, ffn: str = "mlp") -> ModelConfig:
    """Llama3-style: attention (RoPE) + SwiGLU every layer, untied embeddings."""
    _check_ffn("llama", ffn)
    s = _size(size)
    block = BlockConfig(
        mixer=mixer_cfg("qcattn", n_heads=s.n_heads),
        ffn=_mlp(s.d_model) if ffn == "mlp" else _cdmoe(s.d_model, s.n_layers),
    )
    return ModelConfig(
        vocab_size=_vocab(s, vocab_size),
        d_model=s.d_model,
        n_layers=s.n_layers,
        pattern="A",
        blocks={"A": block},
    )


def mamba2(size: str | Size, *, vocab_size: int | None = None, ffn: str = "none") -> ModelConfig:
    """Mamba2: all Mamba-2 blocks, no attention; no MLP by default, twice the layers (as Mamba2)."""
    _check_ffn("mamba2", ffn)
    s = _size(size)
    block = BlockConfig(mixer=mixer_cfg("mamba2"), ffn=None if ffn == "none" else _mlp(s.d_model))
    n_layers = 2 * s.n_layers if ffn == "none" else s.n_layers
    return ModelConfig(
        vocab_size=_vocab(s, vocab_size),
        d_model=s.d_model,
        n_layers=n_layers,
        pattern="M",
        blocks={"M": block},
    )


def jamba(size: str | Size, *, vocab_size: int | None = None, ffn: str = "moe") -> ModelConfig:
    """Jamba-style: 1 attention : 7 Mamba (attention 5th of each 8), MoE every other layer."""
    _check_ffn("jamba", ffn)
    s = _size(size)
    d = s.d_model
    moe = ffn_cfg("moe", num_experts=16, top_k=2, d_ff=2 * d)
    mlp = ffn_cfg("mlp", d_ff=2 * d)
    blocks = {
        "m": BlockConfig(mixer=mixer_cfg("mamba2"), ffn=mlp),
        "M": BlockConfig(mixer=mixer_cfg("mamba2"), ffn=moe),
        "a": BlockConfig(mixer=mixer_cfg("qcattn", n_heads=s.n_heads), ffn=mlp),
    }
    pattern = "mMmMaMmM" if s.n_layers >= 8 else "mM" * ((s.n_layers - 1) // 2) + "a"
    return ModelConfig(
        vocab_size=_vocab(s, vocab_size),
        d_model=d,
        n_layers=s.n_layers,
        pattern=pattern if ffn == "moe" else pattern.replace("M", "m"),
        blocks=blocks,
    )


def cheems(size: str | Size, *, vocab_size: int | None = None, ffn: str = "mlp") -> ModelConfig:
    """Cheems: per 8 layers 7 SSD(+RoPE) then 1 DMA; FFN = MLP or CDMoE; untied embeddings."""
    _check_ffn("cheems", ffn)
    s = _size(size)
    d = s.d_model
    f = _mlp(d) if ffn == "mlp" else _cdmoe(d, s.n_layers)
    chunk = 256 if d >= 1024 else 64
    blocks = {
        "S": BlockConfig(mixer=mixer_cfg("ssd", n_heads=s.n_heads, chunk_size=chunk), ffn=f),
        "D": BlockConfig(mixer=mixer_cfg("dma", n_heads=s.n_heads), ffn=f),
    }
    # Fewer than 8 layers (tiny sizes): keep one DMA block last so every preset has attention.
    pattern = "SSSSSSSD" if s.n_layers >= 8 else "S" * (s.n_layers - 1) + "D"
    return ModelConfig(
        vocab_size=_vocab(s, vocab_size),
        d_model=d,
        n_layers=s.n_layers,
        pattern=pattern,
        blocks=blocks,
    )


def doge(size: str | Size, *, vocab_size: int | None = None, ffn: str = "cdmoe") -> ModelConfig:
    """Doge: DMA (QK-norm, exp bias) + CDMoE (or MLP) every layer, untied embeddings."""
    _check_ffn("doge", ffn)
    s = _size(size)
    d = s.d_model
    f = _cdmoe(d, s.n_layers) if ffn == "cdmoe" else _mlp(d)
    block = BlockConfig(mixer=mixer_cfg("dma", n_heads=s.n_heads), ffn=f)
    return ModelConfig(
        vocab_size=_vocab(s, vocab_size),
        d_model=d,
        n_layers=s.n_layers,
        pattern="D",
        blocks={"D": block},
    )


def transxssm_pattern(n_layers: int) -> str:
    """TransXSSM layer letters: per 8 layers 7 SSD (S) then 1 attention (A); under 8, one A last."""
    return "SSSSSSSA" if n_layers >= 8 else "S" * (n_layers - 1) + "A"


def transxssm(
    size: str | Size, *, vocab_size: int | None = None, ffn: str = "mlp", rope_base: float = 10000.0
) -> ModelConfig:
    """TransXSSM: per 8 layers 7 SSD then 1 softmax attention, one unified RoPE across both.

    Source: Wu, Shi, Wu, Tang, Luo, "TransXSSM: A Hybrid Transformer State Space Model with
    Unified Rotary Position Embedding", arXiv 2506.09507 (the Cheems / Wonderful Matrices line,
    github.com/LoserCheems/WonderfulMatrices). Unified RoPE: the same rotary table (one base, the
    same absolute positions) turns Q, K in attention and C, B in SSD, so an SSD block and an
    attention block see position the same way. Here both mixers take `rope_base`, and the SSD
    state size N defaults to its head dim P = d / n_heads (expand 1), which equals the attention
    head dim, so the rotated widths, and hence the frequencies, are identical.

    Layout: `SSSSSSSA` tiled (docs/spec.md §2.6: "like Cheems with unified RoPE, attention every
    8th layer"); fewer than 8 layers keep one attention block last. FFN = SwiGLU MLP 4d (or CDMoE).
    Deviations (docs/lineage.md): the attention block is the suite's `qcattn` (plain causal softmax
    with RoPE); the 7 : 1 ratio follows docs/spec.md and Cheems, as the stored excerpts of the
    paper did not state it; residual weights, RMSNorm and untied embeddings are the suite's.
    """
    _check_ffn("transxssm", ffn)
    s = _size(size)
    d = s.d_model
    f = _mlp(d) if ffn == "mlp" else _cdmoe(d, s.n_layers)
    chunk = 256 if d >= 1024 else 64
    ssd = mixer_cfg(
        "ssd", n_heads=s.n_heads, chunk_size=chunk, position="rope", rope_base=rope_base
    )
    attn = mixer_cfg("qcattn", n_heads=s.n_heads, rope_base=rope_base)
    return ModelConfig(
        vocab_size=_vocab(s, vocab_size),
        d_model=d,
        n_layers=s.n_layers,
        pattern=transxssm_pattern(s.n_layers),
        blocks={"S": BlockConfig(mixer=ssd, ffn=f), "A": BlockConfig(mixer=attn, ffn=f)},
    )


# OTCE's released configuration: 12 observation, 2 thinking, 9 conception, 1 expression layers.
OTCE_STAGES: tuple[int, int, int, int] = (12, 2, 9, 1)


def otce_pattern(n_layers: int) -> str:
    """OTCE's stages in order, scaled from 12 : 2 : 9 : 1 to n_layers (≥ 4).

    O observer (SSM), T thinker (attention), C conceiver (SSM), E expresser (attention): one E,
    T = max(1, round(n / 12)), the rest split 12 : 9 between O and C (O rounded, C ≥ 1).
    """
    if n_layers < 4:
        raise ValueError(f"otce needs n_layers ≥ 4 (one layer per stage), got {n_layers}")
    o, t, c, e = OTCE_STAGES
    n_t = max(1, round(n_layers * t / sum(OTCE_STAGES)))
    rest = n_layers - n_t - e
    n_o = min(rest - 1, max(1, round(rest * o / (o + c))))
    return "O" * n_o + "T" * n_t + "C" * (rest - n_o) + "E" * e


def otce(size: str | Size, *, vocab_size: int | None = None, ffn: str = "moe") -> ModelConfig:
    """OTCE: Observer (SSM) → Thinker (attention) → Conceiver (SSM) → Expresser (attention).

    Source: Shi, Xie, Wu, Zheng, Wang, "OTCE: Hybrid SSM and Attention with Cross Domain Mixture
    of Experts to construct Observer-Thinker-Conceiver-Expresser", arXiv 2406.16495; the
    authors' code github.com/LoserCheems/OTCE (configuration_cheems_OTCE.py: stage sizes
    12/2/9/1, Mamba expand 1 and d_state 64 with RoPE, attention 16 heads / 8 KV heads with RoPE,
    cross-domain MoE of 4 experts top-1 with a shared expert; modeling_cheems_OTCE.py: the MoE
    in the O, T and C layers, a dense MLP in the E layer, RoPE applied to the SSM's B and C —
    the paper's "position information injection").

    Blocks: O and C = `ssd` (expand 1, N = 64, RoPE on B, C) + FFN; T = `qcattn` (RoPE, GQA with
    n_heads / 2 KV heads) + FFN; E = `qcattn` + MLP 4d. FFN "moe" is the cross-domain MoE as
    the suite's `moe` with its shared expert: 4 experts of d_ff 2d, top-1, plus the shared 2d
    expert (per token 4d active, as the dense MLP); "mlp" puts the MLP 4d everywhere.
    Deviations (docs/lineage.md): Mamba-1's selective scan (diagonal A, dt_rank, conv, inner
    layernorms) is replaced by the suite's SSD (scalar A per head, no conv); the shared expert is
    as wide as a private one (the paper's "cohesive" form; its "expansive" default has a 4d
    shared expert); the Expresser's extra re-weighting projection of the layer input and the
    attention's log-n query scaling are omitted.
    """
    _check_ffn("otce", ffn)
    s = _size(size)
    d = s.d_model
    mlp = _mlp(d)
    f = (
        ffn_cfg("moe", num_experts=4, top_k=1, d_ff=2 * d, shared_expert=True)
        if ffn == "moe"
        else mlp
    )
    chunk = 256 if d >= 1024 else 64
    ssm = mixer_cfg(
        "ssd", n_heads=s.n_heads, expand=1, d_state=64, chunk_size=chunk, position="rope"
    )
    attn = mixer_cfg("qcattn", n_heads=s.n_heads, n_kv_heads=max(1, s.n_heads // 2))
    blocks = {
        "O": BlockConfig(mixer=ssm, ffn=f),
        "T": BlockConfig(mixer=attn, ffn=f),
        "C": BlockConfig(mixer=ssm, ffn=f),
        "E": BlockConfig(mixer=attn, ffn=mlp),
    }
    return ModelConfig(
        vocab_size=_vocab(s, vocab_size),
        d_model=d,
        n_layers=s.n_layers,
        pattern=otce_pattern(s.n_layers),
        blocks=blocks,
    )


PRESETS: dict[str, Callable[..., ModelConfig]] = {
    "llama": llama,
    "mamba2": mamba2,
    "jamba": jamba,
    "cheems": cheems,
    "doge": doge,
    "transxssm": transxssm,
    "otce": otce,
}


def preset(name: str, size: str | Size = "tiny", **kwargs: Any) -> ModelConfig:
    """ModelConfig for preset `name` at `size` (clear errors for unknown names)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    return PRESETS[name](size, **kwargs)


def match_params(
    build: Callable[[int], ModelConfig],
    target: int,
    *,
    lo: int,
    hi: int,
    key: str = "total",
    tol: float = 0.05,
) -> tuple[ModelConfig, int]:
    """Find the integer knob x in [lo, hi] whose `build(x)` has parameter count closest to target.

    Parameter count must grow with x (a width, d_ff or depth). Counts come from a meta-device
    build, so even 1.3B models cost no memory. Raises ValueError when the best is off by > tol.

    Returns:
        (config, x) of the closest match.
    """
    from wm_bench.model import count_params

    def n(x: int) -> int:
        return count_params(build(x))[key]

    a, b = lo, hi
    while b - a > 1:  # binary search for the last x with n(x) ≤ target
        mid = (a + b) // 2
        if n(mid) <= target:
            a = mid
        else:
            b = mid
    best = min((a, b), key=lambda x: abs(n(x) - target))
    err = abs(n(best) - target) / target
    if err > tol:
        raise ValueError(
            f"match_params: best knob {best} gives {n(best):,} {key} params, "
            f"{err:.1%} from the target {target:,} (tolerance {tol:.0%}); widen [lo={lo}, hi={hi}]"
        )
    return build(best), best
