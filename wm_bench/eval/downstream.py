"""Downstream tasks through lm-evaluation-harness: which tasks, where their data is, how to run.

The paper's eight (docs/spec.md §7): MMLU, TriviaQA, ARC-Easy, ARC-Challenge, PIQA, HellaSwag,
OpenBookQA, Winogrande; plus LAMBADA, COPA and BoolQ, whose offline files ship with the package.
Each task has one headline metric: acc (ARC-E, PIQA, Winogrande, MMLU, COPA, BoolQ, LAMBADA),
acc_norm (ARC-C, HellaSwag, OBQA), exact_match (TriviaQA).

Two sources:
- "local" (the default; offline): the suite's own task YAMLs in `wm_bench/eval/tasks/`, named
  `wm_<task>`, read JSON-lines files from an eval-data directory (schemas in each YAML's
  header). A task whose file is absent is reported as "not run: no data" — never silently
  dropped (MMLU and HellaSwag with the packaged data). Prompts are the Eval Gauntlet's
  ("Question: … Answer:"), not lm-eval's own, so scores compare within the suite only.
- "hub": lm-eval's standard task names (`arc_easy`, `mmlu`, …); lm-eval downloads their data
  from the Hugging Face hub, so this needs the network.

The eval-data directory (`resolve_eval_source`): `--eval-data DIR`, else `$WM_BENCH_EVAL_DATA`,
else the nine sets shipped in `wm_bench/eval/data/` (xz; sources and licences in its NOTICE.md),
decompressed once into `<$WM_BENCH_CACHE>/eval_data/` and checked against their manifest's
sha256 on every load (`wm_bench.eval.packaged`). Results name it symbolically: `package:eval`,
`$WM_BENCH_EVAL_DATA`, or the given path (relative to the repository root when inside it) —
never this machine's cache path.

The paper used lighteval's prompts and 5-shot (0-shot before Dec 18, 2024); the suite runs
lm-eval at 0 and 5 shots, so its numbers are not the paper's protocol.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wm_bench.eval.catalog import PAPER_TASKS, SOURCES, TASKS, check_tasks

if TYPE_CHECKING:
    from wm_bench.config import DownstreamConfig

ENV_VAR = "WM_BENCH_EVAL_DATA"


NO_DATA = "not run: no data"


def resolve_eval_source(path: str | Path | None) -> tuple[Path, str]:
    """(eval-data directory, its symbolic label for results) in the order `--eval-data DIR`
    (label: the path as given, relative to the repository root when inside it), then
    `$WM_BENCH_EVAL_DATA` (label: "$WM_BENCH_EVAL_DATA"), then the packaged sets (label:
    "package:eval"; decompressed and sha256-checked by `wm_bench.eval.packaged`).

    Raises FileNotFoundError when a given path or the variable's value is not a directory, and
    `EvalDataError` (a ValueError) naming the packaged file that fails its check.
    """
    if path is not None:
        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(
                f"--eval-data {str(path)!r} is not a directory; it should hold the task files "
                f"({', '.join(TASKS[k].file for k in PAPER_TASKS)}, …)"
            )
        from wm_bench.results import portable_path

        return p, portable_path(path)
    env = os.environ.get(ENV_VAR)
    if env:
        if not Path(env).is_dir():
            raise FileNotFoundError(
                f"${ENV_VAR}={env!r} is not a directory; point it at a folder of task files, or "
                "unset it to use the packaged data"
            )
        return Path(env), f"${ENV_VAR}"
    from wm_bench.eval.packaged import LABEL, packaged_eval_data

    return packaged_eval_data(), LABEL


def resolve_eval_data(path: str | Path | None) -> Path:
    """The eval-data directory to use (see `resolve_eval_source`, which also gives its label)."""
    return resolve_eval_source(path)[0]


def task_yaml(key: str, eval_data: Path) -> str:
    """The text of task `key`'s YAML with its data directory filled in."""
    text = resources.files("wm_bench.eval").joinpath("tasks", f"{key}.yaml").read_text()
    return text.replace("${EVAL_DATA}", str(Path(eval_data).resolve()))


