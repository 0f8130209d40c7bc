"""One MQAR benchmark repeat: ours through the suite's training path with the zoology-style loop
interleaved chunk by chunk, both scored by one evaluator on the same test set."""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wm_bench.bench.common import load_average
from wm_bench.bench.mqar_config import LABELS, VALID_METRICS, MqarBenchConfig
from wm_bench.bench.mqar_zoology import ZoologyStyleTrainer
from wm_bench.data.mqar import IGNORE_INDEX

# ---- evaluation and data checks ----------------------------------------------------------------


@torch.no_grad()
def recall_accuracy(
    logits_fn: Callable[[Tensor], Tensor], inputs: Tensor, labels: Tensor, batch_size: int
) -> dict[str, float | int]:
    """Zoology's test metric on one test set: per example the share of its labelled positions
    whose arg-max logit is the label, then the mean over examples.

    Args:
        logits_fn: input_ids [b, L] → logits [b, L, V] (the model in eval mode).
        inputs, labels: [n, L] int64 (labels −100 where unlabelled).
        batch_size: rows per forward.
    Returns:
        accuracy (mean over examples), hits and n (labelled positions), loss (mean cross-entropy
        over labelled positions).
    """
    per_example, hits, n, loss_sum = [], 0, 0, 0.0
    for s in range(0, len(inputs), batch_size):
        x, y = inputs[s : s + batch_size], labels[s : s + batch_size]
        logits = logits_fn(x).float()  # [b, L, V]
        mask = y != IGNORE_INDEX
        right = (logits.argmax(-1) == y) & mask
        per_example += (right.sum(1) / mask.sum(1).clamp_min(1)).tolist()
        hits, n = hits + int(right.sum()), n + int(mask.sum())
        loss_sum += float(F.cross_entropy(logits[mask], y[mask], reduction="sum"))
    return {
        "accuracy": statistics.fmean(per_example),
        "hits": hits,
        "n": n,
        "loss": loss_sum / max(n, 1),
    }


def _eval_model(
    model: nn.Module, fn: Callable[[Tensor], Tensor], test: tuple[Tensor, Tensor], batch_size: int
) -> dict[str, float | int]:
    was_training = model.training
    model.eval()
    try:
        return recall_accuracy(fn, test[0], test[1], batch_size)
    finally:
        model.train(was_training)


def tensors_sha256(*tensors: Tensor) -> str:
    """sha256 over the tensors' bytes (contiguous, in order)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def row_multiset(batches: Sequence[tuple[Tensor, Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (input, label) rows of a list of batches and how often each was trained on."""
    rows = torch.cat([torch.cat([x, y], dim=1) for x, y in batches]).numpy()  # [N, 2L]
    return np.unique(rows, axis=0, return_counts=True)


def same_rows(a: Sequence[tuple[Tensor, Tensor]], b: Sequence[tuple[Tensor, Tensor]]) -> bool:
    """True when both batch lists trained on the same rows the same number of times."""
    (ra, ca), (rb, cb) = row_multiset(a), row_multiset(b)
    return ra.shape == rb.shape and bool(np.array_equal(ra, rb) and np.array_equal(ca, cb))


# ---- ours: the suite's training path, with the zoology-style loop interleaved ------------------


def ours_run_config(cfg: MqarBenchConfig, seed: int, threads: int | None) -> Any:
    """The RunConfig `wm_bench.train.run` trains for "ours" (see DESIGN_POINTS)."""
    from wm_bench.config import BlockConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from wm_bench.data.mqar import MqarDataConfig
    from wm_bench.layers.mixers.qcattn import QCAttnConfig

    model = ModelConfig(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        pattern="A",
        blocks={"A": BlockConfig(mixer=QCAttnConfig(n_heads=1, position="rope"), ffn=None)},
        tie_embeddings=True,
    )
    data = MqarDataConfig(
        seq_len=cfg.seq_len,
        num_kv_pairs=cfg.num_kv_pairs,
        vocab_size=cfg.vocab_size,
        n_train=cfg.n_train,
        n_test=cfg.n_test,
    )
    optim = OptimConfig(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        betas=(0.9, 0.999),
        warmup_steps=0,
        min_lr_ratio=0.5,
    )
    train = TrainConfig(
        max_steps=cfg.steps,
        batch_size=cfg.batch_size,
        precision="32-true",
        accelerator="cpu",
        num_threads=threads,
        progress=False,
    )
    return RunConfig(
        experiment="bench_mqar",
        variant="ours",
        model=model,
        data=data,
        optim=optim,
        train=train,
        seed=seed,
        scale="cpu",
    )


