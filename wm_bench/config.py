"""Frozen, serialisable run configs: RunConfig(model, data, optim, train, seed, scale, ...)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from wm_bench.config_fields import hash_if_set_field, hashed, registry_field, runtime_field

Scale = Literal["smoke", "cpu", "small", "paper"]
SCALES: tuple[str, ...] = ("smoke", "cpu", "small", "paper")

# Registry-discriminated fields: the dataclass field holds "any registered config of this kind",
# and `from_dict` picks the class by the dict's "name" key. Resolved lazily so that importing
# this module never imports torch.


def _mixer_registry() -> dict[str, type]:
    from wm_bench.layers.mixers import MIXERS

    return {k: v[1] for k, v in MIXERS.items()}


def _ffn_registry() -> dict[str, type]:
    from wm_bench.layers.ffn import FFNS

    return {k: v[1] for k, v in FFNS.items()}


def _data_registry() -> dict[str, type]:
    from wm_bench.data import DATASETS

    return {k: v[1] for k, v in DATASETS.items()}


_REGISTRIES = {"mixer": _mixer_registry, "ffn": _ffn_registry, "data": _data_registry}


def _finite(x: Any) -> bool:
    """A real number (not bool) that is neither nan nor ±inf."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


# --------------------------------------------------------------------------------------------
# The config tree


@dataclass(frozen=True)
class BlockConfig:
    """One layer: a sequence mixer and an optional FFN (None = mixer-only block, e.g. Mamba2)."""

    mixer: Any = registry_field("mixer")
    ffn: Any = registry_field("ffn", default=None)


@dataclass(frozen=True)
class ModelConfig:
    """A language model: embeddings → blocks by pattern → RMSNorm → head.

    `pattern` is a string over the letters of `blocks`, tiled to `n_layers` layers
    (Cheems: "SSSSSSSD", seven SSD blocks then one DMA block).
    """

    vocab_size: int
    d_model: int
    n_layers: int
    pattern: str
    blocks: dict[str, BlockConfig]
    tie_embeddings: bool = False
    residual_weights: bool = (
        True  # learnable per-channel residual scales (docs/spec.md §2.6); False = plain
    )
    norm_eps: float = 1e-6
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for fname in ("vocab_size", "d_model", "n_layers"):
            if getattr(self, fname) < 1:
                raise ValueError(f"ModelConfig.{fname}={getattr(self, fname)} must be ≥ 1")
        if not self.pattern:
            raise ValueError("ModelConfig.pattern is empty; give one block letter per layer")
        unknown = sorted(set(self.pattern) - set(self.blocks))
        if unknown:
            raise ValueError(
                f"ModelConfig.pattern={self.pattern!r} uses letters {unknown} that are not in "
                f"blocks; valid letters: {sorted(self.blocks)}"
            )

    def layer_letters(self) -> str:
        """The pattern tiled (and cut) to exactly `n_layers` letters."""
        reps = -(-self.n_layers // len(self.pattern))
        return (self.pattern * reps)[: self.n_layers]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay to `min_lr_ratio` of the peak."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int | None = None  # None → warmup_ratio · max_steps
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if not (_finite(self.lr) and self.lr > 0):
            raise ValueError(f"OptimConfig.lr={self.lr!r} must be a finite number > 0")
        if not (_finite(self.min_lr_ratio) and 0.0 <= self.min_lr_ratio <= 1.0):
            raise ValueError(f"OptimConfig.min_lr_ratio={self.min_lr_ratio!r} must be in [0, 1]")
        if not (_finite(self.warmup_ratio) and 0.0 <= self.warmup_ratio <= 1.0):
            raise ValueError(f"OptimConfig.warmup_ratio={self.warmup_ratio!r} must be in [0, 1]")
        for fname in ("weight_decay", "grad_clip"):
            v = getattr(self, fname)
            if not (_finite(v) and v >= 0):
                raise ValueError(f"OptimConfig.{fname}={v!r} must be a finite number ≥ 0")
        if not (_finite(self.eps) and self.eps > 0):
            raise ValueError(f"OptimConfig.eps={self.eps!r} must be a finite number > 0")
        if len(self.betas) != 2 or not all(_finite(b) and 0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"OptimConfig.betas={self.betas!r}: need two numbers in [0, 1)")
        if self.warmup_steps is not None and not (
            _int(self.warmup_steps) and self.warmup_steps >= 0
        ):
            raise ValueError(
                f"OptimConfig.warmup_steps={self.warmup_steps!r} must be an integer ≥ 0 or None"
            )


LOGGERS = ("csv", "tensorboard")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "64-true")
ACCELERATORS = ("auto", "cpu", "cuda", "gpu")
STRATEGIES = ("auto", "ddp", "fsdp")  # Lightning's names; docs/scale_out.md


