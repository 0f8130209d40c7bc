"""The bundled default corpus: offline loading, the manifest check, splits, hash, rebuilding."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from wm_bench.data import bundled
from wm_bench.data.corpus import (
    DEFAULT_CORPUS,
    SPLITS,
    CorpusError,
    default_cache_dir,
    load_corpus,
    parse_spec,
)

BUNDLED_HASH = "c35fbe38cee6cabf"  # changes only with the shipped text or the split rule
NOVELS = {f"austen/{b}" for b in bundled.AUSTEN_BOOKS}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("bundled", progress=False)


def _offline(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """No network, no apt-get/dpkg, an empty cache root."""

    def refuse(*args, **kwargs):
        raise AssertionError("the bundled corpus must not use the network or a subprocess")

    monkeypatch.setenv("WM_BENCH_CACHE", str(cache))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(shutil, "which", lambda name: None)


def test_the_default_corpus_loads_with_no_network_apt_or_cache(tmp_path, monkeypatch) -> None:
    _offline(monkeypatch, tmp_path / "cache")
    assert DEFAULT_CORPUS == "bundled"
    c = load_corpus()
    assert c.spec == "bundled" and c.hash == BUNDLED_HASH
    stats = c.stats()
    assert {s: stats[s]["documents"] for s in SPLITS} == {"train": 257, "valid": 6, "test": 6}
    assert sum(s["characters"] for s in stats.values()) == 4_023_502
    assert not (tmp_path / "cache").exists()  # nothing fetched, nothing cached
    assert c.info["bundled"]["austen"]["licence"] == "public domain"


def test_valid_and_test_hold_one_chapter_of_every_novel(corpus) -> None:
    for split in ("valid", "test"):
        assert sorted(d.group for d in corpus.splits[split]) == sorted(NOVELS)
    texts = {s: {d.text for d in corpus.splits[s]} for s in SPLITS}
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"]
    chars = corpus.stats()
    held = chars["valid"]["characters"] / sum(s["characters"] for s in chars.values())
    assert 0.015 < held < 0.04  # "a few percent" of the text each


def test_splits_and_hash_are_deterministic_and_independent_of_spelling(corpus) -> None:
    again = load_corpus("bundled:austen", progress=False)
    assert again.hash == corpus.hash == BUNDLED_HASH
    assert again.splits == corpus.splits


def test_chapters_are_whole_and_the_editors_note_is_left_out(corpus) -> None:
    docs = [d for s in SPLITS for d in corpus.splits[s]]
    assert len(docs) == 269 and {d.group for d in docs} == NOVELS
    first = {d.source: d.text for d in docs}
    assert first["austen/emma/01"].startswith("EMMA\n\nBy Jane Austen")
    assert first["austen/emma/19"].startswith("VOLUME II\n\n\n\nCHAPTER I\n")
    assert all("A NOTE ON THE TEXT" not in d.text for d in docs)
    assert all(len(d.text) > 3000 for d in docs)  # no heading cut off from its chapter


def test_manifest_lists_the_shipped_parts_within_the_size_budget() -> None:
    manifest = bundled.load_manifest()
    assert tuple(manifest["parts"]) == bundled.PARTS
    shipped = sum(p.stat().st_size for p in bundled.DATA_DIR.iterdir())
    assert shipped <= 3_000_000
    assert (bundled.DATA_DIR / "NOTICE.md").is_file()
    for entry in manifest["parts"].values():
        assert entry["licence"] == "public domain" and (bundled.DATA_DIR / entry["file"]).is_file()


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "bundled"
    shutil.copytree(bundled.DATA_DIR, root)
    return root


def test_a_corrupt_file_is_an_error_naming_it(tmp_path, monkeypatch) -> None:
    root = _copy(tmp_path)
    xz = root / "austen.jsonl.xz"
    data = bytearray(xz.read_bytes())
    data[len(data) // 2] ^= 0x01
    xz.write_bytes(bytes(data))
    with pytest.raises(bundled.BundledCorpusError, match=r"austen\.jsonl\.xz has sha256"):
        bundled.read_part("austen", root)
    monkeypatch.setattr(bundled, "DATA_DIR", root)  # the same through load_corpus
    with pytest.raises(CorpusError, match=r"austen\.jsonl\.xz.*corrupt"):
        load_corpus("bundled", progress=False)


def test_a_missing_file_or_manifest_is_an_error_naming_it(tmp_path) -> None:
    root = _copy(tmp_path)
    (root / "austen.jsonl.xz").unlink()
    with pytest.raises(bundled.BundledCorpusError, match=r"austen\.jsonl\.xz cannot be read"):
        bundled.read_part("austen", root)
    (root / "manifest.json").unlink()
    with pytest.raises(bundled.BundledCorpusError, match=r"manifest\.json is missing"):
        bundled.bundled_documents(root=root)


def test_bad_specs_name_the_valid_forms_including_bundled() -> None:
    assert parse_spec("bundled") == ("bundled", "")
    assert parse_spec("bundled:austen") == ("bundled", "austen")
    with pytest.raises(ValueError, match=r"unknown bundled part\(s\) \['shakespeare'\]"):
        parse_spec("bundled:austen,shakespeare")
    with pytest.raises(ValueError, match="'bundled' \\(the default\\)") as e:
        parse_spec("gutenberg")
    assert "debian" in str(e.value) and "files:<glob>" in str(e.value)


_BOOK = """TITLE

