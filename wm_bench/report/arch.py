"""The architecture report (Table 3, claim C4): perplexity, downstream tasks, non-inferiority."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from wm_bench import stats
from wm_bench.metric_names import PPL_PREFIX
from wm_bench.report import common as c
from wm_bench.report import tuning as tune
from wm_bench.report import verdicts as vd
from wm_bench.report.rope import plot_curves

EXPERIMENT = "arch"
BASELINES = ("llama", "mamba2", "jamba")
CHEEMS = ("cheems_mlp", "cheems_cdmoe")


def _task() -> Any:
    import wm_bench_tasks.arch as task

    return task


def _label(variant: str) -> str:
    return _task().LABELS.get(variant, variant)


def _downstream() -> Any:
    from wm_bench.eval import downstream

    return downstream


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if c.is_ok(r)]


def _by_variant(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_v: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_v[r["variant"]].append(r)
    order = list(_task().VARIANTS)
    return {v: by_v[v] for v in sorted(by_v, key=lambda v: [*order, v].index(v))}


def _values(recs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r["metrics"][key]) for r in _ok(recs) if c.finite(r["metrics"].get(key))]


def _cells(summary: pd.DataFrame, column: str, best: set[str], digits: int) -> list[str | None]:
    """A column's 'mean ± std (n)' per variant, the best in bold (see `c.best_of`)."""
    cells = c.mean_std_cells(summary, column, digits)
    return [f"**{x}**" if x is not None and v in best else x for v, x in cells.items()]


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


# Chance accuracy per task (1 / number of choices; exact match: 0), for results that predate the
# per-example records (which carry their own, from each example's number of choices).
CHANCE: dict[str, float] = {
    "mmlu": 0.25,
    "triviaqa": 0.0,
    "arc_easy": 0.25,
    "arc_challenge": 0.25,
    "piqa": 0.5,
    "hellaswag": 0.25,
    "openbookqa": 0.25,
    "winogrande": 0.5,
    "lambada_openai": 0.0,
    "copa": 0.5,
    "boolq": 0.5,
}
PPL_MARGIN = math.log(1.02)  # Cheems's test perplexity at most 2 % above the best baseline's
ACC_MARGIN = 0.02  # 2 accuracy points
LL_MARGIN = 0.02  # nats per token of the gold answer (≈ 2 % of its per-token perplexity)
C4_RULE = (
    'C4 ("competitive with / better than Llama3, Mamba2 and Jamba on most validation metrics") '
    "holds for a Cheems variant when it is non-inferior to the best of the three baselines on "
    "more than half of the informative metrics, is refuted when that majority is out of reach "
    "(non-inferiority refuted on at least half), and is otherwise inconclusive. Metrics: test "
    "perplexity at the training length, counted once (validation perplexity is shown, not "
    "counted), paired by seed as log(ppl_best / ppl_Cheems), margin log 1.02 (at most 2 % "
    "worse); per downstream task and shot, the accuracy when some compared model's 95 % Wilson "
    "interval lies above chance (paired per example, margin 2 points), otherwise the gold answer's "
    "log-likelihood per token (paired per example, margin 0.02 nats ≈ 2 % per-token "
    "perplexity); an accuracy column at chance without per-example log-likelihoods is shown, "
    "marked uninformative and left out. Best baseline: per metric the baseline with the best "
    "mean. Non-inferior: the whole 95 % interval of Cheems − best baseline (> 0: Cheems better) "
    "lies above −margin; inferior: it lies wholly below −margin. Each model at its own best LR."
)


def model_table(records: list[dict[str, Any]], ppl_key: str | None, choice: dict) -> list[str]:
    """Parameters, LR, training speed and perplexities per architecture; best marked in bold."""
    by_v = _by_variant(records)
    order = list(by_v)
    test_key = ppl_key or "test/ppl"
    test_head = f"test ppl @ {ppl_key.split('@')[1]}" if ppl_key else "test ppl"
    # (column of the runs' frame, header, higher is better, digits)
    cols = [
        ("timing/tokens_per_s", "train tokens/s", True, 0),
        ("valid/ppl", "valid ppl", False, 2),
        (test_key, test_head, False, 2),
    ]
    runs = c.ok_frame(records, lambda k: k in ("valid/ppl", ppl_key), ("tokens_per_s",))
    summary = c.mean_std_by(runs, "variant", [col for col, *_ in cols]).reindex(order)
    params = {v: (recs[0].get("params") or {}) if recs else {} for v, recs in by_v.items()}
    lead = tune.leading_columns("model", order, _label, params, choice)
    out = pd.DataFrame(lead, index=order)
    for col, head, higher, digits in cols:
        out[head] = _cells(summary, col, c.best_of(summary[(col, "mean")], higher), digits)
    return c.frame_table(out, "lrrlrrr")


