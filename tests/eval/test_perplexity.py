"""Sliding-window perplexity: windows cover each target once; equals the direct computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wm_bench.eval.perplexity import perplexity, perplexity_at_lengths, windows


@pytest.mark.parametrize(
    ("n", "L", "s"), [(2, 1, 1), (50, 8, 4), (50, 8, 8), (51, 7, 3), (9, 20, 5)]
)
def test_windows_score_every_target_once_with_enough_context(n: int, L: int, s: int) -> None:
    plan = windows(n, L, s)
    scored = [p for start, end, first in plan for p in range(first, end)]
    assert scored == list(range(n - 1))  # every input position once, in order
    for i, (start, end, first) in enumerate(plan):
        assert end - start <= L
        if i > 0:
            assert first - start >= L - s  # each later scored token has ≥ L − s context


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="stride"):
        windows(10, 4, 5)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        windows(1, 4, 2)


class Bigram(torch.nn.Module):
    """Context-free model: logits depend on the current token only."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x)


def test_context_free_model_gives_the_same_ppl_at_every_length() -> None:
    torch.manual_seed(0)
    model = Bigram(11)
    tokens = torch.randint(0, 11, (203,))
    direct = F.cross_entropy(model(tokens[:-1]), tokens[1:]).item()
    res = perplexity_at_lengths(model, tokens, [8, 16, 64, 500], batch_size=3)
    for L, r in res.items():
        assert r["tokens"] == 202 and r["stride"] == max(1, L // 2)
        assert r["nll"] == pytest.approx(direct, rel=1e-6)
        assert r["ppl"] == pytest.approx(math.exp(direct), rel=1e-6)


def test_context_window_really_limits_context() -> None:
    """A model that counts its context: longer windows → more context → different NLL."""

    class Counter(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pos = torch.arange(x.shape[1], dtype=torch.float32)
            logits = torch.zeros(*x.shape, 2)
            logits[..., 0] = pos  # confidence grows with the position inside the window
            return logits

    tokens = torch.zeros(100, dtype=torch.long)
    short = perplexity(Counter(), tokens, context=4, stride=2)["nll"]
    long = perplexity(Counter(), tokens, context=32, stride=16)["nll"]
    assert long < short
