"""Training-throughput benchmark: our presets vs transformers' LlamaForCausalLM, in one run."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from wm_bench.bench.common import (
    add_output_options,
    columns,
    interleaved_times,
    load_average,
    machine_line,
    paired_ratio,
    print_and_exit,
    print_table,
    summarize,
    synchronizer,
    torch_threads,
)
from wm_bench.bench.train_models import (
    HF_NOT_INSTALLED,
    HF_ROW,
    OPTIM,
    PRESET_FFNS,
    Contender,
    build_hf,
    build_ours,
    make_train_step,
    parse_spec,
)
from wm_bench.flops import flops_per_token, mfu
from wm_bench.presets import SIZES
from wm_bench.results import now_iso, provenance, repo_root, write_json_atomic

__all__ = ["DEFAULT_PRESETS", "GOALS", "HF_NOT_INSTALLED", "bench_train", "main", "parse_spec"]

SCHEMA_VERSION = 1
DEFAULT_PRESETS: tuple[str, ...] = (
    "llama",
    "mamba2",
    "mamba2:none",
    "jamba",
    "cheems",
    "cheems:cdmoe",
    "doge",
)
# (name, numerator row, denominator row, threshold): the goals on the tokens/s ratio.
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("llama/hf >= 1.0", "llama:mlp", HF_ROW, 1.0),
    ("cheems/llama >= 0.5", "cheems:mlp", "llama:mlp", 0.5),
    ("mamba2/llama >= 0.5", "mamba2:mlp", "llama:mlp", 0.5),
)
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("llama/hf", "llama:mlp", HF_ROW),
    ("cheems/llama", "cheems:mlp", "llama:mlp"),
    ("mamba2/llama", "mamba2:mlp", "llama:mlp"),
    ("mamba2(no mlp)/llama", "mamba2:none", "llama:mlp"),
    ("cheems(cdmoe)/llama", "cheems:cdmoe", "llama:mlp"),
    ("jamba/llama", "jamba:mlp", "llama:mlp"),
    ("doge/llama", "doge:mlp", "llama:mlp"),
)


def _ratio(tps: dict[str, float], num: str, den: str) -> float | None:
    """tokens/s of `num` over `den` (None when either row did not run)."""
    if num in tps and den in tps and tps[den] > 0:
        return tps[num] / tps[den]
    return None


def default_out(device: str, size: str) -> Path:
    """results/bench/train-<device>.json at the `cpu` size, train-<device>-<size>.json else."""
    dev = torch.device(device).type
    stem = f"train-{dev}" if size == "cpu" else f"train-{dev}-{size}"
    return repo_root() / "results" / "bench" / f"{stem}.json"


def bench_train(
    presets: Sequence[str] = DEFAULT_PRESETS,
    size: str = "cpu",
    *,
    device: str = "cpu",
    batch_size: int = 8,
    seq_len: int = 256,
    steps: int = 10,
    warmup: int = 2,
    threads: int | None = 2,
    with_hf: bool = True,
    compile_models: bool = False,
    out: str | Path | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Training tokens/s (forward + backward + AdamW step) of presets and the HF Llama yardstick.

    Every model trains on the same fixed random batch with a plain PyTorch loop (no Lightning),
    fp32, the trainer's AdamW groups. After `warmup` untimed steps each, the timed steps run
    round-robin (one step per model per round, order rotated each round), so drift on a shared
    machine hits every row alike; tokens/s = batch_size · seq_len / median step time.

    Args:
        presets: specs "name" (MLP variant) or "name:ffn", e.g. ("llama", "cheems:cdmoe").
        size: a preset size ("tiny", "cpu", ...).
        device: "cpu" or a CUDA device.
        batch_size: sequences per step B.
        seq_len: tokens per sequence T.
        steps: timed steps per model (the median is reported).
        warmup: untimed steps per model first (≥ 1 recommended: allocator, compile).
        threads: intra-op CPU threads (None: torch's default).
        with_hf: add transformers' LlamaForCausalLM (a "not run" row when not installed).
        compile_models: wrap every model in torch.compile (default inductor) first.
        out: write the JSON here (atomically); None writes nothing.
        progress: print one line per warm-up and timed round to stderr.
        seed: seed of the weights and of the batch.
    Returns:
        the result dict (also written to `out`): settings, rows, ratios, goals, provenance.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {list(SIZES)}")
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("steps", steps)):
        if value < 1:
            raise ValueError(f"{name}={value} must be ≥ 1")
    if warmup < 0:
        raise ValueError(f"warmup={warmup} must be ≥ 0")
    specs = [parse_spec(s) for s in presets]
    started, load_before = now_iso(), load_average()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda m: None)

    with torch_threads(threads if torch.device(device).type == "cpu" else None) as n_threads:
        contenders: list[Contender] = []
        for name, ffn in specs:
            torch.manual_seed(seed)
            contenders.append(build_ours(f"{name}:{ffn}", size, device, compile_models))
        if with_hf:
            torch.manual_seed(seed)
            contenders.append(build_hf(size, seq_len, device, compile_models))
        vocab = SIZES[size].vocab  # every preset (and the HF mirror) uses the size's vocabulary
        g = torch.Generator().manual_seed(seed)
        batch = torch.randint(0, vocab, (batch_size, seq_len + 1), generator=g).to(device)

        # Warm-up one model at a time, so a failing row is recorded and left out of the timing.
        for c in contenders:
            if c.status != "ok":
                continue
            try:
                c.step = make_train_step(c.model, c.forward, batch)
                sync = synchronizer(device)
                for i in range(warmup):
                    t0 = time.perf_counter()
                    c.step()
                    sync()
                    c.warmup_s.append(time.perf_counter() - t0)
                    log(f"[bench train] warm-up {c.name}: step {i + 1}/{warmup}")
            except Exception as exc:  # a broken row must not hide the others
                c.status = f"failed: {type(exc).__name__}: {exc}"
                c.step = None
        runnable = {c.name: c.step for c in contenders if c.step is not None}
        times = (
            interleaved_times(
                runnable,
                repeats=steps,
                warmup=0,
                sync=synchronizer(device),
                on_round=lambda r, n: log(f"[bench train] timed round {r}/{n}"),
            )
            if runnable
            else {}
        )

    tokens = batch_size * seq_len
    tps = {name: tokens / statistics.median(t) for name, t in times.items()}
    is_cuda = torch.device(device).type == "cuda"
    gpu_name = torch.cuda.get_device_name(torch.device(device)) if is_cuda else None
    rows = []
    for c in contenders:
        row: dict[str, Any] = {"name": c.name, "kind": c.kind, "status": c.status}
        if c.name in times:
            row.update(summarize(times[c.name]))
            row["step_s"] = times[c.name]
            row["tokens_per_s"] = tps[c.name]
            if c.kind == "ours":  # FLOPs per token by wm_bench.flops' stated formula
                f = flops_per_token(c.model, seq_len)["train_flops_per_token"]
                row["train_flops_per_token"] = f
                row.update(mfu(tps[c.name], f, gpu_name))
        row["warmup_s"] = c.warmup_s
        row["params"] = c.params
        row["config"] = c.config
        rows.append(row)
    ratios = {name: _ratio(tps, num, den) for name, num, den in RATIOS}
    ratios_paired = {name: paired_ratio(times, num, den) for name, num, den in RATIOS}
    goals = {}
    for name, num, den, threshold in GOALS:
        value = _ratio(tps, num, den)
        goals[name] = {
            "ratio": value,
            "ratio_paired": paired_ratio(times, num, den),
            "threshold": threshold,
            "met": None if value is None else value >= threshold,
        }
    result = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "train",
        "settings": {
            "size": size,
            "device": device,
            "batch_size": batch_size,
            "seq_len": seq_len,
            "tokens_per_step": tokens,
            "steps": steps,
            "warmup": warmup,
            "threads": n_threads if torch.device(device).type == "cpu" else None,
            "dtype": "float32",
            "mfu_peak": "dense bf16 tensor-core peak (wm_bench.flops); fp32 steps sit far below it",
            "optimizer": OPTIM,
            "loss": "cross_entropy(logits, next token) + aux_loss",
            "loop": "plain PyTorch, round-robin over models, order rotated each round",
            "compile": compile_models,
            "seed": seed,
            "presets": [f"{n}:{f}" for n, f in specs],
            "with_hf": with_hf,
        },
        "rows": rows,
        "ratios": ratios,  # of median tokens/s (what the goals are judged on)
        "ratios_paired": ratios_paired,  # median of per-round ratios (a drift check)
        "goals": goals,
        "machine": machine_line(n_threads, device),
        # Other processes on a shared machine slow every row alike (round-robin) but add noise.
        "load_average_1min": {"before": load_before, "after": load_average()},
        "provenance": provenance(
            {"type": torch.device(device).type, "threads": n_threads, "torch": torch.__version__}
        ),
        "started_at": started,
        "finished_at": now_iso(),
    }
    if out is not None:
        write_json_atomic(out, result)
    return result


TABLE_KEYS = "name params_m tokens_per_s step_ms spread_pct tflops vs_llama status"  # COLUMNS keys


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the printed table: params in millions, step in ms, speed relative to our llama."""
    base = next((r.get("tokens_per_s") for r in result["rows"] if r["name"] == "llama:mlp"), None)
    out = []
    for r in result["rows"]:
        tps = r.get("tokens_per_s")
        out.append(
            {
                "name": r["name"],
                "params_m": r["params"].get("total", 0) / 1e6 if r["params"] else None,
                "tokens_per_s": tps,
                "step_ms": r["median_s"] * 1e3 if "median_s" in r else None,
                "spread_pct": r["spread"] * 100 if "spread" in r else None,
                "tflops": r.get("model_tflops"),
                "vs_llama": tps / base if tps and base else None,
                "status": r["status"],
            }
        )
    return out