def mqar_split(run_cfg: Any) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(train inputs, labels), (test inputs, labels) exactly as the suite's DataModule has them."""
    from wm_bench.data import build_datamodule

    dm = build_datamodule(run_cfg.data, batch_size=run_cfg.train.batch_size, seed=run_cfg.seed)
    stream = dm.train_dataloader().dataset  # ShuffledBatches over all training rows
    return (stream.inputs, stream.labels), tuple(dm.val_dataloader().dataset.tensors)


class Interleave(L.Callback):
    """Times ours per chunk of optimiser steps and runs a zoology-style chunk between them.

    Ours' chunk k lasts from the end of the previous zoology-style chunk (or the training start)
    to the end of its last step: every step of it complete, as Lightning runs it. With
    `zoo_first`, zoology-style chunk k runs before ours' chunk k, otherwise after it.
    """

    def __init__(
        self,
        cfg: MqarBenchConfig,
        zoo: ZoologyStyleTrainer | None,
        *,
        zoo_first: bool,
        test: tuple[Tensor, Tensor],
        log: Callable[[str], None],
    ) -> None:
        self.cfg, self.zoo, self.zoo_first, self.test, self._log = cfg, zoo, zoo_first, test, log
        self.sizes = cfg.chunk_sizes()
        self.ours_s: list[float] = []
        self.zoo_s: list[float] = []
        self.load: list[float | None] = []
        self.losses: list[float] = []
        self.seen: list[tuple[Tensor, Tensor]] = []
        self.head_rows: int | None = None
        self.params: dict[str, int] = {}
        self.eval: dict[str, float | int] = {}
        self.test_sha256: str | None = None
        self._in_chunk, self._chunk, self._mark, self._hook = 0, 0, 0.0, None

    def _zoo_chunk(self, k: int) -> None:
        if self.zoo is not None and k < len(self.sizes):
            self.zoo_s.append(self.zoo.train_steps(self.sizes[k]))

    def _count_head_rows(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self.head_rows = int(args[0].shape[:-1].numel())

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.params = pl_module.model.param_counts()
        self._hook = pl_module.model.head.register_forward_hook(self._count_head_rows)
        if self.zoo_first:
            self._zoo_chunk(0)
        self._mark = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        t = time.perf_counter()
        if self._hook is not None:  # counted on the first step only
            self._hook.remove()
            self._hook = None
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        self.seen.append((batch[0], batch[1]))
        self._in_chunk += 1
        if self._in_chunk < self.sizes[self._chunk]:
            return
        self.ours_s.append(t - self._mark)
        self.load.append(load_average())
        k, self._chunk, self._in_chunk = self._chunk, self._chunk + 1, 0
        self._zoo_chunk(k + 1 if self.zoo_first else k)
        self._log(
            _chunk_line(
                self.cfg,
                k,
                len(self.sizes),
                self.sizes[k],
                self.ours_s[-1],
                self.zoo_s[k] if k < len(self.zoo_s) else None,
            )
        )
        self._mark = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        model = pl_module.model
        self.eval = _eval_model(model, lambda x: model(x).logits, self.test, self.cfg.batch_size)
        dm = trainer.datamodule
        self.test_sha256 = tensors_sha256(*dm.val_dataloader().dataset.tensors)


def _chunk_line(
    cfg: MqarBenchConfig, k: int, n: int, steps: int, ours: float | None, zoo: float | None
) -> str:
    def ms(s: float | None) -> str:
        return "—" if s is None else f"{1e3 * s / steps:.1f} ms/step"

    tag = " (warm-up)" if k < cfg.warmup_chunks else ""
    return f"[bench mqar] chunk {k + 1}/{n}{tag}: ours {ms(ours)}, zoology-style {ms(zoo)}"


def _run_ours(
    cfg: MqarBenchConfig,
    zoo: ZoologyStyleTrainer | None,
    *,
    seed: int,
    threads: int | None,
    zoo_first: bool,
    test: tuple[Tensor, Tensor],
    log: Callable[[str], None],
) -> tuple[Interleave, dict[str, Any]]:
    from wm_bench.train import run

    run_cfg = ours_run_config(cfg, seed, threads)
    cb = Interleave(cfg, zoo, zoo_first=zoo_first, test=test, log=log)
    with tempfile.TemporaryDirectory(prefix="wm_bench_mqar_") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        rec = run(
            run_cfg,
            results_dir=Path(tmp) / "results",
            out_dir=Path(tmp) / "outputs",
            force=True,
            quiet=True,
            callbacks=[cb],
        )
    if rec.get("status") != "ok":
        raise RuntimeError(
            f"ours: the training run ended {rec.get('status')!r}: {rec.get('error')}"
        )
    return cb, rec


def _run_zoo_alone(
    cfg: MqarBenchConfig, zoo: ZoologyStyleTrainer, log: Callable[[str], None]
) -> tuple[list[float], list[float | None]]:
    """The zoology-style loop on its own (no "ours" to interleave with): chunk seconds, loads."""
    times, loads, sizes = [], [], cfg.chunk_sizes()
    for k, n in enumerate(sizes):
        times.append(zoo.train_steps(n))
        loads.append(load_average())
        log(_chunk_line(cfg, k, len(sizes), n, None, times[-1]))
    return times, loads


def one_repeat(
    cfg: MqarBenchConfig,
    variants: Sequence[str],
    r: int,
    repeats: int,
    threads: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One whole run of the chosen variants on data seed cfg.seed + r: its record."""
    seed = cfg.seed + r
    (train_x, train_y), test = mqar_split(ours_run_config(cfg, seed, threads))
    zoo = ZoologyStyleTrainer(cfg, train_x, train_y, seed) if "zoology_style" in variants else None
    zoo_first = zoo is not None and "ours" in variants and r % 2 == 1
    first = "zoology_style" if zoo_first else variants[0]
    log(f"[bench mqar] repeat {r + 1}/{repeats} (seed {seed}, {LABELS[first]} first)")
    rec: dict[str, Any] = {"repeat": r, "seed": seed, "first": first, "variants": {}}
    times: dict[str, list[float]] = {}
    if "ours" in variants:
        cb, run_rec = _run_ours(
            cfg, zoo, seed=seed, threads=threads, zoo_first=zoo_first, test=test, log=log
        )
        times["ours"], loads = cb.ours_s, cb.load
        rec["variants"]["ours"] = {
            "accuracy": cb.eval,
            "suite_validation": {k: run_rec["metrics"][k] for k in VALID_METRICS},
            "suite_throughput_callback_tokens_per_s": run_rec["timing"]["tokens_per_s"],
            "head_rows_per_step": cb.head_rows,
            "params": cb.params,
            "steps": len(cb.losses),
            "loss_first_chunk": statistics.fmean(cb.losses[: cfg.chunk]),
            "loss_last_chunk": statistics.fmean(cb.losses[-cfg.chunk :]),
            "test_sha256": cb.test_sha256,
        }
    if zoo is not None:
        if "ours" in variants:
            times["zoology_style"] = cb.zoo_s
        else:
            times["zoology_style"], loads = _run_zoo_alone(cfg, zoo, log)
        rec["variants"]["zoology_style"] = {
            "accuracy": _eval_model(zoo.model, zoo.model, test, cfg.batch_size),
            "head_rows_per_step": zoo.head_rows,
            "params": {"total": sum(p.numel() for p in zoo.model.parameters())},
            "steps": zoo.steps,
            "loss_first_chunk": statistics.fmean(zoo.losses[: cfg.chunk]),
            "loss_last_chunk": statistics.fmean(zoo.losses[-cfg.chunk :]),
            "test_sha256": tensors_sha256(*test),
        }
    rec["chunks"] = []
    for k, n in enumerate(cfg.chunk_sizes()):
        seconds = {f"{v}_s": times[v][k] for v in variants}
        timed = k >= cfg.warmup_chunks
        chunk = {"index": k, "steps": n, "timed": timed, **seconds, "load_1min": loads[k]}
        rec["chunks"].append(chunk)
    both = "ours" in variants and zoo is not None
    rec["data"] = {
        "train_sha256": tensors_sha256(train_x, train_y),
        "test_sha256": tensors_sha256(*test),
        "same_training_rows": same_rows(cb.seen, zoo.seen) if both else None,
    }
    return rec
