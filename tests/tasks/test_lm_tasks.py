"""rope and ffn tasks: variants, parameter matching, run lists (configs only, no training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from task_results import write_fake_result

import wm_bench_tasks.ffn as ffn
import wm_bench_tasks.rope as rope
from wm_bench.config import config_hash, replace
from wm_bench.model import count_params
from wm_bench_tasks._lm import cell_key, choose_lr, staged_runs


@pytest.mark.parametrize("scale", ["smoke", "cpu", "small"])
def test_rope_models_are_parameter_matched_and_differ_only_in_rope(scale: str) -> None:
    counts = {v: count_params(rope.model_config(scale, v))["total"] for v in rope.VARIANTS}
    target = counts["hybrid_rope"]
    for v, n in counts.items():
        assert abs(n - target) / target <= 0.05, (v, n, target)
    assert counts["ssd_rope"] == counts["ssd_norope"]
    assert counts["hybrid_rope"] == counts["hybrid_norope"]
    hy = rope.model_config(scale, "hybrid_norope")
    assert hy.blocks["S"].mixer.position == "none" and hy.blocks["A"].mixer.name == "qcattn"
    assert hy.pattern.count("A") == 1


def test_rope_cpu_scale_tunes_each_variant_and_pairs_the_hybrid_over_six_seeds() -> None:
    s = rope.SCALES["cpu"]
    assert s.eval_multiples == (1, 2, 4)
    assert len(s.lr_grid) >= 3 and s.lr in s.lr_grid  # per-variant tuning around the old LR
    assert len(s.seeds_of("hybrid_rope")) >= 6 and len(s.seeds_of("hybrid_norope")) >= 6
    n = count_params(rope.model_config("cpu", "hybrid_rope"))["total"]
    assert 500_000 <= n <= 5_000_000  # sized by the 45-minute budget (docstring)
    assert s.max_steps * s.batch_size * s.seq_len >= 1_000_000
    assert rope.model_config("cpu", "hybrid_rope").pattern == "SSSSSSSA"  # the 7:1 hybrid


@pytest.mark.parametrize("scale", ["smoke", "cpu", "small"])
def test_ffn_variants_match_the_dense_active_parameters(scale: str) -> None:
    dense = count_params(ffn.model_config(scale, "mlp"))
    for v in ffn.variants(scale):
        c = count_params(ffn.model_config(scale, v))
        assert abs(c["active"] - dense["active"]) / dense["active"] <= 0.05, (v, c)
        if v != "mlp":
            assert c["total"] > c["active"]  # sparse methods hold more than they use


def test_ffn_cpu_scale_tunes_each_variant_and_pairs_three_seeds() -> None:
    vs = ffn.variants("cpu")
    assert vs == ["mlp", "moe", "seimoe", "cdmoe_1024"]  # PEER, CDMoE-256 cut (docstring)
    s = ffn.SCALES["cpu"]
    assert len(s.lr_grid) >= 3 and s.lr in s.lr_grid
    assert len(s.seeds_of("mlp")) >= 3 and s.seeds_of("mlp") == s.seeds_of("cdmoe_1024")
    assert ffn.variants("smoke") == ["mlp", "moe", "seimoe", "peer", "cdmoe_256"]


def test_committed_results_keep_their_config_hashes() -> None:
    """The committed LR-3e-3 (rope) and LR-2e-3 (ffn) cpu runs were made on the `debian` corpus:
    the task code on that corpus still gives their config hashes (nothing else drifted), while
    the cpu scales now train on the default corpus, so new cpu runs are new configs."""
    from wm_bench.data.corpus import DEFAULT_CORPUS

    root = Path(__file__).resolve().parents[2] / "results"
    for task, variant, lr in ((rope, "hybrid_rope", 3e-3), (ffn, "mlp", 2e-3)):
        for seed in (0, 1, 2):
            cfg = task.make_run("cpu", variant, seed, lr)
            assert cfg.data.corpus == DEFAULT_CORPUS == "bundled"
            old = replace(cfg, data=replace(cfg.data, corpus="debian"))
            assert (
                root / task.EXPERIMENT / "cpu" / f"{variant}__{config_hash(old)}.json"
            ).is_file()
            assert config_hash(cfg) == config_hash(task.make_run("cpu", variant, seed))


def test_choose_lr_counts_failed_and_diverged_as_worst() -> None:
    best, scores = choose_lr([(1e-3, 0, 50.0), (3e-3, 0, 45.0), (1e-2, 0, None)])
    assert best == 3e-3 and scores[1e-2] == math.inf
    assert choose_lr([(1e-3, 0, 40.0), (3e-3, 0, 40.0)])[0] == 1e-3  # tie: the smaller LR
    assert choose_lr([(3e-3, 0, None)])[0] == 3e-3  # one LR: nothing to choose
    assert choose_lr([(1e-3, 0, None), (3e-3, 0, math.nan)])[0] is None
    # Once seeds run at the best LR, the choice still compares the tune seed only.
    pts = [(1e-3, 0, 44.0), (3e-3, 0, 45.0), (1e-3, 1, 60.0), (1e-3, 2, 60.0)]
    assert choose_lr(pts) == (1e-3, {1e-3: 44.0, 3e-3: 45.0})


def _fake_result(rdir: Path, cfg, status: str, valid: float | None) -> None:
    metrics = {"valid/ppl": valid} if valid is not None else {}
    error = None if status == "ok" else "FloatingPointError: loss is nan"
    write_fake_result(rdir, cfg, metrics, higher_is_better=False, status=status, error=error)


def test_staged_runs_add_seeds_at_each_variants_best_lr(tmp_path: Path) -> None:
    base = rope.make_run("smoke", "attn", 0)

    def make(v: str, lr: float, seed: int):
        return replace(base, variant=v, seed=seed, optim=replace(base.optim, lr=lr))

    grid, seeds = (1e-3, 3e-3, 1e-2), {"a": (0, 1, 2), "b": (0, 1)}
    first = staged_runs(["a", "b"], grid, seeds.__getitem__, make, results_dir=tmp_path)
    assert [(c.variant, c.optim.lr, c.seed) for c in first] == [
        (v, lr, 0) for v in ("a", "b") for lr in grid
    ]
    for cfg, (status, valid) in zip(first[:3], [("ok", 50.0), ("ok", 45.0), ("diverged", None)]):
        _fake_result(tmp_path, cfg, status, valid)
    _fake_result(tmp_path, first[3], "ok", 40.0)  # b: one of three LRs done
    second = staged_runs(["a", "b"], grid, seeds.__getitem__, make, results_dir=tmp_path)
    extra = [(c.variant, c.optim.lr, c.seed) for c in second[len(first) :]]
    assert extra == [("a", 3e-3, 1), ("a", 3e-3, 2)]  # b's tune stage is not finished
    assert {cell_key(c)[-1] for c in second[len(first) :]} == {"seeds"}
    assert {cell_key(c)[-1] for c in first} == {"tune"}
    with pytest.raises(ValueError, match="distinct"):
        staged_runs(["a"], (1e-3, 1e-3), seeds.__getitem__, make)


def test_unknown_scale_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid: \['smoke', 'cpu', 'small', 'paper'\]"):
        rope.spec("huge")
    with pytest.raises(ValueError, match="valid"):
        ffn.spec("huge")