def print_result(result: dict[str, Any]) -> None:
    """Print the table, the ratios and the goal verdicts."""
    s = result["settings"]
    print_table(
        table_rows(result),
        columns(TABLE_KEYS),
        title=(
            f"Training throughput, size {s['size']}: B={s['batch_size']}, T={s['seq_len']}, "
            f"fp32, AdamW, median of {s['steps']} round-robin steps\n{result['machine']}"
        ),
    )
    for name, goal in result["goals"].items():
        verdict = "n/a" if goal["met"] is None else ("met" if goal["met"] else "NOT met")
        if goal["ratio"] is None:
            print(f"goal {name}: — → {verdict}")
        else:
            paired = goal["ratio_paired"]
            print(f"goal {name}: {goal['ratio']:.2f} (per-round median {paired:.2f}) → {verdict}")
    before = result["load_average_1min"]["before"]  # "after" includes this run's own load
    if s["device"] == "cpu" and before is not None and before > 0.5 * (os.cpu_count() or 1):
        print(
            f"note: 1-min load average {before:.1f} on {os.cpu_count()} cores before the run: "
            "other processes competed for the CPU; trust ratios more than absolute tokens/s, "
            "and rerun on a quiet machine"
        )


def build_parser() -> argparse.ArgumentParser:
    """The `bench train` argument parser."""
    p = argparse.ArgumentParser(
        prog="wm-bench bench train",
        description="Training tokens/s (forward + backward + AdamW step, fp32) of our presets "
        "side by side with transformers' LlamaForCausalLM of the llama preset's shapes, in one "
        "run, round-robin, median of steps. Goals: our llama ≥ 1.0× HF; cheems and "
        "mamba2 within 2× of our llama.",
        epilog="Preset specs: NAME or NAME:FFN, NAME in llama mamba2 jamba cheems doge; a bare "
        "NAME is its MLP variant. FFNs: "
        + "; ".join(f"{n}: {'|'.join(f)}" for n, f in PRESET_FFNS.items())
        + ".\nExample: wm-bench bench train --presets llama cheems cheems:cdmoe --threads 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--presets",
        nargs="+",
        default=list(DEFAULT_PRESETS),
        metavar="SPEC",
        help=f"models to time (default: {' '.join(DEFAULT_PRESETS)})",
    )
    p.add_argument("--size", default="cpu", choices=list(SIZES), help="preset size (default cpu)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step (default 8)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default 256)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model (default 2)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers Llama yardstick")
    p.add_argument("--compile", action="store_true", help="torch.compile every model first")
    add_output_options(
        p,
        "results/bench/train-<device>.json at size cpu, train-<device>-<size>.json otherwise",
        "per-round progress lines",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line, print the table and write the JSON.

    Args:
        argv: arguments without the program name (None: sys.argv[1:]).
    Returns:
        exit status 0.
    """
    args = build_parser().parse_args(argv)
    for spec in args.presets:
        parse_spec(spec)  # fail before any model is built
    out = Path(args.out) if args.out else default_out(args.device, args.size)
    result = bench_train(
        args.presets,
        args.size,
        device=args.device,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        steps=args.steps,
        warmup=args.warmup,
        threads=args.threads,
        with_hf=not args.no_hf,
        compile_models=args.compile,
        out=out,
        progress=not args.quiet,
    )
    return print_and_exit(result, out, print_result)


if __name__ == "__main__":
    raise SystemExit(main())
