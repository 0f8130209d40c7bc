"""A sweep's search space: dotted config paths, their values or ranges, Optuna's sampler and
pruner, all built from the YAML (`spec`) with one ValueError per problem."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wm_bench.config import RunConfig, from_dict, to_dict

FIXED_PATHS = ("experiment", "variant", "tags", "scale")  # set by the sweep, not swept
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def number(x: Any) -> Any:
    """A number written as text (YAML 1.1 reads 1e-3 as a string) as that number."""
    if isinstance(x, str) and _NUMBER.fullmatch(x.strip()):
        return float(x) if any(ch in x for ch in ".eE") else int(x)
    return x


# --------------------------------------------------------------------------------------------
# Dotted paths


def assign(tree: dict, path: str, value: Any, where: str) -> None:
    """Set `path` ("a.b.c"; "*" = every key of a mapping) in a config dict, in place.

    Only existing fields can be set: an unknown one is a ValueError naming the valid ones."""
    parts = path.split(".")
    if not path or any(not part for part in parts):
        raise ValueError(f"{where}: {path!r} is not a dotted field path, e.g. optim.lr")
    if parts[0] in FIXED_PATHS:
        raise ValueError(
            f"{where}: {parts[0]!r} is set by the sweep itself; sweep model, "
            "data, optim, train, seed or downstream fields"
        )
    nodes, done = [tree], []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt = []
        for node in nodes:
            here = ".".join(done) or "the run config"
            if not isinstance(node, dict):
                raise ValueError(
                    f"{where}: unknown field path {path!r}: {here} is "
                    f"{node!r}, not a config (set the whole of {here})"
                )
            keys = list(node) if part == "*" else [part]
            for k in keys:
                if k not in node:
                    raise ValueError(
                        f"{where}: unknown field path {path!r}: {here} has no "
                        f"field {k!r}; valid: {sorted(node)}"
                    )
                if last:
                    node[k] = value
                else:
                    nxt.append(node[k])
        nodes = nxt
        done.append(part)


def apply_paths(cfg: RunConfig, changes: Mapping[str, Any], where: str) -> RunConfig:
    """`cfg` with each dotted path set, rebuilt (and so validated) through `from_dict`."""
    import copy

    tree = copy.deepcopy(to_dict(cfg))
    for path, value in changes.items():
        assign(tree, path, copy.deepcopy(value), where)
    try:
        return from_dict(RunConfig, tree)
    except ValueError as e:
        raise ValueError(f"{where}: {' '.join(str(e).split())}") from None


# --------------------------------------------------------------------------------------------
# The search space


@dataclass(frozen=True)
class Param:
    """One swept path: a list of values (grid), named choices, or an int / float range."""

    path: str
    values: tuple[Any, ...] = ()  # the trial's values: scalars, or the labels of `choices`
    choices: dict[str, Any] | None = None  # label → config value
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def distribution(self) -> Any:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if not self.is_range:
            return CategoricalDistribution(self.values)
        if self.integer:
            return IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def config_value(self, value: Any) -> Any:
        """What the config gets for trial value `value` (a choice's mapping for its label)."""
        return self.choices[value] if self.choices is not None else value

    def describe(self) -> str:
        if self.is_range:
            kind = "int" if self.integer else "float"
            extra = (", log" if self.log else "") + (f", step {self.step:g}" if self.step else "")
            return f"{kind} in [{self.low:g}, {self.high:g}]{extra}"
        return "one of " + ", ".join(str(v) for v in self.values)


def parse_param(path: str, spec: Any, where: str) -> Param:
    """A space entry: a list, {choices: {label: value} | list}, or {low, high[, log, step]}."""
    w = f"{where} space.{path}"
    if isinstance(spec, dict) and "choices" in spec:
        if set(spec) != {"choices"}:
            raise ValueError(f"{w}: a choices entry has only the key 'choices'")
        spec = spec["choices"]
        if isinstance(spec, dict):
            if not spec or not all(isinstance(k, str) for k in spec):
                raise ValueError(f"{w}: choices need one or more string labels")
            return Param(path, tuple(spec), choices=dict(spec))
    if isinstance(spec, list):
        values = tuple(number(v) for v in spec)
        if not values:
            raise ValueError(f"{w}: an empty list; give one or more values")
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
            raise ValueError(
                f"{w}: list values must be numbers, strings, booleans or null; "
                "for mappings write choices: {label: value, ...}"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"{w}: repeated values {list(values)}")
        return Param(path, values)
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"low", "high", "log", "step", "type"})
        if unknown or "low" not in spec or "high" not in spec:
            raise ValueError(
                f"{w}: a range is {{low, high[, log, step, type]}}; got keys {sorted(spec)}"
            )
        low, high, step = number(spec["low"]), number(spec["high"]), number(spec.get("step"))
        kind = spec.get(
            "type",
            "int"
            if all(isinstance(x, int) and not isinstance(x, bool) for x in (low, high))
            else "float",
        )
        if kind not in ("int", "float"):
            raise ValueError(f"{w}: type {kind!r}; valid: ['int', 'float']")
        for name, x in (("low", low), ("high", high), ("step", step)):
            if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
                raise ValueError(f"{w}: {name}={x!r} is not a number")
        if not isinstance(spec.get("log", False), bool):
            raise ValueError(f"{w}: log={spec['log']!r}; valid: true, false")
        p = Param(
            path, low=low, high=high, log=spec.get("log", False), step=step, integer=kind == "int"
        )
        try:
            p.distribution()
        except ValueError as e:
            raise ValueError(f"{w}: {e}") from None
        return p
    raise ValueError(
        f"{w}: {spec!r}; give a list of values, choices: {{label: value}}, or a "
        "range {low, high, log}"
    )


