"""Report tables through pandas (groupby / pivot), the corpus each LM result used, the PDF extra."""

from __future__ import annotations

import hashlib
import math
import random
import sys
from pathlib import Path

import pandas as pd
import pytest

from wm_bench.report import build_report
from wm_bench.report import common as c
from wm_bench.results import make_result, write_result


def _rec(
    variant: str,
    seed: int,
    metrics: dict,
    *,
    status: str = "ok",
    corpus: str | None = None,
    corpus_hash: str | None = None,
    tps: float | None = None,
) -> dict:
    data = {"seq_len": 128} | ({"corpus": corpus} if corpus else {})
    extra = {"data": {"corpus": corpus, "corpus_hash": corpus_hash}} if corpus_hash else {}
    return {
        "variant": variant,
        "seed": seed,
        "status": status,
        "metrics": metrics,
        "config": {"data": data, "optim": {"lr": 3e-3}},
        "timing": {"tokens_per_s": tps} if tps is not None else {},
        "extra": extra,
    }


# --------------------------------------------------------------------------------------------
# The table pieces in wm_bench.report.common


def test_frame_table_writes_missing_values_as_dashes_and_escapes_pipes() -> None:
    frame = pd.DataFrame({"model": ["a|b", "c"], "ppl": ["1.00 (1)", None], "n": [3, 4]})
    assert c.frame_table(frame, "lr") == [
        "| model | ppl | n |",
        "| :--- | ---: | --- |",
        "| a\\|b | 1.00 (1) | 3 |",
        "| c | — | 4 |",
    ]


def test_mean_std_cells_group_by_variant_over_ok_finite_values_only() -> None:
    recs = [
        _rec("a", 0, {"test/ppl@128": 1.0}, tps=100.0),
        _rec("a", 1, {"test/ppl@128": 2.0}, tps=300.0),
        _rec("a", 2, {"test/ppl@128": 3.0}),
        _rec("a", 3, {"test/ppl@128": 99.0}, status="failed"),  # not ok: left out
        _rec("b", 0, {"test/ppl@128": 5.0, "valid/ppl": 4.0}),
        _rec("b", 1, {"test/ppl@128": math.inf}),  # not finite: left out
        _rec("c", 0, {"valid/ppl": 7.0}),  # no test ppl at all
    ]
    runs = c.ok_frame(recs, lambda k: k.startswith("test/"), ("tokens_per_s",))
    assert list(runs.columns) == ["variant", "seed", "lr", "test/ppl@128", "timing/tokens_per_s"]
    assert len(runs) == 6  # one row per ok run
    summary = c.mean_std_by(runs, "variant", ["test/ppl@128", "timing/tokens_per_s", "absent"])
    cells = c.mean_std_cells(summary, "test/ppl@128", 2)
    assert cells.to_dict() == {"a": "2.00 ± 1.00 (3)", "b": "5.00 (1)", "c": None}
    assert c.mean_std_cells(summary, "timing/tokens_per_s", 0)["a"] == "200 ± 141 (2)"
    assert c.mean_std_cells(summary, "absent").isna().all()  # a column no run has: all "—"
    assert c.mean_std_cells(summary.reindex(["a", "zz"]), "test/ppl@128")["zz"] is None


def test_pandas_cells_equal_the_exact_mean_and_sample_std_to_the_digits_shown() -> None:
    rng = random.Random(0)
    for _ in range(300):
        xs = [rng.uniform(10, 90) for _ in range(rng.randint(1, 7))]
        runs = pd.DataFrame({"variant": "v", "x": xs})
        got = c.mean_std_cells(c.mean_std_by(runs, "variant", ["x"]), "x", 2)["v"]
        assert got == c.fmt_mean_std(*c.mean_std(xs), digits=2)


def test_best_of_marks_the_best_mean_and_nothing_when_all_tie() -> None:
    means = pd.Series({"a": 2.0, "b": 1.0, "c": 1.0, "d": math.nan})
    assert c.best_of(means, higher=False) == {"b", "c"}
    assert c.best_of(means, higher=True) == {"a"}
    assert c.best_of(pd.Series({"a": 0.25, "b": 0.25}), higher=True) == set()


# --------------------------------------------------------------------------------------------
# Which corpus the results used


def test_corpus_sentence_names_the_corpus_and_its_content_hash() -> None:
    recs = [_rec(v, 0, {}, corpus="debian", corpus_hash="6e25743b589d5ccc") for v in "ab"]
    assert c.corpus_sentence(recs) == "corpus `debian` (content hash 6e25743b589d5ccc)"
    assert c.corpus_sentence([_rec("a", 0, {}, corpus="bundled")]) == "corpus `bundled`"
    assert c.corpus_sentence([_rec("a", 0, {})]) == "corpus not recorded"


