"""The metric names writers and readers of results share round-trip, and reject other names."""

from __future__ import annotations

from wm_bench.metric_names import loss_at, passkey_cell, passkey_cell_of, ppl_at, ppl_length


def test_perplexity_names_round_trip_and_other_names_are_not_lengths() -> None:
    assert ppl_at(512) == "test/ppl@512" and loss_at(512) == "test/loss@512"
    assert ppl_length(ppl_at(2048)) == 2048
    for other in ("test/loss@512", "valid/ppl", "test/ppl@", "test/ppl@5x", "test/ppl@-1"):
        assert ppl_length(other) is None, other


def test_passkey_cells_round_trip_and_malformed_names_are_none() -> None:
    for length, depth in ((256, 0.0), (1024, 0.25), (64, 1.0)):
        assert passkey_cell_of(passkey_cell(length, depth)) == (length, depth)
    assert passkey_cell(256, 0.5) == "test/accuracy@256:0.5"
    for other in ("valid/accuracy", "test/accuracy@256", "test/accuracy@x:0.5", "test/ppl@256"):
        assert passkey_cell_of(other) is None, other