# --------------------------------------------------------------------------------------------
# Downstream: accuracies, per-example log-likelihoods, informative columns


def _per_example(rec: dict[str, Any], task: str, shot: int) -> dict[str, Any] | None:
    pe = ((rec.get("extra") or {}).get("downstream") or {}).get("per_example") or {}
    return pe.get(f"{task}@{shot}shot")


def example_means(recs: list[dict[str, Any]], task: str, shot: int, field: str) -> list[float]:
    """Per example, the mean over a variant's ok runs of a per-example field ("acc", "ll_tok",
    "margin"); [] when some run lacks it or the runs scored different examples."""
    rows, docs = [], set()
    for r in _ok(recs):
        pe = _per_example(r, task, shot)
        xs = (pe or {}).get(field)
        if not xs:
            return []
        rows.append([float(x) for x in xs])
        docs.add(str(pe.get("docs")))
    if not rows or len({len(x) for x in rows}) != 1 or len(docs) != 1:
        return []
    return [math.fsum(col) / len(col) for col in zip(*rows, strict=True)]


def _n_examples(recs: list[dict[str, Any]], task: str) -> int:
    ns = [
        ((r.get("extra") or {}).get("downstream") or {}).get("n_samples", {}).get(task)
        for r in _ok(recs)
    ]
    ns = [int(n) for n in ns if n]
    return min(ns) if ns else 0


def _chance(recs: list[dict[str, Any]], task: str, shot: int) -> float:
    for r in _ok(recs):
        pe = _per_example(r, task, shot)
        if pe and c.finite(pe.get("chance")):
            return float(pe["chance"])
    return CHANCE.get(task, 0.0)


def informative(by_v: dict[str, list[dict[str, Any]]], task: str, shot: int) -> bool:
    """Whether some compared model's accuracy (mean over runs, Wilson interval over the examples)
    lies above chance. An accuracy significantly below chance (e.g. acc_norm's length bias on
    ARC-C) shows a bias of the scoring, not skill: it does not make a column informative."""
    for v in (*CHEEMS, *BASELINES):
        recs = by_v.get(v, [])
        xs = _values(recs, metric_key(task, shot))
        n = _n_examples(recs, task)
        if not xs or not n:
            continue
        k = round(c.mean_std(xs)[0] * n)
        if stats.chance_check(k, n, _chance(recs, task, shot)).above_chance:
            return True
    return False


def downstream_table(records: list[dict[str, Any]], shot: int, tasks: list[str]) -> list[str]:
    """One row per architecture: each task's headline metric at `shot` shots and their average
    (per run, over runs that have every task); columns at chance marked °."""
    ds = _downstream()
    by_v = _by_variant(records)
    keys = [metric_key(t, shot) for t in tasks]
    runs = c.ok_frame(records, lambda k: k in keys)
    runs["avg"] = runs.reindex(columns=keys).mean(axis=1, skipna=False)
    summary = c.mean_std_by(runs, "variant", [*keys, "avg"]).reindex(list(by_v))
    mark = {t: "" if informative(by_v, t, shot) else " °" for t in tasks}
    heads = [*(f"{ds.TASKS[t].label} ({ds.TASKS[t].metric}){mark[t]}" for t in tasks), "average"]
    out = pd.DataFrame({"model": [_label(v) for v in by_v]}, index=list(by_v))
    for key, head in zip([*keys, "avg"], heads):
        out[head] = _cells(summary, key, c.best_of(summary[(key, "mean")], True), 3)
    return c.frame_table(out, "l" + "r" * (len(keys) + 1))


