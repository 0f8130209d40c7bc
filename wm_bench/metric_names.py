"""The names result metrics are keyed by, for the code that writes them and the code that reads
them: training and the data modules write, tasks and the report read. No torch here, so the
report can import it.

- "test/ppl@L", "test/loss@L": test perplexity and loss with a context of L tokens.
- "test/accuracy@L:δ": passkey accuracy at input length L with the key at depth δ ∈ [0, 1].
"""

from __future__ import annotations

PPL_PREFIX = "test/ppl@"
LOSS_PREFIX = "test/loss@"
PASSKEY_PREFIX = "test/accuracy@"


def ppl_at(length: int) -> str:
    """The test-perplexity metric at context `length`, e.g. "test/ppl@512"."""
    return f"{PPL_PREFIX}{length}"


def loss_at(length: int) -> str:
    """The test-loss metric at context `length`, e.g. "test/loss@512"."""
    return f"{LOSS_PREFIX}{length}"


def ppl_length(name: str) -> int | None:
    """L of a "test/ppl@L" metric; None for any other name."""
    if not name.startswith(PPL_PREFIX):
        return None
    tail = name[len(PPL_PREFIX) :]
    return int(tail) if tail.isdigit() else None


def passkey_cell(length: int, depth: float) -> str:
    """The passkey metric of one (length, depth) cell, e.g. "test/accuracy@256:0.5"."""
    return f"{PASSKEY_PREFIX}{length}:{depth:g}"


def passkey_cell_of(name: str) -> tuple[int, float] | None:
    """(length, depth) of a `passkey_cell` name; None for any other name."""
    if not name.startswith(PASSKEY_PREFIX):
        return None
    try:
        length, depth = name[len(PASSKEY_PREFIX) :].split(":")
        return int(length), float(depth)
    except ValueError:
        return None
