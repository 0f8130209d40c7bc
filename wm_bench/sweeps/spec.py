"""`sweeps/<name>.yaml`: a base run, a search space over dotted config paths, the objective,
sampler, pruner and budget; parsed strictly and validated through the config dataclasses.

    description: DMA window × LR on MQAR (smoke)
    base: {task: mqar, scale: smoke, variant: dma, set: {train.max_steps: 200}}
    space:
      model.blocks.M.mixer.window: [4, 8, 16]           # a grid (list of values)
      optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}  # a range (tpe / random only)
      model.blocks.*.ffn: {choices: {mlp: {name: mlp}, moe: {name: moe, top_k: 2}}}
    objective: {metric: valid/accuracy, direction: maximize}
    sampler: grid            # grid | tpe | random, or {name: tpe, seed: 0, ...}
    pruner: {name: median, n_warmup_steps: 40}   # none | median | hyperband
    trials: 6

Every error is one ValueError naming the file, the key and what is valid (docs/sweeps.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wm_bench.config import RunConfig, config_hash
from wm_bench.sweeps.base import build_base
from wm_bench.sweeps.space import (
    Param,
    apply_paths,
    assign,
    make_pruner,
    make_sampler,
    named,
    parse_param,
)

TOP_KEYS = ("description", "base", "space", "objective", "sampler", "pruner", "trials", "heartbeat")
SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "hyperband")
_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")


def sweeps_dir() -> Path:
    from wm_bench.results import repo_root

    return repo_root() / "sweeps"


def available() -> list[str]:
    """The sweep names shipped in sweeps/."""
    return sorted(p.stem for p in sweeps_dir().glob("*.yaml"))


def resolve(text: str) -> Path:
    """A sweep argument: a YAML path, or a name in sweeps/; ValueError naming the known ones."""
    p = Path(text)
    if p.suffix in (".yaml", ".yml") or p.parent != Path("."):
        if not p.is_file():
            raise ValueError(f"sweep file {text!r} does not exist")
        return p
    found = sweeps_dir() / f"{text}.yaml"
    if not found.is_file():
        raise ValueError(f"no sweep {text!r}; valid: {available()} (or a path to a YAML file)")
    return found


# --------------------------------------------------------------------------------------------
# The sweep


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep (`load_sweep`)."""

    name: str
    path: Path
    description: str
    base: RunConfig  # experiment "sweeps/<name>", tags {"sweep": name}
    base_text: str  # how the base was chosen, for the report
    params: tuple[Param, ...]
    metric: str
    direction: str
    sampler: str
    sampler_options: dict[str, Any]
    pruner: str
    pruner_options: dict[str, Any]
    trials: int
    heartbeat: dict[str, int]

    @property
    def experiment(self) -> str:
        return f"sweeps/{self.name}"

    def distributions(self) -> dict[str, Any]:
        return {p.path: p.distribution() for p in self.params}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the listed values, in YAML order (the last path fastest)."""
        combos = itertools.product(*(p.values for p in self.params))
        return [dict(zip((p.path for p in self.params), c)) for c in combos]

    def config(self, params: Mapping[str, Any]) -> RunConfig:
        """The run of one trial: the base with each parameter's value at its path(s)."""
        by = {p.path: p for p in self.params}
        changes = {k: by[k].config_value(v) for k, v in params.items()}
        return apply_paths(self.base, changes, f"{self.path}: trial {dict(params)}")

    def label(self, params: Mapping[str, Any]) -> str:
        return " ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in params.items())