def ll_table(records: list[dict[str, Any]], shot: int, tasks: list[str]) -> list[str]:
    """Per architecture and task: mean gold log-likelihood per token / mean margin over the best
    distractor (nats), from the per-example records; [] when there are none."""
    ds = _downstream()
    by_v = _by_variant(records)
    have = [t for t in tasks if any(example_means(r, t, shot, "ll_tok") for r in by_v.values())]
    if not have:
        return []
    rows = []
    for v, recs in by_v.items():
        cells = []
        for t in have:
            ll = example_means(recs, t, shot, "ll_tok")
            mg = example_means(recs, t, shot, "margin")
            cells.append(
                "—"
                if not ll
                else f"{math.fsum(ll) / len(ll):.3f} / "
                f"{math.fsum(mg) / len(mg) if mg else math.nan:+.3f}"
            )
        rows.append([_label(v), *cells])
    head = ["model", *(ds.TASKS[t].label for t in have)]
    return [
        "",
        f"### Downstream log-likelihoods, {shot}-shot",
        "",
        "Per task: the gold answer's log-likelihood per token / its margin over the best "
        "distractor (log P(gold) − max log P(other choice), nats), averaged over the examples "
        "(and runs). Higher is better for both; a margin above 0 is a correct answer.",
        "",
        *c.md_table(head, rows, "l" + "r" * len(have)),
    ]


# --------------------------------------------------------------------------------------------
# Claim C4


def _log_pct(x: float) -> str:
    return f"{100 * x:+.2f} %"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def _nats(x: float) -> str:
    return f"{x:+.3f} nats"


def c4_metrics(
    by_v: dict[str, list[dict[str, Any]]], subject: str, ppl_key: str | None
) -> tuple[list[tuple[str, str, stats.Verdict]], list[str]]:
    """Per informative metric: (name, best baseline, non-inferiority verdict) of `subject`
    against the best baseline; and the names of the columns left out as uninformative."""
    out: list[tuple[str, str, stats.Verdict]] = []
    left: list[str] = []
    if ppl_key:
        seeds = {}
        for x in (subject, *BASELINES):
            good = [r for r in _ok(by_v[x]) if c.finite(r["metrics"].get(ppl_key))]
            seeds[x] = {int(r["seed"]): float(r["metrics"][ppl_key]) for r in good}
        if all(seeds.values()):
            best = min(BASELINES, key=lambda b: c.mean_std(list(seeds[b].values()))[0])
            common = sorted(set(seeds[subject]) & set(seeds[best]))
            if common:
                d = [math.log(seeds[best][s] / seeds[subject][s]) for s in common]
                iv = stats.mean_interval(d)
                v = stats.noninferiority_verdict(
                    iv, PPL_MARGIN, rule=C4_RULE, fmt=_log_pct, units="seeds"
                )
                out.append((f"test ppl @ {ppl_key.split('@')[1]} (log ratio)", best, v))
    shots, tasks, _ = _columns([r for rs in by_v.values() for r in rs])
    for shot in shots:
        for t in tasks:
            name = f"{t}@{shot}shot"
            key = metric_key(t, shot)
            if not all(_values(by_v.get(x, []), key) for x in (subject, *BASELINES)):
                continue
            if informative(by_v, t, shot):
                acc = {x: example_means(by_v[x], t, shot, "acc") for x in (subject, *BASELINES)}
                means = {x: c.mean_std(_values(by_v[x], key))[0] for x in (subject, *BASELINES)}
                best = max(BASELINES, key=lambda b: means[b])
                if acc[subject] and acc[best] and len(acc[subject]) == len(acc[best]):
                    iv = stats.paired_examples(acc[subject], acc[best])
                else:
                    n1, n2 = _n_examples(by_v[subject], t), _n_examples(by_v[best], t)
                    iv = stats.two_proportions_interval(
                        round(means[subject] * n1), n1, round(means[best] * n2), n2
                    )
                v = stats.noninferiority_verdict(
                    iv, ACC_MARGIN, rule=C4_RULE, fmt=_pts, units="examples"
                )
                out.append((f"{name} accuracy", best, v))
                continue
            ll = {x: example_means(by_v[x], t, shot, "ll_tok") for x in (subject, *BASELINES)}
            if not all(ll.values()) or len({len(x) for x in ll.values()}) != 1:
                left.append(name)
                continue
            best = max(BASELINES, key=lambda b: math.fsum(ll[b]))
            iv = stats.paired_examples(ll[subject], ll[best])
            v = stats.noninferiority_verdict(
                iv, LL_MARGIN, rule=C4_RULE, fmt=_nats, units="examples"
            )
            out.append((f"{name} gold log-lik./token (accuracy at chance)", best, v))
    return out, left