@dataclass(frozen=True)
class TrainConfig:
    """How long and how to train; runtime fields (device, impl, paths) stay out of the hash.

    `batch_size` is the global batch of one data-stream step: with `devices × num_nodes` = W
    processes (ranks) each rank trains on its own block of batch_size / W rows of it (so W must
    divide it), and an optimiser step sums `accumulate_grad_batches` such steps. A run on W ranks
    therefore computes what one process would with the same batch_size (docs/scale_out.md), which
    is why `strategy`, `devices` and `num_nodes` are runtime fields, kept out of the hash.
    """

    max_steps: int = 100
    batch_size: int = 8
    precision: str = "auto"  # "auto" → bf16-mixed on CUDA, 32-true on CPU
    eval_every: int = 0  # 0 → evaluate only at the end
    early_stop_metric: str | None = None  # e.g. "valid/accuracy"
    early_stop_value: float | None = None  # stop once the metric reaches this (e.g. 0.99)
    accelerator: str = runtime_field("auto")
    devices: int = runtime_field(1)  # devices (processes) per node
    strategy: str = runtime_field("auto")  # "auto" (Lightning's choice), "ddp", "fsdp"
    num_nodes: int = runtime_field(1)
    impl: str = runtime_field("auto")
    num_threads: int | None = runtime_field(None)
    log_every: int = runtime_field(10)
    progress: bool = runtime_field(True)
    checkpoint: bool = runtime_field(False)  # save <out>/checkpoints/.../last.ckpt and resume
    checkpoint_every: int | None = runtime_field(None)  # steps between saves; None → max_steps/20
    compile: bool = runtime_field(False)  # torch.compile the model for training/validation steps
    save_model: bool = runtime_field(False)  # write <out>/models/<exp>/<scale>/<run id>/ at the end
    logger: str = runtime_field("csv")  # "csv" (<out>/logs/…/metrics.csv) or "tensorboard"
    # Batches whose gradients are summed per optimiser step (None = 1, and then left out of the
    # hash so configs written before the field existed keep their hash): changes what is computed.
    accumulate_grad_batches: int | None = hash_if_set_field()

    def __post_init__(self) -> None:
        for fname in ("max_steps", "batch_size", "devices", "num_nodes", "log_every"):
            v = getattr(self, fname)
            if not (_int(v) and v >= 1):
                raise ValueError(f"TrainConfig.{fname}={v!r} must be an integer ≥ 1")
        if not (_int(self.eval_every) and self.eval_every >= 0):
            raise ValueError(
                f"TrainConfig.eval_every={self.eval_every!r} must be an integer ≥ 0 (0: at the end)"
            )
        if self.accumulate_grad_batches == 1:  # 1 is the default: one hash for set and unset
            object.__setattr__(self, "accumulate_grad_batches", None)
        for fname in ("num_threads", "checkpoint_every", "accumulate_grad_batches"):
            v = getattr(self, fname)
            if v is not None and not (_int(v) and v >= 1):
                raise ValueError(f"TrainConfig.{fname}={v!r} must be an integer ≥ 1 or None")
        if self.early_stop_value is not None and not _finite(self.early_stop_value):
            raise ValueError(
                f"TrainConfig.early_stop_value={self.early_stop_value!r} must be a finite number"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision={self.precision!r}; valid: {list(PRECISIONS)}")
        if self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"TrainConfig.accelerator={self.accelerator!r}; valid: {list(ACCELERATORS)}"
            )
        if self.logger not in LOGGERS:
            raise ValueError(f"TrainConfig.logger={self.logger!r}; valid: {list(LOGGERS)}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"TrainConfig.strategy={self.strategy!r}; valid: {list(STRATEGIES)}")
        world = self.devices * self.num_nodes
        if self.batch_size % world:
            raise ValueError(
                f"TrainConfig.batch_size={self.batch_size} is the global batch, split evenly over "
                f"devices × num_nodes = {self.devices} × {self.num_nodes} = {world} ranks: use a "
                f"multiple of {world} (e.g. {world * max(1, self.batch_size // world)})"
            )
        if self.strategy == "fsdp" and self.compile:
            raise ValueError(
                "TrainConfig.compile=True with strategy='fsdp' is not supported (the compiled "
                "step would trace FSDP's sharded blocks); use strategy='ddp' or compile=False"
            )
        if self.impl not in ("auto", "reference", "triton"):
            raise ValueError(
                f"TrainConfig.impl={self.impl!r}; valid: ['auto', 'reference', 'triton']"
            )

    @property
    def world_size(self) -> int:
        """Processes (ranks) that train together: devices × num_nodes."""
        return self.devices * self.num_nodes


@dataclass(frozen=True)
class DownstreamConfig:
    """Downstream tasks run through lm-eval after training (`wm_bench.eval.downstream`).

    Results land in the run's metrics as "downstream/<task>@<k>shot/<metric>".
    """

    tasks: tuple[str, ...] = ("arc_easy", "arc_challenge", "piqa", "openbookqa", "winogrande")
    shots: tuple[int, ...] = (0,)
    limit: int | None = None  # first `limit` examples of each task (None: all)
    source: str = "local"  # "local" (offline YAMLs + JSONL files) or "hub" (lm-eval's names)
    batch_size: int = 16
    max_length: int | None = None  # longest prompt given to the model (None: the training T)
    eval_data: str | None = runtime_field(None)  # None → $WM_BENCH_EVAL_DATA, else package:eval

    def __post_init__(self) -> None:
        from wm_bench.eval.catalog import SOURCES, check_tasks

        check_tasks(self.tasks)
        if self.source not in SOURCES:
            raise ValueError(f"DownstreamConfig.source={self.source!r}; valid: {list(SOURCES)}")
        if not self.shots or any(int(k) < 0 for k in self.shots):
            raise ValueError(f"DownstreamConfig.shots={self.shots!r}: need one or more counts ≥ 0")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"DownstreamConfig.limit={self.limit}: must be ≥ 1 or None (all)")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; its hash identifies the run's result."""

    experiment: str  # the task that planned it (tasks/<experiment>), or a free name
    variant: str  # which arm of the experiment
    model: ModelConfig  # the architecture
    data: Any = registry_field("data")  # a config registered in wm_bench.data.DATASETS
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW and the LR schedule
    train: TrainConfig = field(default_factory=TrainConfig)  # steps, batch, precision, devices
    seed: int = 0  # seeds initialisation and data order
    scale: str = "smoke"  # one of SCALES; names the results folder
    tags: dict[str, Any] = field(default_factory=dict)  # free-form labels for reports
    # Left out of the hash while None, so adding it kept every earlier run's identity.
    downstream: DownstreamConfig | None = hash_if_set_field()

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"RunConfig.scale={self.scale!r}; valid: {list(SCALES)}")
        if not (_int(self.seed) and self.seed >= 0):
            raise ValueError(f"RunConfig.seed={self.seed!r} must be an integer ≥ 0")