def pruning_caveats(spec: SweepSpec) -> list[str]:
    """Warnings about a grid the median pruner would judge unfairly (empty when it would not).

    The median pruner stops a trial whose value at a step trails the median of the trials that
    reported that step before it, once `n_startup_trials` (optuna's default 5) have finished. A
    grid runs in YAML order, so when its first n_startup_trials points share one value of a
    parameter the grid varies, every other value of that parameter is judged against that one
    alone, which is the comparison the sweep exists to make.
    """
    if spec.sampler != "grid" or spec.pruner != "median":
        return []
    k = int(spec.pruner_options.get("n_startup_trials", 5))
    first = spec.grid()[:k]
    out = []
    for prm in spec.params:
        seen = {repr(pt[prm.path]) for pt in first}
        if len(set(map(repr, prm.values))) > 1 and len(seen) == 1:
            out.append(
                f"the median pruner's {k} start-up trial(s) all have {prm.path} = "
                f"{_short(first[0][prm.path])}, so its other values are judged against that "
                "one alone; put a parameter with fewer values first in `space`, raise "
                "n_startup_trials, or use `pruner: none`"
            )
    return out


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def load_sweep(
    text: str,
    *,
    trials: int | None = None,
    sets: Mapping[str, Any] | None = None,
    check: bool = True,
) -> SweepSpec:
    """Parse and validate `sweeps/<name>.yaml` (or a path); one ValueError per problem.

    Args:
        text: a sweep name in sweeps/ or a YAML path.
        trials: overrides the file's budget (`--trials`).
        sets: dotted paths set on the base after the file's `base.set` (`--set`).
        check: also build every grid point (or a range's ends) and check it can run
            (`preflight.check_config`: the model builds, the data fits).
    """
    import yaml

    path = resolve(text)
    name, where = path.stem, str(path)
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{where}: a sweep's file name is its name: lower-case letters, digits and _ only"
        )
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark is not None else where
        raise ValueError(f"{at}: YAML syntax error: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected a mapping with keys {list(TOP_KEYS)}")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {list(TOP_KEYS)}")
    for key in ("base", "space", "objective"):
        if key not in doc:
            raise ValueError(f"{where}: missing {key!r}")
    base, base_text = build_base(doc["base"], name, where, sets or {})
    space = doc["space"]
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{where} space: a mapping of dotted paths to values or ranges")
    params = tuple(parse_param(str(k), v, where) for k, v in space.items())
    metric, direction = _objective(doc["objective"], where)
    sampler, s_opts = named(doc.get("sampler", "grid"), "sampler", SAMPLERS, where)
    pruner, p_opts = named(doc.get("pruner", "none"), "pruner", PRUNERS, where)
    spec = SweepSpec(
        name=name,
        path=path,
        description=str(doc.get("description", "")),
        base=base,
        base_text=base_text,
        params=params,
        metric=metric,
        direction=direction,
        sampler=sampler,
        sampler_options=s_opts,
        pruner=pruner,
        pruner_options=p_opts,
        trials=0,
        heartbeat=_heartbeat(doc.get("heartbeat"), where),
    )
    spec = dataclasses.replace(spec, trials=_budget(spec, doc.get("trials"), trials, where))
    _check_strategy(spec, where)
    _check_points(spec, where, check)
    return spec


def _objective(obj: Any, where: str) -> tuple[str, str]:
    if isinstance(obj, str):
        obj = {"metric": obj}
    if not isinstance(obj, dict) or "metric" not in obj:
        raise ValueError(f"{where} objective: {{metric: <split/name>, direction: ...}}")
    bad = sorted(set(obj) - {"metric", "direction"})
    if bad:
        raise ValueError(f"{where} objective: unknown key(s) {bad}; valid: [direction, metric]")
    metric = str(obj["metric"])
    if "/" not in metric:
        raise ValueError(
            f"{where} objective.metric: {metric!r}; a result metric is "
            "split/name, e.g. valid/loss, valid/accuracy, test/ppl@128"
        )
    direction = obj.get("direction")
    if direction is None:
        direction = _direction_of(metric, where)
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"{where} objective.direction: {direction!r}; valid: maximize, minimize")
    return metric, direction