By Jane Austen



VOLUME I



CHAPTER I


First chapter.



CHAPTER II

Second chapter.



VOLUME II



CHAPTER I

Third chapter.



A NOTE ON THE TEXT

An editor wrote this."""


def test_chapters_cut_at_headings_with_volume_lines_and_front_matter() -> None:
    parts = bundled.chapters(_BOOK)
    assert parts == [
        "TITLE\n\nBy Jane Austen\n\n\n\nVOLUME I\n\n\n\nCHAPTER I\n\n\nFirst chapter.",
        "CHAPTER II\n\nSecond chapter.",
        "VOLUME II\n\n\n\nCHAPTER I\n\nThird chapter.",
    ]
    assert bundled.chapters("Chapter 1\nA\n\nChapter 2.\nB") == ["Chapter 1\nA", "Chapter 2.\nB"]
    assert bundled.chapters("no headings") == ["no headings"]


def _source(path: Path, books=bundled.AUSTEN_BOOKS) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for b in books:
            text = _BOOK.replace("TITLE", b.upper()) + f"\n{b} ends."
            fh.write(json.dumps({"text": text, "source": f"janeaustenr/{b}"}) + "\n")
    return path


def test_build_is_deterministic_and_reads_back(tmp_path: Path) -> None:
    src = _source(tmp_path / "src.jsonl")
    m1 = bundled.build(src, tmp_path / "a")
    m2 = bundled.build(src, tmp_path / "b")
    assert m1 == m2
    for name in ("austen.jsonl.xz", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    docs, info = bundled.bundled_documents(root=tmp_path / "a")
    assert len(docs) == 3 * 6 == m1["parts"]["austen"]["documents"]
    assert docs[0].source == "austen/emma/01" and docs[0].group == "austen/emma"
    assert info["bundled"]["austen"]["sha256"] == m1["parts"]["austen"]["sha256"]


def test_build_refuses_a_source_without_the_six_novels(tmp_path: Path) -> None:
    src = _source(tmp_path / "src.jsonl", bundled.AUSTEN_BOOKS[:5])
    with pytest.raises(ValueError, match="expected"):
        bundled.build(src, tmp_path / "out")


_DEBIAN_AUSTEN = default_cache_dir() / "corpus" / "debian" / "austen.jsonl"


@pytest.mark.skipif(not _DEBIAN_AUSTEN.is_file(), reason=f"no {_DEBIAN_AUSTEN} (needs apt once)")
def test_the_shipped_content_is_rebuilt_exactly_from_its_source() -> None:
    src = _DEBIAN_AUSTEN.read_bytes()
    entry = bundled.load_manifest()["parts"]["austen"]
    if bundled._sha256(src) != entry["source_sha256"]:
        pytest.skip("the cached debian austen text is not the recorded source")
    src_docs = [json.loads(line) for line in src.decode().splitlines() if line]
    content = bundled.jsonl_bytes(bundled.austen_chapter_documents(src_docs))
    assert bundled._sha256(content) == entry["content_sha256"]


def test_smoke_and_cpu_scales_use_the_default_corpus() -> None:
    import wm_bench_tasks.arch as arch
    import wm_bench_tasks.ffn as ffn
    import wm_bench_tasks.rope as rope

    for task in (rope, ffn, arch):
        for scale in ("smoke", "cpu"):
            assert task.SCALES[scale].corpus == DEFAULT_CORPUS, (task.EXPERIMENT, scale)
        for scale in ("small", "paper"):  # far more tokens than the bundled corpus holds
            assert task.SCALES[scale].corpus == "debian", (task.EXPERIMENT, scale)
