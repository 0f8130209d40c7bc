"""The `wm-bench` argument parser: every subcommand and its flags (`wm-bench sweep`'s own flags live
in `wm_bench.sweeps.cli`)."""

from __future__ import annotations

import argparse
import sys

from wm_bench.cli.types import (
    Parser,
    add_choice,
    add_count,
    add_switch,
    int_at_least,
    positive_float,
)
from wm_bench.config import ACCELERATORS, LOGGERS, PRECISIONS, STRATEGIES

# tasks/<name>/ modules: runs(scale) (training experiments) or reproduce(scale, ...) (measuring)
EXPERIMENTS = ("mqar", "expert_speed", "rope", "ffn", "arch", "mqar_dma", "passkey")


SCALE_CHOICES = ("smoke", "cpu", "small", "paper", "auto")


GPU_ACTIONS = ("compile", "bundle", "suite")


DATA_ACTIONS = ("prepare",)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results-dir", default=None, help="where result JSON goes (default: ./results)"
    )
    p.add_argument("--out-dir", default="outputs", help="logs, checkpoints, Optuna journals")
    add_choice(
        p,
        "--impl",
        ["auto", "reference", "triton"],
        "kernel implementation (auto: triton on CUDA, reference on CPU; default: the run "
        "config's, which is auto)",
    )
    add_count(p, "--threads", "torch CPU threads, ≥ 1 (default: the run config's, else torch's)")
    add_switch(
        p,
        "--compile",
        "torch.compile the model for training steps (CPU: +11–33%% tokens/s after a 30–110 s "
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
    add_switch(
        p,
        "--save-model",
        "save each trained model to <out-dir>/models/<experiment>/<scale>/<run id>/ "
        "(loadable by `wm-bench eval` and lm-eval's wm_bench model); default: the run config's, "
        "else off",
    )
    add_choice(
        p,
        "--accelerator",
        ACCELERATORS,
        "where to train (auto: CUDA when present, else CPU; default: the run config's)",
    )
    add_count(
        p,
        "--devices",
        "devices (one process each) per node (default: the run config's, 1); --batch-size "
        "stays the global batch, split over devices × nodes (docs/scale_out.md)",
    )
    add_choice(
        p, "--strategy", STRATEGIES, "auto (Lightning's: DDP on several devices), ddp or fsdp"
    )
    add_count(p, "--num-nodes", "machines (torchrun or SLURM starts the processes; 1)")
    add_choice(
        p,
        "--precision",
        PRECISIONS,
        "numeric precision (auto: bf16-mixed on CUDA, 32-true on CPU); part of the config "
        "hash, so another precision is another run",
    )
    add_count(
        p,
        "--accumulate-grad-batches",
        "sum the gradients of K batches per optimiser step (effective batch K × batch size; "
        "part of the config hash when K > 1; default: the run config's, 1)",
        metavar="K",
    )
    add_choice(
        p,
        "--logger",
        LOGGERS,
        "training log under <out-dir>/logs/: csv (default) or tensorboard (needs "
        "`pip install 'wm_bench[tensorboard]'`)",
    )
    add_count(
        p,
        "--checkpoint-every",
        "save a checkpoint every N optimiser steps, independent of validation (default: the "
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

    return (
        f"wm-bench {v('wm_bench')} (torch {v('torch')}, triton {v('triton')}, lightning "
        f"{v('lightning')}, python {sys.version.split()[0]})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (imports nothing heavy: torch comes with the command)."""
    from wm_bench.sweeps import cli as sweep_cli

    parser = Parser(
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
        "--version",
        action="version",
        version=version_text(),
        help="print the versions of wm_bench, torch, triton and lightning, then exit",
    )
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
    p.add_argument("--steps", type=int_at_least(1), default=None, help="optimiser steps (50)")
    p.add_argument("--batch-size", type=int_at_least(1), default=None, help="batch size (8)")
    p.add_argument(
        "--seq-len", type=int_at_least(2), default=None, help="training length in tokens (64)"
    )
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (1e-3)")
    p.add_argument("--seed", type=int_at_least(0), default=None, help="run seed, ≥ 0 (0)")
    add_switch(
        p,
        "--checkpoint",
        "save <out-dir>/checkpoints/.../last.ckpt and resume from it when rerun (default: "
        "the run config's, else off; --checkpoint-every turns it on)",
    )
    p.add_argument(
        "--dump-config", action="store_true", help="print the run config as YAML, do not train"
    )
    add_common(p)

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
        "--limit", type=int_at_least(1), default=None, help="run at most this many configs (≥ 1)"
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
        "--max-seeds",
        type=int_at_least(2),
        default=12,
        help="seed budget per compared variant for --until-decided (default 12)",
    )
    p.add_argument(
        "--seed-step",
        type=int_at_least(1),
        default=2,
        help="seeds added between two looks of --until-decided (default 2)",
    )
    add_switch(
        p,
        "--checkpoint",
        "checkpoint every run so a killed reproduce resumes mid-run (default: on; "
        "--no-checkpoint turns it off)",
    )
    add_common(p)
    sweep_cli.add_storage_args(p, "journal:<out-dir>/optuna/<experiment>-<scale>.journal")
    sweep_cli.add_parser(sub, add_common)  # wm-bench sweep (docs/sweeps.md)

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
        "--vocab", type=int_at_least(257), default=8192, help="BPE vocabulary size, ≥ 257 (8192)"
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
        type=int_at_least(0),
        nargs="+",
        default=[0],
        help="few-shot counts, each ≥ 0 (e.g. 0 5)",
    )
    p.add_argument(
        "--limit", type=int_at_least(1), default=None, help="first N examples of each task (≥ 1)"
    )
    p.add_argument("--source", default="local", choices=["local", "hub"])
    p.add_argument(
        "--eval-data",
        default=None,
        metavar="DIR",
        help="task files (default: $WM_BENCH_EVAL_DATA, else the packaged sets: package:eval)",
    )
    p.add_argument("--batch-size", type=int_at_least(1), default=16, help="≥ 1 (16)")
    p.add_argument(
        "--max-length", type=int_at_least(1), default=None, help="longest prompt (tokens, ≥ 1)"
    )
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: CUDA if any)")
    p.add_argument("--seed", type=int_at_least(0), default=1234, help="≥ 0 (1234)")
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