def test_corpus_sentence_lists_mixed_corpora_per_group_with_their_variants() -> None:
    recs = [
        _rec("attn", 0, {}, corpus="debian"),
        _rec("attn", 1, {}, corpus="debian"),
        _rec("ssd", 0, {}, corpus="bundled", corpus_hash="abc"),
        _rec("hybrid", 0, {}, corpus="bundled", corpus_hash="abc"),
    ]
    assert c.corpus_sentence(recs) == (
        "corpora differ between the runs: `bundled` (content hash abc): 2 run(s) of ssd, "
        "hybrid; `debian`: 2 run(s) of attn"
    )


def test_corpus_sentence_names_the_corpus_of_results_left_out() -> None:
    now = [_rec("a", 0, {}, corpus="bundled")]
    old = [_rec("a", 0, {}, corpus="debian"), _rec("b", 0, {}, corpus="bundled")]
    assert c.corpus_sentence(now, old) == (
        "corpus `bundled` (the results left out of the tables used `debian`)"
    )
    assert c.corpus_sentence(now, old[1:]) == "corpus `bundled`"  # same corpus: nothing to add


def _write_lm(
    res: Path,
    exp: str,
    variant: str,
    seed: int,
    ppl: float,
    corpus: str,
    finished: str,
    steps: int = 100,
) -> None:
    h = hashlib.sha256(repr((exp, variant, seed, corpus)).encode()).hexdigest()[:16]
    metrics = {"test/ppl@128": ppl, "valid/ppl": ppl - 1}
    rec = make_result(
        experiment=exp,
        variant=variant,
        seed=seed,
        scale="cpu",
        config={
            "data": {"corpus": corpus, "seq_len": 128},
            "train": {"max_steps": steps},
            "optim": {"lr": 3e-3},
            "tags": {"variant": variant},
        },
        config_hash=h,
        status="ok",
        metrics=metrics,
        higher_is_better={k: False for k in metrics},
        params={"total": 1000, "active": 1000},
        timing={"wall_s": 1.0, "tokens_per_s": 10.0},
        extra={"data": {"corpus": corpus, "corpus_hash": f"hash-{corpus}"}},
        device={"type": "cpu", "threads": 1},
    )
    rec["finished_at"] = finished
    write_result(rec, res)


@pytest.mark.parametrize(
    ("exp", "variants"),
    [
        ("rope", ("hybrid_rope", "hybrid_norope")),
        ("ffn", ("mlp", "cdmoe_1024")),
        ("arch", ("llama", "cheems_mlp")),
    ],
)
def test_lm_reports_name_the_corpus_of_a_scale_whose_runs_mixed_corpora(
    tmp_path: Path, exp: str, variants: tuple[str, str]
) -> None:
    """A scale first run on `debian`, then rerun on `bundled`: its tables hold the bundled runs,
    and the report says so and names the corpus of the runs it left out."""
    res = tmp_path / "results"
    for seed in (0, 1):
        for v in variants:
            _write_lm(res, exp, v, seed, 40.0, "debian", "2026-01-01T00:00:00")
        _write_lm(res, exp, variants[0], seed, 30.0 + seed, "bundled", "2026-02-01T00:00:00")
    md = build_report(exp, res, tmp_path / "rep")[0].read_text()
    cpu = md.split("## CPU scale")[1]
    assert (
        "2 run(s), 2 ok; corpus `bundled` (content hash hash-bundled) (the results left out "
        "of the tables used `debian`)" in cpu
    )
    assert "4 result file(s) from an earlier configuration" in cpu
    assert "30.50 ± 0.71 (2)" in cpu and "40.00" not in cpu.split("### Learning rate")[0]


# --------------------------------------------------------------------------------------------
# The pivots of the passkey, MQAR and expert-speed reports


def test_passkey_grid_pivots_length_by_depth_with_dashes_where_not_run() -> None:
    from wm_bench.report import passkey

    def rec(seed: int, cells: dict[str, float]) -> dict:
        return {
            "variant": "qcattn",
            "seed": seed,
            "status": "ok",
            "metrics": {f"test/accuracy@{k}": v for k, v in cells.items()},
        }

    by_model = passkey.grids(
        [
            rec(0, {"128:0": 1.0, "128:0.5": 0.5, "256:0": 0.0}),
            rec(1, {"128:0": 0.5, "128:0.5": 0.5, "256:0": 0.5}),
            {"variant": "qcattn", "status": "failed"},
        ]
    )
    grid, runs = by_model["qcattn"]
    assert runs == 2 and grid[(128, 0.0)] == 0.75
    assert passkey.model_table(grid, 128) == [
        "| length \\ depth | 0 | 0.5 |",
        "| :--- | ---: | ---: |",
        "| 128 (train) | 0.75 | 0.50 |",
        "| 256 (extrap.) | 0.25 | — |",
    ]
    summary = passkey.summary_table(by_model, 128)
    assert summary[-1] == "| QCAttn | 2 | 0.50 | 0.62 | 0.25 |"


