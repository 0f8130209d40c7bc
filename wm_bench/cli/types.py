"""Argument types of the `wm-bench` command line, shared by its subcommands and `wm-bench sweep`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error ("error: ...", exit code 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _convert(text: str, convert: Callable[[str], Any], what: str, need: str) -> Any:
    """convert(text), or an argparse error naming the text and what would be valid."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}; need {need}") from None


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ lo, else a message naming the value and the range."""

    def parse(text: str) -> int:
        value = _convert(text, int, "an integer", f"an integer ≥ {lo}")
        if value < lo:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; need an integer ≥ {lo}")
        return value

    parse.__name__ = f"integer ≥ {lo}"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (a learning rate)."""
    value = _convert(text, float, "a number", "a finite number > 0, e.g. 1e-3")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; need a finite number > 0")
    return value


# The option kinds most subcommands share. Each defaults to None, "not given": a run config's
# own value then stands, and only a flag on the command line overrides it.


def add_count(
    p: argparse.ArgumentParser, flag: str, help: str, *, lo: int = 1, metavar: str = "N"
) -> None:
    """An integer option ≥ lo (workers, threads, devices, steps, ...)."""
    p.add_argument(flag, type=int_at_least(lo), default=None, metavar=metavar, help=help)


def add_choice(p: argparse.ArgumentParser, flag: str, choices: Iterable[str], help: str) -> None:
    """An option that takes one of `choices`."""
    p.add_argument(flag, default=None, choices=list(choices), help=help)


def add_switch(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    """--flag / --no-flag."""
    p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)