# --------------------------------------------------------------------------------------------
# Serialisation


def _tree(cfg: Any, keep: Any) -> Any:
    """Config tree → plain JSON-able data (tuples become lists), dataclass fields by `keep`."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        values = ((f, getattr(cfg, f.name)) for f in dataclasses.fields(cfg))
        return {f.name: _tree(v, keep) for f, v in values if keep(f, v)}
    if isinstance(cfg, dict):
        return {str(k): _tree(v, keep) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [_tree(v, keep) for v in cfg]
    return cfg


def to_dict(cfg: Any) -> Any:
    """Config tree → plain JSON-able dict (tuples become lists)."""
    return _tree(cfg, lambda f, v: True)


def _hash_view(cfg: Any) -> Any:
    """`to_dict` without the fields the hash leaves out (`wm_bench.config_fields.hashed`)."""
    return _tree(cfg, hashed)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(cfg: Any) -> str:
    """sha256 (first 16 hex digits) of canonical JSON, minus runtime-only fields."""
    return hashlib.sha256(canonical_json(_hash_view(cfg)).encode()).hexdigest()[:16]


def run_identity(cfg: Any, h: str | None = None) -> dict[str, Any]:
    """The fields that name a run in its result record (`results.make_result`): experiment,
    variant, seed, scale, the whole config and its hash (`h` when the caller has it already)."""
    return {
        "experiment": cfg.experiment,
        "variant": cfg.variant,
        "seed": cfg.seed,
        "scale": cfg.scale,
        "config": to_dict(cfg),
        "config_hash": h if h is not None else config_hash(cfg),
    }


def from_dict(cls: type, data: Any, *, path: str = "") -> Any:
    """Strictly build dataclass `cls` from a dict: unknown keys raise with their dotted path."""
    where = path or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        sub = f"{where}.{name}"
        if "registry" in f.metadata:
            kwargs[name] = _from_registry(f.metadata["registry"], value, sub)
        else:
            kwargs[name] = _coerce(hints[name], value, sub)
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required fields
        raise ValueError(f"{where}: {e}") from None
    except ValueError as e:  # the class' own validation: say where in the file it is
        msg = str(e)
        raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _from_registry(kind: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict) or "name" not in value:
        raise ValueError(f"{where}: a {kind} config needs a 'name' key, got {value!r}")
    registry = _REGISTRIES[kind]()
    if value["name"] not in registry:
        raise ValueError(f"{where}: unknown {kind} {value['name']!r}; valid: {sorted(registry)}")
    return from_dict(registry[value["name"]], value, path=where)


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_error(where: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"{where}={value!r} ({type(value).__name__}); expected {expected}")


def _check_scalar(tp: type, value: Any, where: str) -> Any:
    """`value` if it is a `tp` (int, float, str or bool); ValueError naming path, value, type.

    Ints pass for float fields unchanged (converting would change config hashes). A string
    spelling a number passes for a float field as that number: YAML 1.1 reads `1e-3` (no dot) as
    text. Non-finite floats (nan, inf) are never valid config values.
    """
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(where, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(where, value, "a number")
        if not math.isfinite(value):
            raise ValueError(f"{where}={value!r}: expected a finite number")
        return value
    if tp is str and not isinstance(value, str):
        raise _type_error(where, value, "a string")
    return value


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path=where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value, where) if len(non_none) == 1 else value
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(where, value, "a mapping")
        if args and dataclasses.is_dataclass(args[1]):
            return {k: from_dict(args[1], v, path=f"{where}.{k}") for k, v in value.items()}
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(where, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(value) != len(args):
            raise ValueError(f"{where}={list(value)!r}: expected a list of {len(args)} values")
        if args:
            return tuple(
                _coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))
            )
        return tuple(value)
    if origin is Literal:
        if value not in args or type(value) is not type(args[args.index(value)]):
            raise ValueError(f"{where}={value!r}; valid: {list(args)}")
        return value
    if tp in (bool, int, float, str):
        return _check_scalar(tp, value, where)
    return value


def run_from_dict(data: dict) -> RunConfig:
    return from_dict(RunConfig, data)


def load_run_yaml(path: str) -> RunConfig:
    """Parse a YAML run file strictly into a RunConfig.

    Every error is one ValueError line naming the file: a missing file, a YAML syntax error
    (with file:line:column), a document that is not a mapping, or a bad field (its dotted path).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ValueError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--config {path}: cannot read it ({type(e).__name__}: {e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a YAML mapping of RunConfig fields (experiment, variant, model, "
            f"data, ...), got {type(data).__name__}; `wm-bench train --dump-config` writes one"
        )
    try:
        return run_from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def replace(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace, re-running validation."""
    return dataclasses.replace(cfg, **changes)
