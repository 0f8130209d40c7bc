"""Passkey (needle in a haystack): layout, depths, seeds, errors, DataModule, grid evaluation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from wm_bench.config import BlockConfig, ModelConfig, RunConfig, config_hash, from_dict, to_dict
from wm_bench.data import DATASETS, build_datamodule
from wm_bench.data.passkey import (
    FIRST_KEY_TOKEN,
    KEY_CLOSE,
    KEY_OPEN,
    QUERY,
    PasskeyDataConfig,
    PasskeyDataModule,
    evaluate_grid,
    exact_match,
    generate,
    generate_mixed,
    key_offset,
)
from wm_bench.layers.mixers.qcattn import QCAttnConfig
from wm_bench.metric_names import passkey_cell, passkey_cell_of

K, V, N = 4, 64, 40
CFG = PasskeyDataConfig(vocab_size=V, seq_len=N, key_len=K, key_vocab=10, filler_period=7)


def tiny_model() -> ModelConfig:
    block = BlockConfig(mixer=QCAttnConfig(n_heads=1))
    return ModelConfig(vocab_size=V, d_model=16, n_layers=1, pattern="A", blocks={"A": block})


def key_at(x: torch.Tensor) -> torch.Tensor:
    """[n, K]: the tokens after each row's KEY_OPEN."""
    start = (x == KEY_OPEN).float().argmax(1)
    return torch.stack([x[r, s + 1 : s + 1 + K] for r, s in enumerate(start.tolist())])


def test_every_row_has_one_key_block_one_question_and_labels_only_on_the_answer() -> None:
    x, y, d = generate(CFG, 50, N, seed=0)
    assert x.shape == y.shape == (50, N) and x.dtype == y.dtype == torch.int64
    assert d.shape == (50,) and bool(((d >= 0) & (d <= 1)).all())
    for tok in (KEY_OPEN, KEY_CLOSE, QUERY):
        assert bool(((x == tok).sum(1) == 1).all())
    keys = key_at(x)
    assert bool(((keys >= FIRST_KEY_TOKEN) & (keys < FIRST_KEY_TOKEN + 10)).all())
    assert bool((x[:, N - K] == QUERY).all())
    assert torch.equal(x[:, N - K + 1 :], keys[:, :-1])  # the question repeats k₁ … k_{K−1}
    assert torch.equal(y[:, N - K :], keys)  # labels k₁ … k_K on the last K positions
    assert bool((y[:, : N - K] == -100).all())
    close = (x == KEY_CLOSE).float().argmax(1)
    assert torch.equal(close - (x == KEY_OPEN).float().argmax(1), torch.full((50,), K + 1))


def test_depth_places_the_key_block_from_the_start_to_just_before_the_question() -> None:
    for depth, where in ((0.0, 0), (1.0, N - K - (K + 2)), (0.5, round(0.5 * (N - 2 * K - 2)))):
        x, _, d = generate(CFG, 5, N, seed=1, depth=depth)
        assert bool((d == depth).all())
        assert bool(((x == KEY_OPEN).float().argmax(1) == where).all())
    x, _, _ = generate(CFG, 5, N, seed=1, depth=1.0)
    assert bool((x[:, N - K - 1] == KEY_CLOSE).all())
    assert key_offset(N, K, torch.tensor([0.25]).numpy()).tolist() == [round(0.25 * 30)]


def test_filler_repeats_one_fixed_sentence_or_is_random() -> None:
    x, _, _ = generate(CFG, 3, N, seed=2, depth=1.0)  # filler first, then the key block
    fill = x[:, : N - 2 * K - 2]
    assert bool((fill >= FIRST_KEY_TOKEN + 10).all())
    assert torch.equal(fill[0], fill[1]) and torch.equal(fill[:, :7], fill[:, 7:14])
    assert len(set(fill[0, :7].tolist())) == 7  # distinct "words"
    x2, _, _ = generate(dataclasses.replace(CFG, seq_len=N + 10), 3, N, seed=9, depth=1.0)
    assert torch.equal(x2[:, : N - 2 * K - 2], fill)  # the same text in every run and split
    rnd = dataclasses.replace(CFG, filler="random")
    xr, _, _ = generate(rnd, 3, N, seed=2, depth=1.0)
    fr = xr[:, : N - 2 * K - 2]
    assert bool((fr >= FIRST_KEY_TOKEN + 10).all()) and not torch.equal(fr[0], fr[1])


def test_seeded_and_independent_parts() -> None:
    a = generate(CFG, 20, N, seed=5)
    b = generate(CFG, 20, N, seed=5)
    c = generate(CFG, 20, N, seed=6)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    # the depth stream is its own: a fixed depth leaves the keys as they were
    fixed = generate(CFG, 20, N, seed=5, depth=0.3)
    assert torch.equal(key_at(fixed[0]), key_at(a[0]))


def test_short_lengths_and_the_minimum() -> None:
    x, y, _ = generate(CFG, 4, 2 * K + 2, seed=0, depth=0.5)  # no filler at all
    assert x[0].tolist()[: K + 2] == [KEY_OPEN, *key_at(x)[0].tolist(), KEY_CLOSE]
    with pytest.raises(ValueError, match="length=9"):
        generate(CFG, 1, 9, seed=0)
    with pytest.raises(ValueError, match="depth=1.5"):
        generate(CFG, 1, N, seed=0, depth=1.5)


