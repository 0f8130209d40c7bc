"""run(cfg): seed, train with Lightning, evaluate, write one truthful result JSON.

Statuses: "ok" (finished, every metric finite), "diverged" (a non-finite training loss or
gradient norm stopped it; the step and the last finite loss are recorded), "failed" (an error).
A SIGTERM / SIGINT writes no result: it saves a checkpoint at the step boundary (when
checkpointing is on) and raises `RunInterrupted`; running the same config again resumes.

On several ranks (`TrainConfig.strategy`, `devices`, `num_nodes`; docs/scale_out.md) every rank
runs all of `run()`; only global rank 0 writes the result, checkpoints and the saved model, and
the others return the same record unwritten (with "rank" added in memory).
"""

from __future__ import annotations

import logging
import math
import signal
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from wm_bench import results
from wm_bench.config import RunConfig, config_hash, run_identity
from wm_bench.data import build_datamodule
from wm_bench.train import distributed, signals
from wm_bench.train.checkpoints import (
    StepCheckpoint,
    checkpoint_every,
    checkpoint_path,
    prepare_checkpoint,
    remove_checkpoint,
)
from wm_bench.train.evaluation import (
    datamodule_metrics,
    downstream_metrics,
    higher_is_better,
    length_perplexities,
    mask_diagnostics,
)
from wm_bench.train.hardware import (
    Throughput,
    device_info,
    peak_memory_bytes,
    resolve_device,
    utilisation,
)
from wm_bench.train.module import Diverged, LMModule
from wm_bench.train.progress import StepProgress


def recorded_model_dir(saved: str | Path, out_dir: str | Path) -> str:
    """A saved model's folder as results record it, never as this machine's absolute path:
    relative to the repository root when inside it (e.g. "outputs/models/arch/cpu/<run>"), else
    relative to the out-dir ("<out-dir>/models/arch/cpu/<run>"), else as given."""
    from wm_bench.results import portable_path

    label = portable_path(saved)
    if not Path(label).is_absolute():
        return label
    try:
        rel = Path(saved).resolve().relative_to(Path(out_dir).resolve())
    except ValueError:
        return label
    return f"<out-dir>/{rel.as_posix()}"


