"""`wm-bench` command line: a thin layer over train.run, the sweep driver, tasks and reports.

`parser` defines every subcommand and flag; `train`, `reproduce` (with `report`) and `tools`
(eval, lm-eval, list, bench, gpu, data) run them, and `wm_bench.sweeps.cli` runs `sweep`.
"""

from __future__ import annotations

import argparse
import sys

from wm_bench.cli.parser import build_parser
from wm_bench.cli.reproduce import cmd_report, cmd_reproduce
from wm_bench.cli.tools import cmd_bench, cmd_data, cmd_eval, cmd_gpu, cmd_list, cmd_lm_eval
from wm_bench.cli.train import _runtime, _train_config, cmd_train

# `_runtime`, `_train_config` and `build_parser` are imported from here by the tests.
__all__ = ["COMMANDS", "_runtime", "_train_config", "build_parser", "main"]

COMMANDS = {
    "train": cmd_train,
    "reproduce": cmd_reproduce,
    "report": cmd_report,
    "bench": cmd_bench,
    "gpu": cmd_gpu,
    "data": cmd_data,
    "list": cmd_list,
    "eval": cmd_eval,
    "sweep": lambda args: _sweep(args),
}


def _sweep(args: argparse.Namespace) -> int:
    """`wm-bench sweep`, imported when run (`wm_bench.sweeps.cli` imports this package's types)."""
    from wm_bench.sweeps.cli import cmd_sweep

    return cmd_sweep(args)


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