def render_tasks(eval_data: Path, out_dir: str | Path, keys: Any = None) -> list[str]:
    """Write the YAML of every task in `keys` (default: all) whose data file exists to out_dir.

    Returns the lm-eval task names written ("wm_<key>"); pass out_dir to lm-eval's
    `--include_path` (or `TaskManager(include_path=…)`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for k in check_tasks(keys if keys is not None else TASKS):
        if (Path(eval_data) / TASKS[k].file).is_file():
            (out / f"wm_{k}.yaml").write_text(task_yaml(k, eval_data))
            names.append(f"wm_{k}")
    return names


def plan(
    keys: Any, eval_data: Path | None, source: str, label: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """(tasks to run, {task: reason} for those that cannot): missing local files → no data.

    `label` names the data directory in the reasons (default: the path itself).
    """
    if source not in SOURCES:
        raise ValueError(f"downstream source {source!r}; valid: {list(SOURCES)}")
    keys = check_tasks(keys)
    if source == "hub":
        return list(keys), {}
    run, skipped = [], {}
    for k in keys:
        if eval_data is not None and (eval_data / TASKS[k].file).is_file():
            run.append(k)
        else:
            where = label or eval_data
            if eval_data is None:
                where = f"no eval-data directory (${ENV_VAR})"
            skipped[k] = f"{NO_DATA} ({TASKS[k].file} not in {where})"
    return run, skipped


@contextlib.contextmanager
def _quiet(on: bool) -> Iterator[None]:
    """Silence the progress bars (ours read TQDM_DISABLE) and lm-eval's log below ERROR."""
    if not on:
        yield
        return
    import lm_eval.api.task as lm_task  # builds requests under a bar with no `disable` switch

    old_env = os.environ.get("TQDM_DISABLE")
    logger = logging.getLogger("lm_eval")
    old_level, old_bar = logger.level, lm_task.tqdm
    os.environ["TQDM_DISABLE"] = "1"
    logger.setLevel(logging.ERROR)
    lm_task.tqdm = functools.partial(old_bar, disable=True)
    try:
        yield
    finally:
        lm_task.tqdm = old_bar
        logger.setLevel(old_level)
        if old_env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old_env


def _id_ranges(ids: list[int]) -> str:
    """Sorted ids as compact ranges, e.g. [0, 1, 2, 5] → "0-2,5"."""
    parts: list[str] = []
    for i in ids:
        if parts and "-" in parts[-1] and int(parts[-1].split("-")[1]) == i - 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        elif parts and "-" not in parts[-1] and int(parts[-1]) == i - 1:
            parts[-1] = f"{parts[-1]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts)


def _gold_index(sample: dict[str, Any]) -> int | None:
    """The gold choice of a multiple-choice sample: its target when that is an index, else the
    doc's "gold" (Winogrande's choices are contexts and its target is the shared continuation)."""
    target = sample.get("target")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    gold = (sample.get("doc") or {}).get("gold")
    return gold if isinstance(gold, int) and not isinstance(gold, bool) else None


def per_example(samples: list[dict[str, Any]], metric: str, lm: Any) -> dict[str, Any]:
    """Compact per-example scores of one task at one shot count, from lm-eval's logged samples.

    Returns:
        {"metric": the headline metric, "docs": doc ids as ranges ("0-99"), "chance": mean of
        1 / number of choices (0 for generation), "acc": the headline metric per example (0/1),
        and for log-likelihood tasks "ll_tok": the gold continuation's log-likelihood per token,
        for multiple-choice tasks "margin": log P(gold) − max log P(other choice) (nats, raw
        sums: > 0 exactly when `acc` counts the example)}; lists in doc-id order.
    """
    rows = sorted(samples, key=lambda x: int(x.get("doc_id", 0)))
    counts = getattr(lm, "continuation_tokens", {}) or {}
    encode = getattr(lm, "_encode_pair", None)

    def n_tokens(ctx: str, cont: str) -> int:
        n = counts.get((ctx, cont))
        if n is None and encode is not None:
            n = len(encode(ctx, cont)[1])
        return max(1, int(n or 1))

    out: dict[str, Any] = {"metric": metric, "docs": _id_ranges([int(x["doc_id"]) for x in rows])}
    out["acc"] = [round(float(x.get(metric, 0.0)), 4) for x in rows]
    lls, margins, chance = [], [], []
    for x in rows:
        args, resps = x.get("arguments") or [], x.get("filtered_resps") or []
        scored = [r for r in resps if isinstance(r, (list, tuple)) and len(r) == 2]
        if not scored or len(scored) != len(args) or not isinstance(args[0], (list, tuple)):
            lls = margins = []
            break
        if len(scored) == 1:  # a log-likelihood task (LAMBADA): the continuation is the gold
            gold = 0
        else:
            gold = _gold_index(x)
            if gold is None or not 0 <= gold < len(scored):
                lls = margins = []
                break
            others = [float(r[0]) for j, r in enumerate(scored) if j != gold]
            margins.append(round(float(scored[gold][0]) - max(others), 4))
        ctx, cont = args[gold][0], args[gold][1]
        lls.append(round(float(scored[gold][0]) / n_tokens(ctx, cont), 4))
        chance.append(1.0 / len(scored) if len(scored) > 1 else 0.0)
    out["chance"] = round(sum(chance) / len(chance), 4) if chance else 0.0
    if lls:
        out["ll_tok"] = lls
    if margins and len(margins) == len(rows):
        out["margin"] = margins
    return out


