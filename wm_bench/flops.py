"""Training FLOPs per token of a model config, and model FLOPs utilisation (MFU).

The formula (stated once, used by training results and `wm-bench bench train`):

    training FLOPs / token = 3 × forward FLOPs / token       (backward ≈ 2 × forward)
    forward FLOPs / token  = 2 × N_matmul + Σ_layers mixing(layer)

- N_matmul: parameters a token multiplies by — the model's *active* parameters minus the input
  embedding table (a lookup, not a matmul). The LM head counts; so do routers and, for
  MoE/CDMoE, only the experts a token uses (`param_counts()["active"]`).
- mixing, the sequence-mixing work that has no parameters, per layer and token (T = context):
  what each mixer reports through `mixing_flops_per_token(T)` (the layer contract,
  CONTRIBUTING.md), e.g.
  - attention (QCAttn, DMA): 4 · H · d_head · K, with K = T keys (PaLM's convention: no causal
    halving) or K = min(w, T) for a top-w window — QKᵀ and PV, 2 FLOPs per multiply-add;
  - SSD / Mamba-2 (chunked, chunk Q, H heads, head dim P, state N): 2 · H · (Q·N + Q·P + 2·N·P)
    — the in-chunk CBᵀ scores and their product with X, the state update B⊗X and the read C·S;
  - a mixer that reports None (Based) is not counted and is listed in `unknown_mixers`.
- Norms, activations, softmax, RoPE and the optimiser are ignored (a few % at these widths).

MFU = tokens/s × training FLOPs/token ÷ the device's peak dense bf16 FLOP/s (table below; None
for a device not in it, e.g. any CPU).
"""

from __future__ import annotations

from typing import Any

# Peak dense bf16 tensor-core FLOP/s (vendor datasheets, without sparsity).
PEAK_BF16_FLOPS: dict[str, float] = {
    "H100 PCIe": 756e12,
    "H100": 989.4e12,  # SXM5 / HBM3
    "H200": 989.4e12,
    "A100": 312e12,
}


def peak_flops(device_name: str | None) -> float | None:
    """Peak bf16 FLOP/s of a CUDA device by (sub)name, longest key first; None when unknown."""
    if not device_name:
        return None
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16_FLOPS[key]
    return None


def flops_per_token(model: Any, seq_len: int) -> dict[str, Any]:
    """Training FLOPs per token of a built LanguageModel at context `seq_len` (see module doc).

    Returns:
        {"train_flops_per_token", "forward_flops_per_token", "matmul_params", "mixing_flops",
         "unknown_mixers": [mixer class names not counted]}
    """
    counts = model.param_counts()
    n_matmul = counts["active"] - counts["embedding"]
    mixing, unknown = 0.0, []
    for block in model.blocks:
        f = block.mixer.mixing_flops_per_token(seq_len)
        if f is None:
            unknown.append(type(block.mixer).__name__)
        else:
            mixing += f
    forward = 2.0 * n_matmul + mixing
    return {
        "train_flops_per_token": 3.0 * forward,
        "forward_flops_per_token": forward,
        "matmul_params": int(n_matmul),
        "mixing_flops": mixing,
        "unknown_mixers": sorted(set(unknown)),
    }


def config_flops_per_token(cfg: Any, seq_len: int) -> dict[str, Any]:
    """`flops_per_token` of a ModelConfig, built on the meta device (no memory)."""
    import torch

    from wm_bench.model import build_model

    with torch.device("meta"):
        return flops_per_token(build_model(cfg, impl="reference"), seq_len)


def mfu(tokens_per_s: float | None, train_flops: float, device_name: str | None) -> dict[str, Any]:
    """{"model_tflops": achieved training TFLOP/s, "peak_tflops", "mfu"} (None where unknown)."""
    if not tokens_per_s:
        return {"model_tflops": None, "peak_tflops": None, "mfu": None}
    achieved = tokens_per_s * train_flops
    peak = peak_flops(device_name)
    return {
        "model_tflops": achieved / 1e12,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": achieved / peak if peak else None,
    }