def c4_verdict(
    by_v: dict[str, list[dict[str, Any]]], subject: str, ppl_key: str | None
) -> stats.Verdict:
    metrics, _ = c4_metrics(by_v, subject, ppl_key)
    return stats.majority_verdict([v for _, _, v in metrics], rule=C4_RULE)


def claim_c4(records: list[dict[str, Any]], ppl_key: str | None, scale: str) -> list[str]:
    """The C4 section: the rule, per Cheems variant a table of metrics and its verdict."""
    if not c.judged(scale):
        return [c.NOT_JUDGED]
    by_v = _by_variant(records)
    if not all(b in by_v for b in BASELINES):
        return ["C4 needs results for llama, mamba2 and jamba; some are missing."]
    labels = _task().LABELS
    lines = [f"Rule: {C4_RULE}"]
    for subject in [v for v in CHEEMS if v in by_v]:
        metrics, left = c4_metrics(by_v, subject, ppl_key)
        rows = [
            [
                name,
                labels.get(best, best),
                v.n,
                (f"{v.estimate:+.4f}" if v.estimate is not None else "—"),
                vd.fmt_interval(v.ci_low, v.ci_high, lambda x: f"{x:+.4f}"),
                f"−{v.threshold:.4f}",
                v.verdict,
            ]
            for name, best, v in metrics
        ]
        total = stats.majority_verdict([v for _, _, v in metrics], rule=C4_RULE)
        lines += ["", f"#### {labels.get(subject, subject)}", ""]
        lines += c.md_table(
            [
                "metric",
                "best baseline",
                "n",
                "Cheems − best",
                "95 % interval",
                "−margin",
                "non-inferior?",
            ],
            rows,
            "llrrrrl",
        )
        if left:
            lines += [
                "",
                "Left out as uninformative (accuracy not above chance, no per-example "
                f"log-likelihoods): {', '.join(left)}.",
            ]
        lines += [
            "",
            f"**Verdict ({scale} scale): C4 {total.verdict} for "
            f"{labels.get(subject, subject)}** — {total.reason}.",
        ]
    lines += [
        "",
        "Units: the perplexity row is a log ratio (×100 ≈ %); accuracy rows are "
        "accuracy differences (0.02 = 2 points); log-likelihood rows are nats per token. "
        "° in the accuracy tables: no compared model's 95 % Wilson interval lies above chance "
        "(1 / number of choices: ARC, OBQA, HellaSwag, MMLU ≈ 0.25; PIQA, Winogrande, COPA, "
        "BoolQ 0.5; exact match 0).",
    ]
    return lines


def headline(by_v: dict[str, list[dict[str, Any]]]) -> str | None:
    """The Cheems variant whose verdict is the claim's entry: CDMoE (the paper's combination of
    RoPE in SSD, DMA and CDMoE) when present, else the MLP one."""
    return next((v for v in ("cheems_cdmoe", "cheems_mlp") if v in by_v), None)


def _scale_state(records: list[dict[str, Any]]) -> tuple[list, list, dict, list, str | None]:
    recs, old, choice, chosen = tune.scale_runs(records)
    keys = sorted({k for r in _ok(chosen) for k in r["metrics"] if k.startswith(PPL_PREFIX)})
    return recs, old, choice, chosen, (keys[0] if keys else None)


def verdicts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """reports/verdicts.json entries: C4 per scale, for the headline Cheems variant."""
    out = []
    for scale, recs in c.by_scale(records).items():
        _, _, _, chosen, ppl_key = _scale_state(recs)
        by_v = _by_variant(chosen)
        subject = headline(by_v)
        what = f"{subject or 'Cheems'} vs the best of llama, mamba2, jamba, per metric"
        if not c.judged(scale):
            out.append(
                vd.not_judged("C4", scale, subject=what, unit="share of metrics", rule=C4_RULE)
            )
            continue
        if subject is None or not all(b in by_v for b in BASELINES):
            v = vd.lacking(
                C4_RULE, "Cheems or a baseline lacks results", threshold=0.5, kind="majority"
            )
        else:
            v = c4_verdict(by_v, subject, ppl_key)
        out.append(vd.entry("C4", scale, v, subject=what, unit="share of metrics"))
    return out


