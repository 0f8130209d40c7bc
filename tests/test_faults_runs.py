"""Fault tests for runs: kill -9 and resume, SIGTERM / SIGINT, divergence, strict JSON, --force."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from wm_bench.config import RunConfig, to_dict
from wm_bench.results import iter_results, write_json_atomic
from wm_bench.train import run, signals
from wm_bench.train.module import LMModule
from wm_bench.train.run import checkpoint_path

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture
def make_run(tiny_run):
    """The runs here: 40 steps, evaluated every 10 (`make_run(data, steps=, lr=, **train)`)."""
    return functools.partial(tiny_run, experiment="faults", steps=40, eval_every=10)


def _with_ckpt(cfg: RunConfig, every: int) -> RunConfig:
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, checkpoint=True, checkpoint_every=every)
    )


def _signal_at_step(monkeypatch, step: int, signum: int = signal.SIGTERM) -> None:
    """Make the process send itself `signum` when training step `step` starts."""
    original = LMModule.training_step

    @functools.wraps(original)
    def step_then_signal(self, batch, batch_idx):
        if self.global_step == step and not getattr(self, "_signalled", False):
            self._signalled = True
            os.kill(os.getpid(), signum)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(LMModule, "training_step", step_then_signal)


def _same_result(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] == "ok"
    assert a["metrics"].keys() == b["metrics"].keys()
    for k, v in a["metrics"].items():
        assert b["metrics"][k] == pytest.approx(v, rel=1e-6, abs=1e-6), k
    assert len(a["extra"]["train_loss_curve"]) == len(b["extra"]["train_loss_curve"])
    for (s1, l1), (s2, l2) in zip(a["extra"]["train_loss_curve"], b["extra"]["train_loss_curve"]):
        assert s1 == s2 and l2 == pytest.approx(l1, rel=1e-6, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Signals and exact resume, in-process


@pytest.mark.parametrize("data", ["synthetic", "mqar"])
def test_sigterm_saves_at_a_step_boundary_and_a_rerun_resumes_exactly(
    make_run, tmp_path, monkeypatch, data
):
    ref = run(make_run(data), results_dir=tmp_path / "ref", out_dir=tmp_path / "o_ref", quiet=True)
    cfg = _with_ckpt(make_run(data), every=3)
    _signal_at_step(monkeypatch, 17)
    with pytest.raises(signals.RunInterrupted) as info:
        run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert "saved step 18/40" in str(info.value) and "rerun the same command" in str(info.value)
    assert not list(iter_results(tmp_path / "r"))  # nothing recorded, least of all "ok"
    monkeypatch.undo()
    resumed = run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert resumed["resumed_from_step"] == 18 and resumed["timing"]["steps"] == 40
    _same_result(ref, resumed)  # the loss curve covers the whole run, too
    assert not checkpoint_path(cfg, tmp_path / "o").exists()


def test_gradient_accumulation_resumes_exactly_and_is_in_the_hash(make_run, tmp_path, monkeypatch):
    # K = 2 batches per optimiser step: the checkpoint's next batch is step × K, and a signal
    # inside an accumulation is acted on at the step's boundary (no half-summed gradient saved).
    from wm_bench.config import config_hash

    acc = make_run("synthetic", steps=20, accumulate_grad_batches=2)
    assert config_hash(acc) != config_hash(make_run("synthetic", steps=20))
    assert config_hash(
        make_run("synthetic", steps=20, accumulate_grad_batches=None)
    ) == config_hash(
        make_run("synthetic", steps=20)
    )  # unset (= 1) keeps the hash of configs written before the field existed
    ref = run(acc, results_dir=tmp_path / "ref", out_dir=tmp_path / "o_ref", quiet=True)
    assert ref["timing"]["steps"] == 20
    cfg = _with_ckpt(acc, every=4)
    _signal_at_step(monkeypatch, 9)
    with pytest.raises(signals.RunInterrupted) as info:
        run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert "saved step 10/20" in str(info.value)
    monkeypatch.undo()
    resumed = run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert resumed["resumed_from_step"] == 10
    _same_result(ref, resumed)


def test_sigint_without_checkpointing_says_nothing_was_saved(make_run, tmp_path, monkeypatch):
    _signal_at_step(monkeypatch, 5, signal.SIGINT)
    with pytest.raises(signals.RunInterrupted) as info:
        run(make_run(), results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert info.value.exit_code == 130 and "nothing saved" in str(info.value)
    assert not list(iter_results(tmp_path))


def test_force_moves_a_half_run_checkpoint_aside_and_starts_fresh(
    make_run, tmp_path, monkeypatch, capsys
):
    cfg = _with_ckpt(make_run(), every=4)
    _signal_at_step(monkeypatch, 9)
    with pytest.raises(signals.RunInterrupted):
        run(cfg, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    monkeypatch.undo()
    assert checkpoint_path(cfg, tmp_path / "o").exists()
    fresh = run(cfg, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True, force=True)
    assert "moved the old checkpoint aside" in capsys.readouterr().out
    assert fresh["resumed_from_step"] is None and fresh["extra"]["train_loss_curve"][0][0] == 0


def test_a_corrupt_checkpoint_is_a_clear_error_naming_the_file(make_run, tmp_path):
    cfg = _with_ckpt(make_run(), every=4)
    ckpt = checkpoint_path(cfg, tmp_path / "o")
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="last.ckpt cannot be read.*--force"):
        run(cfg, results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert not list(iter_results(tmp_path))


# --------------------------------------------------------------------------------------------
# kill -9 at random points, then resume: the same result as an uninterrupted run


def _child(command: tuple[list[str], dict[str, str]]) -> subprocess.Popen:
    """The train command (argv, environment) started in the background."""
    argv, env = command
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.02)


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_result(
    make_run, train_command, tmp_path
):
    steps = 240
    cfg = _with_ckpt(make_run(steps=steps), every=7)
    ref = run(
        make_run(steps=steps), results_dir=tmp_path / "ref", out_dir=tmp_path / "o_ref", quiet=True
    )
    rng = random.Random(20261206)
    ckpt = checkpoint_path(cfg, tmp_path / "o")
    killed_at = []
    for _ in range(3):  # three kills, each after a random delay past the first checkpoint
        proc = _child(train_command(cfg, tmp_path))
        _wait_for(ckpt, proc)
        time.sleep(rng.uniform(0.0, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"
        killed_at.append(torch.load(ckpt, weights_only=True, map_location="cpu")["global_step"])
        assert not list(iter_results(tmp_path / "r"))
    resumed = run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert resumed["resumed_from_step"] == killed_at[-1] and 0 < killed_at[-1] < steps
    _same_result(ref, resumed)


def test_sigterm_to_the_cli_exits_143_with_one_line_and_the_rerun_resumes(
    make_run, train_command, tmp_path
):
    cfg = _with_ckpt(make_run(steps=400), every=5)
    proc = _child(train_command(cfg, tmp_path))
    _wait_for(checkpoint_path(cfg, tmp_path / "o"), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert proc.returncode == 143, err.decode()[-2000:]
    assert len(lines) == 1 and lines[0].startswith("interrupted: SIGTERM: saved step")
    assert "rerun the same command to resume" in lines[0]
    assert not list(iter_results(tmp_path / "r"))
    again = run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert again["status"] == "ok" and 0 < again["resumed_from_step"] < 400


def test_sigterm_stops_reproduce_with_143_after_saving_and_records_nothing(
    cli_dirs, make_run, tmp_path, monkeypatch, capsys
):
    import wm_bench_tasks.mqar as task
    from wm_bench.cli import main

    grid = [dataclasses.replace(make_run(lr=lr), experiment="mqar") for lr in (1e-3, 3e-3)]
    monkeypatch.setattr(task, "runs", lambda scale: grid)
    monkeypatch.setattr(task, "cell_key", lambda cfg: (cfg.variant,))
    _signal_at_step(monkeypatch, 6)
    argv = ["reproduce", "mqar", "--scale", "smoke", "--no-report", "--quiet", *cli_dirs]
    assert main(argv) == 143
    assert "interrupted: SIGTERM: saved step 7/40" in capsys.readouterr().err
    assert not list(iter_results(tmp_path / "r"))  # the first run stopped, the second never ran


# --------------------------------------------------------------------------------------------
# Divergence and strict JSON


def test_a_diverging_run_stops_with_status_diverged_and_strict_json(make_run, tmp_path):
    rec = run(make_run(lr=1e6), results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert rec["status"] == "diverged", rec.get("error")
    d = rec["extra"]["diverged"]
    assert d["quantity"] in ("loss", "grad_norm") and 0 <= d["step"] < 40
    assert d["last_finite_loss"] is None or d["last_finite_loss"] > 0
    assert rec["metrics"] == {}
    (path,) = (tmp_path / "faults").rglob("*.json")

    def reject(token: str) -> None:
        raise AssertionError(f"non-strict JSON token {token}")

    on_disk = json.loads(path.read_text(), parse_constant=reject)
    assert on_disk["status"] == "diverged"
    again = run(make_run(lr=1e6), results_dir=tmp_path, out_dir=tmp_path / "o", quiet=True)
    assert again.get("skipped") and again["status"] == "diverged"  # a final outcome


def test_the_train_command_exits_non_zero_on_divergence(cli_dirs, make_run, tmp_path, capsys):
    from wm_bench.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(to_dict(make_run(lr=1e6)), sort_keys=False))
    rc = main(["train", "--config", str(path), "--quiet", *cli_dirs])
    assert rc == 1 and "diverged: faults/smoke/" in capsys.readouterr().out


def test_reproduce_records_a_diverged_run_goes_on_and_exits_non_zero(
    cli_dirs, make_run, tmp_path, monkeypatch
):
    import wm_bench_tasks.mqar as task
    from wm_bench.cli import main

    grid = [
        dataclasses.replace(make_run(lr=1e6), experiment="mqar"),
        dataclasses.replace(make_run(lr=3e-3), experiment="mqar"),
    ]
    monkeypatch.setattr(task, "runs", lambda scale: grid)
    monkeypatch.setattr(task, "cell_key", lambda cfg: (cfg.variant,))
    rc = main(["reproduce", "mqar", "--scale", "smoke", "--no-report", "--quiet", *cli_dirs])
    statuses = sorted(r["status"] for r in iter_results(tmp_path / "r"))
    assert rc == 1 and statuses == ["diverged", "ok"]


def test_non_finite_numbers_are_written_as_null_and_listed(tmp_path):
    path = write_json_atomic(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "nonfinite": ["a", "b[1]"]}


# --------------------------------------------------------------------------------------------
# The resumable training stream


def test_shuffled_batches_continue_from_any_step_as_an_unbroken_stream():
    from wm_bench.data.resumable import ShuffledBatches

    x = torch.arange(50 * 3).reshape(50, 3)
    full = ShuffledBatches(x, x, batch_size=8, seed=4, drop_last=True)
    head = [b[0] for _, b in zip(range(20), full)]  # 20 batches: three epochs of 6, and more
    for k in (0, 5, 6, 13):
        tail = ShuffledBatches(x, x, batch_size=8, seed=4, drop_last=True, start=k)
        got = [b[0] for _, b in zip(range(20 - k), tail)]
        assert all(torch.equal(a, b) for a, b in zip(head[k:], got))
    rows = torch.cat(head[:6])[:, 0]  # one epoch: 6 disjoint batches of distinct rows
    assert len(set(rows.tolist())) == 48


def test_a_batch_larger_than_the_training_set_is_refused():
    from wm_bench.data.resumable import ShuffledBatches

    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="batch_size=8"):
        ShuffledBatches(x, x, batch_size=8, seed=0, drop_last=True)
