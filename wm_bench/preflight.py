"""Checks a run must pass before any training starts: one ValueError line, nothing written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

_GIB = float(1 << 30)


def check_config(cfg: Any) -> None:
    """Raise ValueError (one line: the field, the bad value, what is valid) if `cfg` cannot run.

    Checks: the model can be built (every layer's shape constraints, on the meta device), the
    data fits the model (vocabulary) and the batch (dataset size), the run seed suits the data,
    the kernel implementation and accelerator exist here, and the estimated memory of one batch
    fits this machine. Prepares no data and writes nothing.
    """
    _check_model(cfg)
    _check_data(cfg)
    _check_device(cfg)
    _check_memory(cfg)


def check_run(cfg: Any, results_dir: str | Path | None = None, *, out_dir: Any = None) -> None:
    """`check_config`, then prove the results (and output) folder writable.

    Cheap and free of side effects beyond creating those folders: safe to call more than once
    (the CLI calls it for every config before the first run; `train.run` again for each run).

    Args:
        cfg: a RunConfig (its own fields were validated when it was built).
        results_dir: where its result JSON goes (None: the default results folder).
        out_dir: where logs, checkpoints and models go (None: not checked).
    """
    check_config(cfg)
    from wm_bench.results import default_results_dir

    rdir = Path(results_dir) if results_dir is not None else default_results_dir()
    check_writable(rdir, "results folder")
    if out_dir is not None:
        check_writable(Path(out_dir), "output folder (--out-dir)")


def _check_model(cfg: Any) -> None:
    """Build the model on the meta device, turning a layer's constructor error into one line."""
    import torch

    from wm_bench.model import build_model

    try:
        with torch.device("meta"):
            build_model(cfg.model, impl="reference")
    except (ValueError, TypeError, RuntimeError, AssertionError, ZeroDivisionError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(
            f"model (d_model={cfg.model.d_model}, n_layers={cfg.model.n_layers}) cannot be built: "
            f"{msg}"
        ) from None


def _check_data(cfg: Any) -> None:
    data, model, train = cfg.data, cfg.model, cfg.train
    if data is None:
        raise ValueError("RunConfig.data is missing; give a data config (synthetic, mqar or lm)")
    v = getattr(data, "vocab_size", None)
    bounded = data.name != "lm" or getattr(data, "tokenizer", "bpe") == "bpe"
    if v is not None and bounded and v > model.vocab_size:
        what = "lm data: the BPE tokenizer's upper bound" if data.name == "lm" else data.name
        raise ValueError(
            f"data.vocab_size={v} ({what}) exceeds model.vocab_size="
            f"{model.vocab_size}; token ids must be < the model's vocabulary: use data.vocab_size "
            f"≤ {model.vocab_size} or a larger model.vocab_size"
        )
    for fname in ("n_train", "n_valid", "n_test"):
        n = getattr(data, fname, None)
        if n is not None and n < 1:
            raise ValueError(f"data.{fname}={n} must be ≥ 1")
    n_train = getattr(data, "n_train", None)
    if n_train is not None and n_train < train.batch_size:
        raise ValueError(
            f"train.batch_size={train.batch_size} is larger than the {data.name} training set "
            f"(data.n_train={n_train}): not one full batch; use batch_size ≤ {n_train} or a "
            f"larger n_train"
        )
    split_seeds = getattr(data, "split_seeds", None)
    if callable(split_seeds):
        split_seeds(cfg.seed)  # MQAR: the seed must keep train and test seeds disjoint
    if train.save_model and data.name != "lm":
        raise ValueError(
            f"train.save_model with {data.name} data: a saved model directory holds the text "
            "tokenizer of lm data, which this data has none of; train on lm data (--data lm) or "
            "drop --save-model"
        )


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (the cgroup limit when lower); None when unknown."""
    total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def memory_estimate(cfg: Any) -> dict[str, int]:
    """Bytes of one training batch's logits (B·T·V·4) and of the in-memory data tensors.

    Synthetic: the sequences plus their input and label copies (3 · n · (T+1) · 8 bytes); MQAR:
    inputs and labels (2 · n · T · 8); LM data is memory-mapped (only the batch counts). The
    sliding-window evaluation's logits (B/2 · L · V · 4 at its longest length) count too.
    """
    data, b, vocab = cfg.data, cfg.train.batch_size, cfg.model.vocab_size
    t = int(getattr(data, "seq_len", 0) or 0)
    logits = b * t * vocab * 4
    lengths = tuple(getattr(data, "eval_lengths", ()) or ())
    if lengths:
        logits = max(logits, max(1, b // 2) * max(lengths) * vocab * 4)
    if data.name == "synthetic":
        tensors = 3 * (data.n_train + data.n_valid) * (t + 1) * 8
    elif data.name == "mqar":
        tensors = 2 * (data.n_train + data.n_test) * t * 8
    else:
        tensors = 2 * b * (t + 1) * 8
    return {"logits": logits, "data": tensors, "total": logits + tensors}


def _check_memory(cfg: Any) -> None:
    """One batch's logits and the data tensors must fit: in RAM on a CPU; the logits in GPU
    memory (split over `train.devices`) and the data in RAM on CUDA."""
    import torch

    est = memory_estimate(cfg)
    ram = machine_memory_bytes()
    acc = cfg.train.accelerator
    on_cuda = acc in ("cuda", "gpu") or (acc == "auto" and torch.cuda.is_available())
    what = (
        f"data.seq_len={getattr(cfg.data, 'seq_len', None)} with batch_size="
        f"{cfg.train.batch_size} and vocab_size={cfg.model.vocab_size}"
    )
    fix = "use a shorter seq_len or a smaller batch"
    if on_cuda and torch.cuda.is_available():
        gpu = torch.cuda.get_device_properties(0).total_memory
        per_gpu = est["logits"] / max(1, cfg.train.devices)
        if per_gpu > gpu:
            raise ValueError(
                f"{what}: estimated logits memory B·T·V·4 = {per_gpu / _GIB:.1f} GiB per GPU "
                f"exceeds the GPU's {gpu / _GIB:.1f} GiB; {fix}"
            )
        need = est["data"]
    else:
        need = est["total"]
    if ram is not None and need > ram:
        raise ValueError(
            f"{what}: estimated memory {need / _GIB:.1f} GiB (logits B·T·V·4 = "
            f"{est['logits'] / _GIB:.1f} GiB, data tensors {est['data'] / _GIB:.1f} GiB) exceeds "
            f"this machine's {ram / _GIB:.1f} GiB of RAM; {fix}"
        )


def _check_device(cfg: Any) -> None:
    import torch

    acc, impl = cfg.train.accelerator, cfg.train.impl
    cuda = torch.cuda.is_available()
    if acc in ("cuda", "gpu") and not cuda:
        raise ValueError(
            f"train.accelerator={acc!r} but this machine has no CUDA device; use 'auto' or 'cpu'"
        )
    if impl == "triton":
        from wm_bench.kernels._impl import has_triton

        if not has_triton():
            raise ValueError(
                "train.impl='triton' but the triton package is not installed; use 'auto' or "
                "'reference'"
            )
        on_cpu = acc == "cpu" or not cuda
        if on_cpu and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                "train.impl='triton' needs a CUDA device (none here; or TRITON_INTERPRET=1); "
                "use 'auto' or 'reference'"
            )


def check_writable(folder: Path, what: str) -> None:
    """Create `folder` if missing and prove it writable with a temporary file (then removed)."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {str(folder)!r} is a file, not a folder; choose a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".wm_bench-write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ValueError(
            f"{what} {str(folder)!r} is not writable ({reason}); choose another folder or fix "
            "its permissions"
        ) from None
