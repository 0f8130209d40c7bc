"""The architecture report (Table 3, claim C4): parameters, speed, perplexity, downstream tasks."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from wm_bench.report import common as c
from wm_bench.report.rope import plot_curves

EXPERIMENT = "arch"
BASELINES = ("llama", "mamba2", "jamba")
CHEEMS = ("cheems_mlp", "cheems_cdmoe")


def _task() -> Any:
    import tasks.arch as task

    return task


def _downstream() -> Any:
    from wm_bench.eval import downstream

    return downstream


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok"]


def _by_variant(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_v: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_v[r["variant"]].append(r)
    order = list(_task().VARIANTS)
    return {v: by_v[v] for v in sorted(by_v, key=lambda v: [*order, v].index(v))}


def _values(recs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r["metrics"][key]) for r in _ok(recs) if c.finite(r["metrics"].get(key))]


def _tokens_per_s(recs: list[dict[str, Any]]) -> list[float]:
    out = []
    for r in _ok(recs):
        tps = (r.get("timing") or {}).get("tokens_per_s")
        if c.finite(tps):
            out.append(float(tps))
    return out


def _cell(values: list[float], best: bool, digits: int) -> str:
    if not values:
        return "—"
    text = c.fmt_mean_std(*c.mean_std(values), digits=digits)
    return f"**{text}**" if best else text


def _best(means: dict[str, float], higher: bool) -> set[str]:
    """Variants with the best mean; none when every mean is equal (nothing to mark)."""
    if len(set(means.values())) < 2:
        return set()
    target = max(means.values()) if higher else min(means.values())
    return {v for v, m in means.items() if m == target}


def _columns(records: list[dict[str, Any]]) -> tuple[list[int], list[str], dict[str, str]]:
    """(shots, task keys that have results in paper order, {task: reason} of tasks not run)."""
    ds = _downstream()
    shots: set[int] = set()
    ran: set[str] = set()
    not_run: dict[str, str] = {}
    for r in _ok(records):
        d = (r.get("extra") or {}).get("downstream") or {}
        shots.update(int(k) for k in d.get("shots", []))
        for key in r.get("metrics", {}):
            if key.startswith("downstream/"):
                ran.add(key.split("/")[1].split("@")[0])
        for k, why in (d.get("not_run") or {}).items():
            not_run.setdefault(k, why)
    order = list(ds.TASKS)
    tasks = sorted(ran, key=lambda k: order.index(k) if k in order else len(order))
    return sorted(shots), tasks, {k: v for k, v in not_run.items() if k not in ran}


def metric_key(task: str, shot: int) -> str:
    return f"downstream/{task}@{shot}shot/{_downstream().TASKS[task].metric}"


def model_table(records: list[dict[str, Any]], ppl_key: str | None) -> list[str]:
    """Parameters, training speed and perplexities per architecture; best marked in bold."""
    task = _task()
    by_v = _by_variant(records)
    cols = {"tps": (True, 0), "valid": (False, 2), "test": (False, 2)}
    vals: dict[str, dict[str, list[float]]] = {}
    for v, recs in by_v.items():
        vals[v] = {"tps": _tokens_per_s(recs), "valid": _values(recs, "valid/ppl"),
                   "test": _values(recs, ppl_key) if ppl_key else []}  # fmt: skip
    best = {k: _best({v: c.mean_std(x[k])[0] for v, x in vals.items() if x[k]}, hi)
            for k, (hi, _) in cols.items()}  # fmt: skip
    rows = []
    for v, recs in by_v.items():
        p = (recs[0].get("params") or {}) if recs else {}
        rows.append([
            task.LABELS.get(v, v),
            f"{p.get('total', 0):,}" if p else "—",
            f"{p.get('active', 0):,}" if p else "—",
            *(_cell(vals[v][k], v in best[k], d) for k, (_, d) in cols.items()),
        ])  # fmt: skip
    test_head = f"test ppl @ {ppl_key.split('@')[1]}" if ppl_key else "test ppl"
    head = ["model", "total params", "active params", "train tokens/s", "valid ppl", test_head]
    return c.md_table(head, rows, "lrrrrr")


def downstream_table(records: list[dict[str, Any]], shot: int, tasks: list[str]) -> list[str]:
    """One row per architecture: each task's headline metric at `shot` shots and their average."""
    ds = _downstream()
    by_v = _by_variant(records)
    vals: dict[str, dict[str, list[float]]] = {}
    for v, recs in by_v.items():
        row = {t: _values(recs, metric_key(t, shot)) for t in tasks}
        avgs = []
        for r in _ok(recs):
            xs = [r["metrics"].get(metric_key(t, shot)) for t in tasks]
            if xs and all(c.finite(x) for x in xs):
                avgs.append(sum(xs) / len(xs))
        row["avg"] = avgs
        vals[v] = row
    keys = [*tasks, "avg"]
    best = {k: _best({v: c.mean_std(x[k])[0] for v, x in vals.items() if x[k]}, True)
            for k in keys}  # fmt: skip
    rows = [[_task().LABELS.get(v, v), *(_cell(vals[v][k], v in best[k], 3) for k in keys)]
            for v in by_v]  # fmt: skip
    head = ["model", *(f"{ds.TASKS[t].label} ({ds.TASKS[t].metric})" for t in tasks), "average"]
    return c.md_table(head, rows, "l" + "r" * len(keys))


