"""How flags, YAML fields and presets make a run: runtime fields, defaults, labels, hashes.

The malformed inputs themselves are the table in tests/test_faults_inputs.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from wm_bench.cli import _runtime, _train_config, build_parser
from wm_bench.config import RunConfig, TrainConfig, config_hash, load_run_yaml, to_dict
from wm_bench.presets import PRESET_FFNS, preset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def base(tiny_run) -> RunConfig:
    """A tiny run that would train in seconds (lr 1e-3)."""
    return tiny_run(experiment="faults", steps=2, lr=1e-3)


def test_check_run_is_cheap_repeatable_and_creates_only_the_folder(
    base: RunConfig, tmp_path: Path
) -> None:
    from wm_bench.preflight import check_run

    results = tmp_path / "new" / "results"
    check_run(base, results, out_dir=tmp_path / "out")
    check_run(base, results)
    assert results.is_dir() and list(results.iterdir()) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_yaml_runtime_fields_survive_when_no_flag_is_given(base: RunConfig, tmp_path: Path) -> None:
    cfg = base
    train = dataclasses.replace(
        cfg.train,
        impl="reference",
        num_threads=1,
        compile=True,
        save_model=True,
        progress=False,
        checkpoint=True,
        checkpoint_every=7,
    )
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(to_dict(dataclasses.replace(cfg, train=train))))

    def built(*flags: str) -> RunConfig:
        args = build_parser().parse_args(["train", "--config", str(p), *flags])
        return _runtime(_train_config(args), args)

    assert built().train == train
    got = built(
        "--impl",
        "auto",
        "--threads",
        "2",
        "--no-compile",
        "--no-save-model",
        "--no-checkpoint",
        "--steps",
        "5",
        "--lr",
        "0.01",
        "--seed",
        "3",
    ).train
    assert (got.impl, got.num_threads, got.compile, got.save_model, got.checkpoint) == (
        "auto",
        2,
        False,
        False,
        False,
    )
    assert got.max_steps == 5 and got.checkpoint_every == 7
    again = built("--checkpoint-every", "3")
    assert again.train.checkpoint and again.train.checkpoint_every == 3


def test_reproduce_checkpoints_unless_told_not_to(base: RunConfig) -> None:
    def runtime(*flags: str) -> TrainConfig:
        args = build_parser().parse_args(["reproduce", "mqar", *flags])
        return _runtime(base, args, checkpoint_default=True).train

    assert runtime().checkpoint and runtime().checkpoint_every is None
    assert runtime("--checkpoint-every", "4").checkpoint_every == 4
    assert not runtime("--no-checkpoint").checkpoint


def test_train_flags_set_a_preset_run_and_the_label_says_what_is_built() -> None:
    args = build_parser().parse_args(
        ["train", "--preset", "llama", "--ffn", "cdmoe", "--checkpoint-every", "2"]
    )
    cfg = _runtime(_train_config(args), args)
    assert cfg.variant == "llama-tiny-cdmoe" and cfg.model.blocks["A"].ffn.name == "cdmoe"
    assert cfg.train.checkpoint and cfg.train.checkpoint_every == 2
    assert cfg.train.max_steps == 50 and cfg.optim.lr == 1e-3 and cfg.seed == 0


@pytest.mark.parametrize("name", sorted(PRESET_FFNS))
def test_every_preset_builds_exactly_the_ffn_asked_for(name: str) -> None:
    for ffn in PRESET_FFNS[name]:
        cfg = preset(name, "tiny", ffn=ffn)
        blocks = [cfg.blocks[letter] for letter in cfg.layer_letters()]  # what is built
        built = {b.ffn.name if b.ffn is not None else "none" for b in blocks}
        # Jamba's MoE variant has MoE every other layer, the MLP between
        assert built == ({"moe", "mlp"} if ffn == "moe" else {ffn}), (name, ffn, built)
    with pytest.raises(ValueError, match=f"valid for {name}"):
        preset(name, "tiny", ffn="nosuch")


def test_yaml_float_written_without_a_dot_is_read_as_a_number(
    base: RunConfig, tmp_path: Path
) -> None:
    d = to_dict(base)
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(d).replace("lr: 0.001", "lr: 1e-3"))
    assert load_run_yaml(str(p)).optim.lr == 1e-3


def test_committed_result_configs_still_load_with_their_hashes() -> None:
    from wm_bench.config import run_from_dict
    from wm_bench.results import iter_results

    n = 0
    for rec in iter_results(REPO / "results"):
        if "model" in rec["config"]:
            assert config_hash(run_from_dict(rec["config"])) == rec["config_hash"], rec["run_id"]
            n += 1
    assert n > 0
