"""arch task (Table 3): presets, active-parameter matching, downstream settings (configs only)."""

from __future__ import annotations

import pytest

import wm_bench_tasks.arch as arch
from wm_bench.config import DownstreamConfig, config_hash, replace
from wm_bench.model import count_params


@pytest.mark.parametrize("scale", ["smoke", "cpu", "small", "paper"])
def test_every_architecture_matches_llama_active_parameters(scale: str) -> None:
    ref = count_params(arch.model_config(scale, "llama"))["active"]
    for v in arch.VARIANTS:
        p = count_params(arch.model_config(scale, v))
        assert abs(p["active"] - ref) / ref <= 0.05, (scale, v, p, ref)


def test_presets_keep_their_defining_structure() -> None:
    cfg = {v: arch.model_config("cpu", v) for v in arch.VARIANTS}
    assert cfg["cheems_mlp"].pattern == "SSSSSSSD" and cfg["doge"].pattern == "D"  # repeated
    assert cfg["jamba"].pattern.count("a") == 1 and "M" in cfg["jamba"].pattern
    assert cfg["mamba2"].n_layers == 16 and cfg["mamba2"].blocks["M"].ffn is None
    assert cfg["cheems_cdmoe"].blocks["S"].ffn.name == "cdmoe"
    for v in ("jamba", "cheems_cdmoe", "doge"):  # sparse: hold more than a token uses
        p = count_params(cfg[v])
        assert p["total"] > p["active"]


def test_runs_share_data_and_tokens_and_carry_the_downstream_protocol(tmp_path) -> None:
    s = arch.SCALES["cpu"]
    runs = arch.runs("cpu", results_dir=tmp_path)  # no tune results yet: the tune stage only
    assert len(runs) == len(s.variants) * len(s.lr_grid) and len(s.lr_grid) >= 3
    assert {r.seed for r in runs} == {0} and len(s.seeds) >= 2
    assert "doge" not in s.variants and {"llama", "mamba2", "jamba"} <= set(s.variants)
    assert len({(r.data, r.train.max_steps, r.train.batch_size) for r in runs}) == 1
    d = runs[0].downstream
    assert d.shots == (0, 5) and "mmlu" in d.tasks and "winogrande" in d.tasks
    assert "triviaqa" not in d.tasks  # generation, exact match 0 at this size (docstring)
    assert d.limit == 100 and d.max_length == 4 * runs[0].data.seq_len
    smoke = arch.runs("smoke")
    assert [r.variant for r in smoke] == list(arch.VARIANTS) and "triviaqa" in smoke[
        0
    ].downstream.tasks


def test_downstream_config_is_validated_and_hash_neutral_when_absent() -> None:
    with pytest.raises(ValueError, match="unknown downstream task"):
        DownstreamConfig(tasks=("arc",))
    with pytest.raises(ValueError, match="source='web'"):
        DownstreamConfig(source="web")
    with pytest.raises(ValueError, match="limit=0"):
        DownstreamConfig(limit=0)
    run = arch.make_run("smoke", "llama", 0)
    bare = replace(run, downstream=None)
    assert config_hash(bare) != config_hash(run)
    # eval_data is where the files are, not what is computed: it leaves the hash alone.
    moved = replace(run, downstream=replace(run.downstream, eval_data="/elsewhere"))
    assert config_hash(moved) == config_hash(run)


def test_unknown_scale_and_variant_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="valid: \\['smoke', 'cpu', 'small', 'paper'\\]"):
        arch.spec("huge")
    with pytest.raises(ValueError, match="unknown variant 'gpt'"):
        arch.model_config("smoke", "gpt")