def run(
    cfg: RunConfig,
    *,
    results_dir: str | Path | None = None,
    out_dir: str | Path = "outputs",
    force: bool = False,
    quiet: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> dict[str, Any]:
    """Train and evaluate one RunConfig; write and return its result record.

    A config whose hash already has a finished ("ok" or "diverged") result is skipped (its record
    is returned, with `"skipped": True` added in memory only) unless `force`. With
    `cfg.train.checkpoint`, training saves `last.ckpt` every `checkpoint_every` steps and resumes
    from it; `force` moves an old checkpoint aside and starts fresh. A divergence gives a
    "diverged" record and any other exception inside the run a "failed" one; both are returned,
    not raised. Bad input found before training (`wm_bench.preflight`, and a strategy or device
    count the machine cannot start) raises ValueError and writes nothing; a signal raises
    `signals.RunInterrupted` and writes nothing.

    `callbacks` are appended to the Trainer's own (e.g. a sweep's pruning callback); they run
    after the suite's and are not part of the config.
    """
    h = config_hash(cfg)
    if not force:
        done = results.find_done(h, cfg.experiment, cfg.scale, cfg.variant, results_dir)
        if done is not None:
            return {**done, "skipped": True}
    _preflight(cfg, results_dir)
    accelerator, precision = resolve_device(cfg)
    distributed.check_devices(cfg.train, accelerator)
    ckpt = checkpoint_path(cfg, out_dir)
    # Decided before rank 0 moves an old checkpoint aside, so that every rank decides the same.
    resume = ckpt if cfg.train.checkpoint and not force and ckpt.exists() else None
    if distributed.is_global_zero():
        prepare_checkpoint(cfg, ckpt, force, quiet)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    started = results.now_iso()
    common = dict(**run_identity(cfg, h), device=device_info(accelerator, cfg), started_at=started)
    state = _RunState()
    try:
        with _quiet_lightning():
            out = _train_and_eval(
                cfg,
                h,
                accelerator,
                precision,
                Path(out_dir),
                ckpt,
                quiet,
                state,
                resume=resume,
                extra_callbacks=callbacks,
            )
    except signals.RunInterrupted:
        raise  # nothing recorded: the run is neither ok nor failed, and resumes when rerun
    except Diverged as e:
        rec = results.make_result(
            status="diverged",
            error=str(e),
            **common,
            resumed_from_step=state.resumed_from,
            extra={"diverged": e.record(), "train_loss_curve": state.curve()},
            timing={"steps": e.step, "precision": precision},
        )
        return _finish(rec, results_dir, ckpt, drop_checkpoint=True)
    except Exception as e:  # recorded, not raised: a sweep goes on past one bad run
        tb = traceback.format_exc(limit=6)
        rec = results.make_result(
            status="failed",
            error=f"{type(e).__name__}: {e}\n{tb}",
            **common,
            resumed_from_step=state.resumed_from,
        )
        # Ranks may be out of step here (one failed inside a collective): no barrier; rank 0
        # ends the ranks it launched, which would otherwise wait in a collective for it.
        return _finish(rec, results_dir, ckpt, drop_checkpoint=False, sync=False, state=state)
    rec = results.make_result(status="ok", **common, **out, resumed_from_step=state.resumed_from)
    # The result is the product; a stale checkpoint would mislead a rerun.
    return _finish(rec, results_dir, ckpt, drop_checkpoint=True)


def _finish(
    rec: dict[str, Any],
    results_dir: str | Path | None,
    ckpt: Path,
    *,
    drop_checkpoint: bool,
    sync: bool = True,
    state: _RunState | None = None,
) -> dict[str, Any]:
    """Global rank 0 writes `rec` (and drops the checkpoint); the other ranks write nothing and
    return it with "rank". With `sync`, every rank then waits until rank 0 has written, so no
    rank returns (and, under Lightning's launcher, exits) before the result exists."""
    rank = distributed.global_rank()
    if rank == 0:
        results.write_result(rec, results_dir)
        if drop_checkpoint:
            remove_checkpoint(ckpt)
    else:
        rec = {**rec, "rank": rank}
    if sync:
        distributed.barrier()
    elif rank == 0 and state is not None:
        _end_launched_ranks(state.trainer)
    return rec


def _end_launched_ranks(trainer: Any) -> None:
    """Kill the processes Lightning's launcher started for this run (rank 0 failed: they would
    wait in a collective until its timeout). torchrun and SLURM end theirs when a rank exits
    with an error."""
    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    if getattr(launcher, "procs", None):
        launcher.kill(signal.SIGKILL)


def _preflight(cfg: RunConfig, results_dir: str | Path | None) -> None:
    """Reject bad input before anything runs or is written (`wm_bench.preflight`)."""
    try:
        from wm_bench.preflight import check_run
    except ImportError:  # pragma: no cover - the module arrives with the input checks
        return
    check_run(cfg, results_dir)


class _RunState:
    """What a diverged or failed record needs from a run that did not finish."""

    def __init__(self) -> None:
        self.module: LMModule | None = None
        self.trainer: L.Trainer | None = None

    @property
    def resumed_from(self) -> int | None:
        return self.module.resumed_from_step if self.module is not None else None

    def curve(self) -> list[tuple[int, float]]:
        return list(self.module.curve) if self.module is not None else []


def _train_and_eval(
    cfg: RunConfig,
    h: str,
    accelerator: str,
    precision: str,
    out_dir: Path,
    ckpt: Path,
    quiet: bool,
    state: _RunState,
    *,
    resume: Path | None = None,
    extra_callbacks: Sequence[L.Callback] = (),
) -> dict[str, Any]:
    L.seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.seed)
    if getattr(dm, "vocab_size", 0) > cfg.model.vocab_size:
        raise ValueError(
            f"data vocab_size={dm.vocab_size} exceeds model vocab_size={cfg.model.vocab_size}"
        )
    module = LMModule(cfg)
    state.module = module
    # DMA mask diagnostics (MQAR only) of the seed's initial weights: a resumed run rebuilds the
    # same initial model here before fit loads its checkpoint, so "init" is true on resume too.
    mask_init = mask_diagnostics(cfg, dm, module)
    rid = results.run_id(cfg.variant, h)
    tput = Throughput()
    every = checkpoint_every(cfg) if cfg.train.checkpoint else None
    callbacks: list[L.Callback] = [tput, StepCheckpoint(ckpt, every, cfg.train.max_steps)]
    if cfg.train.early_stop_metric and cfg.train.early_stop_value is not None:
        mode = "max" if higher_is_better(cfg.train.early_stop_metric, default=True) else "min"
        callbacks.append(
            L.pytorch.callbacks.EarlyStopping(
                monitor=cfg.train.early_stop_metric,
                mode=mode,
                stopping_threshold=cfg.train.early_stop_value,
                patience=10**9,
                check_on_train_epoch_end=False,
            )
        )
    show = cfg.train.progress and not quiet and distributed.is_global_zero()
    bar = StepProgress(
        f"{cfg.experiment}/{cfg.scale} {cfg.variant} s{cfg.seed}",
        cfg.train.max_steps,
        enabled=None if show else False,
    )
    callbacks.append(bar)
    callbacks.extend(extra_callbacks)
    try:
        return _fit_and_eval(
            cfg,
            dm,
            module,
            rid,
            h,
            accelerator,
            precision,
            out_dir,
            resume,
            callbacks,
            tput,
            mask_init,
            bar,
            state,
        )
    finally:
        bar.close()


