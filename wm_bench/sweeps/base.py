"""A sweep's base run: a task's config at a scale (by variant and `where`), a preset, or a run
file, then the file's `base.set` paths (`spec`)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from wm_bench.config import RunConfig, config_hash, to_dict
from wm_bench.sweeps.space import apply_paths, number

BASE_KINDS = ("task", "preset", "config")


def build_base(base: Any, name: str, where: str, extra: Mapping[str, Any]) -> tuple[RunConfig, str]:
    """The base run from `base:` (task / preset / config), then its `set:` paths."""
    if not isinstance(base, dict):
        raise ValueError(f"{where} base: a mapping with one of {list(BASE_KINDS)}")
    kinds = [k for k in BASE_KINDS if k in base]
    if len(kinds) != 1:
        raise ValueError(f"{where} base: give exactly one of {list(BASE_KINDS)}, got {kinds}")
    kind = kinds[0]
    allowed = {
        "task": {"task", "scale", "variant", "where", "set"},
        "preset": {"preset", "size", "ffn", "scale", "set"},
        "config": {"config", "set"},
    }[kind]
    unknown = sorted(set(base) - allowed)
    if unknown:
        raise ValueError(
            f"{where} base: unknown key(s) {unknown}; valid with {kind}: {sorted(allowed)}"
        )
    if kind == "task":
        cfg, text = _task_base(base, where)
    elif kind == "preset":
        cfg, text = _preset_base(base, where)
    else:
        from wm_bench.config import load_run_yaml

        cfg, text = load_run_yaml(str(base["config"])), f"run file {base['config']}"
    sets = base.get("set") or {}
    if not isinstance(sets, dict):
        raise ValueError(f"{where} base.set: a mapping of dotted paths to values")
    sets = {**sets, **extra}  # --set on the command line wins
    cfg = apply_paths(cfg, {k: number(v) for k, v in sets.items()}, f"{where} base.set")
    cfg = dataclasses.replace(cfg, experiment=f"sweeps/{name}", tags={"sweep": name})
    if sets:
        text += "; set " + ", ".join(f"{k} = {v}" for k, v in sets.items())
    return cfg, text


def _task_base(base: dict, where: str) -> tuple[RunConfig, str]:
    import importlib

    from wm_bench.config import SCALES

    task_name, scale = str(base["task"]), base.get("scale", "smoke")
    if scale not in SCALES:
        raise ValueError(f"{where} base.scale: {scale!r}; valid: {list(SCALES)}")
    try:
        task = importlib.import_module(f"wm_bench_tasks.{task_name}")
    except ModuleNotFoundError:
        raise ValueError(f"{where} base.task: no task {task_name!r}") from None
    if not hasattr(task, "runs"):
        raise ValueError(f"{where} base.task: {task_name} trains nothing (no runs())")
    quick = _make_run(task, scale, base)
    if quick is not None:
        return (
            quick,
            f"task {task_name} @ {scale}, variant {quick.variant} (config {config_hash(quick)})",
        )
    configs = task.runs(scale)
    if "variant" in base:
        variants = sorted({c.variant for c in configs})
        configs = [c for c in configs if c.variant == base["variant"]]
        if not configs:
            raise ValueError(
                f"{where} base.variant: {base['variant']!r} is not a variant of "
                f"{task_name} @ {scale}; valid: {variants}"
            )
    for key, want in (base.get("where") or {}).items():
        configs = [c for c in configs if _matches(c, key, number(want))]
        if not configs:
            raise ValueError(
                f"{where} base.where: no {task_name} @ {scale} config has {key} = {want!r}"
            )
    if len({config_hash(c) for c in configs}) > 1:
        differ = _differences(configs)
        raise ValueError(
            f"{where} base: {len(configs)} configs of {task_name} @ {scale} match; "
            f"pick one with where: {{path: value}} (they differ in {differ})"
        )
    c = configs[0]
    return c, f"task {task_name} @ {scale}, variant {c.variant} (config {config_hash(c)})"


def _make_run(task: Any, scale: str, base: dict) -> RunConfig | None:
    """The LM tasks' make_run(scale, variant, seed, lr) for a base picked by variant, seed and
    LR: the config runs() has for it, without building every variant (parameter matching
    makes that take seconds); None where it does not apply."""
    make = getattr(task, "make_run", None)
    where = {k: number(v) for k, v in (base.get("where") or {}).items()}
    if make is None or "variant" not in base or set(where) - {"seed", "optim.lr"}:
        return None
    if list(inspect.signature(make).parameters) != ["scale", "variant", "seed", "lr"]:
        return None
    try:
        return make(scale, str(base["variant"]), where.get("seed", 0), where.get("optim.lr"))
    except ValueError:
        return None  # an unknown variant: runs() gives the error with the valid ones


def _matches(cfg: RunConfig, key: str, want: Any) -> bool:
    """A tag KEY, or a dotted config path, equals `want`."""
    if key in cfg.tags:
        return cfg.tags[key] == want or str(cfg.tags[key]) == str(want)
    node: Any = to_dict(cfg)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node == want


def _differences(configs: list[RunConfig]) -> list[str]:
    flat = [_flatten(to_dict(c)) for c in configs]
    keys = sorted(set().union(*flat))
    return [
        k for k in keys if len({repr(f.get(k)) for f in flat}) > 1 and not k.startswith("tags.")
    ][:6]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _preset_base(base: dict, where: str) -> tuple[RunConfig, str]:
    from wm_bench.config import OptimConfig, TrainConfig
    from wm_bench.data.synthetic import SyntheticDataConfig
    from wm_bench.presets import preset

    kw = {"ffn": base["ffn"]} if "ffn" in base else {}
    size = str(base.get("size", "tiny"))
    try:
        model = preset(str(base["preset"]), size, **kw)
    except (ValueError, KeyError) as e:
        raise ValueError(f"{where} base: {' '.join(str(e).split())}") from None
    variant = f"{base['preset']}-{size}" + (f"-{base['ffn']}" if "ffn" in base else "")
    cfg = RunConfig(
        experiment="sweep",
        variant=variant,
        model=model,
        data=SyntheticDataConfig(vocab_size=min(model.vocab_size, 512), seq_len=64),
        optim=OptimConfig(lr=1e-3),
        train=TrainConfig(max_steps=50, batch_size=8),
        scale=str(base.get("scale", "smoke")),
    )
    return cfg, f"preset {variant} on synthetic tokens"