@pytest.mark.parametrize(
    ("kw", "bad"),
    [
        ({"vocab_size": 15}, "vocab_size=15"),
        ({"seq_len": 9}, "seq_len=9"),
        ({"test_lengths": (40, 8)}, "test_lengths=8"),
        ({"test_lengths": (40, 40)}, "test_lengths=(40, 40)"),
        ({"test_depths": (0.0, 1.2)}, "test_depths=(0.0, 1.2)"),
        ({"test_depths": ()}, "test_depths=()"),
        ({"filler": "lorem"}, "filler='lorem'"),
        ({"key_vocab": 1}, "key_vocab=1"),
        ({"key_len": 0}, "key_len=0"),
        ({"n_test": 0}, "n_test=0"),
        ({"train_min_len": 9}, "train_min_len=9"),
        ({"train_min_len": 41}, "train_min_len=41"),
        ({"train_seed_offset": 5, "test_seed_offset": 5}, "train_seed_offset=5"),
    ],
)
def test_bad_settings_name_the_value(kw: dict, bad: str) -> None:
    base = {"vocab_size": V, "seq_len": N, "key_len": K, "key_vocab": 10}
    with pytest.raises(ValueError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        PasskeyDataConfig(**{**base, **kw})


def test_registered_round_trips_and_seeds_are_disjoint() -> None:
    assert DATASETS["passkey"] == (PasskeyDataModule, PasskeyDataConfig)
    model = tiny_model()
    cfg = RunConfig(experiment="t", variant="v", model=model, data=CFG)
    back = from_dict(RunConfig, to_dict(cfg))
    assert back == cfg and config_hash(back) == config_hash(cfg)
    assert CFG.split_seeds(3) == (3, 1_000_003)
    with pytest.raises(ValueError, match="seed=1000000"):
        CFG.split_seeds(1_000_000)
    assert passkey_cell(256, 0.25) == "test/accuracy@256:0.25"
    assert passkey_cell_of("test/accuracy@256:0.25") == (256, 0.25)
    assert passkey_cell_of("valid/accuracy") is None
    assert CFG.cells()[:2] == [(N, 0.0), (N, 0.25)]


def test_mixed_lengths_are_right_padded_copies_of_plain_examples() -> None:
    cfg = dataclasses.replace(CFG, train_min_len=12)
    x, y = generate_mixed(cfg, 60, seed=4)
    assert x.shape == y.shape == (60, N)
    lengths = ((x != 0).sum(1)).tolist()  # PAD = 0 only at the end (no other token is 0)
    assert min(lengths) >= 12 and max(lengths) <= N and len(set(lengths)) > 5
    for r, n in enumerate(lengths):
        assert bool((x[r, n:] == 0).all()) and bool((y[r, n:] == -100).all())
        assert int((y[r] != -100).sum()) == K and x[r, n - K] == QUERY
        assert torch.equal(y[r, n - K : n], key_at(x[r : r + 1, :n])[0])
    again = generate_mixed(cfg, 60, seed=4)
    assert torch.equal(again[0], x) and torch.equal(again[1], y)
    plain = generate_mixed(CFG, 5, seed=4)[0]
    assert bool((plain != 0).all())  # without train_min_len every row is seq_len long


def test_train_stream_resumes_at_a_step() -> None:
    cfg = dataclasses.replace(CFG, n_train=24)
    dm = build_datamodule(cfg, batch_size=5, seed=1)
    it = iter(dm.train_dataloader())
    first = [next(it) for _ in range(7)]  # crosses an epoch (4 batches of 5 per epoch)
    later = build_datamodule(cfg, batch_size=5, seed=1)
    later.load_state_dict({"next_train_batch": 3})
    it2 = iter(later.train_dataloader())
    for want in first[3:]:
        got = next(it2)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    vx, vy = next(iter(dm.val_dataloader()))
    assert vx.shape == (5, N) and bool((vy[:, : N - K] == -100).all())


class Oracle(torch.nn.Module):
    """Reads the key after KEY_OPEN and predicts the next answer token; `wrong` breaks depth 0."""

    def __init__(self, wrong_at_start: bool = False) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.wrong = wrong_at_start

    def hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[1]
        keys = key_at(x)  # [b, K]
        nxt = torch.zeros_like(x)
        nxt[:, n - K :] = keys
        if self.wrong:
            nxt[(x[:, 0] == KEY_OPEN), n - 1] = 0  # key at depth 0: last token wrong
        return torch.nn.functional.one_hot(nxt, V).float(), self.w.sum()

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return h


def test_grid_scores_whole_keys_per_cell() -> None:
    cfg = dataclasses.replace(CFG, test_lengths=(20, N), test_depths=(0.0, 1.0), n_test=6)
    got = evaluate_grid(Oracle(), cfg, seed=0, batch_size=4)
    assert got == {passkey_cell(n, d): 1.0 for n in (20, N) for d in (0.0, 1.0)}
    bad = evaluate_grid(Oracle(wrong_at_start=True), cfg, seed=0)
    assert bad[passkey_cell(20, 0.0)] == 0.0 and bad[passkey_cell(20, 1.0)] == 1.0
    x, y, _ = generate(CFG, 3, N, seed=0)
    assert exact_match(Oracle(), x, y).tolist() == [1.0, 1.0, 1.0]


def test_a_run_records_the_grid_metrics(tmp_path) -> None:
    from wm_bench.config import TrainConfig
    from wm_bench.train import run

    data = dataclasses.replace(
        CFG, n_train=16, n_valid=8, n_test=4, test_lengths=(20, N), test_depths=(0.0, 1.0)
    )
    model = tiny_model()
    cfg = RunConfig(
        experiment="t",
        variant="v",
        model=model,
        data=data,
        train=TrainConfig(max_steps=2, batch_size=4, progress=False),
    )
    rec = run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert rec["status"] == "ok", rec.get("error")
    grid = {k for k in rec["metrics"] if passkey_cell_of(k)}
    assert grid == {passkey_cell(n, d) for n in (20, N) for d in (0.0, 1.0)}
    assert all(rec["higher_is_better"][k] for k in grid)