def _options(kind: str, name: str, cls: type, opts: dict, where: str) -> Any:
    """`cls(**opts)`; unknown or bad options become one ValueError naming the valid ones."""
    valid = sorted(k for k in inspect.signature(cls).parameters if k not in ("self",))
    bad = sorted(set(opts) - set(valid))
    if bad:
        raise ValueError(f"{where} {kind} {name}: unknown option(s) {bad}; valid: {valid}")
    try:
        return cls(**opts)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} {kind} {name}: {e}") from None


def named(value: Any, key: str, valid: tuple[str, ...], where: str) -> tuple[str, dict]:
    """`name` or {name: ..., option: ...} → (name, options)."""
    if isinstance(value, str):
        name, opts = value, {}
    elif isinstance(value, dict) and isinstance(value.get("name"), str):
        name, opts = value["name"], {k: number(v) for k, v in value.items() if k != "name"}
    else:
        raise ValueError(f"{where} {key}: {value!r}; give a name or {{name: ..., options}}")
    if name not in valid:
        raise ValueError(f"{where} {key}: unknown {key} {name!r}; valid: {list(valid)}")
    return name, opts


def make_sampler(name: str, opts: dict, seed_offset: int = 0, where: str = "sweep") -> Any:
    """The Optuna sampler of a sampled sweep, its seed advanced by `seed_offset` (the number
    of trials so far, so that every worker's next draw is its own)."""
    import optuna

    if name == "grid":
        raise ValueError("the grid is run by the claim engine, not by a sampler")
    import warnings

    opts = dict(opts)
    opts["seed"] = int(opts.get("seed", 0)) + seed_offset
    cls = optuna.samplers.RandomSampler
    if name == "tpe":
        opts.setdefault("constant_liar", True)  # running trials count as bad: workers spread
        cls = optuna.samplers.TPESampler
    with warnings.catch_warnings():  # constant_liar & co. are "experimental" options
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _options("sampler", name, cls, opts, where)


def make_pruner(name: str, opts: dict, where: str = "sweep") -> Any:
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    cls = optuna.pruners.MedianPruner if name == "median" else optuna.pruners.HyperbandPruner
    return _options("pruner", name, cls, opts, where)
