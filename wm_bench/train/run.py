"""run(cfg): seed, train with Lightning, evaluate, write one result JSON (even on failure)."""

from __future__ import annotations

import logging
import resource
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from wm_bench import results
from wm_bench.config import RunConfig, config_hash, to_dict
from wm_bench.data import build_datamodule
from wm_bench.train.module import LMModule

HIGHER_IS_BETTER = {
    "loss": False, "ppl": False, "accuracy": True,
    "acc": True, "acc_norm": True, "exact_match": True,  # downstream (lm-eval) metrics
}  # fmt: skip


def higher_is_better(metric: str) -> bool:
    """Direction of a metric name such as "valid/accuracy" or "test/ppl@512"."""
    return HIGHER_IS_BETTER[metric.split("/")[-1].split("@")[0]]


def _length_perplexities(cfg: RunConfig, dm: Any, module: LMModule) -> dict[str, float]:
    """Test perplexity at the data config's `eval_lengths` (sliding window), when it has them.

    Metrics "test/ppl@L" and "test/loss@L" per length L, all over the same test tokens (the first
    `eval_max_tokens` of the test split), so lengths longer than training measure extrapolation.
    """
    lengths = tuple(getattr(cfg.data, "eval_lengths", ()) or ())
    if not lengths or not hasattr(dm, "eval_tokens"):
        return {}
    from wm_bench.eval.perplexity import perplexity_at_lengths

    tokens = dm.eval_tokens("test")
    res = perplexity_at_lengths(
        module.model, tokens, lengths, max_tokens=getattr(cfg.data, "eval_max_tokens", None),
        batch_size=max(1, cfg.train.batch_size // 2), device=module.device,
    )  # fmt: skip
    out = {}
    for length, r in res.items():
        out[f"test/ppl@{length}"] = r["ppl"]
        out[f"test/loss@{length}"] = r["nll"]
    return out


def _downstream(
    cfg: RunConfig, dm: Any, module: LMModule, progress: bool
) -> tuple[dict[str, float], dict]:
    """Downstream tasks through lm-eval when the config asks: (metrics, record for "extra")."""
    if cfg.downstream is None:
        return {}, {}
    if not hasattr(dm, "prepared"):
        raise ValueError(f"downstream tasks need a tokenized LM dataset, not {cfg.data.name!r}")
    from wm_bench.eval.downstream import evaluate
    from wm_bench.eval.harness import WmBenchLM

    d = cfg.downstream
    lm = WmBenchLM(
        model=module.model, tokenizer=dm.prepared.tokenizer, batch_size=d.batch_size,
        max_length=d.max_length or cfg.data.seq_len, device=str(module.device),
    )  # fmt: skip
    t0 = time.perf_counter()
    rec = evaluate(lm, d.tasks, shots=d.shots, limit=d.limit, eval_data=d.eval_data,
                   source=d.source, seed=cfg.seed, progress=progress)  # fmt: skip
    rec["wall_s"] = round(time.perf_counter() - t0, 3)
    module.model.train()
    return {f"downstream/{k}": v for k, v in rec.pop("metrics").items()}, rec


class Throughput(L.Callback):
    """Training tokens/s measured over optimiser steps only (validation excluded)."""

    def __init__(self, skip_first: int = 1) -> None:
        self.skip_first = skip_first  # the first steps pay one-off costs (allocation, compile)
        self.tokens = 0
        self.seconds = 0.0
        self.steps = 0
        self.seq_len = 0
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.steps > self.skip_first:
            self.seconds += time.perf_counter() - self._t0
            self.tokens += batch[0].numel()
            self.seq_len = int(batch[0].shape[-1])

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 else None


def resolve_device(cfg: RunConfig) -> tuple[str, str]:
    """(accelerator, precision) after resolving "auto" (CUDA when present, else CPU)."""
    acc = cfg.train.accelerator
    if acc == "auto":
        acc = "cuda" if torch.cuda.is_available() else "cpu"
    prec = cfg.train.precision
    if prec == "auto":
        prec = "bf16-mixed" if acc == "cuda" else "32-true"
    return acc, prec


def device_info(accelerator: str) -> dict[str, Any]:
    if accelerator == "cuda" and torch.cuda.is_available():
        return {
            "type": "cuda",
            "name": torch.cuda.get_device_name(),
            "count": torch.cuda.device_count(),
        }
    return {"type": "cpu", "threads": torch.get_num_threads()}


def _peak_memory_bytes(accelerator: str) -> int:
    if accelerator == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # process-wide on CPU


def run(
    cfg: RunConfig,
    *,
    results_dir: str | Path | None = None,
    out_dir: str | Path = "outputs",
    force: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one RunConfig; write and return its result record.

    A config whose hash already has an "ok" result is skipped (its record is returned, with
    `"skipped": True` added in memory only) unless `force`. Any exception inside the run is
    recorded as a "failed" result with the error; the record is returned, not raised.
    """
    h = config_hash(cfg)
    if not force:
        done = results.find_done(h, cfg.experiment, cfg.scale, cfg.variant, results_dir)
        if done is not None:
            return {**done, "skipped": True}
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    accelerator, precision = resolve_device(cfg)
    started = results.now_iso()
    common = dict(
        experiment=cfg.experiment,
        variant=cfg.variant,
        seed=cfg.seed,
        scale=cfg.scale,
        config=to_dict(cfg),
        config_hash=h,
        device=device_info(accelerator),
        started_at=started,
    )
    try:
        with _quiet_lightning():
            out = _train_and_eval(cfg, h, accelerator, precision, Path(out_dir), quiet)
    except Exception as e:  # recorded, not raised: a sweep goes on past one bad run
        tb = traceback.format_exc(limit=6)
        rec = results.make_result(status="failed", error=f"{type(e).__name__}: {e}\n{tb}", **common)
        results.write_result(rec, results_dir)
        return rec
    rec = results.make_result(status="ok", **common, **out)
    results.write_result(rec, results_dir)
    return rec


def _train_and_eval(
    cfg: RunConfig, h: str, accelerator: str, precision: str, out_dir: Path, quiet: bool
) -> dict[str, Any]:
    L.seed_everything(cfg.seed, verbose=False)
    dm = build_datamodule(cfg.data, batch_size=cfg.train.batch_size, seed=cfg.seed)
    if getattr(dm, "vocab_size", 0) > cfg.model.vocab_size:
        raise ValueError(
            f"data vocab_size={dm.vocab_size} exceeds model vocab_size={cfg.model.vocab_size}"
        )
    module = LMModule(cfg)
    rid = results.run_id(cfg.variant, h)
    log_dir = out_dir / "logs" / cfg.experiment / cfg.scale
    ckpt_dir = out_dir / "checkpoints" / cfg.experiment / cfg.scale / rid
    tput = Throughput()
    callbacks: list[L.Callback] = [tput]
    if cfg.train.early_stop_metric and cfg.train.early_stop_value is not None:
        mode = (
            "max"
            if HIGHER_IS_BETTER.get(cfg.train.early_stop_metric.split("/")[-1].split("@")[0], True)
            else "min"
        )
        callbacks.append(
            L.pytorch.callbacks.EarlyStopping(
                monitor=cfg.train.early_stop_metric,
                mode=mode,
                stopping_threshold=cfg.train.early_stop_value,
                patience=10**9,
                check_on_train_epoch_end=False,
            )
        )
    if cfg.train.checkpoint:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True))
    eval_every = cfg.train.eval_every
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=cfg.train.devices,
        precision=precision,
        max_steps=cfg.train.max_steps,
        max_epochs=-1,
        gradient_clip_val=cfg.optim.grad_clip or None,
        val_check_interval=eval_every if eval_every > 0 else None,
        check_val_every_n_epoch=None if eval_every > 0 else 10**9,
        num_sanity_val_steps=0,
        logger=L.pytorch.loggers.CSVLogger(str(log_dir), name=rid),
        callbacks=callbacks,
        enable_checkpointing=cfg.train.checkpoint,
        enable_progress_bar=cfg.train.progress and not quiet,
        enable_model_summary=False,
        log_every_n_steps=cfg.train.log_every,
        deterministic=False,
    )
    ckpt = ckpt_dir / "last.ckpt"
    t0 = time.perf_counter()
    resume = str(ckpt) if cfg.train.checkpoint and ckpt.exists() else None
    trainer.fit(module, datamodule=dm, ckpt_path=resume)
    trainer.validate(module, datamodule=dm, verbose=False)
    metrics = dict(module.final_metrics)
    metrics.update(_length_perplexities(cfg, dm, module))
    wall = time.perf_counter() - t0
    down_metrics, down_rec = _downstream(cfg, dm, module, cfg.train.progress and not quiet)
    metrics.update(down_metrics)
    extra: dict[str, Any] = {"train_loss_curve": module.curve}
    if down_rec:
        extra["downstream"] = down_rec
    if cfg.train.save_model:
        from wm_bench.eval.checkpoint import save_pretrained

        path = out_dir / "models" / cfg.experiment / cfg.scale / rid
        extra["model_dir"] = str(save_pretrained(path, module.model, cfg, dm.prepared.tokenizer))
    return {
        "extra": extra,
        "metrics": metrics,
        "higher_is_better": {k: higher_is_better(k) for k in metrics},
        "impls": module.model.resolved_impls(),
        "params": module.model.param_counts(),
        "timing": {
            "wall_s": round(wall, 3),
            "steps": int(trainer.global_step),
            "tokens_per_s": tput.tokens_per_s,
            "peak_memory_bytes": _peak_memory_bytes(accelerator),
            "precision": precision,
            **_utilisation(module, tput, accelerator),
        },
    }


def _utilisation(module: LMModule, tput: Throughput, accelerator: str) -> dict[str, Any]:
    """Training FLOPs per token (`wm_bench.flops`), achieved TFLOP/s and MFU (None off-GPU)."""
    from wm_bench.flops import flops_per_token, mfu

    if not tput.seq_len:
        return {}
    f = flops_per_token(module.model, tput.seq_len)
    name = torch.cuda.get_device_name() if accelerator == "cuda" else None
    return {"train_flops_per_token": f["train_flops_per_token"],
            **mfu(tput.tokens_per_s, f["train_flops_per_token"], name)}  # fmt: skip


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