def _logger(cfg: RunConfig, log_dir: Path, rid: str) -> Any:
    """The Lightning logger that `cfg.train.logger` names (TensorBoard needs its extra)."""
    if cfg.train.logger == "tensorboard":
        try:
            return L.pytorch.loggers.TensorBoardLogger(str(log_dir), name=rid)
        except ModuleNotFoundError as e:
            raise ValueError(
                f"logger 'tensorboard' needs the tensorboard package ({e}); install it with "
                "`pip install 'wm_bench[tensorboard]'` or use --logger csv"
            ) from None
    return L.pytorch.loggers.CSVLogger(str(log_dir), name=rid)


def _fit_and_eval(
    cfg: RunConfig,
    dm: Any,
    module: LMModule,
    rid: str,
    h: str,
    accelerator: str,
    precision: str,
    out_dir: Path,
    resume: Path | None,
    callbacks: list[L.Callback],
    tput: Throughput,
    mask_init: Any,
    bar: StepProgress,
    state: _RunState,
) -> dict[str, Any]:
    log_dir = out_dir / "logs" / cfg.experiment / cfg.scale
    eval_every = cfg.train.eval_every
    strategy = distributed.make_strategy(cfg.train)
    fsdp = cfg.train.strategy == "fsdp"  # clips in LMModule.configure_gradient_clipping
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=cfg.train.devices,
        num_nodes=cfg.train.num_nodes,
        strategy=strategy,
        use_distributed_sampler=False,  # the DataModules give each rank its own block
        precision=precision,
        max_steps=cfg.train.max_steps,
        max_epochs=-1,
        gradient_clip_val=None if fsdp else cfg.optim.grad_clip or None,
        val_check_interval=eval_every if eval_every > 0 else None,
        check_val_every_n_epoch=None if eval_every > 0 else 10**9,
        num_sanity_val_steps=0,
        logger=_logger(cfg, log_dir, rid),
        callbacks=callbacks,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches or 1,
        enable_checkpointing=False,  # StepCheckpoint saves atomically on its own schedule
        enable_progress_bar=False,  # StepProgress: optimiser steps of max_steps, loss, ETA
        enable_model_summary=False,
        log_every_n_steps=cfg.train.log_every,
        deterministic=False,
    )
    state.trainer = trainer
    t0 = time.perf_counter()
    with signals.deferred():
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    bar.phase("validation")
    trainer.validate(module, datamodule=dm, verbose=False)
    metrics = dict(module.final_metrics)  # over every rank's block of the set
    if not math.isfinite(metrics.get("valid/loss", 0.0)):
        raise Diverged(
            int(trainer.global_step),
            "validation loss",
            metrics["valid/loss"],
            module.last_finite_loss,
        )
    # Evaluations that call the model directly run on every rank, on the whole model.
    with distributed.full_params(trainer):
        return _evaluate_and_record(
            cfg,
            dm,
            module,
            rid,
            out_dir,
            trainer,
            tput,
            mask_init,
            bar,
            metrics,
            t0,
            accelerator,
            precision,
        )


