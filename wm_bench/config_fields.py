"""Field markers of the config dataclasses, and which fields the config hash reads.

A module of its own, below `wm_bench.config` and every package that defines a config class
(data, layers), so that those classes can mark their fields without importing the config tree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


def registry_field(kind: str, **kwargs: Any) -> Any:
    """A dataclass field holding a config picked from the `kind` registry by its `name`."""
    return field(metadata={"registry": kind}, **kwargs)


def runtime_field(default: Any, **kwargs: Any) -> Any:
    """A field that changes how a run executes, not what it computes: excluded from the hash."""
    return field(default=default, metadata={"runtime": True}, **kwargs)


def hash_if_set_field(**kwargs: Any) -> Any:
    """A field added after results existed: left out of the hash while None, so earlier
    configs keep theirs."""
    return field(default=None, metadata={"hash_if_set": True}, **kwargs)


def hashed(f: dataclasses.Field, value: Any) -> bool:
    """Whether field `f`, holding `value`, is part of the config hash."""
    if f.metadata.get("runtime"):
        return False
    return not (f.metadata.get("hash_if_set") and value is None)
