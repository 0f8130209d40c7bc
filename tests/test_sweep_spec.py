"""Sweep YAML files: the shipped ones validate; every bad file is one clear error before
anything runs (unknown path, a value the config rejects, an unknown sampler, ...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wm_bench.cli import main
from wm_bench.sweeps.spec import assign, available, load_sweep, pruning_caveats

GOOD = """\
description: test sweep
base: {task: mqar, scale: smoke, variant: dma, set: {train.max_steps: 20}}
space:
  model.blocks.M.mixer.window: [4, 8]
  optim.lr: [1.0e-3, 3e-3]
objective: {metric: valid/accuracy}
sampler: grid
"""


def _write(tmp_path: Path, text: str, name: str = "t") -> str:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return str(p)


def test_shipped_sweeps_validate_with_every_grid_point() -> None:
    names = available()
    assert {"smoke", "mqar_dma_window", "ffn_cdmoe_experts", "arch_hybrid_ratio"} <= set(names)
    for name in names:
        spec = load_sweep(name)  # builds every grid point and checks it can run
        assert spec.trials >= 1 and spec.params and spec.experiment == f"sweeps/{name}"


def test_a_good_file_gives_its_grid_configs_and_direction(tmp_path: Path) -> None:
    spec = load_sweep(_write(tmp_path, GOOD))
    assert spec.direction == "maximize" and spec.trials == 4
    cfgs = [spec.config(p) for p in spec.grid()]
    assert [c.model.blocks["M"].mixer.window for c in cfgs] == [4, 4, 8, 8]
    assert [c.optim.lr for c in cfgs] == [1e-3, 3e-3, 1e-3, 3e-3]  # "3e-3" read as a number
    assert {c.train.max_steps for c in cfgs} == {20} and cfgs[0].tags == {"sweep": "t"}
    assert cfgs[0].experiment == "sweeps/t"


def test_star_paths_set_every_block_and_choices_set_whole_configs() -> None:
    tree = {"blocks": {"S": {"ffn": {"top_k": 1}}, "D": {"ffn": {"top_k": 1}}}}
    assign(tree, "blocks.*.ffn.top_k", 4, "x")
    assert tree["blocks"]["S"]["ffn"]["top_k"] == tree["blocks"]["D"]["ffn"]["top_k"] == 4


def test_choices_label_whole_sub_configs(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  optim.lr: [1.0e-3, 3e-3]\n",
        "  model.blocks.M.ffn:\n    choices:\n"
        "      small: {name: mlp, d_ff: 64}\n      big: {name: mlp, d_ff: 128}\n",
    )
    spec = load_sweep(_write(tmp_path, text))
    cfg = spec.config({"model.blocks.M.mixer.window": 4, "model.blocks.M.ffn": "big"})
    assert cfg.model.blocks["M"].ffn.d_ff == 128


BAD = [
    (
        "unknown path",
        ("model.blocks.M.mixer.window:", "model.blocks.M.mixer.windw:"),
        ["unknown field path", "windw", "window"],
    ),
    ("bad value", ("[1.0e-3, 3e-3]", "[1.0e-3, -1]"), ["optim.lr", "-1", "> 0"]),
    ("bad window", ("[4, 8]", "[4, 0]"), ["window", "0", "≥ 1"]),
    ("unknown sampler", ("sampler: grid", "sampler: bayes"), ["sampler", "bayes", "tpe"]),
    ("unknown pruner", ("sampler: grid", "sampler: grid\npruner: early"), ["early", "median"]),
    (
        "sampler option",
        ("sampler: grid", "sampler: {name: tpe, n_startup: 3}\ntrials: 3"),
        ["n_startup", "n_startup_trials"],
    ),
    ("top key", ("sampler: grid", "sampler: grid\nbudget: 3"), ["budget", "trials"]),
    (
        "range on a grid",
        ("[1.0e-3, 3e-3]", "{low: 1.0e-4, high: 1.0e-2, log: true}"),
        ["grid", "optim.lr", "tpe"],
    ),
    ("budget", ("sampler: grid", "sampler: grid\ntrials: 9"), ["trials=9", "4 points"]),
    ("tpe budget", ("sampler: grid", "sampler: tpe"), ["budget", "trials"]),
    (
        "prune test",
        ("objective: {metric: valid/accuracy}", "objective: {metric: test/ppl@64}\npruner: median"),
        ["valid/", "test/ppl"],
    ),
    (
        "prune no eval",
        ("train.max_steps: 20", "train.max_steps: 20, train.eval_every: 0"),
        ["eval_every"],
    ),
    ("variant", ("variant: dma", "variant: nosuch"), ["nosuch", "qcattn"]),
    ("fixed path", ("optim.lr: [", "experiment: ["), ["experiment", "set by the sweep"]),
    (
        "direction",
        ("objective: {metric: valid/accuracy}", "objective: {metric: valid/zzz}"),
        ["direction"],
    ),
    ("duplicate", ("[4, 8]", "[4, 4]"), ["repeated"]),
]


@pytest.mark.parametrize("what,change,words", BAD, ids=[b[0] for b in BAD])
def test_bad_sweep_files_are_one_clear_error(tmp_path: Path, what, change, words) -> None:
    text = GOOD.replace(*change)
    if what == "prune no eval":
        text += "pruner: median\n"
    assert text != GOOD
    with pytest.raises(ValueError) as e:
        load_sweep(_write(tmp_path, text))
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"t\.yaml:4:\d+: YAML syntax error"):
        load_sweep(_write(tmp_path, GOOD.replace("space:\n", "space:\n  a: b: c\n")))


def test_cli_bad_file_or_storage_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    common = ["--results-dir", str(tmp_path / "res"), "--out-dir", str(out)]
    bad = _write(tmp_path, GOOD.replace("sampler: grid", "sampler: bayes"))
    assert main(["sweep", bad, *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "bayes" in err
    assert main(["sweep", "nosuch_sweep", *common]) == 2
    assert "smoke" in capsys.readouterr().err  # the known sweeps are listed
    good = _write(tmp_path, GOOD)
    assert main(["sweep", good, "--storage", "mysql://x/y", *common]) == 2
    assert "valid forms" in capsys.readouterr().err
    assert main(["sweep", good, "--set", "optim.lr=-1", *common]) == 2
    assert "OptimConfig.lr=-1" in capsys.readouterr().err
    assert not (tmp_path / "res").exists() and not out.exists()


def test_dry_run_lists_points_and_writes_nothing(cli_dirs, tmp_path: Path, capsys) -> None:
    args = ["sweep", _write(tmp_path, GOOD), "--dry-run", *cli_dirs]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 points, 0 done, 4 pending" in out and "window=8 lr=0.003" in out
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_a_grid_whose_pruner_start_up_shares_one_value_is_flagged(tmp_path: Path) -> None:
    """The median pruner judges later trials by the first n_startup_trials: in YAML order those
    share window = 4 here, so windows 8 and 16 would be judged against 4 alone."""
    text = GOOD.replace("[4, 8]", "[4, 8, 16]") + "pruner: {name: median, n_startup_trials: 2}\n"
    caveats = pruning_caveats(load_sweep(_write(tmp_path, text)))
    assert len(caveats) == 1 and "model.blocks.M.mixer.window = 4" in caveats[0]
    swapped = text.replace("n_startup_trials: 2", "n_startup_trials: 3")  # reaches window 8
    assert pruning_caveats(load_sweep(_write(tmp_path, swapped))) == []
    unpruned = text.replace("pruner: {name: median, n_startup_trials: 2}", "pruner: none")
    assert pruning_caveats(load_sweep(_write(tmp_path, unpruned))) == []
