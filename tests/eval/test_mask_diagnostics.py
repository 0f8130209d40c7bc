"""DMA mask diagnostics: the kernel's selection rule, edge fractions on hand-made biases, runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from wm_bench.config import BlockConfig, ModelConfig, RunConfig
from wm_bench.data.mqar import MqarDataConfig, MqarDataModule, generate
from wm_bench.data.synthetic import SyntheticDataConfig
from wm_bench.eval.mask_diagnostics import (
    bias_spread,
    capture_key_biases,
    edge_fractions,
    for_run,
    keep_mask,
    mask_diagnostics,
    summary_rows,
)
from wm_bench.kernels.attention.reference import direct_window_mask
from wm_bench.layers.ffn import FFNS
from wm_bench.layers.mixers import MIXERS
from wm_bench.model import build_model

IGNORE = -100


def hand_example(kv: int, T: int, order: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One MQAR row: key 1 + j at 2j, value 50 + j at 2j + 1; key order[i] queried at 2kv + 2i."""
    x = torch.zeros(1, T, dtype=torch.int64)
    y = torch.full((1, T), IGNORE, dtype=torch.int64)
    for j in range(kv):
        x[0, 2 * j], x[0, 2 * j + 1] = 1 + j, 50 + j
    for i, j in enumerate(order):
        p = 2 * kv + 2 * i
        x[0, p], y[0, p] = 1 + j, 50 + j
    return x, y


@pytest.mark.parametrize("tie_break", ["smaller_index", "larger_index"])
@pytest.mark.parametrize("window", [1, 3, 8, 40])
def test_keep_mask_is_the_direct_top_w_definition(tie_break: str, window: int) -> None:
    g = torch.Generator().manual_seed(0)
    bias = torch.randint(0, 4, (2, 3, 17), generator=g).double()  # many ties on purpose
    got = keep_mask(bias, window, tie_break)
    assert torch.equal(got, direct_window_mask(bias, window, 17, tie_break=tie_break))


def test_no_window_keeps_every_visible_key() -> None:
    keep = keep_mask(torch.randn(2, 1, 9), None, "smaller_index")
    assert keep.shape == (2, 1, 9, 9)
    assert torch.equal(keep[0, 0], torch.ones(9, 9, dtype=torch.bool).tril())


def test_equal_biases_smaller_index_keep_the_first_w_keys() -> None:
    """kv 4, w 4, T 16 at A = 0: rows ≥ 4 keep only keys 0..3."""
    x, y = hand_example(4, 16, [0, 1, 2, 3])
    keep = keep_mask(torch.zeros(1, 1, 16), 4, "smaller_index")
    f = edge_fractions(keep, x, y, 4)
    assert f["prev_token_values"] == 0.5  # rows 1, 3 keep 0, 2; rows 5, 7 lose 4, 6
    assert f["query_value"] == 0.5  # values at 1 and 3 are kept, 5 and 7 are not
    assert f["diagonal"] == pytest.approx(4 / 16)  # rows 0..3 only
    assert f["prev_token"] == pytest.approx(4 / 15)  # rows 1..4 keep t − 1


def test_equal_biases_larger_index_are_a_sliding_window() -> None:
    """Larger-index ties at A = 0: row r keeps r − w + 1 .. r."""
    x, y = hand_example(4, 16, [3, 2, 1, 0])  # queries at 8, 10, 12, 14
    keep = keep_mask(torch.zeros(1, 1, 16), 4, "larger_index")
    f = edge_fractions(keep, x, y, 4)
    assert f["prev_token"] == 1.0 and f["prev_token_values"] == 1.0 and f["diagonal"] == 1.0
    # query at 8 asks value 7 (kept: 5..8), at 10 value 5 (7..10: no), 12 → 3, 14 → 1: no
    assert f["query_value"] == 0.25


def test_a_bias_on_the_values_keeps_every_query_value_edge() -> None:
    x, y = hand_example(4, 16, [2, 0, 3, 1])
    bias = torch.zeros(1, 1, 16)
    bias[..., 1:8:2] = 1.0  # the four values outrank everything
    f = edge_fractions(keep_mask(bias, 4, "smaller_index"), x, y, 4)
    assert f["query_value"] == 1.0
    assert f["prev_token_values"] == 0.5  # keys 0, 2 kept (rows 1, 3); keys 4, 6 lost


def test_bias_spread_is_max_minus_min_over_visible_keys() -> None:
    bias = torch.tensor([[[0.0, 1.0, 3.0, 2.0]]])  # rows 1..3: spreads 1, 3, 3
    assert bias_spread(bias) == {"median": 3.0, "min": 1.0, "max": 3.0}
    assert bias_spread(torch.zeros(1, 1, 1)) == {"median": None, "min": None, "max": None}


