"""The language model, in one readable file: embed → blocks by pattern string → RMSNorm → head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from wm_bench.config import BlockConfig, ModelConfig
from wm_bench.layers.ffn import build_ffn
from wm_bench.layers.mixers import build_mixer
from wm_bench.layers.norm import RMSNorm


@dataclass
class ModelOutput:
    logits: Tensor  # [B, T, V]
    aux_loss: Tensor  # scalar: sum of the FFNs' auxiliary losses (0 when none has one)


class Block(nn.Module):
    """h ← w₁ ⊙ h + Mixer(RMSNorm(h)); h ← w₂ ⊙ h + FFN(RMSNorm(h))   (docs/spec.md §2.6)."""

    def __init__(
        self, d_model: int, cfg: BlockConfig, *, layer_idx: int, impl: str, model_cfg: ModelConfig
    ) -> None:
        super().__init__()
        eps = model_cfg.norm_eps
        self.mixer_norm = RMSNorm(d_model, eps=eps)
        self.mixer = build_mixer(d_model, cfg.mixer, layer_idx=layer_idx, impl=impl)
        self.ffn_norm = RMSNorm(d_model, eps=eps) if cfg.ffn is not None else None
        self.ffn = (
            build_ffn(d_model, cfg.ffn, layer_idx=layer_idx, impl=impl)
            if cfg.ffn is not None
            else None
        )
        # Learnable per-channel residual weights initialised to 1; plain residual is a switch.
        n_res = 2 if self.ffn is not None else 1
        self.res_weight = (
            nn.Parameter(torch.ones(n_res, d_model)) if model_cfg.residual_weights else None
        )

    def _residual(self, h: Tensor, i: int) -> Tensor:
        return h if self.res_weight is None else h * self.res_weight[i].to(h.dtype)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        h = self._residual(h, 0) + self.mixer(self.mixer_norm(h))
        aux = h.new_zeros((), dtype=torch.float32)
        if self.ffn is not None:
            y, aux = self.ffn(self.ffn_norm(h))
            h = self._residual(h, 1) + y
        return h, aux

    def step(self, h: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One decoding step: h [B, 1, D] → [B, 1, D] with the mixer's recurrent state."""
        y, state = self.mixer.step(self.mixer_norm(h), state)
        h = self._residual(h, 0) + y
        if self.ffn is not None:
            y, _ = self.ffn(self.ffn_norm(h))
            h = self._residual(h, 1) + y
        return h, state


class LanguageModel(nn.Module):
    """A causal LM assembled from a ModelConfig; a plain nn.Module (Lightning wraps it)."""

    def __init__(self, cfg: ModelConfig, *, impl: str = "auto") -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.blocks = nn.ModuleList(
            Block(d, cfg.blocks[letter], layer_idx=i, impl=impl, model_cfg=cfg)
            for i, letter in enumerate(cfg.layer_letters())
        )
        self.norm = RMSNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=cfg.init_std)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        else:
            nn.init.normal_(self.head.weight, std=cfg.init_std)

    def hidden(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """input_ids [B, T] int64 → the head's input (after the final norm) [B, T, D], aux loss.

        Training on sparse labels (MQAR) applies `head` only where a label is.
        """
        h = self.embed(input_ids)
        aux = h.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            h, a = block(h)
            aux = aux + a
        return self.norm(h), aux

    def forward(self, input_ids: Tensor) -> ModelOutput:
        """input_ids [B, T] int64 → logits [B, T, V] and the summed auxiliary loss."""
        h, aux = self.hidden(input_ids)
        return ModelOutput(logits=self.head(h), aux_loss=aux)

    # ---- decoding --------------------------------------------------------------------------

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> list[Any]:
        device = device or self.embed.weight.device
        dtype = dtype or self.embed.weight.dtype
        return [b.mixer.init_state(batch_size, device=device, dtype=dtype) for b in self.blocks]

    def step(self, input_ids: Tensor, states: list[Any]) -> tuple[Tensor, list[Any]]:
        """One token per sequence: input_ids [B, 1] → logits [B, 1, V], updated states."""
        h = self.embed(input_ids)
        new_states = []
        for block, state in zip(self.blocks, states):
            h, state = block.step(h, state)
            new_states.append(state)
        return self.head(self.norm(h)), new_states

    # ---- bookkeeping -----------------------------------------------------------------------

    def param_counts(self) -> dict[str, int]:
        """Total and per-token-active parameter counts (tied weights counted once)."""
        total = sum(p.numel() for p in self.parameters())
        inactive = 0
        for block in self.blocks:
            if block.ffn is not None:
                ffn_total = sum(p.numel() for p in block.ffn.parameters())
                inactive += ffn_total - block.ffn.active_params()
        embedding = self.embed.weight.numel()
        return {
            "total": total,
            "active": total - inactive,
            "embedding": embedding,
            "non_embedding": total - embedding - (0 if self.cfg.tie_embeddings else embedding),
        }

    def resolved_impls(self) -> dict[str, str]:
        """{op: impl} that actually ran in the last forward, merged over layers."""
        out: dict[str, str] = {}
        for m in self.modules():
            impls = getattr(m, "resolved_impls", None)
            if isinstance(impls, dict):
                out.update(impls)
        return out


def build_model(cfg: ModelConfig, *, impl: str = "auto") -> LanguageModel:
    """Build the model for `cfg`; `impl` ("auto" | "reference" | "triton") is a runtime choice."""
    return LanguageModel(cfg, impl=impl)


def count_params(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts without allocating memory (the model is built on the meta device)."""
    with torch.device("meta"):
        return build_model(cfg, impl="reference").param_counts()
