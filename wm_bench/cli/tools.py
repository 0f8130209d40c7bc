"""The smaller commands: eval, lm-eval, list, bench, gpu and data."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from pathlib import Path

from wm_bench.cli.parser import EXPERIMENTS

# The `wm-bench eval` options named after DownstreamConfig fields (--batch-size → batch_size).
EVAL_FLAGS = ("limit", "source", "batch_size", "max_length", "eval_data")


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
    from wm_bench.config import DownstreamConfig
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
    d = DownstreamConfig(
        tasks=tuple(keys), shots=tuple(args.shots), **{f: getattr(args, f) for f in EVAL_FLAGS}
    )
    lm = WmBenchLM(
        pretrained=args.model_dir,
        batch_size=d.batch_size,
        max_length=d.max_length,
        device=args.device,
    )
    rec = evaluate(lm, d, seed=args.seed, progress=not args.quiet)
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
            args.corpus,
            tokenizer=args.tokenizer,
            vocab_size=args.vocab,
            cache_dir=args.cache_dir,
            progress=not args.quiet,
        )
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe(prepared))
    print(f"time       {time.perf_counter() - t0:.1f} s")
    return 0
