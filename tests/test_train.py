"""Training: a tiny run lowers the loss, writes one result, skips when done, records failures."""

from __future__ import annotations

import json

import pytest

from wm_bench.cli import main
from wm_bench.config import OptimConfig, RunConfig, TrainConfig
from wm_bench.data.synthetic import SyntheticDataConfig
from wm_bench.presets import preset
from wm_bench.results import iter_results
from wm_bench.train import run
from wm_bench.train.module import lr_lambda


def _cfg(steps: int = 40, **kw) -> RunConfig:
    return RunConfig(
        experiment="test",
        variant="llama-tiny",
        model=preset("llama", "tiny", vocab_size=64),
        data=SyntheticDataConfig(vocab_size=64, seq_len=32, n_train=256, n_valid=32),
        optim=OptimConfig(lr=3e-3, warmup_steps=5),
        train=TrainConfig(max_steps=steps, batch_size=16, progress=False),
        **kw,
    )


def test_tiny_training_run_lowers_the_loss(tmp_path):
    before = run(_cfg(steps=1), results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    after = run(_cfg(steps=60), results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert before["status"] == after["status"] == "ok", after.get("error")
    # Markov data with 4 successors per token: the optimum is log 4 ≈ 1.39; init is log 64 ≈ 4.16.
    assert after["metrics"]["valid/loss"] < before["metrics"]["valid/loss"] - 1.0
    assert after["timing"]["tokens_per_s"] > 0
    t = after["timing"]  # FLOPs by wm_bench.flops; no peak for a CPU, so no MFU
    assert t["train_flops_per_token"] > 0 and t["mfu"] is None
    assert t["model_tflops"] == pytest.approx(t["tokens_per_s"] * t["train_flops_per_token"] / 1e12)
    assert after["params"]["total"] > 0 and after["impls"]
    assert after["provenance"]["device"]["type"] == "cpu"


def test_second_run_of_same_config_is_skipped(tmp_path):
    cfg = _cfg(steps=2)
    first = run(cfg, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    second = run(cfg, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert not first.get("skipped") and second.get("skipped")
    assert second["run_id"] == first["run_id"]
    assert len(list(iter_results(tmp_path))) == 1


def test_a_failing_run_writes_a_failed_result(tmp_path, monkeypatch):
    import sys

    run_mod = sys.modules["wm_bench.train.run"]  # (the package's `run` is the function)

    def boom(*a, **k):
        raise RuntimeError("the data module broke mid-run")

    monkeypatch.setattr(run_mod, "build_datamodule", boom)  # past the preflight checks
    rec = run(_cfg(steps=2), results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert rec["status"] == "failed" and "broke mid-run" in rec["error"]
    on_disk = list(iter_results(tmp_path))
    assert len(on_disk) == 1 and on_disk[0]["status"] == "failed"


def test_input_that_cannot_run_is_rejected_before_training_and_writes_nothing(tmp_path):
    cfg = _cfg(steps=2)
    bad = RunConfig(**{**cfg.__dict__, "data": SyntheticDataConfig(vocab_size=128, seq_len=8)})
    with pytest.raises(ValueError, match="data.vocab_size=128.*model.vocab_size=64"):
        run(bad, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert list(iter_results(tmp_path)) == []


def test_lr_schedule_warms_up_then_decays_to_min_ratio():
    kw = dict(max_steps=100, warmup=10, min_ratio=0.1)
    assert lr_lambda(0, **kw) == pytest.approx(0.1)
    assert lr_lambda(9, **kw) == pytest.approx(1.0)
    assert lr_lambda(10, **kw) == pytest.approx(1.0)
    assert lr_lambda(100, **kw) == pytest.approx(0.1)
    assert lr_lambda(55, **kw) == pytest.approx(0.55)


def test_cli_train_runs_a_preset_and_prints_metrics(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--preset",
            "cheems",
            "--size",
            "tiny",
            "--steps",
            "3",
            "--seq-len",
            "16",
            "--results-dir",
            str(tmp_path),
            "--out-dir",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "ok: train/smoke/" in out and "valid/loss" in out
    rec = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert rec["config"]["model"]["pattern"] == "SSSD"


def test_cli_bad_preset_is_one_clear_line(capsys):
    assert main(["train", "--preset", "gpt5", "--steps", "1"]) == 2
    assert "unknown preset 'gpt5'" in capsys.readouterr().err


def test_a_finished_run_drops_its_checkpoint_and_force_never_resumes_an_old_one(tmp_path, capsys):
    import dataclasses

    from wm_bench.train.run import checkpoint_path

    cfg = _cfg(steps=4)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint=True))
    first = run(cfg, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    ckpt = checkpoint_path(cfg, tmp_path / "o")
    assert first["status"] == "ok" and not ckpt.exists()  # the result is the product
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"an old checkpoint that must not be loaded")
    again = run(cfg, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True, force=True)
    assert "moved the old checkpoint aside" in capsys.readouterr().out
    # Trained from step 0 again: a whole curve, the same metrics, nothing resumed.
    assert again["status"] == "ok" and again["resumed_from_step"] is None
    assert again["extra"]["train_loss_curve"] == first["extra"]["train_loss_curve"]
    assert again["metrics"] == first["metrics"]


def test_compile_wraps_steps_without_a_second_copy_in_checkpoints():
    """TrainConfig.compile: the compiled wrapper is used for steps, the state dict keeps one copy
    of every weight under the model's names (torch.compile is lazy: nothing compiles here)."""
    from dataclasses import replace

    from wm_bench.train.module import LMModule

    cfg = _cfg()
    plain = LMModule(cfg)
    compiled = LMModule(replace(cfg, train=replace(cfg.train, compile=True)))
    assert compiled.__dict__["_step_model"] is not None and plain.__dict__["_step_model"] is None
    assert list(compiled.state_dict()) == list(plain.state_dict())
