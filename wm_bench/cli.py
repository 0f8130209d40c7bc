"""`wm-bench` command line: a thin layer over train.run, the sweep driver, tasks and reports."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from wm_bench.config import ACCELERATORS, LOGGERS, PRECISIONS, STRATEGIES

# tasks/<name>/ modules: runs(scale) (training experiments) or reproduce(scale, ...) (measuring)
EXPERIMENTS = ("mqar", "expert_speed", "rope", "ffn", "arch", "mqar_dma", "passkey")
SCALE_CHOICES = ("smoke", "cpu", "small", "paper", "auto")
GPU_ACTIONS = ("compile", "bundle", "suite")
DATA_ACTIONS = ("prepare",)
# `train` without --config: these values stand in for flags not given (a YAML run file keeps its
# own values; a flag given overrides it).
TRAIN_DEFAULTS = {
    "preset": "cheems", "size": "tiny", "steps": 50, "batch_size": 8, "seq_len": 64, "lr": 1e-3,
    "seed": 0,
}  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error ("error: ...", exit code 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ lo, else a message naming the value and the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an integer; need an integer ≥ {lo}"
            ) from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; need an integer ≥ {lo}")
        return value

    parse.__name__ = f"integer ≥ {lo}"
    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; need a finite number > 0, e.g. 1e-3"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; need a finite number > 0")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results-dir", default=None, help="where result JSON goes (default: ./results)"
    )
    p.add_argument("--out-dir", default="outputs", help="logs, checkpoints, Optuna journals")
    p.add_argument(
        "--impl",
        default=None,
        choices=["auto", "reference", "triton"],
        help="kernel implementation (auto: triton on CUDA, reference on CPU; default: the run "
        "config's, which is auto)",
    )
    p.add_argument(
        "--threads",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="torch CPU threads, ≥ 1 (default: the run config's, else torch's)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model for training steps (CPU: +11–33%% tokens/s after a 30–110 s "
        "compile; pays off for runs of several minutes); default: the run config's, else off",
    )
    p.add_argument("--force", action="store_true", help="rerun configs that already have a result")
    p.add_argument(
        "--quiet",
        action="store_true",
        default=None,
        help="no progress bars (default: the run config's train.progress)",
    )
    p.add_argument(
        "--eval-data",
        default=None,
        metavar="DIR",
        help="downstream task files (JSON lines) for runs with downstream tasks (default: "
        "$WM_BENCH_EVAL_DATA, else the sets shipped with the package, recorded as package:eval)",
    )
    p.add_argument(
        "--save-model",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="save each trained model to <out-dir>/models/<experiment>/<scale>/<run id>/ "
        "(loadable by `wm-bench eval` and lm-eval's wm_bench model); default: the run config's, "
        "else off",
    )
    p.add_argument(
        "--accelerator",
        default=None,
        choices=list(ACCELERATORS),
        help="where to train (auto: CUDA when present, else CPU; default: the run config's)",
    )
    p.add_argument(
        "--devices",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="devices (one process each) per node (default: the run config's, 1); --batch-size "
        "stays the global batch, split over devices × nodes (docs/scale_out.md)",
    )
    p.add_argument("--strategy", default=None, choices=list(STRATEGIES),
                   help="auto (Lightning's: DDP on several devices), ddp or fsdp")  # fmt: skip
    p.add_argument("--num-nodes", type=_int_at_least(1), default=None, metavar="N",
                   help="machines (torchrun or SLURM starts the processes; 1)")  # fmt: skip
    p.add_argument(
        "--precision",
        default=None,
        choices=list(PRECISIONS),
        help="numeric precision (auto: bf16-mixed on CUDA, 32-true on CPU); part of the config "
        "hash, so another precision is another run",
    )
    p.add_argument(
        "--accumulate-grad-batches",
        type=_int_at_least(1),
        default=None,
        metavar="K",
        help="sum the gradients of K batches per optimiser step (effective batch K × batch size; "
        "part of the config hash when K > 1; default: the run config's, 1)",
    )
    p.add_argument(
        "--logger",
        default=None,
        choices=list(LOGGERS),
        help="training log under <out-dir>/logs/: csv (default) or tensorboard (needs "
        "`pip install 'wm_bench[tensorboard]'`)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_int_at_least(1),
        default=None,
        metavar="N",
        help="save a checkpoint every N optimiser steps, independent of validation (default: the "
        "run config's, else a twentieth of the run); a kill loses at most N steps",
    )


def version_text() -> str:
    """One line: this package's version and those of the libraries a result depends on (read
    from the installed distributions' metadata, so nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    return (f"wm-bench {v('wm_bench')} (torch {v('torch')}, triton {v('triton')}, lightning "
            f"{v('lightning')}, python {sys.version.split()[0]})")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wm-bench",
        description="Benchmarks and ablations for hybrid LM architectures (Wonderful Matrices, "
        "arXiv 2412.11834): RoPE in SSD, Dynamic Mask Attention, CDMoE, Cheems.",
        epilog="Examples:\n"
        "  wm-bench train --preset cheems --size tiny --steps 50\n"
        "  wm-bench reproduce mqar --scale smoke\n"
        "  wm-bench report mqar --pdf\n"
        "  wm-bench list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=version_text(),
        help="print the versions of wm_bench, torch, triton and lightning, then exit",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train one model (a preset on synthetic tokens, or a YAML run file)",
        description="Train one model and write one result JSON. Either a preset "
        "(--preset/--size, on a synthetic Markov token stream) or a full run file (--config).",
    )
    p.add_argument(
        "--preset", default=None, help="llama | mamba2 | jamba | cheems | doge (default: cheems)"
    )
    p.add_argument(
        "--size", default=None, help="tiny | cpu | 20m | 60m | 160m | 320m | 1.3b (default: tiny)"
    )
    p.add_argument(
        "--ffn",
        default=None,
        help="the preset's FFN: llama mlp|cdmoe, mamba2 none|mlp, jamba moe|mlp, cheems "
        "mlp|cdmoe, doge cdmoe|mlp (default: the first); the run is labelled with it",
    )
    p.add_argument(
        "--config",
        default=None,
        help="a YAML RunConfig instead of --preset/--size/--ffn; the flags below override its "
        "values only when given",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="NAME",
        help="the registered dataset a preset trains on: synthetic (a Markov token stream, the "
        "default), lm (a text corpus through a BPE), mqar, passkey; see `wm-bench list`",
    )
    p.add_argument(
        "--data-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the dataset's config (repeatable), e.g. --data lm --data-opt "
        "corpus=bundled --data-opt vocab_size=2048; the model's vocabulary follows the data's",
    )
    p.add_argument("--steps", type=_int_at_least(1), default=None, help="optimiser steps (50)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None, help="batch size (8)")
    p.add_argument(
        "--seq-len", type=_int_at_least(2), default=None, help="training length in tokens (64)"
    )
    p.add_argument("--lr", type=_positive_float, default=None, help="peak learning rate (1e-3)")
    p.add_argument("--seed", type=_int_at_least(0), default=None, help="run seed, ≥ 0 (0)")
    p.add_argument(
        "--checkpoint",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="save <out-dir>/checkpoints/.../last.ckpt and resume from it when rerun (default: "
        "the run config's, else off; --checkpoint-every turns it on)",
    )
    p.add_argument(
        "--dump-config", action="store_true", help="print the run config as YAML, do not train"
    )
    _add_common(p)

    p = sub.add_parser(
        "reproduce",
        help="run an experiment's grid (with per-cell LR sweeps through Optuna)",
        description="Run every config of an experiment at a scale; finished runs are skipped, so "
        "an interrupted run resumes. Then regenerate the experiment's report.",
    )
    p.add_argument("experiment", choices=EXPERIMENTS)
    p.add_argument(
        "--scale",
        default="auto",
        choices=SCALE_CHOICES,
        help="smoke (CPU plumbing), cpu (real CPU results), small (one GPU), paper; "
        "auto = small with CUDA, smoke without",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose tag KEY equals VALUE (repeatable), e.g. --only mixer=dma",
    )
    p.add_argument(
        "--limit", type=_int_at_least(1), default=None, help="run at most this many configs (≥ 1)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the planned runs (variant, tags, LR, seed, config hash, done or pending) and "
        "exit; trains and writes nothing. A staged task lists what its finished results plan so "
        "far (its later stages depend on the pending runs)",
    )
    p.add_argument("--no-report", action="store_true", help="do not regenerate the report")
    p.add_argument("--reports-dir", default=None, help="where the report goes (default: ./reports)")
    p.add_argument(
        "--until-decided",
        action="store_true",
        help="after the grid, add seeds to the experiment's claim comparison (rope: C1) until "
        "its verdict is holds or refuted or --max-seeds is reached; the repeated looks are paid "
        "for by alpha spending (wm_bench.sequential)",
    )
    p.add_argument(
        "--max-seeds", type=_int_at_least(2), default=12,
        help="seed budget per compared variant for --until-decided (default 12)",
    )  # fmt: skip
    p.add_argument(
        "--seed-step", type=_int_at_least(1), default=2,
        help="seeds added between two looks of --until-decided (default 2)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="checkpoint every run so a killed reproduce resumes mid-run (default: on; "
        "--no-checkpoint turns it off)",
    )
    _add_common(p)
    _sweeps("cli").add_storage_args(p, "journal:<out-dir>/optuna/<experiment>-<scale>.journal")
    _sweeps("cli").add_parser(sub, _add_common)  # wm-bench sweep (docs/sweeps.md)

    p = sub.add_parser("report", help="regenerate reports/ from results/ (and the PDF)")
    p.add_argument("experiments", nargs="*", help=f"default: all of {list(EXPERIMENTS)}")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--reports-dir", default=None)
    p.add_argument("--pdf", action="store_true", help="also render reports/report.pdf")

    p = sub.add_parser(
        "bench",
        help="benchmarks: train (CPU/GPU training tokens/s), ssd, attention, ... (see --help)",
        description="Run one benchmark module wm_bench.bench.<NAME>; the arguments after NAME "
        "go to that benchmark (try `wm-bench bench train --help`).",
    )
    p.add_argument("name", help="benchmark name, e.g. train, ssd")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark")

    p = sub.add_parser(
        "gpu",
        help="GPU readiness: compile (sm_90a AOT check), bundle (offline wheels), suite",
        description="compile: build every Triton kernel for sm_90a on this machine and read "
        "ptxas' resource report; bundle: gather what a lent GPU lacks; suite: one call on a GPU",
    )
    p.add_argument("action", choices=GPU_ACTIONS)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the action")

    p = sub.add_parser(
        "data",
        help="data pipeline: prepare (corpus → tokenizer → token shards, all cached)",
        description="prepare: fetch/read the corpus, train (or load) the tokenizer, tokenize each "
        "split into token shards; everything is cached and reused. Prints documents, characters "
        "and tokens per split and where the files are.",
    )
    p.add_argument("action", choices=DATA_ACTIONS)
    p.add_argument(
        "--corpus",
        default="bundled",
        help="bundled[:austen] | debian[:austen,python-doc,gcide] | files:<glob> | "
        "wikitext2:<dir> | hf:<dataset>[:<config>][@<N>] (default: bundled, the public-domain "
        "text shipped with the package; see docs/corpus.md)",
    )
    p.add_argument(
        "--vocab", type=_int_at_least(257), default=8192, help="BPE vocabulary size, ≥ 257 (8192)"
    )
    p.add_argument("--tokenizer", default="bpe", help="bpe (trained here) | hf:<name> (cached)")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="cache root (default: $WM_BENCH_CACHE or ~/.cache/wm_bench)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser(
        "eval",
        help="downstream tasks (lm-eval) on a saved model directory",
        description="Run downstream tasks through lm-evaluation-harness on a model saved by "
        "training with --save-model. Offline by default: the suite's task YAMLs over local "
        "JSON-lines files; tasks without a file are listed as 'not run: no data'.",
    )
    p.add_argument(
        "model_dir",
        help="a model directory: config.json, model.safetensors, tokenizer.json (or the old "
        "model.pt form); see docs/export.md",
    )
    p.add_argument(
        "--tasks",
        default="paper",
        help="comma-separated task keys, 'paper' (the paper's eight) or 'all' (default: paper)",
    )
    p.add_argument(
        "--shots",
        type=_int_at_least(0),
        nargs="+",
        default=[0],
        help="few-shot counts, each ≥ 0 (e.g. 0 5)",
    )
    p.add_argument(
        "--limit", type=_int_at_least(1), default=None, help="first N examples of each task (≥ 1)"
    )
    p.add_argument("--source", default="local", choices=["local", "hub"])
    p.add_argument(
        "--eval-data",
        default=None,
        metavar="DIR",
        help="task files (default: $WM_BENCH_EVAL_DATA, else the packaged sets: package:eval)",
    )
    p.add_argument("--batch-size", type=_int_at_least(1), default=16, help="≥ 1 (16)")
    p.add_argument(
        "--max-length", type=_int_at_least(1), default=None, help="longest prompt (tokens, ≥ 1)"
    )
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: CUDA if any)")
    p.add_argument("--seed", type=_int_at_least(0), default=1234, help="≥ 0 (1234)")
    p.add_argument("--output", default=None, help="also write the record as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    sub.add_parser(
        "lm-eval",
        help="lm-eval's own command line, with model 'wm_bench' and the wm_* tasks registered",
        description="Every argument goes to lm-eval (try `wm-bench lm-eval --help`). Before it "
        "runs, the adapter is registered as --model wm_bench (model_args pretrained=DIR) and the "
        "offline wm_<task> YAMLs whose data exists are put on --include_path.",
        add_help=False,
    )

    sub.add_parser("list", help="list presets, sizes, mixers, FFNs, data sources and experiments")
    return parser


