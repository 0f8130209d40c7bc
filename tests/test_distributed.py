"""Scale-out: a run on W ranks computes what one process computes with the same global batch,
each rank reads its own rows, only rank 0 writes (docs/scale_out.md)."""

from __future__ import annotations

import dataclasses
import functools
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from wm_bench.config import RunConfig, TrainConfig, config_hash
from wm_bench.data import build_datamodule
from wm_bench.data.mqar import MqarDataConfig
from wm_bench.data.passkey import PasskeyDataConfig
from wm_bench.data.resumable import ShuffledBatches, rank_block
from wm_bench.data.synthetic import SyntheticDataConfig
from wm_bench.presets import preset
from wm_bench.results import iter_results
from wm_bench.train import distributed, run

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture
def make_run(tiny_run):
    """The runs here: 12 steps in fp32 on the CPU; 37 evaluation rows, so that two ranks' blocks
    differ in size (18 and 19). `make_run(data, steps=, lr=, **train)`."""
    return functools.partial(
        tiny_run,
        experiment="dist",
        steps=12,
        n_eval=37,
        warmup_steps=3,
        precision="32-true",
        accelerator="cpu",
    )


@pytest.fixture
def cli(train_command, tmp_path):
    """`python -m wm_bench.cli train` on a RunConfig in a subprocess, results in tmp/r_<name>
    (Lightning's launcher starts the other ranks by running the same command again)."""

    def run_cli(cfg: RunConfig, *flags: str, name: str = "ddp", timeout: float = 120):
        folder = tmp_path / name
        folder.mkdir()
        argv, env = train_command(
            cfg, folder, *flags, results=tmp_path / f"r_{name}", out=tmp_path / f"o_{name}"
        )
        return subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )

    return run_cli


def _records(results_dir: Path) -> list[dict]:
    return list(iter_results(results_dir))


# --------------------------------------------------------------------------------------------
# Two gloo ranks against one process


