"""MQAR benchmark: both variants train on the same rows, heads differ as claimed, JSON complete."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from wm_bench.bench.mqar import (
    ANCHORS,
    DESIGN_POINTS,
    GOAL_RATIO,
    MqarBenchConfig,
    ZoologyStyleLM,
    ZoologyStyleTrainer,
    bench_mqar,
    build_parser,
    main,
    mqar_split,
    ours_run_config,
    parse_variants,
    same_rows,
)
from wm_bench.data.mqar import IGNORE_INDEX, generate

# V > L, 4·kv ≤ L; 2 epochs of 4 steps, chunks of 2 steps (the first untimed).
TINY = MqarBenchConfig(
    vocab_size=128,
    d_model=16,
    seq_len=16,
    num_kv_pairs=2,
    batch_size=4,
    steps=8,
    chunk=2,
    n_test=16,
)


def _strict(text: str) -> dict:
    def no_constant(name: str) -> None:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=no_constant)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "mqar.json"
    result = bench_mqar(TINY, repeats=2, threads=1, out=out, progress=False)
    return result, out


def test_the_written_json_is_strict_and_equals_the_returned_result(tiny):
    result, out = tiny
    assert _strict(out.read_text()) == json.loads(json.dumps(result))


def test_both_variants_train_every_step_with_finite_losses_and_positive_times(tiny):
    result, _ = tiny
    for rep in result["repeats"]:
        for v in ("ours", "zoology_style"):
            r = rep["variants"][v]
            assert r["steps"] == TINY.steps
            assert math.isfinite(r["loss_first_chunk"]) and math.isfinite(r["loss_last_chunk"])
            assert 0.0 <= r["accuracy"]["accuracy"] <= 1.0
            assert r["accuracy"]["n"] == TINY.n_test * TINY.num_kv_pairs
        assert [c["steps"] for c in rep["chunks"]] == [2, 2, 2, 2]
        assert [c["timed"] for c in rep["chunks"]] == [False, True, True, True]
        assert all(c["ours_s"] > 0 and c["zoology_style_s"] > 0 for c in rep["chunks"])
    assert [rep["first"] for rep in result["repeats"]] == ["ours", "zoology_style"]


def test_json_has_the_documented_fields(tiny):
    result, _ = tiny
    assert result["schema_version"] == 1 and result["benchmark"] == "mqar"
    s = result["settings"]
    assert (s["vocab_size"], s["d_model"], s["seq_len"], s["num_kv_pairs"]) == (128, 16, 16, 2)
    assert (s["steps"], s["epochs"], s["n_train"], s["steps_per_epoch"]) == (8, 2, 16, 4)
    assert s["threads"] == 1 and s["repeats"] == 2 and s["tokens_per_step"] == 64
    assert s["variants"] == ["ours", "zoology_style"] and s["chunk_sizes"] == [2, 2, 2, 2]
    for v in ("ours", "zoology_style"):
        d = result["variants"][v]
        t = d["tokens_per_s"]
        assert t["n_chunks"] == 6 and t["min"] <= t["median"] <= t["max"]
        assert set(t["interval"]) == {"estimate", "low", "high", "level", "n", "method"}
        assert d["step_ms_median"] > 0 and d["tokens_trained_per_repeat"] == 8 * 64
        assert len(d["accuracy"]["per_repeat"]) == 2
    assert result["variants"]["zoology_style"]["label"] == "zoology-style (our re-implementation)"
    ratio = result["ratio"]
    assert ratio["ours_over_zoology_style"] > 0 and len(ratio["per_repeat"]) == 2
    assert ratio["interval"]["n"] == 6
    goal = result["goal"]  # a goal is reported, never asserted here
    assert goal["threshold"] == GOAL_RATIO and isinstance(goal["met"], bool)
    assert goal["verdict"]["verdict"] in ("holds", "refuted", "inconclusive")
    assert math.isfinite(result["accuracy_difference"]["ours_minus_zoology_style"])
    assert result["anchors"] == json.loads(json.dumps(ANCHORS))
    assert result["anchors"]["rows"][0]["train_tokens_per_s"] == 13124
    assert [p["point"] for p in result["design_points"]] == list(DESIGN_POINTS)
    prov = result["provenance"]
    assert prov["device"]["type"] == "cpu" and prov["device"]["threads"] == 1
    assert prov["device"]["cpu_model"] and prov["versions"]["torch"] and "git_commit" in prov
    assert set(result["load_average_1min"]) == {"before", "after", "timed_chunks_median"}
    assert result["started_at"] <= result["finished_at"]


def test_result_holds_no_machine_path(tiny):
    result, _ = tiny
    assert not re.search(
        r"(?<![\w.~/\\-])/(?:work|root|home|tmp|Users|var|opt)\b",
        json.dumps(result, ensure_ascii=False),
    )


def test_ours_applies_the_head_to_labelled_positions_only_zoology_style_to_all(tiny):
    result, _ = tiny
    b, kv, seq = TINY.batch_size, TINY.num_kv_pairs, TINY.seq_len
    assert result["variants"]["ours"]["head_rows_per_step"] == [b * kv] * 2
    assert result["variants"]["zoology_style"]["head_rows_per_step"] == [b * seq] * 2


def test_the_training_step_shapes_behind_the_head_row_counts():
    from wm_bench.train.module import LMModule

    run_cfg = ours_run_config(TINY, seed=0, threads=1)
    (x, y), _ = mqar_split(run_cfg)
    x, y = x[:4], y[:4]
    logits, targets, _ = LMModule(run_cfg)._steps(x, y)
    n_labels = int((y != IGNORE_INDEX).sum())
    assert n_labels == 4 * TINY.num_kv_pairs
    assert tuple(logits.shape) == (n_labels, TINY.vocab_size) and tuple(targets.shape) == (
        n_labels,
    )
    zoo = ZoologyStyleLM(TINY.vocab_size, TINY.d_model, TINY.n_layers, TINY.seq_len)
    assert tuple(zoo(x).shape) == (4, TINY.seq_len, TINY.vocab_size)
    assert zoo.lm_head.weight is zoo.embeddings.word_embeddings.weight  # tied, as in Zoology


def test_both_variants_get_the_same_training_rows_and_the_same_test_set(tiny):
    result, _ = tiny
    for rep in result["repeats"]:
        assert rep["data"]["same_training_rows"] is True
        test = {rep["data"]["test_sha256"]} | {
            rep["variants"][v]["test_sha256"] for v in ("ours", "zoology_style")
        }
        assert len(test) == 1  # one test set: the suite's validation split, hashed where used
    assert (
        result["repeats"][0]["data"]["train_sha256"] != result["repeats"][1]["data"]["train_sha256"]
    )  # seed + 1 per repeat


def test_split_is_the_suites_mqar_data_and_zoology_style_serves_it_in_order():
    run_cfg = ours_run_config(TINY, seed=3, threads=1)
    (x, y), (tx, ty) = mqar_split(run_cfg)
    train_seed, test_seed = run_cfg.data.split_seeds(3)
    gx, gy = generate(
        TINY.n_train, TINY.seq_len, TINY.num_kv_pairs, TINY.vocab_size, seed=train_seed
    )
    assert torch.equal(x, gx) and torch.equal(y, gy) and len(x) == TINY.n_train
    hx, _ = generate(TINY.n_test, TINY.seq_len, TINY.num_kv_pairs, TINY.vocab_size, seed=test_seed)
    assert torch.equal(tx, hx)
    zoo = ZoologyStyleTrainer(TINY, x, y, seed=3)
    zoo.train_steps(TINY.steps)
    served = torch.cat([b for b, _ in zoo.seen])
    assert torch.equal(served, torch.cat([x, x]))  # two epochs, fixed order (shuffle=False)
    assert same_rows(zoo.seen, [(x, y), (x, y)])
    assert not same_rows(zoo.seen, [(x, y)])


def test_zoology_style_lr_is_cosine_per_epoch_and_weight_decay_covers_every_parameter():
    (x, y), _ = mqar_split(ours_run_config(TINY, seed=0, threads=1))
    zoo = ZoologyStyleTrainer(TINY, x, y, seed=0)
    group = zoo.optimizer.param_groups[0]
    assert len(zoo.optimizer.param_groups) == 1 and group["weight_decay"] == TINY.weight_decay
    assert group["betas"] == (0.9, 0.999)
    lrs = []
    for _ in range(TINY.steps):
        lrs.append(group["lr"])
        zoo.train_steps(1)
    assert lrs == pytest.approx([TINY.lr] * 4 + [TINY.lr / 2] * 4)


def test_one_variant_alone_runs_without_ratio_or_goal():
    res = bench_mqar(TINY, variants=["zoology_style"], threads=1, progress=False)
    assert list(res["variants"]) == ["zoology_style"] and res["ratio"] is None
    assert res["goal"] is None and res["repeats"][0]["data"]["same_training_rows"] is None
    assert all(c["load_1min"] is None or c["load_1min"] >= 0 for c in res["repeats"][0]["chunks"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variants", "ours,zoology"], "valid: a comma list of"),
        (["--variants", ""], "valid: a comma list of"),
        (["--steps", "30"], "leave no timed chunk"),
        (["--steps", "20", "--chunk", "0"], "chunk=0"),
        (["--threads", "0"], "--threads 0"),
        (["--repeats", "0"], "--repeats 0"),
        (["--n-test", "0"], "n_test=0"),
    ],
)
def test_bad_arguments_give_one_clear_error_line_and_start_nothing(argv, message, capsys):
    from wm_bench.cli import main as cli_main

    assert cli_main(["bench", "mqar", *argv, "--out", "unused.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_parse_variants_keeps_the_canonical_order():
    assert parse_variants("zoology_style, ours") == ("ours", "zoology_style")
    assert parse_variants(["ours"]) == ("ours",)


def test_help_names_both_variants_and_the_goal(capsys):
    text = build_parser().format_help()
    assert "zoology_style" in text and "--variants" in text and "1.5" in text
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "wm-bench bench mqar" in capsys.readouterr().out


def test_accuracy_difference_uses_each_variants_own_counts() -> None:
    from wm_bench.bench.mqar import accuracy_difference

    reps = [
        {
            "variants": {
                "ours": {"accuracy": {"hits": 10, "n": 100}},
                "zoology_style": {"accuracy": {"hits": 30, "n": 100}},
            }
        },
        {
            "variants": {
                "ours": {"accuracy": {"hits": 20, "n": 100}},
                "zoology_style": {"accuracy": {"hits": 30, "n": 100}},
            }
        },
    ]
    d = accuracy_difference(reps)
    assert abs(d["ours_minus_zoology_style"] - (-0.15)) < 1e-12
    assert d["interval"]["high"] < 0  # clearly lower, not a difference of 0