def _direction_of(metric: str, where: str) -> str:
    known = {
        "loss": False,
        "ppl": False,
        "accuracy": True,
        "acc": True,
        "acc_norm": True,
        "exact_match": True,
    }  # the names wm_bench.train.evaluation.HIGHER_IS_BETTER knows
    last = metric.split("/")[-1].split("@")[0]
    if last not in known:
        raise ValueError(
            f"{where} objective: no known direction for {metric!r}; add "
            "direction: maximize or minimize"
        )
    return "maximize" if known[last] else "minimize"


def _heartbeat(hb: Any, where: str) -> dict[str, int]:
    if hb is None:
        return {}
    if not isinstance(hb, dict) or set(hb) - {"interval", "grace"}:
        raise ValueError(f"{where} heartbeat: {{interval: seconds, grace: seconds}}")
    out = {}
    for k, v in hb.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{where} heartbeat.{k}={v!r}: an integer number of seconds ≥ 1")
        out[{"interval": "heartbeat_interval", "grace": "grace_period"}[k]] = v
    return out


def _budget(spec: SweepSpec, given: Any, override: int | None, where: str) -> int:
    n = override if override is not None else given
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{where} trials={n!r}: an integer ≥ 1")
    if spec.sampler == "grid":
        ranged = [p.path for p in spec.params if p.is_range]
        if ranged:
            raise ValueError(
                f"{where}: sampler grid needs a list of values for every path; "
                f"{ranged} are ranges (give lists, or use sampler tpe)"
            )
        size = len(spec.grid())
        if n is not None and n > size:
            raise ValueError(f"{where} trials={n}: the grid has only {size} points")
        return size if n is None else n
    if n is None:
        raise ValueError(f"{where}: sampler {spec.sampler} needs a budget: trials: N")
    return n


def _check_strategy(spec: SweepSpec, where: str) -> None:
    if spec.sampler != "grid":
        make_sampler(spec.sampler, spec.sampler_options, where=where)
    make_pruner(spec.pruner, spec.pruner_options, where=where)
    if spec.pruner == "none":
        return
    if not spec.metric.startswith("valid/"):
        raise ValueError(
            f"{where} pruner {spec.pruner}: runs report only valid/* metrics while "
            f"they train, not {spec.metric!r}; prune on a valid/ objective or use "
            "pruner: none"
        )
    if spec.base.train.eval_every < 1:
        raise ValueError(
            f"{where} pruner {spec.pruner}: the base run validates only at the end "
            "(train.eval_every = 0); set e.g. base.set: {train.eval_every: 50}"
        )
    if getattr(spec.base.train, "world_size", 1) > 1:
        raise ValueError(f"{where} pruner {spec.pruner}: pruning needs single-device runs")


def _check_points(spec: SweepSpec, where: str, check: bool) -> None:
    """Every value alone on the base, then every grid point (or a range's two ends) whole."""
    for p in spec.params:
        ends = (p.low, p.high) if p.is_range else p.values
        for v in ends:
            spec.config({p.path: int(v) if p.is_range and p.integer else v})
    points = spec.grid()[: spec.trials] if spec.sampler == "grid" else []
    seen: dict[str, dict] = {}
    check_config = _checker() if check else (lambda cfg: None)
    for params in points:
        cfg = spec.config(params)
        h = config_hash(cfg)
        if h in seen:
            raise ValueError(
                f"{where}: points {seen[h]} and {params} are the same run (config "
                f"{h}): a swept path changes only runtime fields"
            )
        seen[h] = params
        try:
            check_config(cfg)
        except ValueError as e:
            raise ValueError(f"{where}: point {params} cannot run: {e}") from None
    if spec.sampler != "grid" and check:
        check_config(spec.base)


def _checker() -> Callable[[RunConfig], None]:
    from wm_bench.preflight import check_config

    return check_config


__all__ = ["Param", "SweepSpec", "apply_paths", "assign", "available", "load_sweep", "resolve"]
