"""MQAR generator semantics (Zoology, docs/spec.md §5), seeds, errors and the DataModule."""

from __future__ import annotations

import pytest
import torch

from wm_bench.data import DATASETS, build_datamodule
from wm_bench.data.mqar import MqarDataConfig, MqarDataModule, generate

L, KV, V = 64, 8, 128


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return generate(200, L, KV, V, seed=3)


def test_generate_returns_int64_n_by_l(batch) -> None:
    x, y = batch
    assert x.shape == y.shape == (200, L)
    assert x.dtype == y.dtype == torch.int64


def test_context_interleaves_distinct_keys_and_values_in_their_ranges(batch) -> None:
    x, _ = batch
    keys, values = x[:, 0 : 2 * KV : 2], x[:, 1 : 2 * KV : 2]
    assert int(keys.min()) >= 1 and int(keys.max()) <= V // 2 - 1
    assert int(values.min()) >= V // 2 and int(values.max()) <= V - 1
    for row in range(x.shape[0]):
        assert len(set(keys[row].tolist())) == KV
        assert len(set(values[row].tolist())) == KV


def test_exactly_kv_labels_each_equal_to_the_queried_keys_value(batch) -> None:
    x, y = batch
    for row in range(x.shape[0]):
        pairs = dict(zip(x[row, 0 : 2 * KV : 2].tolist(), x[row, 1 : 2 * KV : 2].tolist()))
        pos = (y[row] != -100).nonzero().flatten().tolist()
        assert len(pos) == KV
        # the label sits at the query key's own position (aligned with the logits there)
        assert [y[row, p].item() for p in pos] == [pairs[x[row, p].item()] for p in pos]
        assert sorted(x[row, p].item() for p in pos) == sorted(pairs)


def test_queries_sit_after_the_context_at_even_offsets_and_filler_is_zero(batch) -> None:
    x, y = batch
    labelled = y != -100
    assert not labelled[:, : 2 * KV].any()
    offsets = labelled.nonzero()[:, 1] - 2 * KV
    assert bool((offsets % 2 == 0).all()) and int(offsets.max()) <= L - 2 * KV - 2
    rest = x[:, 2 * KV :][~labelled[:, 2 * KV :]]
    assert bool((rest == 0).all())


def test_power_law_puts_queries_near_the_start_of_the_region() -> None:
    # Zoology's own sampler (numpy choice, p ∝ (g+1)^(a−1)) gives 0.49 here; uniform gives 0.14.
    _, y = generate(2000, 256, 16, 512, seed=0)
    gaps = ((y != -100).nonzero()[:, 1] - 32) // 2  # in 0 … 111
    assert 0.44 < (gaps < 16).float().mean() < 0.54


def test_random_filler_replaces_only_the_zeros() -> None:
    x0, y0 = generate(50, L, KV, V, seed=5)
    x1, y1 = generate(50, L, KV, V, seed=5, random_filler=True)
    assert torch.equal(y0, y1)
    keep = x0 != 0
    assert torch.equal(x0[keep], x1[keep])
    assert bool((x1[~keep] != 0).any()) and int(x1.max()) < V


def test_same_seed_same_data_and_different_seeds_differ() -> None:
    a, b = generate(20, L, KV, V, seed=11), generate(20, L, KV, V, seed=11)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], generate(20, L, KV, V, seed=12)[0])


def test_worked_example_in_the_docstring() -> None:
    x, y = generate(1, seq_len=16, num_kv_pairs=2, vocab_size=20, seed=1)
    assert x[0].tolist() == [1, 19, 7, 15, 7, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    expected = [-100] * 16
    expected[4], expected[6] = 15, 19
    assert y[0].tolist() == expected
    doc = generate.__doc__ or ""
    assert "1    19   7    15   7    0    1    0" in doc
    assert "-100 -100 -100 -100 15   -100 19" in doc


@pytest.mark.parametrize(
    ("args", "limit"),
    [
        ((63, 4, 128), "must be even"),
        ((64, 17, 128), "kv ≤ 16"),
        ((64, 4, 64), "V > L"),
        ((64, 16, 30), "kv ≤ 14"),
    ],
)
def test_invalid_settings_name_the_limit(args: tuple[int, int, int], limit: str) -> None:
    with pytest.raises(ValueError, match=limit):
        generate(1, *args, seed=0)
    with pytest.raises(ValueError, match=limit):
        MqarDataConfig(seq_len=args[0], num_kv_pairs=args[1], vocab_size=args[2])


def test_vocab_too_small_for_the_pairs_names_the_key_count() -> None:
    with pytest.raises(ValueError, match="too few for num_kv_pairs=40"):
        generate(1, 160, 40, 61, seed=0)


def test_train_and_test_seed_ranges_are_disjoint() -> None:
    cfg = MqarDataConfig(seq_len=L, num_kv_pairs=KV, vocab_size=V)
    train = {cfg.split_seeds(s)[0] for s in range(0, cfg.seed_range, 997)}
    test = {cfg.split_seeds(s)[1] for s in range(0, cfg.seed_range, 997)}
    assert max(train) < cfg.test_seed_offset <= min(test)
    with pytest.raises(ValueError, match="must be in"):
        cfg.split_seeds(cfg.seed_range)


def test_datamodule_is_registered_and_batches_align() -> None:
    assert DATASETS["mqar"] == (MqarDataModule, MqarDataConfig)
    cfg = MqarDataConfig(seq_len=L, num_kv_pairs=KV, vocab_size=V, n_train=64, n_test=20)
    dm = build_datamodule(cfg, batch_size=16, seed=2)
    assert dm.vocab_size == V
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == yb.shape == (16, L) and int((yb != -100).sum()) == 16 * KV
    xt, yt = next(iter(dm.val_dataloader()))
    test_x, test_y = generate(20, L, KV, V, seed=cfg.test_seed_offset + 2)
    assert torch.equal(xt, test_x[:16]) and torch.equal(yt, test_y[:16])
    order = [next(iter(build_datamodule(cfg, batch_size=16, seed=2).train_dataloader()))[0]]
    assert torch.equal(order[0], xb)  # the shuffle is seeded
