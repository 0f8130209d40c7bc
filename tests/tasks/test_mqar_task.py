"""tasks/mqar: grid sizes per scale, unique hashes, round trips, cells, paper values, errors."""

from __future__ import annotations

import pytest

import wm_bench_tasks.mqar as task
from wm_bench.config import RunConfig, config_hash, from_dict, to_dict
from wm_bench.sweep import group_cells

EXPECTED_RUNS = {"smoke": 5, "cpu": 20, "small": 128, "paper": 256}


@pytest.fixture(scope="module", params=list(task.SCALES))
def scale_runs(request: pytest.FixtureRequest) -> tuple[str, list[RunConfig]]:
    return request.param, task.runs(request.param)


def test_scales_are_the_suite_scales() -> None:
    assert list(task.SCALES) == ["smoke", "cpu", "small", "paper"]


def test_grid_size_is_the_product_of_the_scale_spec(scale_runs) -> None:
    scale, cfgs = scale_runs
    s = task.SCALES[scale]
    n = len(s.lengths) * len(s.widths) * len(s.mixers) * len(s.lrs) * len(s.seeds)
    assert len(cfgs) == n == EXPECTED_RUNS[scale] == task.planned_tokens(scale)["runs"]
    assert {c.tags["mixer"] for c in cfgs} == set(s.mixers) <= set(task.MIXERS)
    assert set(task.PAPER_MIXERS) <= set(s.mixers)
    assert sorted({c.optim.lr for c in cfgs}) == sorted(task.lr_grid(scale))


def test_config_hashes_are_unique(scale_runs) -> None:
    _, cfgs = scale_runs
    assert len({config_hash(c) for c in cfgs}) == len(cfgs)


def test_configs_round_trip_through_dicts(scale_runs) -> None:
    _, cfgs = scale_runs
    for cfg in cfgs[:: max(1, len(cfgs) // 12)]:
        back = from_dict(RunConfig, to_dict(cfg))
        assert back == cfg and config_hash(back) == config_hash(cfg)


def test_each_run_follows_the_protocol(scale_runs) -> None:
    scale, cfgs = scale_runs
    s = task.SCALES[scale]
    for cfg in cfgs:
        seq_len, kv = cfg.tags["seq_len"], cfg.tags["num_kv_pairs"]
        assert cfg.experiment == "mqar" and cfg.scale == scale
        assert cfg.variant == cfg.tags["mixer"] and cfg.optim.lr == cfg.tags["lr"]
        assert (cfg.data.seq_len, cfg.data.num_kv_pairs) == (seq_len, kv)
        assert kv == seq_len // s.kv_divisor and 4 * kv <= seq_len < cfg.data.vocab_size
        assert (
            cfg.model.vocab_size == cfg.data.vocab_size and cfg.model.d_model == cfg.tags["d_model"]
        )
        assert cfg.model.n_layers == 2 and cfg.model.tie_embeddings
        block = cfg.model.blocks[cfg.model.pattern]
        mixer = cfg.tags["mixer"]
        assert block.mixer.name == task.MIXER_TABLE[mixer].registry
        assert block.ffn.name == "mlp"
        assert (cfg.optim.weight_decay, cfg.optim.min_lr_ratio) == (0.1, 0.0)
        assert cfg.train.early_stop_metric == task.METRIC == "valid/accuracy"
        assert cfg.train.early_stop_value == 0.99
        if block.mixer.name == "dma":
            assert block.mixer.window == kv
        if block.mixer.name == "ssd":
            assert (block.mixer.d_state, block.mixer.n_heads, block.mixer.n_groups) == (128, 1, 1)


def test_cells_group_everything_but_lr_and_seed(scale_runs) -> None:
    scale, cfgs = scale_runs
    s = task.SCALES[scale]
    cells = group_cells(cfgs, task.cell_key)
    assert len(cells) == len(s.lengths) * len(s.widths) * len(s.mixers)
    for members in cells.values():
        assert len({(c.optim.lr, c.seed) for c in members}) == len(s.lrs) * len(s.seeds)


def test_cpu_scale_runs_both_dma_tie_rules_over_two_seeds_on_a_small_vocabulary() -> None:
    s = task.SCALES["cpu"]
    assert len(s.seeds) >= 2 and set(s.mixers) == set(task.MIXERS)  # both DMA tie rules
    assert s.vocab_size < 1024
    assert task.SCALES["paper"].lrs == pytest.approx([1e-4, 4.6416e-4, 2.1544e-3, 1e-2], rel=1e-4)


def test_unknown_scale_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid: \['smoke', 'cpu', 'small', 'paper'\]"):
        task.runs("huge")
    with pytest.raises(ValueError, match="valid"):
        task.lr_grid("huge")


def test_paper_values_match_the_digitised_figure() -> None:
    grid = task.paper_grid()
    assert len(grid) == 16
    assert grid[(2048, 256, 512)] == {"based": 0.18, "qcattn": 0.36, "ssd": 0.32, "dma": 1.0}
    assert "digitised" in task.load_paper()["source"]


def test_a_mixer_joins_the_grid_through_one_table_row(monkeypatch) -> None:
    assert tuple(task.MIXER_TABLE) == task.MIXERS
    assert {k: e.label for k, e in task.MIXER_TABLE.items()} == task.MIXER_LABELS
    assert task.TABLE.columns == task.MIXERS
    row = task.MixerEntry("mamba2", {"head_dim": 16, "d_state": 16}, "Mamba-2", paper=False)
    monkeypatch.setitem(task.MIXER_TABLE, "mamba2", row)
    cfg = task.make_run("smoke", 64, 32, "mamba2", 3e-3, 0)
    mixer = cfg.model.blocks[cfg.model.pattern].mixer
    assert (mixer.name, mixer.head_dim, mixer.d_state) == ("mamba2", 16, 16)