def _noise(recs: list[dict[str, Any]], key: str, task: str | None) -> float:
    """Standard error of a column's mean for one variant: the binomial error of an accuracy over
    every example scored (examples × runs), or the seed std / √runs of a perplexity."""
    xs = _values(recs, key)
    mean, std, n = c.mean_std(xs)
    if task is None:
        return (std or 0.0) / n**0.5
    per_run = [((r.get("extra") or {}).get("downstream") or {}).get("n_samples", {}).get(task)
               for r in _ok(recs)]  # fmt: skip
    total = sum(int(k) for k in per_run if k)
    return (mean * (1 - mean) / total) ** 0.5 if total else 0.0


def claim_c4(records: list[dict[str, Any]], ppl_key: str | None) -> list[str]:
    """C4 ("competitive with or better than Llama3, Mamba2 and Jamba on most metrics") made
    testable, per Cheems variant and column, against the best of the three baselines:
    better (by more than 2 standard errors of the difference), tie (within them) or worse.
    Competitive = better or tie; the claim holds when it is competitive on more than half of the
    columns. Columns where the four means are all equal (e.g. 0 exact matches everywhere) are
    left out. Standard errors: `_noise` (with one seed, a perplexity has none: strict ordering)."""
    shots, tasks, _ = _columns(records)
    by_v = _by_variant(records)
    cols: list[tuple[str, str, bool, str | None]] = [("valid ppl", "valid/ppl", False, None)]
    if ppl_key:
        cols.append((f"test ppl @ {ppl_key.split('@')[1]}", ppl_key, False, None))
    cols += [(f"{t}@{k}shot", metric_key(t, k), True, t) for k in shots for t in tasks]
    if not all(b in by_v for b in BASELINES):
        return ["C4 needs results for llama, mamba2 and jamba; some are missing."]
    lines = []
    for v in CHEEMS:
        if v not in by_v:
            continue
        out: dict[str, list[str]] = {"better": [], "tie": [], "worse": [], "flat": []}
        for name, key, hi, task in cols:
            vals = {x: _values(by_v[x], key) for x in (v, *BASELINES)}
            if not all(vals.values()):
                continue
            means = {x: c.mean_std(xs)[0] for x, xs in vals.items()}
            if len(set(means.values())) == 1:
                out["flat"].append(name)
                continue
            pick = max if hi else min
            best = pick(BASELINES, key=lambda b: means[b])
            diff = (means[v] - means[best]) * (1 if hi else -1)  # > 0: Cheems is better
            se = (_noise(by_v[v], key, task) ** 2 + _noise(by_v[best], key, task) ** 2) ** 0.5
            kind = "better" if diff > 2 * se else "worse" if diff < -2 * se else "tie"
            if se == 0 and diff == 0:
                kind = "tie"
            out[kind].append(name)
        total = len(out["better"]) + len(out["tie"]) + len(out["worse"])
        good = len(out["better"]) + len(out["tie"])
        verdict = "holds" if total and good > total / 2 else "does not hold"
        detail = "; ".join(f"{k}: {', '.join(out[k])}" for k in ("better", "tie", "worse")
                           if out[k])  # fmt: skip
        lines.append(
            f"- {_task().LABELS[v]}: competitive with the best baseline on {good} of {total} "
            f"columns ({detail}): C4 **{verdict}** for it."
            + (f" Left out (all four equal): {', '.join(out['flat'])}." if out["flat"] else "")
        )
    lines += [
        "",
        "Better / worse: the gap to the best of Llama, Mamba2 and Jamba exceeds twice its "
        "standard error (binomial over the examples scored for accuracies, seed spread for "
        "perplexities); otherwise a tie. Downstream accuracies near chance (ARC 4 choices: 0.25, "
        "PIQA and Winogrande: 0.5) mean the models are too small for the task, and such columns "
        "end as ties.",
    ]
    return lines


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    figures = figures or {}
    groups = c.by_scale(records)
    out = [
        "# Architecture comparison (Table 3): Llama3-style, Mamba2, Jamba-style, Cheems, Doge",
        "",
        "Six architectures matched on active parameters per token (within 5 %), trained on the "
        "same tokens with the same tokenizer and context; perplexity on held-out text and "
        "downstream tasks through lm-evaluation-harness (`wm_bench.eval.downstream`). "
        f"Generated by `wm_bench.report` from {len(records)} result file(s) in `results/arch/`; "
        "do not edit by hand. Settings: `tasks/arch/__init__.py`.",
        "",
        "Protocol notes. The paper evaluated with lighteval prompts, 5-shot (0-shot before "
        "Dec 18, 2024); we use lm-eval at 0 and 5 shots with the suite's offline task YAMLs "
        "(Eval Gauntlet prompts, `wm_bench/eval/tasks/`), so scores compare within this table "
        "only. Metrics: acc (ARC-E, PIQA, Winogrande, MMLU), acc_norm (ARC-C, HellaSwag, OBQA), "
        "exact match (TriviaQA). Task versions, n-shot and examples per task are in each result's "
        "`extra.downstream`. The paper's Table 3 values could not be obtained "
        "(`reference_values.json`: only the abstract's claim C4 is known), so there is no paper "
        "column. Cells: mean ± std (runs); bold: best in the column.",
    ]
    if not records:
        out += ["", "No results yet: run `make reproduce-table3` (or "
                "`wm-bench reproduce arch --scale smoke|cpu|small`)."]  # fmt: skip
    for scale, recs in groups.items():
        ok = _ok(recs)
        ppl_keys = sorted({k for r in ok for k in r["metrics"] if k.startswith("test/ppl@")})
        ppl_key = ppl_keys[0] if ppl_keys else None
        shots, tasks, not_run = _columns(recs)
        limits = {(r.get("extra") or {}).get("downstream", {}).get("limit") for r in ok}
        n_samples: dict[str, set[int]] = defaultdict(set)
        for r in ok:
            for t, n in (
                (r.get("extra") or {}).get("downstream", {}).get("n_samples") or {}
            ).items():
                if n is not None:
                    n_samples[t].add(int(n))
        out += ["", f"## {c.scale_title(scale)}", "", c.scale_banner(scale), ""]
        out += [f"{len(recs)} run(s), {len(ok)} ok.", "", "### Models", ""]
        out += model_table(recs, ppl_key)
        for k in shots:
            out += ["", f"### Downstream, {k}-shot", ""]
            out += downstream_table(recs, k, tasks) if tasks else ["No downstream results."]
        if tasks:
            sizes = ", ".join(f"{t} {'/'.join(map(str, sorted(n_samples[t])))}" for t in tasks)
            lim = ", ".join(str(x) for x in sorted(limits, key=str))
            out += ["", f"Examples scored per task: {sizes} (limit: {lim})."]
        if not_run:
            out += ["", "Tasks not run:", ""]
            out += [f"- {t}: {why}" for t, why in not_run.items()]
        out += ["", "### Claim C4 (Cheems competitive with Llama3, Mamba2, Jamba)", ""]
        out += claim_c4(recs, ppl_key)
        out += c.curve_and_runs_sections(scale, recs, figures)
    out += c.provenance_section(groups)
    return "\n".join(out) + "\n"


def _plot(scale: str, recs: list[dict[str, Any]], path: Path) -> Path | None:
    labels = {v: _task().LABELS[v] for v in _task().VARIANTS}
    title = f"Architecture comparison: training loss, {scale} scale"
    return plot_curves(scale, recs, path, labels=labels, title=title)


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/arch.md and one reports/arch-<scale>.png (loss curves) per scale."""
    return c.build_with_figures(records, reports_dir, EXPERIMENT, _plot, render)