def test_mqar_best_lr_cell_takes_the_highest_mean_and_the_smaller_lr_on_a_tie() -> None:
    from wm_bench.report.mqar import Run, aggregate

    row = (64, 32, 4)

    def run(mixer: str, lr: float, seed: int, acc: float | None) -> Run:
        return Run(row, mixer, lr, seed, acc is not None, acc, {})

    grid = aggregate(
        [
            run("dma", 1e-3, 0, 0.5),
            run("dma", 1e-3, 1, 0.7),
            run("dma", 3e-3, 0, 0.6),
            run("dma", 3e-3, 1, 0.6),  # tie at 0.6: 1e-3
            run("dma", 1e-2, 0, None),  # failed: no LR of its own
            run("ssd", 1e-2, 0, 0.2),
        ]
    )
    dma = grid[row]["dma"]
    assert (dma.best_lr, dma.n, dma.n_lrs) == (1e-3, 2, 2)
    assert dma.mean == pytest.approx(0.6) and dma.std == pytest.approx(math.sqrt(0.02))
    ssd = grid[row]["ssd"]
    assert (ssd.best_lr, ssd.mean, ssd.std, ssd.n, ssd.n_lrs) == (1e-2, 0.2, None, 1, 1)
    assert aggregate([]) == {}


def test_expert_speed_tables_pivot_methods_into_columns_and_take_the_peak_per_n() -> None:
    from wm_bench.report.expert_speed import Point, memory_section, time_table

    def point(method: str, n: int, ratio: float, ms: float | None, peak: float) -> Point:
        rec = {"timing": {"peak_mib": peak, "peak_kind": "fixture"}}
        return Point(method, n, 4, ratio, ms is not None, ms, ms, rec)

    pts = [
        point("cdmoe", 1024, 0.5, 1.5, 10.0),
        point("seimoe", 1024, 0.5, 150.0, 30.0),
        point("cdmoe", 1024, 1.0, 2.0, 12.0),
        point("seimoe", 1024, 1.0, None, 99.0),
        point("cdmoe", 4096, 0.5, 3.0, 20.0),
    ]
    assert time_table(pts, ["seimoe", "cdmoe"], "fwd_bwd")[2:] == [
        "| 1024 | 0.5 | 4 | 150 | 1.5 |",
        "| 1024 | 1 | 4 | — | 2 |",
        "| 4096 | 0.5 | 4 | — | 3 |",
    ]
    mem = memory_section(pts, ["seimoe", "cdmoe"])
    assert mem[0] == "Peak memory (fixture):"
    assert mem[-2:] == ["| SEIMoE | 30 | — |", "| CDMoE | 12 | 20 |"]  # failed point: no peak


# --------------------------------------------------------------------------------------------
# The PDF needs the `pdf` extra, and says so


@pytest.mark.parametrize("missing", ["weasyprint", "markdown"])
def test_pdf_without_its_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from wm_bench.report.pdf import MissingExtra, build_pdf

    (tmp_path / "x.md").write_text("# X\n")
    monkeypatch.setitem(sys.modules, missing, None)  # `import <missing>` now fails
    with pytest.raises(MissingExtra, match=r"pip install 'wm_bench\[pdf\]'") as info:
        build_pdf(tmp_path)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)
    assert info.value.name == missing and missing in str(info.value)


def test_cli_report_pdf_without_the_extra_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wm_bench.cli import main

    (tmp_path / "results").mkdir()
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    rc = main(
        [
            "report",
            "mqar",
            "--results-dir",
            str(tmp_path / "results"),
            "--reports-dir",
            str(tmp_path / "rep"),
            "--pdf",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "wm_bench[pdf]" in err and "Traceback" not in err
    assert (tmp_path / "rep" / "mqar.md").is_file()  # the Markdown report is still written


def test_report_without_pdf_imports_neither_markdown_nor_weasyprint(
    tmp_path: Path, report_imports_none
) -> None:
    report_imports_none(["rope"], tmp_path, tmp_path / "rep", ("markdown", "weasyprint", "pypdf"))
