"""Sweep reports: reports/sweeps/<name>.md (+ PNGs beside it) from results/sweeps/<name>/.

A pure function of results/: the study the sweep exported (`<scale>/study.json`: its
definition, every trial's state, parameters, value and intermediate values) and the run records
of its trials. The trials are replayed into an in-memory Optuna study for the parameter
importances (fANOVA, seeded) and Optuna's matplotlib plots: importances, slice, parallel
coordinates, and intermediate values when the sweep prunes. Never imports torch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wm_bench.report import common as c

STUDY_FILE = "study.json"
PLOTS = ("importances", "slice", "parallel", "intermediate")
_STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def studies(results_dir: Path | str, name: str) -> dict[str, dict[str, Any]]:
    """scale → the exported study of sweep `name` (results/sweeps/<name>/<scale>/study.json)."""
    out = {}
    for p in sorted((Path(results_dir) / "sweeps" / name).glob(f"*/{STUDY_FILE}")):
        out[p.parent.name] = json.loads(p.read_text(encoding="utf-8"))
    return {s: out[s] for s in c.ordered_scales(out)}


def build_sweep_report(name: str, results_dir: Path | str, reports_dir: Path | str) -> list[Path]:
    """Write reports/sweeps/<name>.md and its figures; returns the written paths (Markdown
    first). ValueError when the sweep has exported no study (run `wm-bench sweep` first)."""
    from wm_bench.results import iter_results

    docs = studies(results_dir, name)
    if not docs:
        raise ValueError(
            f"no exported study of sweep {name!r} under {results_dir}/sweeps/{name}/ "
            f"(`wm-bench sweep {name}` writes it)"
        )
    records = [
        r
        for r in iter_results(results_dir, f"sweeps/{name}")
        if r.get("experiment") == f"sweeps/{name}"
    ]
    out_dir = Path(reports_dir) / "sweeps"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures: dict[str, dict[str, str]] = {}
    for scale, doc in docs.items():
        figs = plot_study(doc, out_dir, f"{name}-{scale}")
        figures[scale] = {k: p.name for k, p in figs.items()}
        written += figs.values()
    md = out_dir / f"{name}.md"
    md.write_text(render(name, docs, records, figures))
    return [md, *written]


def build_all(results_dir: Path | str, reports_dir: Path | str) -> list[Path]:
    """The report of every sweep that exported a study."""
    names = sorted(
        {p.parent.parent.name for p in Path(results_dir).glob(f"sweeps/*/*/{STUDY_FILE}")}
    )
    return [p for n in names for p in build_sweep_report(n, results_dir, reports_dir)]


# --------------------------------------------------------------------------------------------
# Replaying the study


def replay(doc: dict[str, Any]) -> Any:
    """An in-memory Optuna study holding the exported trials that ended (not RUNNING)."""
    import optuna
    from optuna.distributions import json_to_distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {s["path"]: json_to_distribution(s["distribution"]) for s in doc["space"]}
    study = optuna.create_study(
        direction=doc["objective"]["direction"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for t in doc["trials"]:
        if t["state"] not in ("COMPLETE", "PRUNED", "FAIL") or set(t["params"]) != set(dists):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=t["params"],
                distributions=dists,
                state=optuna.trial.TrialState[t["state"]],
                value=t["value"] if t["state"] == "COMPLETE" else None,
                intermediate_values={int(k): v for k, v in t["intermediate"].items()},
            )
        )
    return study


def importances(study: Any) -> dict[str, float] | str:
    """fANOVA importances of the completed trials, or why there are none."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = (
        [
            p
            for p in study.get_trials(deepcopy=False)[0].params
            if len({t.params.get(p) for t in done}) > 1
        ]
        if done
        else []
    )
    if len(done) < 2 or not varied:
        return f"not enough completed trials that differ ({len(done)} completed)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(
                optuna.importance.get_param_importances(
                    study, evaluator=FanovaImportanceEvaluator(seed=0)
                )
            )
    except (ValueError, RuntimeError) as e:
        return f"not computed ({e})"


