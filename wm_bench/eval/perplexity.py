"""Perplexity of a causal LM on a token stream at a chosen context length, by sliding window.

Why a sliding window: scoring a long stream in disjoint chunks of length L gives the first tokens
of every chunk almost no context and so overstates perplexity; a window of length L moved by a
stride s ≤ L, scoring only the tokens not scored before (the last s of each window, all L of the
first), gives every scored token at least L − s tokens of context. Evaluating the same model at
L = 1×, 2×, 4× its training length measures how it extrapolates (RoPE experiments, docs/spec.md §4).

Every token after the first is predicted exactly once, so the perplexity is exp(mean NLL) over
the same tokens whatever L and s are (given the same `max_tokens`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first scored position) of every window over a stream of n_tokens.

    Window [start, end) feeds inputs start .. end−1 and predicts tokens start+1 .. end; it scores
    the inputs from `score_from` on: all of them in the first window, in each later one only the
    last `stride` (those after the previous window's end).

    Args:
        n_tokens: stream length (≥ 2).
        context: window length L ≥ 1 (inputs per window).
        stride: s with 1 ≤ s ≤ L.
    Returns:
        A list of (start, end, score_from) with end − start ≤ L and score_from < end.
    """
    if n_tokens < 2:
        raise ValueError(f"perplexity needs at least 2 tokens, got {n_tokens}")
    if context < 1 or not 1 <= stride <= context:
        raise ValueError(f"context={context}, stride={stride}: need 1 ≤ stride ≤ context")
    out: list[tuple[int, int, int]] = []
    n_inputs = n_tokens - 1  # input positions 0 .. n−2; input p predicts token p + 1
    start = done = 0  # `done`: inputs 0 .. done−1 already scored
    while done < n_inputs:
        end = min(start + context, n_inputs)
        out.append((start, end, done))
        done = end
        start = max(0, end + stride - context)  # the next window ends `stride` later
    return out


@torch.no_grad()
def perplexity(
    model: Any,
    tokens: np.ndarray | torch.Tensor | Sequence[int],
    *,
    context: int,
    stride: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Sliding-window perplexity of `model` on one token stream.

    Args:
        model: callable input_ids [B, T] → object with `.logits` [B, T, V] (a LanguageModel) or
            logits directly.
        tokens: 1-D token ids.
        context: window length L (the evaluation length).
        stride: window step s (default L/2: every scored token sees ≥ L/2 tokens of context).
        max_tokens: evaluate only the first max_tokens tokens of the stream (None: all).
        batch_size: windows per forward (the last windows may be shorter and run alone).
        device: where the model runs.
    Returns:
        {"nll": mean negative log-likelihood (nats), "ppl": exp(nll), "tokens": scored targets,
         "context": L, "stride": s}.
    """
    t = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    if t.dim() != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tuple(t.shape)}")
    if max_tokens is not None:
        t = t[:max_tokens]
    stride = max(1, context // 2) if stride is None else stride
    plan = windows(t.numel(), context, stride)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    total, count = 0.0, 0
    try:
        full = [w for w in plan if w[1] - w[0] == context]
        rest = [w for w in plan if w[1] - w[0] != context]
        groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)]
        groups += [[w] for w in rest]
        for group in groups:
            x = torch.stack([t[s:e] for s, e, _ in group]).to(device)  # [B, L]
            y = torch.stack([t[s + 1 : e + 1] for s, e, _ in group]).to(device)
            out = model(x)
            logits = getattr(out, "logits", out).float()  # [B, L, V]
            nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # [B, L]
            for row, (s, _e, first) in enumerate(group):
                scored = nll[row, first - s :]
                total += float(scored.double().sum())
                count += scored.numel()
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    nll_mean = total / count
    return {
        "nll": nll_mean,
        "ppl": math.exp(nll_mean),
        "tokens": count,
        "context": context,
        "stride": stride,
    }


def perplexity_at_lengths(
    model: Any,
    tokens: np.ndarray | torch.Tensor,
    lengths: Sequence[int],
    *,
    max_tokens: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> dict[int, dict[str, float]]:
    """`perplexity` at several context lengths over the same tokens (stride = L/2 each)."""
    return {
        L: perplexity(
            model, tokens, context=L, max_tokens=max_tokens, batch_size=batch_size, device=device
        )
        for L in lengths
    }