@pytest.mark.parametrize("data, accumulate", [("synthetic", None), ("mqar", 2)])
def test_two_gloo_ranks_train_what_one_process_trains_with_the_same_global_batch(
    make_run, cli, tmp_path, data, accumulate
):
    cfg = make_run(data, accumulate_grad_batches=accumulate)
    one = run(cfg, results_dir=tmp_path / "r_one", out_dir=tmp_path / "o_one", quiet=True)
    assert one["status"] == "ok", one.get("error")

    p = cli(cfg, "--devices", "2", "--strategy", "ddp")
    assert p.returncode == 0, p.stderr[-3000:]
    (two,) = _records(tmp_path / "r_ddp")  # exactly one result file, written by rank 0
    assert len(list((tmp_path / "r_ddp").rglob("*.json"))) == 1
    assert two["status"] == "ok" and two["config_hash"] == one["config_hash"] == config_hash(cfg)
    assert two["provenance"]["device"]["world_size"] == 2
    assert two["provenance"]["device"]["strategy"] == "ddp"
    assert two["metrics"].keys() == one["metrics"].keys()
    for k, v in one["metrics"].items():
        assert two["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-5), k
    curve1, curve2 = one["extra"]["train_loss_curve"], two["extra"]["train_loss_curve"]
    assert [s for s, _ in curve2] == [s for s, _ in curve1]  # a point per batch, as one process
    assert len(curve1) == cfg.train.max_steps * (accumulate or 1)
    assert [v for _, v in curve2] == pytest.approx([v for _, v in curve1], rel=1e-5, abs=1e-5)
    assert two["timing"]["steps"] == one["timing"]["steps"] == cfg.train.max_steps


@pytest.mark.slow
def test_a_divergence_on_two_ranks_stops_both_and_rank_zero_writes_one_record(
    make_run, cli, tmp_path
):
    p = cli(make_run(steps=40, lr=1e6), "--devices", "2", "--strategy", "ddp")
    # Both processes ended (no rank left waiting in a collective: the timeout would fire);
    # rank 0 exits 1, or is ended by Lightning's launcher once rank 1 has exited 1 after it.
    assert p.returncode in (1, -signal.SIGKILL), p.stderr[-3000:]
    (rec,) = _records(tmp_path / "r_ddp")
    assert rec["status"] == "diverged" and 0 <= rec["extra"]["diverged"]["step"] < 40


@pytest.mark.slow
def test_sigterm_to_rank_zero_stops_both_ranks_at_one_step_and_the_rerun_resumes(
    make_run, train_command, tmp_path
):
    cfg = make_run(steps=100, checkpoint=True, checkpoint_every=5)
    cmd, env = train_command(cfg, tmp_path, "--devices", "2", "--strategy", "ddp")
    ckpt = tmp_path / "o" / "checkpoints" / "dist" / "smoke"
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 90
    while not list(ckpt.rglob("last.ckpt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # rank 0 only; rank 1 learns it at the step boundary
    _, err = proc.communicate(timeout=90)
    assert proc.returncode in (128 + signal.SIGTERM, -signal.SIGKILL), err[-3000:]
    assert not _records(tmp_path / "r")  # interrupted: nothing recorded
    (saved,) = ckpt.rglob("last.ckpt")
    step = torch.load(saved, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step < cfg.train.max_steps

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    (rec,) = _records(tmp_path / "r")
    assert rec["status"] == "ok" and rec["resumed_from_step"] >= step
    assert rec["timing"]["steps"] == cfg.train.max_steps
    assert not list(ckpt.rglob("last.ckpt"))  # dropped once the result exists


# --------------------------------------------------------------------------------------------
# Each rank its own rows


def _attach(dm, rank: int, world: int):
    dm.trainer = SimpleNamespace(
        global_rank=rank, world_size=world, global_step=0, accumulate_grad_batches=1
    )
    return dm


def _fake_lm(dm):
    """An LMDataModule over fixed token arrays (no corpus, tokenizer or shards)."""
    tokens = {s: np.arange(n, dtype=np.int64) % 97 for s, n in (("train", 5000), ("valid", 700))}
    tokens["test"] = tokens["valid"]
    dm._split = lambda split, cap: tokens[split]
    return dm


def _data_cfg(name: str):
    from wm_bench.data.lm import LMDataConfig

    return {
        "synthetic": SyntheticDataConfig(vocab_size=64, seq_len=16, n_train=40, n_valid=37),
        "mqar": MqarDataConfig(seq_len=32, num_kv_pairs=4, vocab_size=64, n_train=40, n_test=37),
        "passkey": PasskeyDataConfig(vocab_size=64, seq_len=32, key_len=2, n_train=40, n_valid=37),
        "lm": LMDataConfig(seq_len=16),
    }[name]


def _dm(name: str, rank: int, world: int, batch_size: int = 12, start: int = 0):
    dm = build_datamodule(_data_cfg(name), batch_size=batch_size, seed=3)
    if name == "lm":
        _fake_lm(dm)
    dm.load_state_dict({"next_train_batch": start})
    return _attach(dm, rank, world) if world > 1 else dm


def _take(loader, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    it = iter(loader)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("name", ["synthetic", "mqar", "passkey", "lm"])
@pytest.mark.parametrize("world, start", [(2, 0), (3, 7), (4, 0)])
def test_each_rank_trains_on_its_own_block_of_every_global_batch(name, world, start):
    whole = _take(_dm(name, 0, 1, start=start).train_dataloader(), 6)  # 6 batches: > 1 epoch
    parts = [_take(_dm(name, r, world, start=start).train_dataloader(), 6) for r in range(world)]
    for k, (x, y) in enumerate(whole):
        assert all(p[k][0].shape[0] == 12 // world for p in parts)
        assert torch.equal(torch.cat([p[k][0] for p in parts]), x)  # disjoint, in order, all
        assert torch.equal(torch.cat([p[k][1] for p in parts]), y)


@pytest.mark.parametrize("name", ["synthetic", "mqar", "passkey", "lm"])
@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_evaluates_its_own_block_and_together_they_cover_the_set_once(name, world):
    whole = list(_dm(name, 0, 1).val_dataloader())
    x = torch.cat([b[0] for b in whole])
    blocks = [torch.cat([b[0] for b in _dm(name, r, world).val_dataloader()]) for r in range(world)]
    assert torch.equal(torch.cat(blocks), x)  # no row repeated, none dropped
    assert max(len(b) for b in blocks) - min(len(b) for b in blocks) <= 1


def test_rank_blocks_partition_the_rows():
    for n in (0, 1, 5, 12, 37):
        for w in (1, 2, 3, 4):
            blocks = [rank_block(n, r, w) for r in range(w)]
            assert [i for b in blocks for i in b] == list(range(n))
    with pytest.raises(ValueError, match="rank=2 must be in"):
        rank_block(10, 2, 2)


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(cli_dirs, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"batch_size=10 is the global batch.*2 × 2 = 4 ranks"):
        TrainConfig(batch_size=10, devices=2, num_nodes=2)
    x = torch.zeros(20, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="does not split evenly over 3 ranks"):
        ShuffledBatches(x, x, batch_size=8, seed=0, drop_last=True, rank=0, world=3)
    from wm_bench.cli import main

    rc = main(["train", "--batch-size", "6", "--devices", "4", *cli_dirs])
    assert rc == 2 and "use a multiple of 4" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------------------------
# Config and command line


def test_strategy_devices_and_nodes_are_runtime_flags_that_keep_the_hash():
    from wm_bench.cli import _runtime, _train_config, build_parser

    def cfg(*argv: str) -> RunConfig:
        args = build_parser().parse_args(["train", "--batch-size", "8", *argv])
        return _runtime(_train_config(args), args)

    base = cfg()
    scaled = cfg("--devices", "2", "--strategy", "ddp", "--num-nodes", "2")
    t = scaled.train
    assert (t.devices, t.strategy, t.num_nodes, t.world_size) == (2, "ddp", 2, 4)
    assert config_hash(scaled) == config_hash(base)
    assert cfg("--strategy", "fsdp").train.strategy == "fsdp"
    with pytest.raises(SystemExit):
        cfg("--strategy", "deepspeed")
    with pytest.raises(ValueError, match="TrainConfig.strategy='horovod'; valid"):
        TrainConfig(strategy="horovod")
    with pytest.raises(ValueError, match="compile=True with strategy='fsdp'"):
        TrainConfig(strategy="fsdp", compile=True)


def test_fsdp_shards_blocks_with_full_state_dicts_and_is_refused_on_cpu_before_writing(
    make_run, tmp_path
):
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    from wm_bench.model import Block

    fsdp = distributed.make_strategy(TrainConfig(strategy="fsdp"))
    assert isinstance(fsdp, FSDPStrategy) and fsdp._state_dict_type == "full"
    assert fsdp.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert isinstance(distributed.make_strategy(TrainConfig(strategy="ddp")), DDPStrategy)
    assert distributed.make_strategy(TrainConfig()) == "auto"
    cpu = make_run()
    cfg = dataclasses.replace(cpu, train=dataclasses.replace(cpu.train, strategy="fsdp"))
    with pytest.raises(ValueError, match="'fsdp' on accelerator 'cpu'.*--strategy ddp"):
        run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    assert not _records(tmp_path / "r") and not (tmp_path / "o").exists()  # nothing written


def test_under_fsdp_clipping_uses_the_root_modules_norm_and_decay_follows_plain_names(make_run):
    from lightning.pytorch.strategies import FSDPStrategy

    from wm_bench.train.module import LMModule

    module = LMModule(make_run())
    clipped = []
    strategy = FSDPStrategy()
    strategy._model = SimpleNamespace(clip_grad_norm_=clipped.append)
    module._trainer = SimpleNamespace(strategy=strategy, world_size=1)
    module.configure_gradient_clipping(None, gradient_clip_val=None)
    assert clipped == [module.cfg.optim.grad_clip]
    wrapped = "blocks.0._fsdp_wrapped_module._checkpoint_wrapped_module.mixer.q_proj.weight"
    assert distributed.clean_name(wrapped) == "blocks.0.mixer.q_proj.weight"
    module._trainer = None
    decay, no_decay = module.configure_optimizers()["optimizer"].param_groups
    assert {p.dim() for p in decay["params"]} == {2}
    assert {p.dim() for p in no_decay["params"]} == {1}


def test_several_ranks_from_a_program_other_than_the_cli_are_refused_before_writing(
    cli_dirs, make_run, tmp_path, capsys
):
    """Lightning would start rank 1 by rerunning sys.argv: here, pytest itself."""
    from wm_bench.cli import main

    cfg = make_run(steps=2, devices=2, strategy="ddp")
    with pytest.raises(
        ValueError,
        match=r"2 ranks: Lightning would start the other ranks by "
        r"rerunning this program \(.*torchrun or srun",
    ):
        run(cfg, results_dir=tmp_path / "r", out_dir=tmp_path / "o", quiet=True)
    rc = main(["train", "--devices", "2", *cli_dirs])
    assert rc == 2 and "use `wm-bench train/reproduce --devices N`" in capsys.readouterr().err
    assert not _records(tmp_path / "r") and not list((tmp_path / "o").rglob("*.*"))


def test_reproduce_keeps_one_rank_per_run(cli_dirs, tmp_path, capsys):
    """Its grid driver (Optuna studies, reports) is not rank-aware: every rank would run it."""
    from wm_bench.cli import main

    rc = main(["reproduce", "mqar", "--scale", "smoke", "--dry-run", "--devices", "2", *cli_dirs])
    assert rc == 2 and "only `wm-bench train` runs one run on several ranks" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("experiment, micro", [("rope", 8), ("ffn", 2), ("arch", 2)])
def test_the_paper_scale_keeps_the_papers_global_batch_in_micro_batches_one_gpu_holds(
    experiment, micro
):
    import importlib

    task = importlib.import_module(f"wm_bench_tasks.{experiment}")
    s = task.spec("paper")
    assert s.batch_size == 256 and s.batch_size // s.accumulate_grad_batches == micro
    assert s.batch_size % s.accumulate_grad_batches == 0
    from wm_bench_tasks._lm import lm_run

    cfg = lm_run(experiment, "x", preset("llama", "tiny"), s, scale="paper", seed=0)
    assert cfg.train.batch_size * (cfg.train.accumulate_grad_batches or 1) == 256  # per step


# --------------------------------------------------------------------------------------------
# Writing and hooks


def test_a_rank_other_than_zero_writes_no_result(make_run, tmp_path, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from wm_bench.results import write_result

    rec = run(make_run(steps=2), results_dir=tmp_path / "r0", out_dir=tmp_path / "o", quiet=True)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    path = write_result(rec, tmp_path / "r1")
    assert not path.exists() and not (tmp_path / "r1").exists()
    assert path.name == f"{rec['run_id']}.json"


def test_run_appends_extra_callbacks_to_the_trainer(make_run, tmp_path):
    seen = []

    class Count(L.Callback):
        def on_train_batch_end(self, *args) -> None:
            seen.append(1)

    rec = run(
        make_run(steps=3),
        results_dir=tmp_path,
        out_dir=tmp_path / "o",
        quiet=True,
        callbacks=[Count()],
    )
    assert rec["status"] == "ok" and len(seen) == 3