def tiny_model(**dma_kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    dma = MIXERS["dma"][1](n_heads=2, n_kv_heads=1, **dma_kw)
    cfg = ModelConfig(
        vocab_size=64,
        d_model=16,
        n_layers=2,
        pattern="DA",
        blocks={
            "D": BlockConfig(mixer=dma, ffn=FFNS["mlp"][1]()),
            "A": BlockConfig(mixer=MIXERS["qcattn"][1](n_heads=2)),
        },
    )
    return build_model(cfg, impl="reference")


def test_captured_bias_is_the_layers_own_key_bias() -> None:
    model = tiny_model(window=3, a_init=0.7)
    x, _ = generate(3, 16, 2, 64, seed=0)
    got = capture_key_biases(model, x)
    assert list(got) == [0]  # only layer 0 is DMA
    dma = model.blocks[0].mixer
    h = model.blocks[0].mixer_norm(model.embed(x))
    _, _, v = dma._project(h, offset=0)
    torch.testing.assert_close(got[0], dma.key_bias(v))


def test_diagnostics_at_a_zero_follow_the_tie_rule_and_leave_the_model_alone() -> None:
    model = tiny_model(window=2)
    model.train()
    x, y = generate(8, 16, 4, 64, seed=1)
    rng = torch.get_rng_state()
    diag = mask_diagnostics(model, x, y, 4)
    assert torch.equal(rng, torch.get_rng_state()) and model.training
    (layer,) = diag
    assert layer["layer"] == 0 and layer["A"] == [0.0] and layer["window"] == 2
    assert layer["bias_spread"] == {"median": 0.0, "min": 0.0, "max": 0.0}  # exp(0 · …) = 1
    kept = layer["kept"]
    assert kept["prev_token_values"] == 0.25  # w = 2: only row 1 keeps key 0 (of rows 1,3,5,7)
    assert kept["diagonal"] == pytest.approx(2 / 16)
    # queries keep only keys 0, 1: the value of key 0 (at 1) is the only one reachable, and
    # MQAR asks every key exactly once
    assert kept["query_value"] == 0.25


def test_no_window_keeps_every_edge_and_a_moves_the_bias() -> None:
    model = tiny_model(window=None, a_init=1.0)
    x, y = generate(4, 16, 4, 64, seed=2)
    (layer,) = mask_diagnostics(model, x, y, 4)
    assert all(v == 1.0 for v in layer["kept"].values())
    assert layer["A"] == [1.0] and layer["bias_spread"]["max"] > 0.0


def run_cfg(mixer: str, data_name: str = "mqar") -> tuple[RunConfig, MqarDataModule]:
    kw = {"window": 4} if mixer == "dma" else {}
    block = BlockConfig(mixer=MIXERS[mixer][1](n_heads=1, **kw))
    model = ModelConfig(vocab_size=64, d_model=16, n_layers=1, pattern="M", blocks={"M": block})
    data = MqarDataConfig(seq_len=16, num_kv_pairs=4, vocab_size=64, n_train=8, n_test=12)
    cfg = RunConfig(experiment="t", variant=mixer, model=model, data=data)
    return cfg, MqarDataModule(data, batch_size=4, seed=0)


def test_for_run_reads_the_test_split_and_skips_what_does_not_apply() -> None:
    cfg, dm = run_cfg("dma")
    model = build_model(cfg.model, impl="reference")
    rec = for_run(cfg, dm, model, n_examples=5)
    assert rec["n_examples"] == 5 and len(rec["layers"]) == 1
    cfg_q, dm_q = run_cfg("qcattn")
    assert for_run(cfg_q, dm_q, build_model(cfg_q.model)) is None
    other = dataclasses.replace(cfg, data=SyntheticDataConfig())
    assert for_run(other, dm, model) is None
    rows = summary_rows({"init": rec, "final": rec})
    assert [r["stage"] for r in rows] == ["init", "final"]


def test_a_run_records_init_and_final_and_init_is_the_seeds_fresh_model(tmp_path) -> None:
    """A resumed run rebuilds its model from the seed before loading the checkpoint: the "init"
    record is the diagnostics of exactly that fresh model."""
    import lightning as L

    from wm_bench.config import TrainConfig
    from wm_bench.train import run
    from wm_bench.train.module import LMModule

    cfg, _ = run_cfg("dma")
    cfg = dataclasses.replace(
        cfg, seed=2, train=TrainConfig(max_steps=3, batch_size=4, progress=False)
    )
    rec = run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert rec["status"] == "ok", rec.get("error")
    diag = rec["extra"]["mask_diagnostics"]
    L.seed_everything(cfg.seed, verbose=False)
    fresh = LMModule(cfg).model
    assert diag["init"] == for_run(cfg, MqarDataModule(cfg.data, batch_size=4, seed=2), fresh)
    assert diag["init"]["layers"][0]["A"] == [0.0]
    assert diag["final"]["layers"][0]["A"] != [0.0]  # A gets gradient at A = 0 and moves
