"""The training benchmark's contenders: our presets and transformers' LlamaForCausalLM, each with
one plain-PyTorch training step (forward, cross-entropy, backward, AdamW)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wm_bench import presets
from wm_bench.config import ModelConfig, to_dict
from wm_bench.presets import preset

HF_ROW = "hf-llama"
HF_NOT_INSTALLED = "not run: transformers not installed (pip install -e '.[bench]')"
# The presets benchmarked and their FFN switches (from wm_bench.presets), MLP first: a bare preset
# name means its MLP variant here, so every mixer is compared with the same FFN; "name:ffn" picks
# another.
PRESET_FFNS: dict[str, tuple[str, ...]] = {
    name: ("mlp", *(f for f in presets.PRESET_FFNS[name] if f != "mlp"))
    for name in ("llama", "mamba2", "jamba", "cheems", "doge")
}
OPTIM = {"name": "AdamW", "lr": 1e-3, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}


@dataclass
class Contender:
    """One row of the benchmark: a model and the forward that returns (logits, aux loss)."""

    name: str
    kind: str  # "ours" | "hf"
    config: dict[str, Any]
    model: nn.Module | None = None
    forward: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None
    params: dict[str, int] = field(default_factory=dict)
    status: str = "ok"
    step: Callable[[], None] | None = None
    warmup_s: list[float] = field(default_factory=list)  # untimed steps (first: compile, if any)


def parse_spec(spec: str) -> tuple[str, str]:
    """Parse a preset spec NAME or NAME:FFN; a bare NAME means the preset's MLP variant.

    Args:
        spec: e.g. "cheems", "cheems:cdmoe", "mamba2:none".
    Returns:
        (preset name, ffn switch), both validated.
    """
    name, _, ffn = spec.partition(":")
    if name not in PRESET_FFNS:
        raise ValueError(f"unknown preset {name!r} in {spec!r}; valid: {sorted(PRESET_FFNS)}")
    ffn = ffn or PRESET_FFNS[name][0]
    if ffn not in PRESET_FFNS[name]:
        raise ValueError(
            f"preset {name!r} has no ffn {ffn!r} (from {spec!r}); valid: {list(PRESET_FFNS[name])}"
        )
    return name, ffn


def _param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """AdamW groups as the trainer makes them: decay on matrices, none on gains and scalars."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": OPTIM["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_train_step(
    model: nn.Module,
    forward: Callable[[Tensor], tuple[Tensor, Tensor]],
    batch: Tensor,
) -> Callable[[], None]:
    """A closure doing one plain-PyTorch step: zero grads, forward, cross-entropy, backward, AdamW.

    Args:
        model: the module whose parameters train.
        forward: input_ids [B, T] → (logits [B, T, V], aux loss scalar).
        batch: [B, T + 1] int64 tokens; inputs are [:, :-1], targets [:, 1:].
    Returns:
        step() with no arguments.
    """
    opt = torch.optim.AdamW(
        _param_groups(model), lr=OPTIM["lr"], betas=OPTIM["betas"], eps=OPTIM["eps"]
    )
    inputs, targets = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits, aux = forward(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        (loss + aux).backward()
        opt.step()

    return step


def build_ours(spec: str, size: str, device: str, compile_model: bool) -> Contender:
    name, ffn = parse_spec(spec)
    cfg: ModelConfig = preset(name, size, ffn=ffn)
    from wm_bench.model import build_model

    model = build_model(cfg, impl="auto").to(device).train()
    fwd_model = torch.compile(model) if compile_model else model

    def forward(ids: Tensor) -> tuple[Tensor, Tensor]:
        out = fwd_model(ids)
        return out.logits, out.aux_loss

    return Contender(
        name=f"{name}:{ffn}",
        kind="ours",
        config={"preset": name, "ffn": ffn, "size": size, "model": to_dict(cfg)},
        model=model,
        forward=forward,
        params=model.param_counts(),
    )


def hf_llama_config(size: str, seq_len: int) -> dict[str, Any]:
    """transformers LlamaConfig kwargs with our `llama` preset's shapes at `size`.

    Same width, depth, heads, SwiGLU width, vocabulary, RoPE base and norm eps; untied
    embeddings; no biases; SDPA attention.

    Args:
        size: a preset size name.
        seq_len: training length (max_position_embeddings).
    Returns:
        keyword arguments for `transformers.LlamaConfig`.
    """
    cfg = preset("llama", size, ffn="mlp")
    block = cfg.blocks["A"]
    from wm_bench.layers.ffn.mlp import default_d_ff

    d_ff = block.ffn.d_ff if block.ffn.d_ff is not None else default_d_ff(cfg.d_model)
    heads = block.mixer.n_heads
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": block.mixer.n_kv_heads or heads,
        "hidden_act": "silu",
        "max_position_embeddings": seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": block.mixer.rope_base},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "use_cache": False,
    }


def build_hf(size: str, seq_len: int, device: str, compile_model: bool) -> Contender:
    kwargs = hf_llama_config(size, seq_len)
    try:
        import transformers
    except ImportError:
        return Contender(
            name=HF_ROW, kind="hf", config={"llama_config": kwargs}, status=HF_NOT_INSTALLED
        )
    hf_cfg = transformers.LlamaConfig(**kwargs)
    hf_cfg._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(hf_cfg).to(device).train()
    fwd_model = torch.compile(model) if compile_model else model
    zero = torch.zeros((), device=device)

    def forward(ids: Tensor) -> tuple[Tensor, Tensor]:
        return fwd_model(input_ids=ids, use_cache=False).logits, zero

    total = sum(p.numel() for p in model.parameters())
    embedding = model.model.embed_tokens.weight.numel()
    return Contender(
        name=HF_ROW,
        kind="hf",
        config={
            "llama_config": kwargs,
            "attn_implementation": model.config._attn_implementation,
            "transformers_version": transformers.__version__,
        },
        model=model,
        forward=forward,
        params={
            "total": total,
            "active": total,
            "embedding": embedding,
            "non_embedding": total - 2 * embedding,  # untied: input and output tables
        },
    )
