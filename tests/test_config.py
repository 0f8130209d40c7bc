"""Configs: round-trip, strict parsing, hash stability, YAML, validation errors."""

from __future__ import annotations

import dataclasses

import pytest

from wm_bench.config import (
    OptimConfig,
    RunConfig,
    TrainConfig,
    config_hash,
    from_dict,
    load_run_yaml,
    run_from_dict,
    to_dict,
)
from wm_bench.data.synthetic import SyntheticDataConfig
from wm_bench.presets import PRESETS, preset


def _run(model_name: str = "cheems", **kw) -> RunConfig:
    return RunConfig(
        experiment="t",
        variant=model_name,
        model=preset(model_name, "tiny"),
        data=SyntheticDataConfig(),
        **kw,
    )


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_run_config_round_trips_through_dict(name):
    cfg = _run(name)
    again = run_from_dict(to_dict(cfg))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)


def test_hash_ignores_runtime_fields_but_not_math():
    cfg = _run()
    runtime = dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train, impl="reference", num_threads=2, progress=False, compile=True
        ),
    )
    assert config_hash(runtime) == config_hash(cfg)
    assert config_hash(dataclasses.replace(cfg, seed=1)) != config_hash(cfg)
    assert config_hash(dataclasses.replace(cfg, optim=OptimConfig(lr=3e-4))) != config_hash(cfg)


def test_hash_is_stable_across_processes():
    # A literal: if this changes, every committed result's skip-if-done key changes too.
    cfg = RunConfig(
        experiment="t",
        variant="v",
        model=preset("llama", "tiny"),
        data=SyntheticDataConfig(),
        train=TrainConfig(max_steps=3),
    )
    h = config_hash(cfg)
    assert len(h) == 16 and h == config_hash(run_from_dict(to_dict(cfg)))


def test_unknown_key_raises_with_its_path():
    d = to_dict(_run())
    d["optim"]["learning_rate"] = 1e-3
    with pytest.raises(ValueError, match=r"RunConfig\.optim.*learning_rate"):
        run_from_dict(d)


def test_unknown_nested_mixer_key_and_name_raise():
    d = to_dict(_run())
    d["model"]["blocks"]["S"]["mixer"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        run_from_dict(d)
    d = to_dict(_run())
    d["model"]["blocks"]["S"]["mixer"]["name"] = "transformerxl"
    with pytest.raises(ValueError, match="transformerxl.*valid"):
        run_from_dict(d)


def test_bad_values_name_the_value_and_choices():
    with pytest.raises(ValueError, match="'weird'"):
        TrainConfig(precision="weird")
    with pytest.raises(ValueError, match="'huge'.*smoke"):
        _run(scale="huge")
    with pytest.raises(ValueError, match="'Q'"):
        dataclasses.replace(preset("cheems", "tiny"), pattern="SQ")


def test_yaml_run_file_is_parsed_strictly(tmp_path):
    import yaml

    cfg = _run()
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_run_yaml(str(p)) == cfg
    bad = to_dict(cfg)
    bad["train"]["stepz"] = 3
    p.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="stepz"):
        load_run_yaml(str(p))


def test_from_dict_requires_mapping():
    with pytest.raises(ValueError, match="expected a mapping"):
        from_dict(OptimConfig, [1, 2])
