"""`wm-bench train`, and the runtime flags every command that trains applies to its configs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

# `train` without --config: these values stand in for flags not given (a YAML run file keeps its
# own values; a flag given overrides it).
TRAIN_DEFAULTS = {
    "preset": "cheems",
    "size": "tiny",
    "steps": 50,
    "batch_size": 8,
    "seq_len": 64,
    "lr": 1e-3,
    "seed": 0,
}


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
        raise ValueError(
            f"{args.command} --devices/--num-nodes > 1: only `wm-bench train` runs "
            "one run on several ranks (docs/scale_out.md)"
        )
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
    a = {
        k: getattr(args, k) if getattr(args, k) is not None else v
        for k, v in TRAIN_DEFAULTS.items()
    }
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
            raise ValueError(
                f"--data-opt {key}: not a field of {name} data; valid: {sorted(fields)}"
            )
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
        cfg,
        results_dir=args.results_dir,
        out_dir=args.out_dir,
        force=args.force,
        quiet=bool(args.quiet),
    )
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
