"""lm-eval adapter (WmBenchLM), offline downstream tasks, model directories, `wm-bench eval`.

Tiny random models and a BPE trained on generated text; task data is written as fixtures in a
temporary folder, so nothing here needs the network or anything outside the repository. One test
runs every task on the data shipped with the package.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from wm_bench.config import DownstreamConfig
from wm_bench.data.tokenizer import EOS, Tokenizer, train_bpe
from wm_bench.eval import downstream
from wm_bench.eval.checkpoint import load_pretrained, save_pretrained
from wm_bench.eval.harness import WmBenchLM, direct_loglikelihood
from wm_bench.model import build_model
from wm_bench.presets import preset
from wm_bench.testing import toy_sentence


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    rng = random.Random(0)
    backend = train_bpe([toy_sentence(rng) for _ in range(2000)], 300)
    return Tokenizer(backend, name="bpe300-test", eos_id=backend.token_to_id(EOS))


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def _tiny(name: str, tok: Tokenizer):
    torch.manual_seed(0)
    return build_model(preset(name, "tiny", vocab_size=tok.vocab_size)).eval()


@pytest.fixture(scope="module", params=["llama", "cheems"])
def model(request, tok: Tokenizer):
    """Attention-only and the SSD + DMA hybrid: right padding must be exact for both."""
    return _tiny(request.param, tok)


@pytest.fixture(scope="module")
def llama(tok: Tokenizer):
    return _tiny("llama", tok)


def _req(*args):
    return SimpleNamespace(args=args)


def test_loglikelihood_equals_a_direct_computation_in_padded_batches(model, tok) -> None:
    rng = random.Random(1)
    pairs = [(toy_sentence(rng), " " + toy_sentence(rng)) for _ in range(7)]  # mixed lengths
    lm = WmBenchLM(model=model, tokenizer=tok, batch_size=3, max_length=256, device="cpu")
    got = lm.loglikelihood([_req(c, x) for c, x in pairs], disable_tqdm=True)
    for (ctx, cont), (ll, greedy) in zip(pairs, got):
        want = direct_loglikelihood(model, tok, ctx, cont)
        assert ll == pytest.approx(want, abs=1e-4)
        whole = tok.encode(ctx + cont)
        n_ctx = len(tok.encode(ctx))
        logits = model(torch.as_tensor(whole[:-1])[None]).logits[0]
        argmax = logits.argmax(-1)[n_ctx - 1 :].tolist()
        assert greedy == (argmax == whole[n_ctx:])


def test_long_contexts_are_cut_on_the_left_to_max_length(model, tok) -> None:
    rng = random.Random(2)
    ctx = " ".join(toy_sentence(rng) for _ in range(30))
    cont = " cat dog."
    lm = WmBenchLM(model=model, tokenizer=tok, batch_size=2, max_length=40, device="cpu")
    ((ll, _),) = lm.loglikelihood([_req(ctx, cont)], disable_tqdm=True)
    whole = tok.encode(ctx + cont)
    n_cont = len(whole) - len(tok.encode(ctx))
    kept = whole[-41:]  # max_length inputs + the last target
    logp = F.log_softmax(model(torch.as_tensor(kept[:-1])[None]).logits[0].double(), -1)
    want = sum(float(logp[t - 1, kept[t]]) for t in range(len(kept) - n_cont, len(kept)))
    assert ll == pytest.approx(want, abs=1e-4)


def test_rolling_loglikelihood_sums_every_token_once(llama, tok) -> None:
    model = llama
    rng = random.Random(3)
    text = " ".join(toy_sentence(rng) for _ in range(12))
    ids = tok.encode(text)
    logp = F.log_softmax(
        model(torch.as_tensor([tok.eos_id, *ids[:-1]])[None]).logits[0].double(), -1
    )
    want = sum(float(logp[i, t]) for i, t in enumerate(ids))
    big = WmBenchLM(model=model, tokenizer=tok, max_length=len(ids) + 5, device="cpu")
    assert big.loglikelihood_rolling([_req(text)], disable_tqdm=True)[0] == pytest.approx(
        want, abs=1e-3
    )
    # Several windows: every token still scored once, so the total is finite and close in size.
    small = WmBenchLM(model=model, tokenizer=tok, max_length=16, device="cpu")
    windowed = small.loglikelihood_rolling([_req(text)], disable_tqdm=True)[0]
    assert math.isfinite(windowed) and windowed < 0


def test_generate_until_is_greedy_and_stops_at_a_stop_string(llama, tok) -> None:
    model = llama
    lm = WmBenchLM(model=model, tokenizer=tok, max_length=128, device="cpu")
    ctx = "the cat sees a"
    ids = tok.encode(ctx)
    new: list[int] = []
    for _ in range(6):  # the reference greedy loop
        nxt = int(model(torch.as_tensor(ids + new)[None]).logits[0, -1].argmax())
        if nxt == tok.eos_id:
            break
        new.append(nxt)
    full = tok.decode(new)
    (out,) = lm.generate_until([_req(ctx, {"until": [], "max_gen_toks": 6})], disable_tqdm=True)
    assert out == full
    if len(full) > 1:
        stop = full[len(full) // 2 :][:1]
        (cut,) = lm.generate_until([_req(ctx, {"until": [stop], "max_gen_toks": 6})])
        assert cut == full[: full.index(stop)]
    with pytest.raises(ValueError, match="greedily"):
        lm.generate_until([_req(ctx, {"do_sample": True, "temperature": 0.7})])


def test_bad_model_arguments_are_clear_errors(llama, tok) -> None:
    model = llama
    with pytest.raises(ValueError, match="batch_size='many'"):
        WmBenchLM(model=model, tokenizer=tok, batch_size="many")
    with pytest.raises(ValueError, match="pretrained=DIR, or both"):
        WmBenchLM(model=model)
    assert WmBenchLM(model=model, tokenizer=tok, batch_size="auto:4").batch_size == 16


def test_model_directory_round_trip(tok, tmp_path: Path) -> None:
    from wm_bench.config import RunConfig
    from wm_bench.data.lm import LMDataConfig

    cfg = RunConfig(
        experiment="arch",
        variant="x",
        model=preset("llama", "tiny", vocab_size=300),
        data=LMDataConfig(corpus="debian", vocab_size=300, seq_len=48),
    )
    m = build_model(cfg.model).eval()
    out = save_pretrained(tmp_path / "m", m, cfg, tok)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["config.json", "model.safetensors", "tokenizer.json"]
    m2, tok2, meta = load_pretrained(out)
    x = torch.as_tensor(tok.encode("the cat sees a dog."))[None]
    assert torch.equal(m(x).logits, m2(x).logits)
    assert tok2.encode("the old river") == tok.encode("the old river") and meta["max_length"] == 48
    assert WmBenchLM(pretrained=str(out), device="cpu").max_length == 48
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        (out / "model.safetensors").unlink()
        load_pretrained(out)


# ---------------------------------------------------------------------------------------------
# Offline tasks


@pytest.fixture()
def eval_dir(tmp_path: Path) -> Path:
    d = tmp_path / "eval"
    d.mkdir()
    rng = random.Random(4)
    with open(d / "arc_easy.jsonl", "w") as fh:
        for _ in range(6):
            choices = [toy_sentence(rng) for _ in range(3)]
            doc = {
                "query": "Question: " + toy_sentence(rng),
                "choices": choices,
                "gold": rng.randrange(3),
            }
            fh.write(json.dumps(doc) + "\n")
    with open(d / "winogrande.jsonl", "w") as fh:
        for _ in range(4):
            a, b = toy_sentence(rng)[:-1], toy_sentence(rng)[:-1]
            doc = {
                "context_options": [a, b],
                "continuation": "sees a dog.",
                "gold": rng.randrange(2),
            }
            fh.write(json.dumps(doc) + "\n")
    with open(d / "triviaqa_sm_sub.jsonl", "w") as fh:
        for _ in range(3):
            doc = {
                "context": "Question: " + toy_sentence(rng) + "\nAnswer:",
                "answer": "cat",
                "aliases": ["cat", "Cat"],
            }
            fh.write(json.dumps(doc) + "\n")
    return d


def test_a_local_task_runs_end_to_end_and_its_accuracy_is_our_argmax(llama, tok, eval_dir) -> None:
    model = llama
    lm = WmBenchLM(model=model, tokenizer=tok, batch_size=4, max_length=256, device="cpu")
    keys = ["arc_easy", "winogrande", "triviaqa", "hellaswag"]
    d = DownstreamConfig(tasks=tuple(keys), shots=(0, 1), limit=4, eval_data=str(eval_dir))
    rec = downstream.evaluate(lm, d, progress=False)
    assert set(rec["not_run"]) == {"hellaswag"}
    assert rec["not_run"]["hellaswag"].startswith("not run: no data")
    assert rec["n_samples"] == {"arc_easy": 4, "winogrande": 4, "triviaqa": 3}
    assert rec["versions"]["arc_easy"] == 1.0 and rec["shots"] == [0, 1]
    for k in ("arc_easy@0shot/acc", "winogrande@1shot/acc", "triviaqa@0shot/exact_match"):
        assert 0.0 <= rec["metrics"][k] <= 1.0
    # 0-shot ARC accuracy recomputed from the adapter's own log-likelihoods (prompt of the YAML).
    docs = [json.loads(line) for line in (eval_dir / "arc_easy.jsonl").read_text().splitlines()]
    hits = 0
    pe = rec["per_example"]["arc_easy@0shot"]
    assert pe["metric"] == "acc" and pe["docs"] == "0-3" and len(pe["acc"]) == 4
    for i, doc in enumerate(docs[:4]):
        ctx = doc["query"] + "\nAnswer:"
        lls = [direct_loglikelihood(model, tok, ctx, " " + ch) for ch in doc["choices"]]
        hits += int(max(range(len(lls)), key=lls.__getitem__) == doc["gold"])
        # Per example: the gold answer's log-likelihood per token and its margin.
        gold = " " + doc["choices"][doc["gold"]]
        n_tok = len(tok.encode(ctx + gold)) - len(tok.encode(ctx))
        assert pe["ll_tok"][i] == pytest.approx(lls[doc["gold"]] / n_tok, abs=2e-3)
        best_other = max(x for j, x in enumerate(lls) if j != doc["gold"])
        assert pe["margin"][i] == pytest.approx(lls[doc["gold"]] - best_other, abs=2e-3)
        assert pe["acc"][i] == float(pe["margin"][i] > 0)
    assert rec["metrics"]["arc_easy@0shot/acc"] == pytest.approx(hits / 4)
    assert sum(pe["acc"]) / 4 == pytest.approx(hits / 4)
    assert pe["chance"] == pytest.approx(1 / 3, abs=1e-4)
    wino = rec["per_example"]["winogrande@1shot"]  # choices are contexts: gold from the doc
    assert len(wino["margin"]) == 4 and wino["chance"] == 0.5
    assert [float(m > 0) for m in wino["margin"]] == wino["acc"]
    trivia = rec["per_example"]["triviaqa@0shot"]  # generation: exact match only
    assert len(trivia["acc"]) == 3 and "ll_tok" not in trivia and trivia["chance"] == 0.0


def test_task_plan_reports_missing_data_and_rejects_unknown_tasks(tmp_path: Path) -> None:
    run, skipped = downstream.plan(["arc_easy", "mmlu"], tmp_path, "local")
    assert run == [] and set(skipped) == {"arc_easy", "mmlu"}
    run, skipped = downstream.plan(["arc_easy"], None, "local")
    assert skipped["arc_easy"].startswith("not run: no data")
    assert downstream.plan(["mmlu"], None, "hub") == (["mmlu"], {})
    with pytest.raises(ValueError, match=r"unknown downstream task\(s\) \['arc'\]; valid"):
        downstream.plan(["arc"], tmp_path, "local")
    with pytest.raises(ValueError, match="source 'web'"):
        downstream.plan(["arc_easy"], tmp_path, "web")
    with pytest.raises(FileNotFoundError, match="--eval-data"):
        downstream.resolve_eval_data(tmp_path / "nope")


def test_rendered_yaml_points_at_the_data_dir(eval_dir: Path, tmp_path: Path) -> None:
    names = downstream.render_tasks(eval_dir, tmp_path / "tasks")
    assert names == ["wm_triviaqa", "wm_arc_easy", "wm_winogrande"]
    text = (tmp_path / "tasks" / "wm_arc_easy.yaml").read_text()
    assert str(eval_dir.resolve() / "arc_easy.jsonl") in text and "${EVAL_DATA}" not in text


def test_every_shipped_task_file_loads_through_its_yaml(llama, tok, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WM_BENCH_CACHE", str(tmp_path / "cache"))  # an empty cache
    monkeypatch.delenv(downstream.ENV_VAR, raising=False)
    lm = WmBenchLM(model=llama, tokenizer=tok, batch_size=8, max_length=128, device="cpu")
    d = DownstreamConfig(tasks=tuple(downstream.TASKS), shots=(0,), limit=2)
    rec = downstream.evaluate(lm, d, progress=False)
    assert set(rec["not_run"]) == {"mmlu", "hellaswag"}  # the two sets without an offline file
    assert set(rec["n_samples"]) == set(downstream.TASKS) - {"mmlu", "hellaswag"}
    assert rec["eval_data"] == "package:eval"
    assert rec["not_run"]["mmlu"] == "not run: no data (mmlu.jsonl not in package:eval)"
    assert rec.get("truncated_continuations", 0) > 0  # PIQA's long answers at max_length 128


def test_cli_eval_prints_a_table_and_writes_json(
    tok, eval_dir: Path, tmp_path: Path, capsys
) -> None:
    from wm_bench.cli import main
    from wm_bench.config import RunConfig
    from wm_bench.data.lm import LMDataConfig

    cfg = RunConfig(
        experiment="arch",
        variant="x",
        model=preset("llama", "tiny", vocab_size=300),
        data=LMDataConfig(corpus="debian", vocab_size=300, seq_len=64),
    )
    d = save_pretrained(tmp_path / "m", build_model(cfg.model), cfg, tok)
    out = tmp_path / "ev.json"
    rc = main(
        [
            "eval",
            str(d),
            "--tasks",
            "arc_easy,mmlu",
            "--limit",
            "2",
            "--eval-data",
            str(eval_dir),
            "--output",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "arc_easy" in text and "not run: no data" in text
    assert f"eval data: {eval_dir}" in text  # outside the repository: the path as given
    rec = json.loads(out.read_text())
    assert rec["n_samples"] == {"arc_easy": 2}
    assert rec["eval_data"] == str(eval_dir) and rec["model_dir"] == str(d)
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "not a wm_bench model directory" in capsys.readouterr().err
    assert main(["eval", str(d), "--tasks", "arc"]) == 2
    assert "unknown downstream task" in capsys.readouterr().err