def resolve_scale(scale: str) -> str:
    if scale != "auto":
        return scale
    import torch

    chosen = "small" if torch.cuda.is_available() else "smoke"
    print(f"--scale auto → {chosen} ({'CUDA found' if chosen == 'small' else 'no CUDA'})")
    return chosen


def _runtime(cfg: Any, args: argparse.Namespace, *, checkpoint_default: bool | None = None) -> Any:
    """`cfg` with the runtime flags that were given (a flag not given keeps the config's value).

    `checkpoint_default`: checkpointing when neither --checkpoint nor --no-checkpoint is given
    (reproduce: on; None: the config's). --checkpoint-every N implies checkpointing.
    """
    from wm_bench.config import replace

    changes: dict[str, Any] = {}
    if args.eval_data is not None:
        from wm_bench.eval.downstream import resolve_eval_data

        resolve_eval_data(args.eval_data)  # a clear error now, not after training
        if cfg.downstream is not None:
            changes["downstream"] = replace(cfg.downstream, eval_data=str(args.eval_data))
    train: dict[str, Any] = {}
    if args.impl is not None:
        train["impl"] = args.impl
    if args.threads is not None:
        train["num_threads"] = args.threads
    if args.quiet:
        train["progress"] = False
    if args.compile is not None:
        train["compile"] = args.compile
    if args.save_model is not None:
        train["save_model"] = args.save_model
    if args.accelerator is not None:
        train["accelerator"] = args.accelerator
    for flag in ("devices", "strategy", "num_nodes"):  # runtime: the global batch is the same
        if getattr(args, flag) is not None:
            train[flag] = getattr(args, flag)
    if args.command != "train" and (args.devices or 1) * (args.num_nodes or 1) > 1:
        raise ValueError(f"{args.command} --devices/--num-nodes > 1: only `wm-bench train` runs "
                         "one run on several ranks (docs/scale_out.md)")  # fmt: skip
    if args.precision is not None:
        train["precision"] = args.precision
    if args.accumulate_grad_batches is not None:  # TrainConfig stores 1 as unset (same hash)
        train["accumulate_grad_batches"] = args.accumulate_grad_batches
    if args.logger is not None:
        train["logger"] = args.logger
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint is False and args.checkpoint_every is not None:
        raise ValueError(
            f"--checkpoint-every {args.checkpoint_every} with --no-checkpoint: checkpoints are "
            "off; drop one of them"
        )
    if checkpoint is None:
        checkpoint = True if args.checkpoint_every is not None else checkpoint_default
    if checkpoint is not None:
        train["checkpoint"] = checkpoint
    if args.checkpoint_every is not None:
        train["checkpoint_every"] = args.checkpoint_every
    return replace(cfg, train=replace(cfg.train, **train), **changes)