def _examples_line(ok: list[dict[str, Any]], tasks: list[str]) -> list[str]:
    """How many examples each downstream task scored, and the limit the runs were given."""
    downstream = [(r.get("extra") or {}).get("downstream", {}) for r in ok]
    n_samples: dict[str, set[int]] = defaultdict(set)
    for d in downstream:
        for t, n in (d.get("n_samples") or {}).items():
            if n is not None:
                n_samples[t].add(int(n))
    sizes = ", ".join(f"{t} {'/'.join(map(str, sorted(n_samples[t])))}" for t in tasks)
    lim = ", ".join(str(x) for x in sorted({d.get("limit") for d in downstream}, key=str))
    return ["", f"Examples scored per task: {sizes} (limit: {lim})."]


PROTOCOL = (
    "Protocol notes. The paper evaluated with lighteval prompts, 5-shot (0-shot before "
    "Dec 18, 2024); we use lm-eval at 0 and 5 shots with the suite's offline task YAMLs "
    "(Eval Gauntlet prompts, `wm_bench/eval/tasks/`), so scores compare within this table "
    "only. Metrics: acc (ARC-E, PIQA, Winogrande, MMLU), acc_norm (ARC-C, HellaSwag, OBQA), "
    "exact match (TriviaQA). Task versions, n-shot and examples per task are in each result's "
    "`extra.downstream`. The paper's Table 3 values could not be obtained "
    "(`reference_values.json`: only the abstract's claim C4 is known), so there is no paper "
    "column. Cells: mean ± std (runs) at each model's chosen LR; bold: best in the column."
)


def render(records: list[dict[str, Any]], figures: dict[str, str] | None = None) -> str:
    figures = figures or {}

    def section(scale: str, all_recs: list[dict[str, Any]]) -> list[str]:
        recs, old, choice, chosen, ppl_key = _scale_state(all_recs)
        shots, tasks, not_run = _columns(chosen)
        out = ["", f"{len(recs)} run(s), {len(_ok(recs))} ok; {c.corpus_sentence(recs, old)}."]
        out += c.superseded_note(old)
        out += ["", "### Models", "", *model_table(chosen, ppl_key, choice)]
        out += tune.lr_grid_section(recs, choice, _label, _task().VARIANTS)
        for k in shots:
            out += ["", f"### Downstream, {k}-shot", ""]
            out += downstream_table(chosen, k, tasks) if tasks else ["No downstream results."]
        out += [line for k in shots for line in ll_table(chosen, k, tasks)]
        if tasks:
            out += _examples_line(_ok(chosen), tasks)
        if not_run:
            out += ["", "Tasks not run:", "", *(f"- {t}: {why}" for t, why in not_run.items())]
        out += ["", "### Claim C4 (Cheems competitive with Llama3, Mamba2, Jamba)", ""]
        out += claim_c4(chosen, ppl_key, scale)
        return out + c.curve_line(scale, figures) + c.runs_sections(recs)

    return c.render_by_scale(
        EXPERIMENT,
        records,
        section,
        title="Architecture comparison (Table 3): Llama3-style, Mamba2, Jamba-style, Cheems, Doge",
        about="Six architectures matched on active parameters per token (within 5 %), trained on "
        "the same tokens with the same tokenizer and context; perplexity on held-out text and "
        "downstream tasks through lm-evaluation-harness (`wm_bench.eval.downstream`). ",
        after=" Settings: `tasks/arch/__init__.py`.",
        notes=[PROTOCOL],
        empty=[
            "",
            "No results yet: run `make reproduce-table3` (or "
            "`wm-bench reproduce arch --scale smoke|cpu|small`).",
        ],
    )


def _plot(scale: str, recs: list[dict[str, Any]], path: Path) -> Path | None:
    labels = {v: _task().LABELS[v] for v in _task().VARIANTS}
    title = f"Architecture comparison: training loss, {scale} scale"
    return plot_curves(scale, recs, path, labels=labels, title=title)


def build(records: list[dict[str, Any]], reports_dir: Path) -> list[Path]:
    """Write reports/arch.md and one reports/arch-<scale>.png (loss curves) per scale."""
    return c.build_with_figures(records, reports_dir, EXPERIMENT, _plot, render)