def headline(task_results: dict[str, Any], metric: str) -> tuple[float, float | None]:
    """(value, stderr) of `metric` from one task's lm-eval results, whatever filter name it has."""
    for name, value in task_results.items():
        if name.split(",")[0] == metric and not name.startswith(f"{metric}_stderr"):
            filt = name.split(",", 1)[1] if "," in name else None
            err = task_results.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
            return float(value), (float(err) if isinstance(err, (int, float)) else None)
    raise KeyError(f"metric {metric!r} not in lm-eval results {sorted(task_results)}")


def evaluate(lm: Any, d: DownstreamConfig, *, seed: int = 1234, progress: bool = True) -> dict:
    """Run downstream tasks on an lm-eval model; a JSON-able record of what ran and what did not.

    Args:
        lm: an lm-eval LM (e.g. `WmBenchLM`, built with d.batch_size and d.max_length).
        d: what to run: d.tasks (keys of TASKS), d.shots (each run separately, e.g. (0, 5)),
            d.limit (at most this many examples per task, the first ones; None: all), d.source
            ("local" or "hub"), d.eval_data (local data directory; see `resolve_eval_source`).
        seed: seeds lm-eval's few-shot sampling and its RNGs.
        progress: False silences lm-eval's progress bars and its informational log lines.
    Returns:
        {"metrics": {"<task>@<k>shot/<metric>": value}, "stderr": {same keys: stderr},
         "not_run": {task: reason}, "versions": {task: lm-eval task version},
         "n_samples": {task: examples scored}, "per_example": {"<task>@<k>shot": see
         `per_example`}, "shots": [...], "limit": limit, "source": source,
         "eval_data": where the local data came from, symbolically ("package:eval",
         "$WM_BENCH_EVAL_DATA" or the given path, see `resolve_eval_source`; None for hub),
         "lm_eval_version": str}
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    limit, source = d.limit, d.source
    data, label = resolve_eval_source(d.eval_data) if source == "local" else (None, None)
    run, not_run = plan(d.tasks, data, source, label)
    rec: dict[str, Any] = {
        "metrics": {},
        "stderr": {},
        "not_run": dict(not_run),
        "versions": {},
        "n_samples": {},
        "per_example": {},
        "shots": [int(s) for s in d.shots],
        "limit": limit,
        "source": source,
        "eval_data": label,
        "lm_eval_version": lm_eval.__version__,
    }
    if not run:
        return rec
    with tempfile.TemporaryDirectory(prefix="wm_bench_tasks_") as tmp, _quiet(not progress):
        if source == "local":
            render_tasks(data, tmp, run)
            manager = TaskManager(include_path=tmp, include_defaults=False)
            names = {k: f"wm_{k}" for k in run}
        else:
            manager = TaskManager()
            names = {k: TASKS[k].hub for k in run}
        for k_shot in rec["shots"]:
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(names.values()),
                num_fewshot=k_shot,
                limit=limit,
                task_manager=manager,
                bootstrap_iters=0,
                log_samples=True,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
            )
            for k, name in names.items():
                res = out["results"].get(name)
                if res is None:
                    rec["not_run"][k] = f"not run: lm-eval returned no result for {name}"
                    continue
                value, err = headline(res, TASKS[k].metric)
                key = f"{k}@{k_shot}shot/{TASKS[k].metric}"
                rec["metrics"][key] = value
                rec["stderr"][key] = err
                rec["versions"][k] = out.get("versions", {}).get(name)
                n = out.get("n-samples", {}).get(name, {})
                rec["n_samples"][k] = n.get("effective", n.get("original"))
                samples = (out.get("samples") or {}).get(name)
                if samples:
                    rec["per_example"][f"{k}@{k_shot}shot"] = per_example(
                        samples, TASKS[k].metric, lm
                    )
    cut = getattr(lm, "truncated_continuations", 0)
    if cut:
        rec["truncated_continuations"] = cut
    return rec
