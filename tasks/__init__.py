"""Experiments: each subpackage builds the run configs of one figure or table (`runs(scale)`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def pick(table: Mapping[str, T], key: str, what: str) -> T:
    """table[key]; else a ValueError "<what> <key>; valid: <the table's keys>" (what names the
    experiment and the kind of key, e.g. "arch: unknown scale")."""
    if key not in table:
        raise ValueError(f"{what} {key!r}; valid: {list(table)}")
    return table[key]