def _train_config(args: argparse.Namespace) -> Any:
    """The RunConfig of `train`: a YAML file (flags given override it) or a preset."""
    from wm_bench.config import OptimConfig, RunConfig, TrainConfig, load_run_yaml, replace
    from wm_bench.data.synthetic import SyntheticDataConfig
    from wm_bench.presets import preset

    if args.config:
        flags = ("preset", "size", "ffn", "data")
        given = [f"--{k}" for k in flags if getattr(args, k) is not None]
        given += ["--data-opt"] if args.data_opt else []
        if given:
            raise ValueError(
                f"{' '.join(given)} with --config {args.config}: the model comes from the YAML "
                f"file; drop {' '.join(given)} or --config"
            )
        cfg = load_run_yaml(args.config)
        if args.seq_len is not None:
            if not hasattr(cfg.data, "seq_len"):
                raise ValueError(f"--seq-len: {cfg.data.name} data in {args.config} has no seq_len")
            cfg = replace(cfg, data=replace(cfg.data, seq_len=args.seq_len))
        if args.lr is not None:
            cfg = replace(cfg, optim=replace(cfg.optim, lr=args.lr))
        train = {"max_steps": args.steps, "batch_size": args.batch_size}
        train = {k: v for k, v in train.items() if v is not None}
        cfg = replace(cfg, train=replace(cfg.train, **train))
        return cfg if args.seed is None else replace(cfg, seed=args.seed)
    a = {k: getattr(args, k) if getattr(args, k) is not None else v
         for k, v in TRAIN_DEFAULTS.items()}  # fmt: skip
    kw = {"ffn": args.ffn} if args.ffn else {}
    model = preset(a["preset"], a["size"], **kw)
    if args.data is None and not args.data_opt:
        data: Any = SyntheticDataConfig(vocab_size=min(model.vocab_size, 512), seq_len=a["seq_len"])
    else:
        data = _data_config(args.data or "synthetic", args.data_opt, a["seq_len"])
        if getattr(data, "vocab_size", None):  # the embedding fits the data's vocabulary
            model = replace(model, vocab_size=data.vocab_size)
    return RunConfig(
        experiment="train",
        variant=f"{a['preset']}-{a['size']}" + (f"-{args.ffn}" if args.ffn else ""),
        model=model,
        data=data,
        optim=OptimConfig(lr=a["lr"]),
        train=TrainConfig(max_steps=a["steps"], batch_size=a["batch_size"]),
        seed=a["seed"],
        scale="smoke",
    )


