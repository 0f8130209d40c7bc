"""Argument types of the `wm-bench` command line, shared by its subcommands and `wm-bench sweep`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error ("error: ...", exit code 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def int_at_least(lo: int) -> Callable[[str], int]:
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


def positive_float(text: str) -> float:
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
