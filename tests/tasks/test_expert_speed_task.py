"""Expert-speed task: the grid, k, method configs, the reproduce loop and its result files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import wm_bench_tasks.expert_speed as task


def test_k_matches_the_papers_k_column() -> None:
    paper = task.load_paper()
    for n, row in paper["rows"].items():
        assert [task.k_for(int(n), r) for r in paper["ratios"]] == row["k"]


def test_grid_is_the_product_of_the_scale() -> None:
    for name, s in task.SCALES.items():
        pts = task.points(name)
        assert len(pts) == len(s.experts) * len(s.ratios) * len(s.methods)
        assert len({task.point_hash(p) for p in pts}) == len(pts)


def test_round_robin_points_get_new_hashes_and_old_ones_keep_theirs() -> None:
    s = task.SCALES["cpu"]
    p = task.points("cpu")[0]
    assert task.point_hash(p, s) != task.point_hash(p)  # the protocol is part of the config
    old = replace(s, protocol="median", repeats=3)
    assert task.point_hash(p, old) == task.point_hash(p)
    # The committed results timed by the median protocol keep their hash.
    root = Path(__file__).resolve().parents[2] / "results" / "expert_speed" / "cpu"
    assert (root / f"{p.method}__{task.point_hash(p)}.json").is_file()
    with pytest.raises(ValueError, match="protocol='best'"):
        replace(s, protocol="best")


def test_cpu_scale_times_every_method_round_robin_up_to_16384_experts() -> None:
    s = task.SCALES["cpu"]
    assert s.protocol == "round_robin" and s.repeats >= 10 and s.warmup >= 1
    assert max(s.experts) == 16384 and s.device == "cpu"
    assert set(s.methods) == {"seimoe", "moe", "pkm", "peer", "cdmoe"}
    assert s.ratios == (0.25, 0.5, 0.75, 1.0)


@pytest.mark.parametrize("method", task.METHODS)
def test_every_method_builds_at_the_largest_k(method: str) -> None:
    p = task.SpeedPoint(method, 64, 8, 1.0, 1, 4, 32, "float32", "cpu")
    cfg = task.ffn_config(p)
    assert cfg.num_experts == 64 and cfg.top_k == 8


def test_retrieval_bytes_count_gathered_rows() -> None:
    p = task.SpeedPoint("cdmoe", 64, 2, 0.25, 2, 3, 8, "bfloat16", "cpu")
    assert task.retrieval_bytes(p) == 2 * 3 * task.HEADS * 2 * 2 * 8 * 2
    assert task.retrieval_bytes(p.__class__(**{**p.__dict__, "method": "moe"})) is None


def test_unknown_scale_and_bad_only_are_clear() -> None:
    with pytest.raises(ValueError, match=r"valid: \['smoke', 'cpu', 'small', 'paper'\]"):
        task.points("huge")
    assert task.reproduce("smoke", only=["colour=red"]) == 2


def test_paper_points_cover_four_methods_up_to_1024() -> None:
    pts = task.paper_points()
    assert {m for m, _, _ in pts} == {"seimoe", "pkm", "peer", "cdmoe"}
    assert pts[("seimoe", 1024, 1.0)] == 1491 and pts[("cdmoe", 1024, 1.0)] == 200


def test_reproduce_writes_one_result_per_point_and_skips_done(tmp_path, capsys) -> None:
    only = ["num_experts=16", "ratio=0.5"]
    assert task.reproduce("smoke", only=only, results_dir=tmp_path, quiet=True) == 0
    files = sorted((tmp_path / "expert_speed" / "smoke").glob("*.json"))
    assert len(files) == len(task.METHODS)
    sessions = set()
    for f in files:
        rec = json.loads(f.read_text())
        assert rec["status"] == "ok", rec["error"]
        assert rec["metrics"]["fwd_ms"] > 0 and rec["metrics"]["fwd_bwd_ms"] > 0
        reps = rec["extra"]["fwd_bwd_ms_repeats"]  # round-robin: every repeat kept
        assert len(reps) == task.SCALES["smoke"].repeats
        assert rec["metrics"]["fwd_bwd_ms"] == pytest.approx(sorted(reps)[1], rel=1e-3)
        assert len(rec["timing"]["loadavg_before"]) == 3 and rec["timing"]["loadavg_after"]
        assert sorted(rec["extra"]["group"]) == sorted(task.METHODS)
        sessions.add(rec["extra"]["session"])
        assert rec["config"]["tags"]["top_k"] == 2 and rec["provenance"]["git_commit"] is not None
        if rec["variant"] != "seimoe":  # the loop baseline has no kernel choice
            assert rec["impls"], rec["variant"]  # what ran is recorded
    assert len(sessions) == 1  # the five methods were timed together, round-robin
    before = {f: f.stat().st_mtime_ns for f in files}
    assert task.reproduce("smoke", only=only, results_dir=tmp_path, quiet=True) == 0
    assert {f: f.stat().st_mtime_ns for f in files} == before  # skipped, not rewritten