def _data_config(name: str, opts: list[str], seq_len: int) -> Any:
    """The config of registered dataset `name` with --data-opt KEY=VALUE fields (values parsed as
    YAML scalars: 2048 → int, 1e-3 → float, a,b → str) and --seq-len where the data has one."""
    import dataclasses

    import yaml

    from wm_bench.config import from_dict
    from wm_bench.data import DATASETS

    if name not in DATASETS:
        raise ValueError(f"--data {name!r}; valid: {sorted(DATASETS)}")
    cls = DATASETS[name][1]
    fields = {f.name for f in dataclasses.fields(cls)} - {"name"}
    values: dict[str, Any] = {"name": name}
    if "seq_len" in fields:
        values["seq_len"] = seq_len
    for opt in opts:
        key, eq, text = opt.partition("=")
        if not eq or not key:
            raise ValueError(f"--data-opt {opt!r}: expected KEY=VALUE, e.g. vocab_size=2048")
        if key not in fields:
            raise ValueError(f"--data-opt {key}: not a field of {name} data; valid: "
                             f"{sorted(fields)}")  # fmt: skip
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        values[key] = list(value) if isinstance(value, tuple) else value
    return from_dict(cls, values, path=f"--data {name}")


def cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from wm_bench.config import to_dict
    from wm_bench.preflight import check_config, check_run
    from wm_bench.train import run

    cfg = _runtime(_train_config(args), args)
    if args.dump_config:
        check_config(cfg)
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    check_run(cfg, args.results_dir, out_dir=args.out_dir)  # before anything runs or is written
    rec = run(
        cfg, results_dir=args.results_dir, out_dir=args.out_dir, force=args.force,
        quiet=bool(args.quiet),
    )  # fmt: skip
    if rec.get("rank"):  # a DDP rank other than 0: rank 0 prints, writes and sets the exit code
        return 0
    _print_record(rec)
    return 0 if rec["status"] == "ok" else 1


