"""LM data pipeline: BPE tokenizer, token shards, LMDataModule, LMDataConfig (all offline).

The corpus is generated text in a temporary folder (a few hundred KB, BPE vocabulary 512), so
these tests need neither the network nor ../shared.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from wm_bench.config import RunConfig, config_hash, from_dict, replace, run_from_dict, to_dict
from wm_bench.data import DATASETS, build_datamodule
from wm_bench.data import shards as shards_mod
from wm_bench.data import tokenizer as tok_mod
from wm_bench.data.corpus import SPLITS, load_corpus
from wm_bench.data.lm import LMDataConfig, LMDataModule, prepare, prepare_config, token_array
from wm_bench.data.shards import build_shards, open_shards, shard_dir, token_dtype
from wm_bench.data.tokenizer import EOS, load_tokenizer
from wm_bench.presets import preset

VOCAB, T, B = 512, 32, 4


def _text(rng: random.Random, n_sentences: int) -> str:
    nouns = ["cat", "dog", "river", "house", "garden", "letter", "carriage", "sister", "ball"]
    verbs = ["sees", "finds", "writes", "visits", "admires", "avoids", "describes"]
    adjs = ["small", "quiet", "handsome", "old", "agreeable", "dreadful", "amiable"]
    out = []
    for _ in range(n_sentences):
        s = f"The {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)} a {rng.choice(nouns)}"
        out.append(s + rng.choice([".", "!", "?", ", and then stops."]))
    return " ".join(out) + "\n"


@pytest.fixture(scope="module")
def corpus_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("texts")
    rng = random.Random(0)
    for i in range(60):  # 60 documents of ≈ 5 KB: ≈ 300 KB
        (folder / f"doc{i:02d}.txt").write_text(f"Chapter {i}\n\n" + _text(rng, 120))
    return f"files:{folder}/*.txt"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def cfg(corpus_spec: str, cache: Path) -> LMDataConfig:
    return LMDataConfig(corpus=corpus_spec, vocab_size=VOCAB, seq_len=T, cache_dir=str(cache))


@pytest.fixture(scope="module")
def prepared(cfg: LMDataConfig):
    return prepare_config(cfg, progress=False)


# ---------------------------------------------------------------------------------------------
# Tokenizer


def test_bpe_round_trips_any_text_and_has_the_eos_token(prepared) -> None:
    tok = prepared.tokenizer
    assert tok.vocab_size <= VOCAB and tok.eos_id == tok.backend.token_to_id(EOS) == 0
    for s in ["The quiet cat sees a dog.", "  tabs\tand\nnewlines\n\n", "naïve café — 東京 🐈", ""]:
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.encode_batch(["a cat", "a dog"]) == [tok.encode("a cat"), tok.encode("a dog")]
    assert tok.decode([tok.eos_id]) == EOS
    assert len(tok.encode("The agreeable sister visits a house.")) < 15  # merges were learnt


def test_bpe_is_cached_by_corpus_hash_and_vocab(
    prepared, corpus_spec: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = prepared.tokenizer.path
    mtime = path.stat().st_mtime_ns
    calls = []
    real = tok_mod.train_bpe
    monkeypatch.setattr(tok_mod, "train_bpe", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = load_tokenizer("bpe", corpus=prepared.corpus, vocab_size=VOCAB, cache_dir=cache)
    assert calls == [] and path.stat().st_mtime_ns == mtime
    assert again.fingerprint == prepared.tokenizer.fingerprint
    other = load_tokenizer("bpe", corpus=prepared.corpus, vocab_size=300, cache_dir=cache)
    assert calls == [1] and other.vocab_size <= 300 and other.path != path


def test_tokenizer_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="≥ 257"):
        load_tokenizer("bpe", vocab_size=100)
    with pytest.raises(ValueError, match="'bpe' or 'hf:<name>'"):
        load_tokenizer("sentencepiece")


# ---------------------------------------------------------------------------------------------
# Shards


def test_shards_hold_each_split_with_eos_after_every_document(prepared) -> None:
    sh, c = prepared.shards, prepared.corpus
    assert sh.meta["corpus_hash"] == c.hash and sh.meta["tokenizer"] == prepared.tokenizer.name
    for s in SPLITS:
        toks = sh.tokens(s)
        docs = c.splits[s]
        assert toks.dtype == np.uint16 and not toks.flags.writeable
        assert sh.meta["splits"][s]["documents"] == len(docs) == int((toks == 0).sum())
        assert sh.meta["splits"][s]["characters"] == sum(len(d.text) for d in docs)
        assert toks[-1] == prepared.tokenizer.eos_id
    first = sh.tokens("train")[: int(np.argmax(sh.tokens("train") == 0))]
    assert prepared.tokenizer.decode(first) == c.splits["train"][0].text
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_shards_are_reused_without_tokenizing_again(
    prepared, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a, **k):
        raise AssertionError("re-tokenized")

    monkeypatch.setattr(type(prepared.tokenizer), "encode_batch", boom)
    mtime = (prepared.shards.dir / "train.bin").stat().st_mtime_ns
    again = build_shards(prepared.corpus, prepared.tokenizer, cache_dir=cache)
    assert again.dir == prepared.shards.dir and again.meta == prepared.shards.meta
    assert (again.dir / "train.bin").stat().st_mtime_ns == mtime


def test_an_interrupted_build_leaves_nothing_that_loads(
    prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = prepared.tokenizer
    real = type(tok).encode_batch

    def fail_on_valid(self, texts):
        if any(t == prepared.corpus.splits["valid"][0].text for t in texts):
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-build
        return real(self, texts)

    monkeypatch.setattr(type(tok), "encode_batch", fail_on_valid)
    final = shard_dir(tmp_path, prepared.corpus.hash, tok)
    with pytest.raises(KeyboardInterrupt):
        build_shards(prepared.corpus, tok, cache_dir=tmp_path, progress=False)
    assert not final.exists() and open_shards(final) is None
    assert list(final.parent.iterdir()) == []  # the temporary folder was removed
    monkeypatch.setattr(type(tok), "encode_batch", real)
    # a build killed outright leaves its temporary folder: it never loads and is swept later
    stale = final.parent / f".{final.name}.tmp-999999999-dead"
    stale.mkdir()
    (stale / "train.bin").write_bytes(b"\0\0")
    built = build_shards(prepared.corpus, tok, cache_dir=tmp_path, progress=False)
    assert built.meta["splits"] == prepared.shards.meta["splits"]
    assert not stale.exists()


def test_a_damaged_shard_folder_is_rebuilt(prepared, tmp_path: Path) -> None:
    built = build_shards(prepared.corpus, prepared.tokenizer, cache_dir=tmp_path, progress=False)
    with open(built.path("valid"), "r+b") as fh:
        fh.truncate(10)
    assert open_shards(built.dir) is None
    again = build_shards(prepared.corpus, prepared.tokenizer, cache_dir=tmp_path, progress=False)
    assert np.array_equal(again.tokens("valid"), prepared.shards.tokens("valid"))


# ---------------------------------------------------------------------------------------------
# DataModule


def _dm(cfg: LMDataConfig, seed: int = 0, batch_size: int = B) -> LMDataModule:
    return build_datamodule(cfg, batch_size=batch_size, seed=seed)


def test_train_batches_are_next_token_windows_of_the_train_split(cfg, prepared) -> None:
    dm = _dm(cfg, seed=3)
    assert dm.vocab_size == prepared.tokenizer.vocab_size
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # labels are the inputs shifted by one
    train = prepared.shards.tokens("train")
    offsets = np.random.default_rng([3, 0]).integers(0, len(train) - T, size=B)
    for row, o in enumerate(offsets):
        assert x[row].tolist() == train[o : o + T].tolist()
        assert y[row].tolist() == train[o + 1 : o + T + 1].tolist()


def test_train_stream_is_determined_by_the_seed(cfg) -> None:
    def first(seed: int, n: int = 3) -> list[torch.Tensor]:
        it = iter(_dm(cfg, seed).train_dataloader())
        return [next(it)[0] for _ in range(n)]

    a, b, c = first(0), first(0), first(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], a[1])


def test_resume_continues_the_train_stream(cfg) -> None:
    dm = _dm(cfg, seed=2)
    dm.load_state_dict({"next_train_batch": 5})
    x, _ = next(iter(dm.train_dataloader()))
    assert torch.equal(x, _dm(cfg, seed=2).train_batch(5)[0])
    assert dm.state_dict() == {"next_train_batch": 0}  # no trainer attached


def test_n_train_tokens_caps_where_windows_start(cfg) -> None:
    small = replace(cfg, n_train_tokens=3 * T)
    dm = _dm(small)
    full = dm.prepared.shards.tokens("train")
    for k in range(20):
        x, y = dm.train_batch(k)
        for row in range(B):
            # every window lies inside the first 3T tokens
            starts = [o for o in range(2 * T) if full[o : o + T].tolist() == x[row].tolist()]
            assert starts and y[row, -1].item() == full[starts[0] + T]


def test_validation_is_consecutive_non_overlapping_windows(cfg, prepared) -> None:
    for split, loader in (("valid", "val_dataloader"), ("test", "test_dataloader")):
        tokens = prepared.shards.tokens(split)
        batches = list(getattr(_dm(cfg), loader)())
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        n = (len(tokens) - 1) // T
        assert x.shape == (n, T)
        assert x.flatten().tolist() == tokens[: n * T].tolist()
        assert y.flatten().tolist() == tokens[1 : n * T + 1].tolist()
    capped = replace(cfg, valid_tokens=2 * T + 1)
    assert sum(b[0].shape[0] for b in _dm(capped).val_dataloader()) == 2


def test_eval_tokens_and_token_array(cfg, prepared) -> None:
    test = prepared.shards.tokens("test")
    assert np.array_equal(token_array(cfg, "test"), test)
    capped = replace(cfg, eval_max_tokens=50)
    ev = _dm(capped).eval_tokens("test")
    assert ev.dtype == np.int64 and ev.tolist() == test[:50].tolist()


def test_too_short_split_is_a_clear_error(corpus_spec: str, cache: Path) -> None:
    long = LMDataConfig(corpus=corpus_spec, vocab_size=VOCAB, seq_len=10**6, cache_dir=str(cache))
    with pytest.raises(ValueError, match="needs ≥ 1000001"):
        _dm(long).val_dataloader()


# ---------------------------------------------------------------------------------------------
# Config


def test_lm_config_is_registered_strict_and_validated(cfg) -> None:
    assert DATASETS["lm"] == (LMDataModule, LMDataConfig)
    d = to_dict(cfg)
    assert from_dict(LMDataConfig, d) == cfg
    with pytest.raises(ValueError, match="unknown key.*'shuffle'"):
        from_dict(LMDataConfig, {**d, "shuffle": True})
    with pytest.raises(ValueError, match="valid forms"):
        LMDataConfig(corpus="gutenberg")
    with pytest.raises(ValueError, match="≥ 257"):
        LMDataConfig(vocab_size=256)
    with pytest.raises(ValueError, match="'bpe' or 'hf:<name>'"):
        LMDataConfig(tokenizer="wordpiece")
    with pytest.raises(ValueError, match="n_train_tokens"):
        LMDataConfig(seq_len=64, n_train_tokens=64)
    with pytest.raises(ValueError, match="eval_lengths"):
        LMDataConfig(eval_lengths=(0,))
    # cache_dir is a runtime path: not part of the hash
    assert config_hash(cfg) == config_hash(replace(cfg, cache_dir=None))


def test_run_config_round_trips_an_lm_data_config(cfg) -> None:
    run = RunConfig(experiment="t", variant="v", model=preset("llama", "tiny"), data=cfg)
    again = run_from_dict(to_dict(run))
    assert again.data == cfg and isinstance(again.data, LMDataConfig)
    assert again.data.eval_lengths == ()


def test_default_cache_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wm_bench.data.corpus import default_cache_dir

    monkeypatch.setenv("WM_BENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("WM_BENCH_CACHE")
    assert default_cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "wm_bench"


def test_prepare_twice_gives_the_same_products(prepared, corpus_spec: str, cache: Path) -> None:
    again = prepare(corpus_spec, vocab_size=VOCAB, cache_dir=cache, progress=False)
    assert again.corpus.hash == load_corpus(corpus_spec).hash == prepared.corpus.hash
    assert again.shards.dir == prepared.shards.dir
    assert shards_mod.open_shards(again.shards.dir) is not None


def test_hf_tokenizer_loads_local_files_only(
    prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=prepared.tokenizer.backend, eos_token=EOS
    )
    fast.save_pretrained(str(tmp_path / "tok"))
    tok = load_tokenizer(f"hf:{tmp_path / 'tok'}")
    text = "The amiable sister writes a letter.\n" * 300  # longer than any model_max_length
    assert (
        tok.encode(text) == prepared.tokenizer.encode(text) and tok.decode(tok.encode(text)) == text
    )
    assert (tok.eos_id, tok.vocab_size) == (0, prepared.tokenizer.vocab_size)
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        load_tokenizer(f"hf:{tmp_path / 'missing'}")
