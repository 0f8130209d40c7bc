"""Report tables through pandas: groupby / agg for mean ± std, pivots for grids."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from wm_bench.report import common as c


def _rec(variant: str, seed: int, metrics: dict, *, status: str = "ok", corpus: str | None = None,
         corpus_hash: str | None = None, tps: float | None = None) -> dict:  # fmt: skip
    data = {"seq_len": 128} | ({"corpus": corpus} if corpus else {})
    extra = {"data": {"corpus": corpus, "corpus_hash": corpus_hash}} if corpus_hash else {}
    return {"variant": variant, "seed": seed, "status": status, "metrics": metrics,
            "config": {"data": data, "optim": {"lr": 3e-3}},
            "timing": {"tokens_per_s": tps} if tps is not None else {}, "extra": extra}  # fmt: skip


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
# The pivots of the passkey, MQAR and expert-speed reports


def test_passkey_grid_pivots_length_by_depth_with_dashes_where_not_run() -> None:
    from wm_bench.report import passkey

    def rec(seed: int, cells: dict[str, float]) -> dict:
        return {"variant": "qcattn", "seed": seed, "status": "ok",
                "metrics": {f"test/accuracy@{k}": v for k, v in cells.items()}}  # fmt: skip

    by_model = passkey.grids([rec(0, {"128:0": 1.0, "128:0.5": 0.5, "256:0": 0.0}),
                              rec(1, {"128:0": 0.5, "128:0.5": 0.5, "256:0": 0.5}),
                              {"variant": "qcattn", "status": "failed"}])  # fmt: skip
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

    grid = aggregate([run("dma", 1e-3, 0, 0.5), run("dma", 1e-3, 1, 0.7),
                      run("dma", 3e-3, 0, 0.6), run("dma", 3e-3, 1, 0.6),  # tie at 0.6: 1e-3
                      run("dma", 1e-2, 0, None),  # failed: no LR of its own
                      run("ssd", 1e-2, 0, 0.2)])  # fmt: skip
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

    pts = [point("cdmoe", 1024, 0.5, 1.5, 10.0), point("seimoe", 1024, 0.5, 150.0, 30.0),
           point("cdmoe", 1024, 1.0, 2.0, 12.0), point("seimoe", 1024, 1.0, None, 99.0),
           point("cdmoe", 4096, 0.5, 3.0, 20.0)]  # fmt: skip
    assert time_table(pts, ["seimoe", "cdmoe"], "fwd_bwd")[2:] == [
        "| 1024 | 0.5 | 4 | 150 | 1.5 |",
        "| 1024 | 1 | 4 | — | 2 |",
        "| 4096 | 0.5 | 4 | — | 3 |",
    ]
    mem = memory_section(pts, ["seimoe", "cdmoe"])
    assert mem[0] == "Peak memory (fixture):"
    assert mem[-2:] == ["| SEIMoE | 30 | — |", "| CDMoE | 12 | 20 |"]  # failed point: no peak