def _print_record(rec: dict[str, Any]) -> None:
    if rec.get("skipped"):
        print(
            f"skipped: {rec['run_id']} already has a finished result ({rec['status']}); "
            "--force reruns it"
        )
    print(f"{rec['status']}: {rec['experiment']}/{rec['scale']}/{rec['run_id']}")
    if rec.get("error"):
        print(rec["error"], file=sys.stderr)
    for k, v in sorted(rec.get("metrics", {}).items()):
        print(f"  {k:<18} {v:.4f}")
    t = rec.get("timing", {})
    if t.get("tokens_per_s"):
        print(
            f"  {'tokens/s':<18} {t['tokens_per_s']:.0f}  ({t.get('steps')} steps, "
            f"{t.get('wall_s', 0):.1f} s)"
        )
    p = rec.get("params", {})
    if p:
        print(f"  {'params':<18} {p.get('total', 0):,} total, {p.get('active', 0):,} active")


def _matches(cfg: Any, only: list[str]) -> bool:
    for cond in only:
        if "=" not in cond:
            raise ValueError(f"--only {cond!r}: expected KEY=VALUE, e.g. mixer=dma")
        key, value = cond.split("=", 1)
        if key == "variant":
            if cfg.variant != value:
                return False
        elif str(cfg.tags.get(key)) != value:
            return False
    return True


def cmd_reproduce(args: argparse.Namespace) -> int:
    from wm_bench.config import config_hash
    from wm_bench.sweep import sweep_cells
    from wm_bench.train import run

    scale = resolve_scale(args.scale)
    task = importlib.import_module(f"tasks.{args.experiment}")
    if hasattr(task, "reproduce"):  # a task that measures rather than trains runs its own grid
        return _reproduce_own(task, scale, args)
    if args.dry_run:
        return _dry_run(task, scale, args)
    print(f"{args.experiment} @ {scale}")
    t0 = time.perf_counter()
    journal = Path(args.out_dir) / "optuna" / f"{args.experiment}-{scale}.journal"
    workers = _sweeps("workers").start_workers(cmd_reproduce, args)  # --workers N: N − 1 more
    # One storage (--storage, else the journal) for every worker: they split each round's runs.
    share = workers.share(storage=args.storage or journal, results_dir=args.results_dir)
    recs: list[dict[str, Any]] = []
    planned: set[str] = set()
    # A staged task (tune, then seeds at each variant's best LR) plans its later stages from the
    # results of the earlier ones: ask again after every round until it plans nothing new.
    for stage in range(1, 11):
        configs = _plan(task, scale, args)
        if configs is None:
            return 2
        configs = [c for c in configs if config_hash(c) not in planned]
        if args.limit is not None:
            configs = configs[: max(0, args.limit - len(planned))]
        if not configs:
            break
        planned |= {config_hash(c) for c in configs}
        _preflight_grid(configs, args)  # every config of the round, before its first run
        print(f"stage {stage}: {len(configs)} runs")
        recs += sweep_cells(
            configs,
            cell_key=task.cell_key,
            metric=task.METRIC,
            direction="maximize" if task.HIGHER_IS_BETTER else "minimize",
            force=args.force, **share,
            run_fn=lambda c: run(  # a per-run step bar on a terminal unless --quiet
                c, results_dir=args.results_dir, out_dir=args.out_dir, force=args.force,
                quiet=bool(args.quiet),
            ),
        )  # fmt: skip
    if args.until_decided:

        def run_all(configs: list[Any]) -> None:
            configs = [_runtime(c, args, checkpoint_default=True) for c in configs]
            _preflight_grid(configs, args)
            recs.extend(sweep_cells(
                configs, cell_key=task.cell_key, metric=task.METRIC,
                direction="maximize" if task.HIGHER_IS_BETTER else "minimize", **share,
                run_fn=lambda c: run(c, results_dir=args.results_dir, out_dir=args.out_dir,
                                     force=False, quiet=bool(args.quiet)),
            ))  # fmt: skip

        _until_decided(task, scale, args, run_all)
    counts = {s: sum(r["status"] == s for r in recs) for s in ("ok", "diverged", "failed")}
    failed = [r for r in recs if r["status"] != "ok"]
    print(
        f"done: {len(recs)} runs in {(time.perf_counter() - t0) / 60:.1f} min: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
    )
    for r in failed:
        first = (r.get("error") or "").splitlines()[:1]
        print(f"  {r['status']}: {r['run_id']}: {first[0] if first else ''}", file=sys.stderr)
    failed_workers = workers.join()  # the report waits for every local worker
    if not args.no_report:
        _report([args.experiment], args.results_dir, args.reports_dir, pdf=False)
    return 1 if failed or failed_workers else 0