def _evaluate_and_record(
    cfg: RunConfig,
    dm: Any,
    module: LMModule,
    rid: str,
    out_dir: Path,
    trainer: L.Trainer,
    tput: Throughput,
    mask_init: Any,
    bar: StepProgress,
    metrics: dict[str, float],
    t0: float,
    accelerator: str,
    precision: str,
) -> dict[str, Any]:
    """Length perplexities, the DataModule's and downstream metrics, and the record's fields."""
    metrics.update(length_perplexities(cfg, dm, module))
    metrics.update(datamodule_metrics(dm, module))
    wall = time.perf_counter() - t0
    if cfg.downstream is not None:
        bar.phase("downstream tasks")
    down_metrics, down_rec = downstream_metrics(cfg, dm, module, bar.enabled)
    metrics.update(down_metrics)
    nonfinite = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if nonfinite:
        raise ValueError(f"non-finite metrics after training: {nonfinite}")
    extra: dict[str, Any] = {"train_loss_curve": module.curve}
    if hasattr(dm, "provenance"):  # LM data: corpus, tokenizer and token-shard checksums
        extra["data"] = dm.provenance()
    if down_rec:
        extra["downstream"] = down_rec
    if mask_init is not None:
        extra["mask_diagnostics"] = {"init": mask_init, "final": mask_diagnostics(cfg, dm, module)}
    if cfg.train.save_model:
        from wm_bench.eval.checkpoint import save_pretrained

        path = out_dir / "models" / cfg.experiment / cfg.scale / rid
        saved = (
            save_pretrained(path, module.model, cfg, dm.prepared.tokenizer)
            if trainer.is_global_zero
            else path
        )
        extra["model_dir"] = recorded_model_dir(saved, out_dir)
    return {
        "extra": extra,
        "metrics": metrics,
        "higher_is_better": {k: higher_is_better(k) for k in metrics},
        "impls": module.model.resolved_impls(),
        "params": module.model.param_counts(),
        "timing": {
            "wall_s": round(wall, 3),
            "steps": int(trainer.global_step),
            # All ranks together (each trains on its own rows at about the same pace); the
            # TFLOP/s and MFU below are per device.
            "tokens_per_s": (
                tput.tokens_per_s * trainer.world_size if tput.tokens_per_s else tput.tokens_per_s
            ),
            "peak_memory_bytes": peak_memory_bytes(accelerator),
            "precision": precision,
            **utilisation(module, tput, accelerator),
        },
    }


class _quiet_lightning:
    """Silence Lightning's informational chatter (GPU/TPU availability, worker hints)."""

    def __enter__(self) -> None:
        self._levels = {}
        import lightning.pytorch  # noqa: F401  (registers its loggers before we quiet them)

        names = [
            n
            for n in logging.root.manager.loggerDict
            if n.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric")
        ]
        for n in names:
            lg = logging.getLogger(n)
            self._levels[n] = lg.level
            lg.setLevel(logging.WARNING)
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")

    def __exit__(self, *exc: object) -> None:
        self._w.__exit__(*exc)
        for n, lvl in self._levels.items():
            logging.getLogger(n).setLevel(lvl)
