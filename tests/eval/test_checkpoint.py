"""Model directories: config.json + model.safetensors + tokenizer.json, from_pretrained, export.

Tiny random models and a BPE trained on generated text, all in a temporary folder. Old
directories (config.json + model.pt) are written here as the format-1 code wrote them.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import wm_bench
from wm_bench.config import RunConfig, to_dict
from wm_bench.data.lm import LMDataConfig
from wm_bench.data.tokenizer import EOS, Tokenizer, train_bpe
from wm_bench.eval import checkpoint as ck
from wm_bench.export import main as export_main
from wm_bench.model import build_model
from wm_bench.presets import preset

WORDS = ["the", "a", "cat", "dog", "sees", "finds", "river", "house", "garden", "quiet", "old"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(400)]
    backend = train_bpe(texts, 300)
    return Tokenizer(backend, name="bpe300-test", eos_id=backend.token_to_id(EOS))


def _run_cfg(name: str = "llama", *, tie: bool = False) -> RunConfig:
    model = dataclasses.replace(preset(name, "tiny", vocab_size=300), tie_embeddings=tie)
    return RunConfig(
        experiment="arch",
        variant="x",
        model=model,
        data=LMDataConfig(corpus="debian", vocab_size=300, seq_len=48),
    )


def _model(cfg: RunConfig) -> torch.nn.Module:
    """The model of `cfg`, seeded, with the impl a loaded model gets by default ("auto"), so
    that its logits and a loaded copy's compare bitwise."""
    torch.manual_seed(0)
    return build_model(cfg.model, impl="auto").eval()


def _logits(model: torch.nn.Module, tok: Tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.as_tensor(tok.encode("the old cat sees a quiet river"))[None]).logits