def _dry_run(task: Any, scale: str, args: argparse.Namespace) -> int:
    """`reproduce --dry-run`: the planned runs with their config hash, done or pending."""
    from wm_bench.config import config_hash
    from wm_bench.results import find_done

    configs = _plan(task, scale, args)
    if configs is None:
        return 2
    if args.limit is not None:
        configs = configs[: args.limit]
    rows, pending = [], 0
    for c in configs:
        h = config_hash(c)
        rec = None if args.force else find_done(h, c.experiment, c.scale, c.variant,
                                                args.results_dir)  # fmt: skip
        state = f"done ({rec['status']})" if rec else ("pending (--force)" if args.force
                                                       else "pending")  # fmt: skip
        pending += rec is None
        tags = " ".join(f"{k}={v}" for k, v in c.tags.items() if k != "variant")
        rows.append((c.variant, tags, f"{c.optim.lr:g}", str(c.seed), h, state))
    heads = ("variant", "tags", "lr", "seed", "config hash", "state")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    print(f"{args.experiment} @ {scale}: {len(rows)} planned runs, {len(rows) - pending} done, "
          f"{pending} pending (dry run: nothing trained or written)")  # fmt: skip
    for r in (heads, *rows):
        print("  " + "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    import inspect

    if "results_dir" in inspect.signature(task.runs).parameters and pending:
        print("  (staged task: runs planned from these results, e.g. seeds at each variant's "
              "best LR, appear once the pending runs have finished)")  # fmt: skip
    return 0


def _until_decided(task: Any, scale: str, args: argparse.Namespace, run_all: Any) -> None:
    """Seeds for the task's claim comparison until decided (`wm_bench.sequential`)."""
    from wm_bench.sequential import until_decided

    if not hasattr(task, "decision"):
        raise ValueError(
            f"--until-decided: {args.experiment} has no seed-paired claim comparison; valid "
            f"experiments: {[e for e in EXPERIMENTS if hasattr(_task_module(e), 'decision')]}"
        )
    dec = task.decision(scale, results_dir=args.results_dir)
    n0 = max(2, dec.seeds_done())
    if n0 > args.max_seeds:
        print(f"--until-decided: {n0} seeds already exceed --max-seeds {args.max_seeds}")
        return
    run_all(dec.configs(n0))
    print(f"--until-decided: {dec.treated} vs {dec.baseline}, from {n0} to at most "
          f"{args.max_seeds} seeds, {args.seed_step} per look")  # fmt: skip
    until_decided(n0, args.max_seeds, args.seed_step, dec.judge,
                  lambda n: run_all(dec.configs(n)))  # fmt: skip


def _task_module(experiment: str) -> Any:
    return importlib.import_module(f"tasks.{experiment}")


def _plan(task: Any, scale: str, args: argparse.Namespace) -> list[Any] | None:
    """The task's configs at `scale` after --only, with the run-time options; None on bad --only.

    A task whose `runs` takes `results_dir` (staged tuning) is given --results-dir.
    """
    import inspect

    kw = {}
    if "results_dir" in inspect.signature(task.runs).parameters:
        kw["results_dir"] = args.results_dir
    configs = task.runs(scale, **kw)
    if args.only:
        tags = sorted({k for c in configs for k in c.tags})
        keys = {c.split("=", 1)[0] for c in args.only if "=" in c}
        bad = sorted(keys - set(tags) - {"variant"})
        if bad:
            print(
                f"error: --only key(s) {bad} are not tags of {args.experiment}; valid: {tags}",
                file=sys.stderr,
            )
            return None
        configs = [c for c in configs if _matches(c, args.only)]
        if not configs:
            print(
                f"error: nothing to run: --only {' '.join(args.only)} matches none of the "
                f"configs of {args.experiment} @ {scale}",
                file=sys.stderr,
            )
            return None
    return [_runtime(c, args, checkpoint_default=True) for c in configs]


def _preflight_grid(configs: list[Any], args: argparse.Namespace) -> None:
    """`preflight.check_run` for every config that will run (not those already done)."""
    from wm_bench.config import config_hash
    from wm_bench.preflight import check_run, check_writable
    from wm_bench.results import find_done

    check_writable(Path(args.out_dir), "output folder (--out-dir)")
    for c in configs:
        if not args.force and find_done(
            config_hash(c), c.experiment, c.scale, c.variant, args.results_dir
        ):
            continue
        try:
            check_run(c, args.results_dir)
        except ValueError as e:
            raise ValueError(
                f"{c.experiment} @ {c.scale}, run {c.variant} seed {c.seed}: {e}"
            ) from None


def _reproduce_own(task: Any, scale: str, args: argparse.Namespace) -> int:
    if args.impl not in (None, "auto"):
        print(
            f"error: --impl {args.impl}: {args.experiment} times every layer with impl=auto "
            "(and records what ran)",
            file=sys.stderr,
        )
        return 2
    unused = {
        "--compile/--no-compile": args.compile, "--save-model/--no-save-model": args.save_model,
        "--eval-data": args.eval_data, "--checkpoint/--no-checkpoint": args.checkpoint,
        "--checkpoint-every": args.checkpoint_every, "--accelerator": args.accelerator,
        "--devices": args.devices, "--precision": args.precision,
        "--accumulate-grad-batches": args.accumulate_grad_batches, "--logger": args.logger,
        "--storage": args.storage, "--workers": args.workers if args.workers != 1 else None,
    }  # fmt: skip
    given = [k for k, v in unused.items() if v is not None]
    if given:
        print(
            f"error: {', '.join(given)} given to {args.experiment}, which times layers and trains "
            "nothing; drop them",
            file=sys.stderr,
        )
        return 2
    rc = task.reproduce(
        scale, only=args.only, limit=args.limit, results_dir=args.results_dir,
        force=args.force, threads=args.threads, quiet=bool(args.quiet), dry_run=args.dry_run,
    )  # fmt: skip
    if rc != 2 and not args.no_report and not args.dry_run:
        _report([args.experiment], args.results_dir, args.reports_dir, pdf=False)
    return rc


def _report(
    experiments: list[str],
    results_dir: str | None,
    reports_dir: str | None,
    pdf: bool,
    *,
    sweeps: bool = False,
) -> None:
    """Rebuild the experiments' reports (and, with `sweeps`, every sweep's) and the PDF."""
    from wm_bench.report import build_pdf, build_report
    from wm_bench.results import default_results_dir, repo_root

    rdir = Path(results_dir) if results_dir else default_results_dir()
    odir = Path(reports_dir) if reports_dir else repo_root() / "reports"
    for exp in experiments:
        for path in build_report(exp, rdir, odir):
            print(f"wrote {path}")
    if sweeps:
        from wm_bench.report.sweeps import build_all

        for path in build_all(rdir, odir):
            print(f"wrote {path}")
    if pdf:
        print(f"wrote {build_pdf(odir)}")


def cmd_report(args: argparse.Namespace) -> int:
    exps = args.experiments or list(EXPERIMENTS)
    bad = [e for e in exps if e not in EXPERIMENTS]
    if bad:
        print(f"error: unknown experiment(s) {bad}; valid: {list(EXPERIMENTS)}", file=sys.stderr)
        return 2
    if args.results_dir is not None and not Path(args.results_dir).is_dir():
        raise ValueError(
            f"--results-dir {args.results_dir!r} is not a folder of results; give the folder that "
            "`train`/`reproduce --results-dir` wrote to"
        )
    _report(exps, args.results_dir, args.reports_dir, pdf=args.pdf, sweeps=not args.experiments)
    return 0


def _task_keys(text: str) -> list[str]:
    from wm_bench.eval.downstream import PAPER_TASKS, TASKS, check_tasks

    if text == "paper":
        return list(PAPER_TASKS)
    if text == "all":
        return list(TASKS)
    return list(check_tasks(k.strip() for k in text.split(",") if k.strip()))


def _check_device_flag(device: str | None) -> None:
    """--device must be cpu, cuda or cuda:N, and CUDA must exist when asked for."""
    if device is None:
        return
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"--device {device!r}; valid: cpu, cuda, cuda:N")
    if device.startswith("cuda"):
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= n:
            raise ValueError(f"--device {device!r}: this machine has {n} CUDA device(s); use cpu")


