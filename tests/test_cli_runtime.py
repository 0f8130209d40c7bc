"""Run options from the command line: trainer flags, --version, reproduce --dry-run, train on
any registered dataset, and the per-run step progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from wm_bench.cli import _runtime, build_parser, main
from wm_bench.config import config_hash


def _args(*argv: str):
    return build_parser().parse_args(["train", *argv])


def _train_cfg(*argv: str):
    from wm_bench.cli import _train_config

    args = _args(*argv)
    return _runtime(_train_config(args), args)


# --------------------------------------------------------------------------------------------
# Trainer flags


def test_trainer_flags_reach_the_config_and_only_computing_ones_change_the_hash() -> None:
    base = _train_cfg()
    runtime = _train_cfg("--accelerator", "cpu", "--devices", "1", "--logger", "tensorboard")
    t = runtime.train
    assert (t.accelerator, t.devices, t.logger) == ("cpu", 1, "tensorboard")
    assert config_hash(runtime) == config_hash(base)  # where and how it runs: same run
    assert _train_cfg("--accumulate-grad-batches", "1").train.accumulate_grad_batches is None
    assert config_hash(_train_cfg("--accumulate-grad-batches", "1")) == config_hash(base)
    acc = _train_cfg("--accumulate-grad-batches", "4")
    assert acc.train.accumulate_grad_batches == 4 and config_hash(acc) != config_hash(base)
    prec = _train_cfg("--precision", "64-true")
    assert prec.train.precision == "64-true" and config_hash(prec) != config_hash(base)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--precision", "fp8"], "invalid choice: 'fp8'"),
        (["--accelerator", "tpu"], "invalid choice: 'tpu'"),
        (["--logger", "wandb"], "invalid choice: 'wandb'"),
        (["--accumulate-grad-batches", "0"], "need an integer ≥ 1"),
        (["--devices", "2", "--batch-size", "3"], "use a multiple of 2"),
        (["--data", "imagenet"], "'imagenet'; valid: ['lm', 'mqar', 'passkey', 'synthetic']"),
        (["--data", "lm", "--data-opt", "vocab=5"], "--data-opt vocab: not a field of lm data"),
        (["--data", "mqar", "--data-opt", "num_kv_pairs"], "expected KEY=VALUE"),
        (["--data", "mqar", "--data-opt", "num_kv_pairs=-1"], "num_kv_pairs"),
    ],
)
def test_bad_run_options_are_one_clear_error(argv, message, tmp_path, capsys) -> None:
    rc = main(["train", *argv, "--results-dir", str(tmp_path / "r"), "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_version_names_the_package_and_its_engines(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wm-bench ") and "torch " in out and "lightning " in out


# --------------------------------------------------------------------------------------------
# train on any registered dataset


def test_train_a_preset_on_mqar_with_data_options(cli_dirs, tmp_path, capsys) -> None:
    opts = ["vocab_size=64", "num_kv_pairs=2", "n_train=64", "n_test=16"]
    data = ["--data", "mqar", *(x for o in opts for x in ("--data-opt", o))]
    model = ["--preset", "llama", "--size", "tiny", "--seq-len", "32"]
    rc = main(["train", *model, *data, "--steps", "3", "--quiet", "--threads", "1", *cli_dirs])
    assert rc == 0, capsys.readouterr().err
    (path,) = (tmp_path / "r").rglob("*.json")
    cfg = json.loads(path.read_text())["config"]
    assert cfg["data"]["name"] == "mqar" and cfg["data"]["num_kv_pairs"] == 2
    assert cfg["data"]["seq_len"] == 32 and cfg["model"]["vocab_size"] == 64


def test_data_flags_with_a_run_file_are_refused(tmp_path, capsys) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("experiment: x\n")
    assert main(["train", "--config", str(f), "--data", "mqar"]) == 2
    assert "--data with --config" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# reproduce --dry-run


def test_dry_run_lists_every_planned_run_and_writes_nothing(tmp_path, capsys) -> None:
    results, out = tmp_path / "results", tmp_path / "outputs"
    dirs = ["--results-dir", str(results), "--out-dir", str(out)]
    argv = ["reproduce", "mqar", "--scale", "smoke", *dirs, "--quiet", "--threads", "1"]
    assert main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "planned runs, 0 done" in text and "nothing trained or written" in text
    planned = [ln for ln in text.splitlines() if ln.strip().endswith("pending")]
    assert planned and all(len(ln.split()[-2]) == 16 for ln in planned)  # the config hash
    assert not results.exists() and not out.exists()
    assert main([*argv, "--limit", "1", "--no-report"]) == 0  # one real run
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"{len(planned)} planned runs, 1 done" in text and "done (ok)" in text


def test_dry_run_of_a_timing_task_times_nothing(tmp_path, capsys) -> None:
    argv = ["reproduce", "expert_speed", "--scale", "smoke", "--results-dir", str(tmp_path)]
    assert main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "planned points, 0 done" in text and "nothing timed or written" in text
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# The step progress bar


class _Trainer:
    def __init__(self, step: int) -> None:
        self.global_step = step


def test_the_bar_counts_optimiser_steps_from_the_resumed_step(monkeypatch) -> None:
    import torch

    from wm_bench.train.progress import StepProgress

    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = StepProgress("rope/cpu hybrid s0", 10, enabled=True, min_interval_s=0.0)
    bar.on_train_start(_Trainer(4), None)  # resumed at step 4
    for step in (5, 6, 7):
        bar.on_train_batch_end(_Trainer(step), None, {"loss": torch.tensor(2.0)}, None, step)
    assert bar.bar.n == 7 and bar.bar.total == 10
    bar.phase("validation")
    text = err.getvalue()
    assert "rope/cpu hybrid s0" in text and "7/10" in text and "loss 2.000" in text
    assert "validation" in text
    bar.close()


def test_no_bar_when_disabled_or_not_a_terminal(monkeypatch) -> None:
    import torch

    from wm_bench.train.progress import StepProgress

    err = io.StringIO()  # not a TTY
    monkeypatch.setattr("sys.stderr", err)
    for bar in (StepProgress("x", 5), StepProgress("x", 5, enabled=False)):
        bar.on_train_start(_Trainer(0), None)
        bar.on_train_batch_end(_Trainer(1), None, torch.tensor(1.0), None, 0)
        bar.phase("validation")
        bar.close()
        assert bar.bar is None
    assert err.getvalue() == ""
    with pytest.raises(ValueError, match="smoothing=0"):
        StepProgress("x", 5, smoothing=0)


def test_tensorboard_logger_without_its_package_names_the_extra(monkeypatch, tmp_path) -> None:
    import importlib

    import lightning as L

    run_mod = importlib.import_module("wm_bench.train.run")  # the package exports run()

    def missing(*a, **k):
        raise ModuleNotFoundError("No module named 'tensorboard'")

    monkeypatch.setattr(L.pytorch.loggers, "TensorBoardLogger", missing)
    cfg = _train_cfg("--logger", "tensorboard")
    with pytest.raises(ValueError, match=r"wm_bench\[tensorboard\]"):
        run_mod._logger(cfg, Path(tmp_path), "rid")


def test_save_model_without_a_text_tokenizer_is_refused_before_training(
    cli_dirs, tmp_path, capsys
) -> None:
    argv = ["train", "--steps", "2", "--save-model", *cli_dirs]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "save_model with synthetic data" in err and "--data lm" in err
    assert not (tmp_path / "r").exists()