def plot_study(doc: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """Optuna's matplotlib plots of the study as <stem>-<kind>.png; the ones that apply."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    study = replay(doc)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    makers = {
        "importances": lambda: ovm.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0)
        ),
        "slice": lambda: ovm.plot_slice(study),
        "parallel": lambda: ovm.plot_parallel_coordinate(study),
        "intermediate": lambda: ovm.plot_intermediate_values(study),
    }
    wanted = {
        "importances": isinstance(importances(study), dict),
        "slice": bool(complete),
        "parallel": len(complete) >= 2 and len(doc["space"]) >= 2,
        "intermediate": any(t.intermediate_values for t in study.get_trials(deepcopy=False)),
    }
    out: dict[str, Path] = {}
    for kind in PLOTS:
        path = out_dir / f"{stem}-{kind}.png"
        if not wanted[kind]:
            path.unlink(missing_ok=True)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = makers[kind]()
        fig = np.atleast_1d(axes).flat[0].figure
        wide = 3.0 * len(doc["space"]) + 1.5 if kind == "slice" else 7.5  # slice: one panel each
        fig.set_size_inches(wide, 4.2)
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        out[kind] = path
    return out


# --------------------------------------------------------------------------------------------
# Markdown


def _short(path: str) -> str:
    return path.rsplit(".", 1)[-1] if path.count(".") else path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def best_trial(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The best COMPLETE trial (ties: the lower trial number)."""
    done = [t for t in doc["trials"] if t["state"] == "COMPLETE" and c.finite(t["value"])]
    if not done:
        return None
    sign = -1.0 if doc["objective"]["direction"] == "maximize" else 1.0
    return min(done, key=lambda t: (sign * t["value"], t["number"]))


def render(
    name: str,
    docs: dict[str, dict[str, Any]],
    records: Sequence[dict[str, Any]],
    figures: dict[str, dict[str, str]],
) -> str:
    """The Markdown report of sweep `name` (one section per scale)."""
    first = next(iter(docs.values()))
    out = [
        f"# Sweep `{name}`",
        "",
        first.get("description") or "",
        "",
        f"Defined in `{first['file']}`; every trial is a run whose result is under "
        f"`results/sweeps/{name}/` (regenerate with `wm-bench sweep {name} --report-only`).",
    ]
    by_scale = c.by_scale(records)
    for scale, doc in docs.items():
        recs = by_scale.get(scale, [])
        out += ["", f"## {c.scale_title(scale)}", "", c.scale_banner(scale), ""]
        out += _section(doc, recs, figures.get(scale, {}))
    out += c.provenance_section({s: by_scale.get(s, []) for s in docs if by_scale.get(s)})
    return "\n".join(out).rstrip() + "\n"


def _section(
    doc: dict[str, Any], records: Sequence[dict[str, Any]], figs: dict[str, str]
) -> list[str]:
    obj, trials = doc["objective"], doc["trials"]
    metric = obj["metric"]
    counts = {s: sum(t["state"] == s for t in trials) for s in _STATE_ORDER}
    opts = lambda d: ", ".join(f"{k} {v}" for k, v in d.items() if k != "name")  # noqa: E731
    out = [
        f"- base: {doc['base']}",
        f"- objective: `{metric}` ({obj['direction']})",
        f"- sampler: {doc['sampler']['name']}"
        + (f" ({opts(doc['sampler'])})" if len(doc["sampler"]) > 1 else "")
        + f"; pruner: {doc['pruner']['name']}"
        + (f" ({opts(doc['pruner'])})" if len(doc["pruner"]) > 1 else "")
        + f"; budget {doc['budget']} trials",
        "- trials: "
        + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
        + f"; storage {doc['storage']}, study `{doc['study']}`",
    ]
    out += ["- space: " + "; ".join(f"`{s['path']}` {s['values']}" for s in doc["space"])]
    best = best_trial(doc)
    out += ["", "### Best configuration", ""]
    if best is None:
        out += ["No trial has completed."]
    else:
        out += [
            f"Trial {best['number']}: `{metric}` = {_fmt(best['value'])} "
            f"(run `{best['user_attrs'].get('run_id', '?')}`).",
            "",
        ]
        out += c.md_table(
            ["parameter", "value"], [(f"`{k}`", _fmt(v)) for k, v in best["params"].items()], "lr"
        )
        out += ["", _seed_caveat(doc)]
    out += ["", "### Trials", "", *_trials_table(doc, records)]
    imp = importances(replay(doc))
    out += ["", "### Parameter importances", ""]
    if isinstance(imp, dict):
        out += [
            "fANOVA (Optuna's default evaluator, seed 0) over the completed trials: the "
            "share of the objective's variance each parameter explains.",
            "",
        ]
        out += c.md_table(
            ["parameter", "importance"], [(f"`{k}`", f"{v:.3f}") for k, v in imp.items()], "lr"
        )
    else:
        out += [f"None: {imp}."]
    for kind, title in (
        ("importances", "Importances"),
        ("slice", "Slice plot"),
        ("parallel", "Parallel coordinates"),
        ("intermediate", "Intermediate values (pruning)"),
    ):
        if kind in figs:
            out += ["", f"![{title}, sweep {doc['sweep']}]({figs[kind]})"]
    out += _failures(doc)
    out += c.timing_section([r for r in records if _in_study(r, doc)], "run")
    old = [r for r in records if not _in_study(r, doc)]
    if old:
        out += [
            "",
            f"{len(old)} result file(s) of this sweep are not trials of its current "
            "study (an earlier version of the file) and are left out.",
        ]
    return out


def _seed_caveat(doc: dict[str, Any]) -> str:
    """What the best trial is worth: a ranking to follow up, not a verdict, unless seeds vary."""
    if any(d["path"] == "seed" for d in doc["space"]):
        return (
            "The seed is a searched parameter here, so trials of one configuration differ by "
            "their seed; compare configurations by their seeds together, not by one trial."
        )
    return (
        "Each trial is one training run (one seed): this ranks configurations for a follow-up, "
        "it is not a verdict. Seed-to-seed spread can exceed the gaps between trials; a claim "
        "needs several seeds per configuration and an interval (`wm-bench reproduce`, the "
        "experiment reports)."
    )


def _in_study(rec: dict[str, Any], doc: dict[str, Any]) -> bool:
    return rec.get("run_id") in {t["user_attrs"].get("run_id") for t in doc["trials"]}


def _trials_table(doc: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[str]:
    by_run = {r.get("run_id"): r for r in records}
    paths = [s["path"] for s in doc["space"]]
    best = best_trial(doc)
    rows = []
    for t in doc["trials"]:
        rec = by_run.get(t["user_attrs"].get("run_id")) or {}
        timing = rec.get("timing") or {}
        value = _fmt(t["value"]) if t["state"] == "COMPLETE" else "—"
        at = _last_report(t) if t["state"] == "PRUNED" else None
        if at is not None:  # where it stood when pruned: not a final value, so in parentheses
            value = f"({_fmt(at[1])} at {at[0]})"
        if best is not None and t["number"] == best["number"]:
            value = f"**{value}**"
        how = t["user_attrs"].get("status") or (
            "killed or stopped" if t["state"] == "FAIL" else t["state"].lower()
        )
        if t["user_attrs"].get("skipped") or t["user_attrs"].get("recorded"):
            how += " (result existed)"
        rows.append(
            (
                t["number"],
                t["state"].lower(),
                *(_fmt(t["params"].get(p)) for p in paths),
                value,
                how,
                _fmt(timing.get("steps") or t["user_attrs"].get("pruned_at_step")),
                _fmt(timing.get("wall_s") or t["user_attrs"].get("wall_s")),
                t["user_attrs"].get("run_id", "—"),
            )
        )
    heads = [
        "#",
        "state",
        *(f"`{_short(p)}`" for p in paths),
        doc["objective"]["metric"],
        "run",
        "steps",
        "wall s",
        "run id",
    ]
    return c.md_table(heads, rows, "rl" + "r" * len(paths) + "rlrrl")


def _last_report(trial: dict[str, Any]) -> tuple[int, float] | None:
    """(step, value) of the trial's last intermediate report, or None when it made none."""
    steps = {int(k): v for k, v in (trial.get("intermediate") or {}).items() if v is not None}
    if not steps:
        return None
    last = max(steps)
    return last, steps[last]


def _failures(doc: dict[str, Any]) -> list[str]:
    bad = [t for t in doc["trials"] if t["state"] in ("FAIL", "PRUNED")]
    rows = []
    for t in bad:
        a = t["user_attrs"]
        if t["state"] == "PRUNED":
            what = f"pruned at step {a.get('pruned_at_step', '?')}"
            at = _last_report(t)
            if at is not None:
                what += (
                    f" with {doc['objective']['metric']} {_fmt(at[1])} "
                    f"({doc['pruner']['name']} pruner)"
                )
        elif "status" not in a:
            what = "its worker stopped beating (killed or interrupted); the point was redone"
        else:
            what = c.first_error_line(a.get("error") or a["status"])
        rows.append((t["number"], t["state"].lower(), what))
    body = c.md_table(["#", "state", "why"], rows, "rll") if rows else ["None."]
    return ["", "### Pruned and failed trials", "", *body]