def cmd_eval(args: argparse.Namespace) -> int:
    from wm_bench.eval.downstream import TASKS, evaluate
    from wm_bench.eval.harness import WmBenchLM
    from wm_bench.results import write_json_atomic

    keys = _task_keys(args.tasks)
    _check_device_flag(args.device)
    if args.eval_data is not None:
        from wm_bench.eval.downstream import resolve_eval_data

        resolve_eval_data(args.eval_data)
    if args.output:
        from wm_bench.preflight import check_writable

        if Path(args.output).is_dir():
            raise ValueError(f"--output {args.output!r} is a directory; give a file name (.json)")
        check_writable(Path(args.output).parent, "--output folder")
    lm = WmBenchLM(
        pretrained=args.model_dir, batch_size=args.batch_size, max_length=args.max_length,
        device=args.device,
    )  # fmt: skip
    rec = evaluate(
        lm, keys, shots=args.shots, limit=args.limit, eval_data=args.eval_data,
        source=args.source, seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    from wm_bench.results import portable_path

    rec["model_dir"] = portable_path(args.model_dir)  # relative to the repository when inside it
    if rec.get("eval_data"):
        print(f"eval data: {rec['eval_data']}")
    print(f"{'task':<16} " + " ".join(f"{k}-shot".rjust(8) for k in rec["shots"]))
    for k in keys:
        if k in rec["not_run"]:
            print(f"{k:<16} {rec['not_run'][k]}")
            continue
        vals = [rec["metrics"].get(f"{k}@{n}shot/{TASKS[k].metric}") for n in rec["shots"]]
        cells = " ".join(("—" if v is None else f"{v:.3f}").rjust(8) for v in vals)
        print(f"{k:<16} {cells}  ({TASKS[k].metric}, n={rec['n_samples'].get(k)})")
    if args.output:
        write_json_atomic(Path(args.output), rec)
        print(f"wrote {args.output}")
    return 0


def cmd_lm_eval(argv: list[str]) -> int:
    """lm-eval's CLI with our model and offline tasks registered (see the subcommand's help)."""
    import tempfile

    from lm_eval.__main__ import cli_evaluate

    import wm_bench.eval.harness  # noqa: F401  (registers --model wm_bench)
    from wm_bench.eval.downstream import render_tasks, resolve_eval_data

    with tempfile.TemporaryDirectory(prefix="wm_bench_tasks_") as tmp:
        extra = []
        if "--include_path" not in argv and argv and argv[0] != "--help":
            render_tasks(resolve_eval_data(None), tmp)
            extra = ["--include_path", tmp]
        old = sys.argv
        sys.argv = ["lm-eval", *argv, *extra]
        try:
            cli_evaluate()
        except SystemExit as e:
            return int(e.code or 0)
        finally:
            sys.argv = old
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from wm_bench.data import DATASETS
    from wm_bench.layers.ffn import FFNS
    from wm_bench.layers.mixers import MIXERS
    from wm_bench.presets import PRESETS, SIZES

    print(
        json.dumps(
            {
                "presets": sorted(PRESETS),
                "sizes": list(SIZES),
                "mixers": sorted(MIXERS),
                "ffns": sorted(FFNS),
                "data": sorted(DATASETS),
                "experiments": list(EXPERIMENTS),
            },
            indent=2,
        )
    )
    return 0


def _delegate(module: str, argv: list[str], what: str) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise ValueError(
            f"no {what} {module.rsplit('.', 1)[-1]!r} ({module} does not exist)"
        ) from None
    return int(mod.main(argv) or 0)


def cmd_bench(args: argparse.Namespace) -> int:
    return _delegate(f"wm_bench.bench.{args.name}", args.args, "benchmark")


def cmd_gpu(args: argparse.Namespace) -> int:
    return _delegate(f"wm_bench.gpu.{args.action}", args.args, "gpu action")


def cmd_data(args: argparse.Namespace) -> int:
    from wm_bench.data.corpus import CorpusError, default_cache_dir, parse_spec
    from wm_bench.data.lm import describe, prepare
    from wm_bench.data.tokenizer import check_tokenizer_spec
    from wm_bench.preflight import check_writable

    parse_spec(args.corpus)  # bad flags are one line before anything is read or fetched
    check_tokenizer_spec(args.tokenizer, args.vocab)
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    check_writable(cache, "cache folder (--cache-dir)")
    t0 = time.perf_counter()
    try:
        prepared = prepare(
            args.corpus, tokenizer=args.tokenizer, vocab_size=args.vocab,
            cache_dir=args.cache_dir, progress=not args.quiet,
        )  # fmt: skip
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe(prepared))
    print(f"time       {time.perf_counter() - t0:.1f} s")
    return 0


COMMANDS = {
    "train": cmd_train,
    "reproduce": cmd_reproduce,
    "report": cmd_report,
    "bench": cmd_bench,
    "gpu": cmd_gpu,
    "data": cmd_data,
    "list": cmd_list,
    "eval": cmd_eval,
    "sweep": lambda args: _sweeps("cli").cmd_sweep(args),
}


def _sweeps(module: str) -> Any:
    return importlib.import_module(f"wm_bench.sweeps.{module}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "lm-eval":  # everything after it belongs to lm-eval's own parser
        return cmd_lm_eval(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad flag (2, one line already printed)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    from wm_bench.train.signals import RunInterrupted, install_handlers

    install_handlers()  # SIGTERM/SIGINT: save at a step boundary, exit 128 + signal
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as e:  # bad input: one clear line, no traceback
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except RunInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
