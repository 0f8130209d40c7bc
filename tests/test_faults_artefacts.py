"""Corrupt artefacts: caches rebuilt and said so, a bad model or result file one error line.

A cached tokenizer, token shard or Debian text cache that fails its checksum is rebuilt with
one line on stderr; a damaged model directory or result file stops the command with exit code
2 and one "error:" line naming the file and the fix.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from wm_bench.cli import main
from wm_bench.config import RunConfig, config_hash, to_dict
from wm_bench.presets import preset
from wm_bench.testing import toy_sentence


def _one_error_line(capsys: pytest.CaptureFixture, *names: str) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in names:
        assert n in err, (n, err)
    return err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("texts")
    rng = random.Random(0)
    for i in range(12):
        (folder / f"doc{i:02d}.txt").write_text(" ".join(toy_sentence(rng) for _ in range(40)))
    return f"files:{folder}/*.txt"


def _prepare(corpus: str, cache: Path):
    from wm_bench.data.lm import prepare

    return prepare(corpus, vocab_size=300, cache_dir=cache, progress=False)


def test_a_corrupt_cached_tokenizer_is_retrained_and_says_so(corpus, tmp_path, capsys) -> None:
    first = _prepare(corpus, tmp_path)
    path = first.tokenizer.path
    capsys.readouterr()
    for damage in (b"\x00garbage{", path.read_bytes() + b" "):  # unparsable; checksum differs
        path.write_bytes(damage)
        again = _prepare(corpus, tmp_path)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "retraining" in err, err
        assert again.tokenizer.encode("the old cat") == first.tokenizer.encode("the old cat")
    _prepare(corpus, tmp_path)
    assert capsys.readouterr().err == ""  # intact now: nothing said, nothing redone


def test_a_corrupt_token_shard_is_rebuilt_and_says_so(corpus, tmp_path, capsys) -> None:
    import numpy as np

    first = _prepare(corpus, tmp_path)
    want = np.array(first.shards.tokens("valid"))
    capsys.readouterr()
    shard = first.shards.path("valid")
    data = bytearray(shard.read_bytes())
    data[:8] = b"\xff" * 8  # same size, ids ≥ the vocabulary: only the checksum can tell
    shard.write_bytes(bytes(data))
    again = _prepare(corpus, tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256" in err and "rebuilding" in err, err
    assert np.array_equal(np.array(again.shards.tokens("valid")), want)


def test_a_corrupt_debian_text_cache_is_reparsed_and_says_so(tmp_path, monkeypatch, capsys):
    from wm_bench.data import debian
    from wm_bench.data.corpus import Document

    raw = tmp_path / "corpus" / "debian" / "raw" / "austen"
    raw.mkdir(parents=True)
    (raw / "versions.json").write_text(json.dumps({"packages": {"r-cran-janeaustenr": "1"}}))
    docs = [Document(f"Chapter {i}. It is a truth.", f"austen/{i}", "austen") for i in range(5)]
    parsed = []
    monkeypatch.setattr(debian, "parse_part", lambda part, r: parsed.append(part) or docs)
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    cache = tmp_path / "corpus" / "debian" / "austen.jsonl"
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    assert parsed == ["austen"] and capsys.readouterr().err == ""
    cache.write_text(cache.read_text().replace("truth", "lie"))  # still parses: checksum tells
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    err = capsys.readouterr().err
    assert parsed == ["austen"] * 2 and err.count("\n") == 1 and "sha256" in err, err
    meta = cache.with_suffix(".json")
    record = json.loads(meta.read_text())
    del record["sha256"]  # a cache from before checksums, and garbage in it
    meta.write_text(json.dumps(record))
    cache.write_text("{not json\n")
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    assert parsed == ["austen"] * 3 and "does not parse" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wm_bench.data.lm import LMDataConfig
    from wm_bench.data.tokenizer import EOS, Tokenizer, train_bpe
    from wm_bench.eval.checkpoint import save_pretrained
    from wm_bench.model import build_model

    rng = random.Random(0)
    backend = train_bpe([toy_sentence(rng) for _ in range(300)], 300)
    tok = Tokenizer(backend, name="bpe300-test", eos_id=backend.token_to_id(EOS))
    cfg = RunConfig(
        experiment="arch",
        variant="x",
        model=preset("llama", "tiny", vocab_size=tok.vocab_size),
        data=LMDataConfig(corpus="debian", vocab_size=300, seq_len=32),
    )
    return save_pretrained(tmp_path_factory.mktemp("m") / "model", build_model(cfg.model), cfg, tok)


def _damaged_copy(src: Path, dst: Path, name: str, data: bytes | None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if data is None:  # truncated to half
        whole = (dst / name).read_bytes()
        data = whole[: len(whole) // 2]
    (dst / name).write_bytes(data)
    return dst


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("model.safetensors", None),
        ("model.safetensors", b"garbage, not a safetensors file"),
        ("model.safetensors", b"PK\x03\x04 not a zip either"),
        ("config.json", b"{not json"),
        ("config.json", b'{"format": 1}'),
        ("config.json", b"[1, 2]"),
        ("tokenizer.json", b"{broken"),
    ],
    ids=[
        "weights-truncated",
        "weights-garbage",
        "weights-bad-zip",
        "config-garbage",
        "config-no-run",
        "config-list",
        "tokenizer-garbage",
    ],
)
def test_a_corrupt_model_directory_is_one_line_naming_the_file(
    model_dir: Path, tmp_path: Path, capsys, name: str, data: bytes | None
) -> None:
    d = _damaged_copy(model_dir, tmp_path / "m", name, data)
    assert main(["eval", str(d), "--tasks", "arc_easy", "--device", "cpu", "--quiet"]) == 2
    _one_error_line(capsys, str(d / name), "--save-model")


def test_weights_of_another_model_are_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    d = _damaged_copy(model_dir, tmp_path / "m", "model.safetensors", b"")
    save_file({"embed.weight": torch.zeros(3, 3)}, str(d / "model.safetensors"))
    assert main(["eval", str(d), "--tasks", "arc_easy", "--device", "cpu", "--quiet"]) == 2
    _one_error_line(capsys, "model.safetensors", "does not match")


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"run_id": "x", "status": "ok"}', "[]"],
    ids=["garbage", "partial", "list"],
)
def test_a_corrupt_result_file_is_one_line_naming_it(tmp_path: Path, capsys, text: str) -> None:
    results, reports = tmp_path / "results", tmp_path / "reports"
    bad = results / "mqar" / "smoke" / "bad__0123.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    assert (
        main(["report", "mqar", "--results-dir", str(results), "--reports-dir", str(reports)]) == 2
    )
    _one_error_line(capsys, str(bad), "--force")


def test_a_corrupt_result_of_the_same_config_stops_train_before_it_starts(
    tiny_run, cli_dirs, tmp_path, capsys
):
    from wm_bench.results import result_path, run_id

    cfg = tiny_run(experiment="faults", steps=2, lr=1e-3)
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(to_dict(cfg)))
    bad = result_path(
        tmp_path / "r", cfg.experiment, cfg.scale, run_id(cfg.variant, config_hash(cfg))
    )
    bad.parent.mkdir(parents=True)
    bad.write_text("{truncated")
    assert main(["train", "--config", str(p), *cli_dirs]) == 2
    _one_error_line(capsys, str(bad), "--force")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.ckpt"))
