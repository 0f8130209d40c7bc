"""Training-throughput benchmark: a tiny run writes a complete, positive, stamped JSON."""

from __future__ import annotations

import json

import pytest

from wm_bench.bench.common import format_table, interleaved_times
from wm_bench.bench.train import (
    DEFAULT_PRESETS,
    GOALS,
    HF_NOT_INSTALLED,
    build_parser,
    main,
    parse_spec,
)
from wm_bench.bench.train import bench_train as run_bench


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "train-cpu-tiny.json"
    result = run_bench(
        DEFAULT_PRESETS,
        "tiny",
        batch_size=2,
        seq_len=32,
        steps=2,
        warmup=1,
        threads=1,
        with_hf=False,
        out=out,
        progress=False,
    )
    return result, out


def test_bench_train_writes_the_result_it_returns(tiny_result):
    result, out = tiny_result
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))


def test_every_preset_row_is_ok_with_positive_tokens_per_second(tiny_result):
    result, _ = tiny_result
    names = [r["name"] for r in result["rows"]]
    assert names == [":".join(parse_spec(s)) for s in DEFAULT_PRESETS]
    for row in result["rows"]:
        assert row["status"] == "ok", row
        assert row["kind"] == "ours"
        assert row["tokens_per_s"] > 0
        assert len(row["step_s"]) == 2 and all(t > 0 for t in row["step_s"])
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["params"]["total"] >= row["params"]["active"] > 0
        assert row["config"]["size"] == "tiny"
        assert row["config"]["model"]["d_model"] == 64


def test_result_schema_settings_ratios_goals_and_provenance(tiny_result):
    result, _ = tiny_result
    assert result["schema_version"] == 1 and result["benchmark"] == "train"
    s = result["settings"]
    assert (s["size"], s["batch_size"], s["seq_len"], s["steps"], s["warmup"]) == (
        "tiny",
        2,
        32,
        2,
        1,
    )
    assert s["threads"] == 1 and s["tokens_per_step"] == 64 and s["with_hf"] is False
    assert result["ratios"]["llama/hf"] is None  # no HF row was run
    assert result["ratios"]["cheems/llama"] > 0
    assert result["ratios_paired"]["cheems/llama"] > 0
    assert set(result["load_average_1min"]) == {"before", "after"}
    assert set(result["goals"]) == {g[0] for g in GOALS}
    assert result["goals"]["llama/hf >= 1.0"]["met"] is None
    assert isinstance(result["goals"]["cheems/llama >= 0.5"]["met"], bool)
    prov = result["provenance"]
    assert prov["device"]["type"] == "cpu" and prov["device"]["threads"] == 1
    assert prov["device"]["cpu_count"] >= 1 and prov["device"]["cpu_model"]
    assert prov["versions"]["torch"]
    assert "git_commit" in prov and "git_dirty" in prov
    assert result["started_at"] <= result["finished_at"]


def test_hf_row_without_transformers_says_how_to_install(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("blocked for the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    result = run_bench(
        ["llama"],
        "tiny",
        batch_size=1,
        seq_len=8,
        steps=1,
        warmup=0,
        threads=1,
        out=tmp_path / "r.json",
        progress=False,
    )
    hf = result["rows"][-1]
    assert hf["name"] == "hf-llama" and hf["status"] == HF_NOT_INSTALLED
    assert "tokens_per_s" not in hf and result["goals"]["llama/hf >= 1.0"]["met"] is None


def test_parse_spec_defaults_to_mlp_and_rejects_unknown_names():
    assert parse_spec("mamba2") == ("mamba2", "mlp")
    assert parse_spec("cheems:cdmoe") == ("cheems", "cdmoe")
    with pytest.raises(ValueError, match="'gpt'"):
        parse_spec("gpt")
    with pytest.raises(ValueError, match=r"'moe'.*valid"):
        parse_spec("llama:moe")


def test_cli_help_and_a_tiny_run(tmp_path, capsys):
    assert "--no-hf" in build_parser().format_help()
    out = tmp_path / "cli.json"
    argv = [
        "--presets",
        "llama",
        "--size",
        "tiny",
        "--batch-size",
        "1",
        "--seq-len",
        "8",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--no-hf",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "llama:mlp" in printed and str(out) in printed
    assert json.loads(out.read_text())["rows"][0]["tokens_per_s"] > 0


def test_interleaved_times_rotates_order_and_counts_calls():
    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    times = interleaved_times(fns, repeats=3, warmup=1)
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert format_table([{"x": 1.0}], [("x", "speed")]).splitlines()[::2] == [
        "|   speed |",
        "|     1.0 |",
    ]