@pytest.fixture(scope="module")
def saved(tok, tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    cfg = _run_cfg()
    m = _model(cfg)
    return ck.save_pretrained(tmp_path_factory.mktemp("m") / "model", m, cfg, tok), m


def _old_dir(path: Path, model: torch.nn.Module, cfg: RunConfig, tok: Tokenizer) -> Path:
    """A model directory exactly as the format-1 save_pretrained wrote it."""
    path.mkdir(parents=True)
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    torch.save(state, path / "model.pt")
    (path / "tokenizer.json").write_text(tok.backend.to_str())
    meta = {
        "format": 1,
        "run": to_dict(cfg),
        "tokenizer": tok.name,
        "eos_id": tok.eos_id,
        "max_length": 48,
        "saved_at": "2025-01-01T00:00:00+00:00",
    }
    (path / "config.json").write_text(json.dumps(meta, indent=1))
    return path


# ---------------------------------------------------------------------------------------------
# Round trip


@pytest.mark.parametrize(
    ("name", "tie"),
    [("llama", False), ("llama", True), ("cheems", True)],
    ids=["untied", "tied", "cheems-tied"],
)
def test_round_trip_gives_bitwise_identical_logits(tok, tmp_path: Path, name, tie) -> None:
    cfg = _run_cfg(name, tie=tie)
    m = _model(cfg)
    out = ck.save_pretrained(tmp_path / "m", m, cfg, tok)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    m2 = wm_bench.from_pretrained(out)
    assert not m2.training and m2.cfg == cfg.model
    assert torch.equal(_logits(m, tok), _logits(m2, tok))
    assert (m2.head.weight is m2.embed.weight) == tie  # re-tied, not two copies
    tok2 = wm_bench.load_tokenizer(out)
    assert tok2.encode("the old river") == tok.encode("the old river")
    assert (tok2.name, tok2.eos_id, tok2.vocab_size) == (tok.name, tok.eos_id, tok.vocab_size)
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == 2 and meta["wm_bench_version"] == wm_bench.__version__
    assert meta["weights"]["tied"] == ({"head.weight": "embed.weight"} if tie else {})
    assert meta["max_length"] == 48 and meta["run"] == to_dict(cfg)
    assert (meta["tie_word_embeddings"], meta["hidden_size"]) == (tie, cfg.model.d_model)
    modes = {(out / f).stat().st_mode for f in ("config.json", "model.safetensors")}
    assert len(modes) == 1  # the weights as readable as the rest (safetensors writes 0600)


def test_the_safetensors_file_is_readable_alone_under_the_state_dict_names(tok, tmp_path) -> None:
    cfg = _run_cfg(tie=True)
    m = _model(cfg)
    out = ck.save_pretrained(tmp_path / "m", m, cfg, tok)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["format"] == "pt"
        names = set(f.keys())
        stored = {k: f.get_tensor(k) for k in names}
    want = m.state_dict()
    assert names == set(want) - {"head.weight"}  # the tied alias is stored once
    assert all(torch.equal(stored[k], want[k]) for k in names)


def test_dtype_and_device_arguments(saved) -> None:
    out, _ = saved
    m = wm_bench.from_pretrained(out, dtype="bfloat16", device=torch.device("cpu"))
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    assert next(wm_bench.from_pretrained(out, dtype=torch.float64).parameters()).dtype == (
        torch.float64
    )
    with pytest.raises(ValueError, match=r"dtype='int8'.*valid: None, \['bfloat16'"):
        wm_bench.from_pretrained(out, dtype="int8")


def test_the_lm_eval_adapter_loads_through_from_pretrained(saved, tok) -> None:
    from wm_bench.eval.harness import WmBenchLM

    out, m = saved
    lm = WmBenchLM(pretrained=str(out), device="cpu")
    assert lm.max_length == 48 and lm.tokenizer.encode("a dog") == tok.encode("a dog")
    assert torch.equal(_logits(lm.model, tok), _logits(m, tok))


def test_import_wm_bench_stays_light() -> None:
    code = (
        "import sys, wm_bench; assert 'torch' not in sys.modules; "
        "assert {'from_pretrained', 'load_tokenizer'} <= set(dir(wm_bench))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert wm_bench.from_pretrained is ck.from_pretrained
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = wm_bench.nope


def test_saving_replaces_a_model_directory_but_never_another_folder(saved, tok, tmp_path) -> None:
    out, m = saved
    cfg = _run_cfg()
    d = shutil.copytree(out, tmp_path / "m")
    (d / "model.pt").write_bytes(b"stale")  # an old file in the folder goes with it
    ck.save_pretrained(d, m, cfg, tok)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"] and not (d / "model.pt").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a wm_bench model directory.*refusing"):
        ck.save_pretrained(other, m, cfg, tok)
    assert (other / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# The old model.pt form, and export


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_an_old_model_pt_directory_loads_with_one_note_and_exports(tok, tmp_path, capsys, tie):
    cfg = _run_cfg(tie=tie)
    m = _model(cfg)
    old = _old_dir(tmp_path / "old", m, cfg, tok)
    m_old = wm_bench.from_pretrained(old)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(old) in err and "python -m wm_bench.export" in err, err
    assert torch.equal(_logits(m_old, tok), _logits(m, tok))
    _, tok_old, meta = ck.load_pretrained(old)
    assert meta["format"] == 1 and tok_old.encode("a cat") == tok.encode("a cat")
    capsys.readouterr()

    assert export_main([str(old), str(tmp_path / "new")]) == 0
    assert "bitwise equal" in capsys.readouterr().out
    new = tmp_path / "new"
    assert sorted(p.name for p in new.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert (new / "tokenizer.json").read_bytes() == (old / "tokenizer.json").read_bytes()
    m_new = wm_bench.from_pretrained(new)
    assert capsys.readouterr().err == ""
    assert torch.equal(_logits(m_new, tok), _logits(m, tok))
    meta = json.loads((new / "config.json").read_text())
    assert meta["run"] == to_dict(cfg) and meta["saved_at"] == "2025-01-01T00:00:00+00:00"
    assert meta["converted"]["from_format"] == 1 and meta["max_length"] == 48

    assert export_main([str(old), str(old)]) == 0  # in place
    assert not (old / "model.pt").exists() and (old / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "old"]


def test_export_refuses_an_existing_destination_and_has_help(saved, tmp_path, capsys) -> None:
    out, _ = saved
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    assert export_main([str(out), str(dst)]) == 2
    assert "--force" in capsys.readouterr().err
    assert export_main([str(out), str(dst), "--force"]) == 2  # not a model directory: never
    assert "refusing" in capsys.readouterr().err and (dst / "keep.txt").exists()
    assert export_main([str(tmp_path / "none"), str(tmp_path / "x")]) == 2
    assert "no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        export_main(["--help"])
    assert e.value.code == 0 and "model.safetensors" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Bad input: each a clear error naming the file and what is expected


def _edit_config(d: Path, **changes) -> None:
    meta = json.loads((d / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            del meta[k]
        else:
            meta[k] = v
    (d / "config.json").write_text(json.dumps(meta))


def _case(d: Path, case: str) -> None:
    """Damage the copy `d` of a good format-2 directory in the way `case` names."""
    w = d / "model.safetensors"
    if case == "no-config":
        (d / "config.json").unlink()
    elif case == "no-weights":
        w.unlink()
    elif case == "weights-are-model-pt":
        w.rename(d / "model.pt")
    elif case == "format-3":
        _edit_config(d, format=3, wm_bench_version="9.0")
    elif case == "format-string":
        _edit_config(d, format="2")
    elif case == "no-format":
        _edit_config(d, format=None)
    elif case == "lacks-model":
        _edit_config(d, model=None)
    elif case == "bad-model":
        meta = json.loads((d / "config.json").read_text())
        meta["model"]["vocab_size"] = 0
        (d / "config.json").write_text(json.dumps(meta))
    elif case == "bad-tokenizer-key":
        _edit_config(d, tokenizer="bpe300-test")
    elif case == "bad-tied":
        _edit_config(d, weights={"tied": {"head.weight": 3}})
    elif case == "tied-to-nothing":
        _edit_config(d, weights={"tied": {"head.weight": "lm_head.weight"}})
    elif case == "other-names":
        save_file({"foo": torch.zeros(2)}, str(w))
    elif case == "other-shape":
        with safe_open(str(w), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        state["embed.weight"] = torch.zeros(3, 3)
        save_file(state, str(w))
    elif case == "weights-garbage":
        w.write_bytes(b"garbage, not safetensors")
    elif case == "weights-truncated":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif case == "no-tokenizer":
        (d / "tokenizer.json").unlink()
    elif case == "tokenizer-garbage":
        (d / "tokenizer.json").write_text("{broken")


# What each damage must say, grouped by the error and the file it names ("" = the directory):
# case -> a pattern of the message.
EXPECTED: dict[tuple[type[Exception], str], dict[str, str]] = {
    (FileNotFoundError, ""): {
        "no-config": "missing config.json",
        "no-weights": "missing model.safetensors: config.json says format 2",
        "weights-are-model-pt": "model.pt is there",
        "no-tokenizer": "missing tokenizer.json",
    },
    (ValueError, "config.json"): {
        "format-3": "format 3 is not one .*expected 2.*wm_bench 9.0",
        "format-string": "format '2' is not one",
        "no-format": "format None is not one",
        "lacks-model": r"lacks the key\(s\) \['model'\]",
        "bad-model": "invalid.*vocab_size=0 must be ≥ 1",
        "bad-tokenizer-key": "'tokenizer' is .*expected a mapping",
        "bad-tied": "weights.tied is .*expected a mapping",
        "tied-to-nothing": "ties head.weight to lm_head.weight",
    },
    (ValueError, "model.safetensors"): {
        "other-names": "missing embed.weight.*unexpected foo",
        "other-shape": r"shape embed.weight \[3, 3\]",
        "weights-garbage": "not a safetensors file",
        "weights-truncated": "not a safetensors file",
    },
    (ValueError, "tokenizer.json"): {"tokenizer-garbage": "is corrupt"},
}
CASES = {
    case: (kind, name, pattern)
    for (kind, name), cases in EXPECTED.items()
    for case, pattern in cases.items()
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_model_directory_is_a_clear_error(saved, tmp_path: Path, case: str) -> None:
    out, _ = saved
    d = shutil.copytree(out, tmp_path / "m")
    _case(d, case)
    kind, name, expected = CASES[case]
    with pytest.raises(kind, match=expected) as e:
        ck.load_pretrained(d)
    assert str(d / name) in str(e.value), str(e.value)  # the directory, and the file if any
    assert ck.FIX in str(e.value) or "--save-model" in str(e.value)


def test_an_old_directory_with_a_bad_model_pt_is_a_clear_error(tok, tmp_path, capsys) -> None:
    cfg = _run_cfg()
    old = _old_dir(tmp_path / "old", _model(cfg), cfg, tok)
    (old / "model.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"model.pt is corrupt or not a saved state dict"):
        wm_bench.from_pretrained(old)
    (old / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="missing model.pt: config.json says format 1"):
        wm_bench.from_pretrained(old)


@pytest.mark.parametrize("case", ["weights-truncated", "weights-garbage", "other-shape"])
def test_wm_bench_eval_on_a_bad_directory_is_one_error_line(saved, tmp_path, capsys, case):
    from wm_bench.cli import main

    out, _ = saved
    d = shutil.copytree(out, tmp_path / "m")
    _case(d, case)
    assert main(["eval", str(d), "--tasks", "arc_easy", "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:"), err
    assert str(d / "model.safetensors") in err and "--save-model" in err, err
