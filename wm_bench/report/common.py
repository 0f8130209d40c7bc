"""Shared report pieces: run tables (pandas), number formats, Markdown, banners, corpora."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

# Most meaningful first; scales not listed here follow alphabetically.
SCALE_ORDER: tuple[str, ...] = ("paper", "small", "cpu", "smoke")
SCALE_TITLES: dict[str, str] = {
    "paper": "Paper scale",
    "small": "Small scale (one GPU)",
    "cpu": "CPU scale",
    "smoke": "smoke (plumbing only, numbers meaningless)",
}
SCALE_BANNERS: dict[str, str] = {
    "paper": "**Paper scale**: the paper's settings (docs/spec.md §3).",
    "small": "**Small scale (one GPU)**: the paper's grid with fewer training examples and steps.",
    "cpu": (
        "**CPU scale**: real results from a 2-core CPU machine at reduced lengths, widths, "
        "vocabulary and steps; not comparable cell for cell with the paper's GPU grid."
    ),
    "smoke": (
        "**smoke (plumbing only, numbers meaningless)**: tiny models trained for a few dozen "
        "steps to exercise the pipeline; do not read the accuracies."
    ),
}
_ERROR_CHARS = 160


def ordered_scales(scales: Iterable[str]) -> list[str]:
    """Scales in report order: SCALE_ORDER first, then any others alphabetically."""
    present = set(scales)
    known = [s for s in SCALE_ORDER if s in present]
    return known + sorted(present - set(SCALE_ORDER))


def scale_title(scale: str) -> str:
    return SCALE_TITLES.get(scale, f"Scale {scale}")


def scale_banner(scale: str, banners: dict[str, str] | None = None) -> str:
    """A one-paragraph Markdown block quote saying what the scale's numbers mean; `banners`
    (a report's own wording) replaces SCALE_BANNERS for the scales it names."""
    own = (banners or {}).get(scale)
    return "> " + (own or SCALE_BANNERS.get(scale, f"**Scale {scale}**."))


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def mean_std(values: Sequence[float]) -> tuple[float, float | None, int]:
    """(mean, sample std or None when n < 2, n) of a non-empty sequence."""
    n = len(values)
    mean = math.fsum(values) / n
    return mean, (statistics.stdev(values) if n >= 2 else None), n


def fmt_num(x: float, digits: int = 2) -> str:
    """Fixed-point with `digits` decimals; −0.00 printed as 0.00."""
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def fmt_mean_std(mean: float, std: float | None, n: int, digits: int = 2) -> str:
    """'0.98 ± 0.01 (2)', or '0.98 (1)' for a single value."""
    if std is None:
        return f"{fmt_num(mean, digits)} ({n})"
    return f"{fmt_num(mean, digits)} ± {fmt_num(std, digits)} ({n})"


def fmt_lr(lr: float) -> str:
    return f"{lr:.2g}"


def fmt_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def escape_cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (no pipes, no newlines)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """A GitHub-style Markdown table as lines; `align` is one letter per column (l, r, c).

    Written here rather than by `DataFrame.to_markdown` (tabulate): tabulate pads every cell to
    its column's width, so one wider cell rewrites every line of a table in the diff of a
    regenerated report, and it neither escapes "|" inside a cell nor leaves numeric-looking text
    alone unless told to. `frame_table` writes a DataFrame through this function."""
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    seps = [marks.get(a, "---") for a in align.ljust(len(headers), "-")]
    lines = [
        "| " + " | ".join(escape_cell(h) for h in headers) + " |",
        "| " + " | ".join(seps) + " |",
    ]
    lines += ["| " + " | ".join(escape_cell(c) for c in row) + " |" for row in rows]
    return lines


def frame_table(frame: pd.DataFrame, align: str = "") -> list[str]:
    """A DataFrame as a Markdown table (its columns as the header, its index left out); a
    missing value (None, NaN) is shown as "—"."""
    cells = frame.astype(object).where(frame.notna(), "—")
    return md_table([str(h) for h in frame.columns], cells.itertuples(index=False), align)


# --------------------------------------------------------------------------------------------
# Runs as a pandas DataFrame: the per-variant tables are groupby/agg over it


def ok_frame(
    records: Iterable[dict[str, Any]],
    metrics: Callable[[str], bool] = lambda _: False,
    timing: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per "ok" run: "variant", "seed", "lr", then one float column per metric name that
    `metrics` accepts and per `timing` field (named "timing/<field>"); NaN where a run lacks the
    value or it is not finite."""
    rows = []
    for r in records:
        if not is_ok(r):
            continue
        row: dict[str, Any] = {"variant": str(r.get("variant")), "seed": int(r.get("seed") or 0)}
        row["lr"] = run_lr(r)
        row.update(
            {k: float(v) for k, v in (r.get("metrics") or {}).items() if metrics(k) and finite(v)}
        )
        tim = r.get("timing") or {}
        row.update({f"timing/{k}": float(tim[k]) for k in timing if finite(tim.get(k))})
        rows.append(row)
    values = sorted({k for row in rows for k in row} - {"variant", "seed", "lr"})
    return pd.DataFrame(rows, columns=["variant", "seed", "lr", *values])


def mean_std_by(frame: pd.DataFrame, by: str | list[str], columns: Sequence[str]) -> pd.DataFrame:
    """Per group of `by`: "mean", "std" (sample, NaN below two values) and "count" of each of
    `columns` over its non-missing values; the columns are a (column, statistic) MultiIndex.
    A column the frame lacks is all missing (count 0)."""
    full = frame.reindex(columns=[*([by] if isinstance(by, str) else by), *columns])
    return full.groupby(by, sort=False)[list(columns)].agg(["mean", "std", "count"])


def mean_std_cells(summary: pd.DataFrame, column: str, digits: int = 2) -> pd.Series:
    """Per group of a `mean_std_by` summary: '0.98 ± 0.01 (2)', '0.98 (1)' for one value, None
    for none or a group the summary was reindexed to (shown as "—" by `frame_table`)."""
    part = summary[column]
    cells = [
        fmt_mean_std(m, None if pd.isna(s) else s, int(n), digits) if n > 0 else None
        for m, s, n in part[["mean", "std", "count"]].fillna({"count": 0}).itertuples(index=False)
    ]
    return pd.Series(cells, index=summary.index, dtype=object)


def best_of(means: pd.Series, higher: bool) -> set[Any]:
    """The groups with the best mean (missing means ignored); none when every mean is equal."""
    means = means.dropna()
    if means.nunique() < 2:
        return set()
    target = means.max() if higher else means.min()
    return set(means.index[means == target])


# --------------------------------------------------------------------------------------------
# Corpora: which text each language-model result was trained and scored on


def corpus_of(rec: dict[str, Any]) -> str | None:
    """The corpus spec of a run (config.data.corpus), None when the record has none."""
    data = (rec.get("config") or {}).get("data")
    return str(data["corpus"]) if isinstance(data, dict) and data.get("corpus") else None


def _corpus_hash(rec: dict[str, Any]) -> str | None:
    h = ((rec.get("extra") or {}).get("data") or {}).get("corpus_hash")
    return str(h) if h else None


def corpus_sentence(records: Sequence[dict[str, Any]], old: Sequence[dict[str, Any]] = ()) -> str:
    """Which corpus the results of one scale used (config.data.corpus, with the content hash the
    runs recorded in extra.data.corpus_hash), e.g. "corpus `debian` (content hash 6e25743b589d)".
    Records that mix corpora are listed per corpus with their variants; `old` (results left out
    of the tables) is named when its corpora differ from those of the tables."""
    frame = pd.DataFrame(
        [(corpus_of(r) or "not recorded", _corpus_hash(r), str(r.get("variant"))) for r in records],
        columns=["corpus", "hash", "variant"],
    )

    def one(name: str, part: pd.DataFrame) -> str:
        hashes = sorted(part["hash"].dropna().unique())
        text = f"`{name}`" if name != "not recorded" else "not recorded"
        return text + (f" (content hash {', '.join(hashes)})" if hashes else "")

    groups = list(frame.groupby("corpus", sort=True))
    if not groups:
        text = "corpus: no runs"
    elif len(groups) == 1:
        text = "corpus " + one(*groups[0])
    else:
        parts = []
        for name, part in groups:
            variants = ", ".join(dict.fromkeys(part["variant"]))
            parts.append(f"{one(name, part)}: {len(part)} run(s) of {variants}")
        text = "corpora differ between the runs: " + "; ".join(parts)
    left = sorted({corpus_of(r) or "not recorded" for r in old} - set(frame["corpus"]))
    if left:
        names = ", ".join(f"`{x}`" if x != "not recorded" else x for x in left)
        text += f" (the results left out of the tables used {names})"
    return text


def first_error_line(error: Any) -> str:
    """The first non-empty line of an error message, cut to a readable length."""
    lines = [ln.strip() for ln in str(error or "unknown error").splitlines() if ln.strip()]
    text = lines[0] if lines else "unknown error"
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


def total_wall_s(records: Iterable[dict[str, Any]]) -> tuple[float, int, int]:
    """(sum of timing.wall_s, runs with a wall time, runs without one)."""
    total, timed, untimed = 0.0, 0, 0
    for rec in records:
        wall = (rec.get("timing") or {}).get("wall_s")
        if finite(wall):
            total, timed = total + float(wall), timed + 1
        else:
            untimed += 1
    return total, timed, untimed


def _device_text(device: dict[str, Any]) -> str:
    dev = dict(device)
    kind = dev.pop("type", None)
    if kind == "cuda":
        name = dev.pop("name", "unknown GPU")
        count = dev.pop("count", 1)
        dev.pop("cpu_count", None)
        dev.pop("cpu_model", None)
        return f"cuda: {name} × {count}"
    model = dev.pop("cpu_model", "unknown CPU")
    names = {"cpu_count": "cores", "threads": "threads"}
    parts = [f"{names[k]}: {dev.pop(k)}" for k in names if k in dev]
    parts += [f"{k}={v}" for k, v in sorted(dev.items())]
    label = kind or "device"
    return f"{label}: {model}" + (f" ({', '.join(parts)})" if parts else "")


def provenance_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """Markdown bullet lines: deduplicated commits, devices and package versions."""
    commits: set[str] = set()
    devices: set[str] = set()
    versions: dict[str, set[str]] = {}
    for rec in records:
        prov = rec.get("provenance") or {}
        commit = prov.get("git_commit")
        text = str(commit)[:12] if commit else "unknown"
        if prov.get("git_dirty"):
            text += " (dirty)"
        commits.add(text)
        devices.add(_device_text(prov.get("device") or {}))
        for pkg, ver in (prov.get("versions") or {}).items():
            versions.setdefault(pkg, set()).add(str(ver) if ver is not None else "absent")
    vers = ", ".join(f"{pkg} {' / '.join(sorted(v))}" for pkg, v in sorted(versions.items()))
    return [
        f"- commits: {', '.join(sorted(commits)) or 'none'}",
        f"- devices: {'; '.join(sorted(devices)) or 'none'}",
        f"- versions: {vers or 'none'}",
    ]


def failed_table(rows: Sequence[tuple[Any, ...]], headers: Sequence[str]) -> list[str]:
    """The failed-runs section body: a table, or a line saying there were none."""
    return md_table(headers, rows) if rows else ["None."]


def by_scale(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by their "scale" field, groups in report order (SCALE_ORDER first)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(str(rec.get("scale")), []).append(rec)
    return {s: groups[s] for s in ordered_scales(groups)}


def timing_section(records: Sequence[dict[str, Any]], noun: str = "run") -> list[str]:
    """ "### Timing" with the total wall time of the records (the cpu-scale budget check)."""
    total, timed, _ = total_wall_s(records)
    line = f"Total wall time of the {timed} timed {noun}(s): {fmt_minutes(total)}."
    return ["", "### Timing", "", line]


def failed_runs_section(records: Sequence[dict[str, Any]]) -> list[str]:
    """ "### Failed runs": every record not "ok" (failed, diverged): variant, LR, seed, status and
    the first error line."""

    def row(r: dict[str, Any]) -> tuple[Any, ...]:
        lr, error = run_lr(r), first_error_line(r.get("error"))
        lr_text = "—" if lr is None else fmt_lr(lr)
        return (r.get("variant"), lr_text, r.get("seed"), r.get("status"), error)

    rows = [row(r) for r in records if not is_ok(r)]
    return [
        "",
        "### Failed runs",
        "",
        *failed_table(rows, ["variant", "lr", "seed", "status", "error"]),
    ]


# --------------------------------------------------------------------------------------------
# Run status, learning rates and configurations (what a scale's tables are made of)

NOT_JUDGED = (
    "No verdict at the smoke scale: its models train for a few dozen steps to exercise the "
    "pipeline, so its numbers mean nothing; verdicts start at the cpu scale."
)


def is_ok(rec: dict[str, Any]) -> bool:
    """An "ok" run; "failed" and "diverged" (non-finite loss, no usable metrics) are not."""
    return rec.get("status") == "ok"


def judged(scale: str) -> bool:
    """Whether a scale's numbers can carry a verdict (every scale but smoke)."""
    return scale != "smoke"


def run_lr(rec: dict[str, Any]) -> float | None:
    """The peak learning rate of a run (config.optim.lr), None when the record has none."""
    lr = ((rec.get("config") or {}).get("optim") or {}).get("lr")
    return float(lr) if finite(lr) else None


def _recipe(rec: dict[str, Any]) -> str:
    """What every variant of one scale shares: data, schedule, optimiser but its LR, downstream
    protocol (runtime fields, e.g. where the eval data lives, left out)."""
    import json

    cfg = rec.get("config") or {}
    optim = {k: v for k, v in (cfg.get("optim") or {}).items() if k != "lr"}
    train = {k: (cfg.get("train") or {}).get(k) for k in ("max_steps", "batch_size")}
    down = cfg.get("downstream")
    if isinstance(down, dict):
        down = {k: v for k, v in down.items() if k not in ("eval_data", "batch_size")}
    return json.dumps([cfg.get("data"), optim, train, down], sort_keys=True, default=str)


def current_records(
    records: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records of the scale's current configuration, superseded ones).

    Current: the shared recipe (`_recipe`) of the scale's most recently finished run, and per
    variant the model of its most recently finished run. A scale whose settings were changed
    (steps, data, downstream protocol) thus reports only the runs made under the new settings,
    once there are any; the old files stay in results/ and are counted as superseded."""
    if not records:
        return [], []

    def when(r: dict[str, Any]) -> str:
        return str(r.get("finished_at") or "")

    newest = max(records, key=when)
    recipe = _recipe(newest)
    models: dict[Any, Any] = {}
    for r in sorted(records, key=when):
        if _recipe(r) == recipe:
            models[r.get("variant")] = (r.get("config") or {}).get("model")
    keep, old = [], []
    for r in records:
        same = _recipe(r) == recipe and (r.get("config") or {}).get("model") == models.get(
            r.get("variant"), object()
        )
        (keep if same else old).append(r)
    return keep, old


def superseded_note(old: Sequence[dict[str, Any]]) -> list[str]:
    """A line saying how many results of an earlier configuration were left out (or nothing)."""
    if not old:
        return []
    return [
        "",
        f"{len(old)} result file(s) from an earlier configuration of this scale (other "
        "steps, data, downstream protocol or model) are left out of its tables.",
    ]


def runs_sections(records: Sequence[dict[str, Any]]) -> list[str]:
    """The end of most scale sections: the failed runs and the total wall time of `records`."""
    return failed_runs_section(records) + timing_section(records)


def curve_line(scale: str, figures: dict[str, str]) -> list[str]:
    """The loss-curve figure of a training experiment's scale (nothing when it has none)."""
    return ["", f"![Training loss, {scale} scale]({figures[scale]})"] if scale in figures else []


def provenance_section(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """ "## Provenance" with one block per scale (nothing when there are no records)."""
    if not any(groups.values()):
        return []
    out = ["", "## Provenance", ""]
    for scale, recs in groups.items():
        out += [f"{scale_title(scale)}:", "", *provenance_lines(recs), ""]
    return out[:-1]


def build_with_figures(
    records: Sequence[dict[str, Any]],
    reports_dir: Any,
    experiment: str,
    plot: Any,
    render: Any,
) -> list[Any]:
    """Write reports/<experiment>.md and one <experiment>-<scale>.png per scale that has a figure.

    Args:
        plot: (scale, records of that scale, path) → the written path, or None for no figure.
        render: (records, {scale: figure file name}) → Markdown text.
    Returns:
        The written paths, Markdown first.
    """
    from pathlib import Path

    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    figures, written = {}, []
    for scale, recs in by_scale(records).items():
        path = plot(scale, recs, reports_dir / f"{experiment}-{scale}.png")
        if path is not None:
            figures[scale] = path.name
            written.append(path)
    md = reports_dir / f"{experiment}.md"
    md.write_text(render(list(records), figures))
    return [md, *written]


def save_figure(fig: Any, path: Any, title: str, handles: Sequence[Any] = ()) -> Any:
    """Finish a report figure: the legend of `handles` (if any) below the panels, the title,
    then write it as a PNG without a "Software" stamp (so regenerating does not change it).

    Returns:
        `path`.
    """
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path


def generated_note(records: Sequence[dict[str, Any]], experiment: str) -> str:
    """The sentence every report states where it comes from."""
    return (
        f"Generated by `wm_bench.report` from {len(records)} result file(s) in "
        f"`results/{experiment}/`; do not edit by hand."
    )


def no_results(experiment: str, scales: str) -> list[str]:
    """The lines of a report without results: the command that makes them."""
    return ["", f"No results yet: run `wm-bench reproduce {experiment} --scale {scales}`."]


def render_by_scale(
    experiment: str,
    records: Sequence[dict[str, Any]],
    section: Callable[[str, list[dict[str, Any]]], list[str]],
    *,
    title: str,
    about: str,
    after: str = "",
    notes: Sequence[str] = (),
    empty: Sequence[str] | None = None,
    banner: Callable[[str], str] = scale_banner,
) -> str:
    """The Markdown of a report with one section per scale (pure): the heading; a paragraph of
    `about`, `generated_note` and `after`; the `notes` paragraphs; `empty` (default
    `no_results(experiment, "smoke|cpu|small")`) when there are no records; per scale (in report
    order) its heading, `banner` and `section(scale, its records)` (lines starting with a blank
    one); then the provenance."""
    groups = by_scale(records)
    out = [f"# {title}", "", about + generated_note(records, experiment) + after]
    out += [line for note in notes for line in ("", note)]
    if not records:
        out += no_results(experiment, "smoke|cpu|small") if empty is None else empty
    for scale, recs in groups.items():
        out += ["", f"## {scale_title(scale)}", "", banner(scale), *section(scale, recs)]
    out += provenance_section(groups)
    return "\n".join(out) + "\n"
