"""Corpus sources and document-level splits; the debian parsers on tiny hand-made inputs.

No test touches the network: the R reader gets XDR bytes written here by hand, the GCIDE parser
a tiny dictd file, and apt-get/dpkg are replaced (missing, or failing) through shutil.which.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
import re
import struct
import sys
import types
import zlib
from pathlib import Path

import pytest

from wm_bench.data import debian
from wm_bench.data.corpus import (
    SPLITS,
    CorpusError,
    Document,
    load_corpus,
    parse_spec,
    split_documents,
    wikitext_articles,
)
from wm_bench.data.rdata import (
    INTSXP,
    STRSXP,
    character_vectors,
    read_lazyload_db,
    read_rda,
    read_rds,
    unserialize,
)

WIKITEXT2 = Path(__file__).resolve().parents[2].parent / "shared/data/corpus/wikitext-2"
needs_wikitext2 = pytest.mark.skipif(
    not (WIKITEXT2 / "valid.txt").is_file(),
    reason=f"WikiText-2 raw files not found at {WIKITEXT2} (../shared/data/corpus/wikitext-2)",
)


def _docs(n: int, group: str = "g", seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    return [
        Document(
            " ".join(rng.choice(words) for _ in range(30)) + f" {group}{i}", f"{group}/{i}", group
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# Splits


def test_split_is_by_document_disjoint_and_independent_of_input_order() -> None:
    docs = _docs(300, "a") + _docs(40, "b", seed=1)
    splits = split_documents(docs)
    shuffled = docs[:]
    random.Random(7).shuffle(shuffled)
    assert split_documents(shuffled) == splits
    texts = {s: {d.text for d in splits[s]} for s in SPLITS}
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"]
    assert not texts["valid"] & texts["test"]
    assert sum(len(v) for v in splits.values()) == len(docs)
    # 1 % of each group, at least one: group a gives 3 + 3, group b 1 + 1
    assert len(splits["valid"]) == len(splits["test"]) == 4
    assert {d.group for d in splits["valid"]} == {"a", "b"}


def test_split_drops_exact_duplicates_so_none_straddles_splits() -> None:
    docs = _docs(50)
    splits = split_documents(docs + docs[:20])
    all_texts = [d.text for s in SPLITS for d in splits[s]]
    assert len(all_texts) == len(set(all_texts)) == 50


def test_split_needs_three_documents_in_some_group() -> None:
    with pytest.raises(ValueError, match="too small to split"):
        split_documents(_docs(2))


def test_parse_spec_rejects_unknown_forms_naming_the_valid_ones() -> None:
    assert parse_spec("debian") == ("debian", "")
    assert parse_spec("hf:wikitext:wikitext-2-raw-v1") == ("hf", "wikitext:wikitext-2-raw-v1")
    with pytest.raises(ValueError, match="files:<glob>"):
        parse_spec("gutenberg")
    with pytest.raises(ValueError, match="files:<glob>"):
        parse_spec("files:")
    with pytest.raises(ValueError, match="unknown debian part"):
        parse_spec("debian:austen,shakespeare")


# ---------------------------------------------------------------------------------------------
# files: and wikitext2:


def _write_files(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(_docs(n)):
        (folder / f"doc{i:03d}.txt").write_text(d.text + "\nsecond line\n\nthird paragraph\n")


def test_files_corpus_one_document_per_file_hash_follows_content(tmp_path: Path) -> None:
    _write_files(tmp_path / "txt", 12)
    c1 = load_corpus(f"files:{tmp_path}/txt/*.txt", cache_dir=tmp_path)
    c2 = load_corpus(f"files:{tmp_path}/txt/doc*.txt", cache_dir=tmp_path)
    stats = c1.stats()
    assert sum(s["documents"] for s in stats.values()) == 12
    assert all(t.endswith("third paragraph\n") for s in SPLITS for t in c1.texts(s))
    assert c1.hash == c2.hash  # same content, other spelling
    (tmp_path / "txt" / "doc005.txt").write_text("changed")
    assert load_corpus(f"files:{tmp_path}/txt/*.txt", cache_dir=tmp_path).hash != c1.hash


def test_files_corpus_without_matches_names_the_glob(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no file matches"):
        load_corpus(f"files:{tmp_path}/nothing/*.txt")


def test_wikitext_articles_start_at_top_level_titles_only() -> None:
    text = (
        " \n = First = \n \n Intro .\n \n = = Section = = \n Body .\n"
        " = Second = \n Text two .\n = = = Deep = = = \n more .\n"
    )
    arts = wikitext_articles(text)
    assert len(arts) == 2
    assert arts[0].startswith(" = First = ") and "= = Section = =" in arts[0]
    assert arts[1].startswith(" = Second = ") and arts[1].rstrip().endswith("more .")


@needs_wikitext2
def test_wikitext2_valid_and_test_articles_are_split_by_document() -> None:
    c = load_corpus(f"wikitext2:{WIKITEXT2}")
    again = load_corpus(f"wikitext2:{WIKITEXT2}")
    assert c.hash == again.hash and c.splits == again.splits
    per_split = {s: [d.text for d in c.splits[s]] for s in SPLITS}
    assert all(per_split[s] for s in SPLITS)
    assert len({t for s in SPLITS for t in per_split[s]}) == sum(map(len, per_split.values()))
    assert sum(map(len, per_split.values())) > 100
    assert all(
        t.startswith(" = ") and not t.startswith(" = = ") for s in SPLITS for t in per_split[s]
    )
    # articles whole: every title line of the raw files starts exactly one document
    raw = (WIKITEXT2 / "valid.txt").read_text() + (WIKITEXT2 / "test.txt").read_text()
    titles = [ln for ln in raw.splitlines() if re.fullmatch(r" = [^=].* = ", ln)]
    assert sorted(t.splitlines()[0] for s in SPLITS for t in per_split[s]) == sorted(titles)


# ---------------------------------------------------------------------------------------------
# R serialization, written by hand (XDR: big-endian int32)


def _i(*ns: int) -> bytes:
    return struct.pack(f">{len(ns)}i", *ns)


def _char(s: str | None, enc: int = 1 << 3) -> bytes:  # CHARSXP; levels: UTF8 by default
    if s is None:
        return _i(9, -1)
    b = s.encode("latin-1" if enc == 1 << 2 else "utf-8")
    return _i(9 | (enc << 12), len(b)) + b


def _str(items: list[str | None], enc: int = 1 << 3) -> bytes:
    return _i(STRSXP, len(items)) + b"".join(_char(s, enc) for s in items)


def _header(version: int = 2) -> bytes:
    head = b"X\n" + _i(version, 0x040201, 0x020300)
    return head + (_i(5) + b"UTF-8" if version == 3 else b"")


def _names_list(items: list[tuple[str, bytes]], names_ref: int | None = None) -> bytes:
    """A VECSXP with a names attribute; `names_ref`: refer back to an earlier `names` symbol."""
    body = _i(19 | (1 << 9), len(items)) + b"".join(v for _, v in items)
    sym = _i((names_ref << 8) | 255) if names_ref else _i(1) + _char("names", 1 << 6)
    attr = _i(2 | (1 << 10)) + sym + _str([n for n, _ in items]) + _i(254)
    return body + attr


BOOKS = {
    "emma": ["EMMA", "", "By Jane Austen", None, "Emma Woodhouse, handsome"],
    "persuasion": ["Persuasion", "", "Sir Walter Elliot"],
}


def test_rds_reader_reads_a_named_list_of_character_vectors_in_every_compression(
    tmp_path: Path,
) -> None:
    stream = _header(3) + _names_list([(k, _str(v)) for k, v in BOOKS.items()])
    for name, pack in [
        ("raw", bytes),
        ("gz", gzip.compress),
        ("bz2", bz2.compress),
        ("xz", lzma.compress),
    ]:
        path = tmp_path / f"books-{name}.rds"
        path.write_bytes(pack(stream))
        obj = read_rds(path)
        assert obj.names == list(BOOKS) and [list(v) for v in obj] == list(BOOKS.values())
    assert dict(character_vectors({"x": obj})) == {f"x${k}": v for k, v in BOOKS.items()}


def test_rds_reader_decodes_latin1_refs_and_compact_sequences() -> None:
    latin = unserialize(_header() + _str(["café"], enc=1 << 2))
    assert list(latin) == ["café"]
    # two named lists: the second "names" symbol is a reference (ref index 1) to the first
    inner = _names_list([("a", _str(["x"]))])
    outer = _names_list([("first", inner), ("second", _names_list([("b", _str(["y"]))], 1))])
    obj = unserialize(_header() + outer)
    assert obj.names == ["first", "second"] and obj[1].names == ["b"]
    # ALTREP compact_intseq 5, 6, 7: info pairlist (class, package, type), state c(n, start, step)
    info = _i(2) + _i(1) + _char("compact_intseq") + _i(2) + _i(1) + _char("base") + _i(2)
    info += _i(INTSXP, 1, INTSXP) + _i(254)
    state = _i(14, 3) + struct.pack(">3d", 3, 5, 1)
    seq = unserialize(_header(3) + _i(238) + info + state + _i(254))
    assert list(seq) == [5, 6, 7] and seq.sexptype == INTSXP


def test_rda_reader_returns_the_saved_names(tmp_path: Path) -> None:
    node = _i(2 | (1 << 10)) + _i(1) + _char("emma") + _str(BOOKS["emma"])
    node += _i(2 | (1 << 10)) + _i(1) + _char("persuasion") + _str(BOOKS["persuasion"]) + _i(254)
    (tmp_path / "b.rda").write_bytes(bz2.compress(b"RDX2\n" + _header() + node))
    got = read_rda(tmp_path / "b.rda")
    assert {k: list(v) for k, v in got.items()} == BOOKS


def _lazyload_package(root: Path, compressed: int) -> Path:
    """A package data/ folder with a lazy-load DB of BOOKS; blobs zlib (1) or xz (3)."""
    data = root / "usr/lib/R/site-library/janeaustenr/data"
    data.mkdir(parents=True)
    rdb, spans = b"", []
    for v in BOOKS.values():
        raw = _header(3) + _str(v)
        body = zlib.compress(raw) if compressed == 1 else b"Z" + lzma.compress(raw)
        blob = struct.pack(">I", len(raw)) + body
        spans.append(_i(INTSXP, 2, len(rdb), len(blob)))
        rdb += blob
    variables = _names_list(list(zip(BOOKS, spans)))
    # the `names` symbol first appears inside `variables`; the index's own names refer back to it
    items = [("variables", variables), ("references", _i(19, 0))]
    index = _names_list([*items, ("compressed", _i(13, 1, compressed))], names_ref=1)
    (data / "Rdata.rdx").write_bytes(gzip.compress(_header(3) + index))
    (data / "Rdata.rdb").write_bytes(rdb)
    (data / "Rdata.rds").write_bytes(gzip.compress(_header(3) + _str(list(BOOKS))))
    return data


@pytest.mark.parametrize("compressed", [1, 3])
def test_lazyload_db_and_austen_documents(tmp_path: Path, compressed: int) -> None:
    data = _lazyload_package(tmp_path, compressed)
    got = read_lazyload_db(data / "Rdata")
    assert {k: list(v) for k, v in got.items()} == BOOKS
    docs = debian.austen_documents(tmp_path)
    assert [d.source for d in docs] == ["janeaustenr/emma", "janeaustenr/persuasion"]
    assert docs[0].text == "EMMA\n\nBy Jane Austen\n\nEmma Woodhouse, handsome"
    assert {d.group for d in docs} == {"austen"}


# ---------------------------------------------------------------------------------------------
# GCIDE (dictd) and Python docs (reST)

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(n: int) -> str:
    out = ""
    while True:
        out = _B64[n % 64] + out
        n //= 64
        if n == 0:
            return out


def _dictd(folder: Path) -> tuple[Path, Path]:
    entries = [
        ("00-database-info", "00-database-info\n   converted by a test\n"),
        ("Abbey", 'Abbey \\Ab"bey\\, n.\n   A monastery.\n   [1913 Webster]\n'),
        ("Abbot", 'Abbot \\Ab"bot\\, n.\n   The head of an abbey.\n   [WordNet 1.5]\n'),
        ("Able", 'Able \\A"ble\\, a.\n   Having power. [Obs.]\n   [PJC]\n'),
        ("Bee", "Bee \\Bee\\, n.\n   An insect.\n"),
    ]
    blob, index = b"", []
    for head, text in entries:
        b = text.encode() + b"\n"
        index.append((head, len(blob), len(b)))
        blob += b
    index.append(("Honey bee", index[-1][1], index[-1][2]))  # a second headword, same entry
    lines = sorted(f"{h}\t{_b64(o)}\t{_b64(n)}" for h, o, n in index)
    (folder / "gcide.dict.dz").write_bytes(gzip.compress(blob))
    (folder / "gcide.index").write_text("\n".join(lines) + "\n")
    return folder / "gcide.dict.dz", folder / "gcide.index"


def test_dictd_numbers_are_base64_most_significant_first() -> None:
    assert debian.dictd_number("A") == 0 and debian.dictd_number("Kj") == 10 * 64 + 35
    assert all(debian.dictd_number(_b64(n)) == n for n in (0, 63, 64, 4095, 39952321))


def test_gcide_documents_group_entries_by_letter_and_drop_source_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(debian, "GCIDE_ENTRIES_PER_DOC", 2)
    docs = debian.gcide_documents(*_dictd(tmp_path))
    assert [d.source for d in docs] == ["gcide/a-0000", "gcide/a-0001", "gcide/b-0000"]
    assert docs[0].text.startswith("Abbey") and "Abbot" in docs[0].text
    assert docs[1].text == 'Able \\A"ble\\, a.\n   Having power. [Obs.]'
    assert docs[2].text == "Bee \\Bee\\, n.\n   An insect."  # once, though two headwords
    joined = "\n".join(d.text for d in docs)
    assert "Webster" not in joined and "WordNet" not in joined and "database" not in joined


def test_strip_rst_keeps_prose_and_code_drops_scaffolding() -> None:
    rst = (
        ":mod:`json` --- JSON\n====================\n\n.. module:: json\n   :synopsis: Encode.\n\n"
        ".. index:: single: JSON\n\n.. _json-label:\n\nUse :func:`~json.dumps` or ``loads``; see "
        "`the RFC <https://x.org>`_.\n\n.. function:: dumps(obj)\n\n   Serialize *obj*::\n\n"
        "      >>> json.dumps(1)\n"
    )
    out = debian.strip_rst(rst)
    assert out.splitlines()[0] == "json --- JSON"
    assert "Use dumps or loads; see the RFC." in out
    assert "dumps(obj)" in out and ">>> json.dumps(1)" in out
    for gone in ("====", ":synopsis:", "index::", "_json-label", ":func:", "``", "<https"):
        assert gone not in out


def test_python_doc_documents_one_per_source_file(tmp_path: Path) -> None:
    src = tmp_path / "usr/share/doc/python3.11/html/_sources/library"
    src.mkdir(parents=True)
    (src / "json.rst.txt").write_text("JSON\n====\n\nText about :mod:`json`.\n")
    (src / "os.rst.txt").write_text("OS\n==\n\nText.\n")
    docs = debian.python_doc_documents(tmp_path)
    assert [d.source for d in docs] == [
        "python-doc/library/json.rst.txt",
        "python-doc/library/os.rst.txt",
    ]
    assert docs[0].text == "JSON\n\nText about json."


# ---------------------------------------------------------------------------------------------
# debian: errors without apt-get, and no network once cached


def test_missing_apt_get_gives_a_clear_error_naming_the_alternatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="apt-get") as e:
        load_corpus("debian", cache_dir=tmp_path, progress=False)
    assert "files:<glob>" in str(e.value) and "hf:<dataset>" in str(e.value)


def test_failed_download_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package dict-gcide' >&2\nexit 100\n")
    fake.chmod(0o755)
    monkeypatch.setattr(debian.shutil, "which", lambda name: str(fake))
    with pytest.raises(CorpusError, match="Unable to locate package") as e:
        load_corpus("debian:gcide", cache_dir=tmp_path, progress=False)
    assert "files:<glob>" in str(e.value)
    assert not list((tmp_path / "corpus/debian").glob("*.json*"))  # nothing half-cached


def test_cached_debian_text_is_read_without_apt_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "corpus/debian"
    folder.mkdir(parents=True)
    for part, n in (("austen", 6), ("gcide", 30)):
        with open(folder / f"{part}.jsonl", "w") as fh:
            for d in _docs(n, part):
                fh.write(json.dumps(d.__dict__) + "\n")
        record = {"format": debian.EXTRACT_FORMAT, "packages": {part: "1.0"}}
        (folder / f"{part}.json").write_text(json.dumps(record))
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)  # any fetch would fail
    c = load_corpus("debian:austen,gcide", cache_dir=tmp_path)
    assert c.info == {"packages": {"austen": {"austen": "1.0"}, "gcide": {"gcide": "1.0"}}}
    assert {d.group for d in c.splits["valid"]} == {"austen", "gcide"}


def test_a_parser_change_reparses_the_cached_raw_files_without_apt_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "corpus/debian/raw/gcide"
    (raw / "usr/share/dictd").mkdir(parents=True)
    _dictd(raw / "usr/share/dictd")
    (raw / "versions.json").write_text(json.dumps({"packages": {"dict-gcide": "0.1"}}))
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    docs, info = debian.debian_documents(("gcide",), tmp_path, progress=False)
    assert len(docs) == 2 and info == {"packages": {"gcide": {"dict-gcide": "0.1"}}}
    monkeypatch.setattr(debian, "EXTRACT_FORMAT", debian.EXTRACT_FORMAT + 1)
    monkeypatch.setattr(debian, "GCIDE_ENTRIES_PER_DOC", 1)
    docs, _ = debian.debian_documents(("gcide",), tmp_path, progress=False)
    assert len(docs) == 4  # re-parsed with the new rule, still offline
    meta = json.loads((tmp_path / "corpus/debian/gcide.json").read_text())
    assert meta["format"] == debian.EXTRACT_FORMAT and meta["documents"] == 4


# ---------------------------------------------------------------------------------------------
# hf: (the optional `datasets` package is replaced by a stand-in)


def test_hf_without_datasets_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(CorpusError, match="pip install"):
        load_corpus("hf:wikitext:wikitext-2-raw-v1")


def _fake_datasets(splits: dict[str, list[str]]) -> types.ModuleType:
    mod = types.ModuleType("datasets")

    class Split(list):
        column_names = ("text",)

    def load_dataset(name, config=None, streaming=False):
        mod.calls.append((name, config, streaming))
        return {s: Split({"text": t} for t in texts) for s, texts in splits.items()}

    mod.load_dataset, mod.calls = load_dataset, []
    return mod


def test_hf_uses_official_splits_skips_empty_rows_and_caps_with_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _fake_datasets({"train": ["a", "", "b", "c"], "validation": ["v"], "test": [" ", "t"]})
    monkeypatch.setitem(sys.modules, "datasets", fake)
    c = load_corpus("hf:org/set:cfg")
    assert [list(c.texts(s)) for s in SPLITS] == [["a", "b", "c"], ["v"], ["t"]]
    assert fake.calls == [("org/set", "cfg", False)]
    capped = load_corpus("hf:org/set@2")
    assert list(capped.texts("train")) == ["a", "b"] and fake.calls[-1] == ("org/set", None, True)
    assert capped.hash != c.hash


def test_hf_train_only_dataset_is_bucketed_by_document_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = [f"document number {i}" for i in range(3000)]
    monkeypatch.setitem(sys.modules, "datasets", _fake_datasets({"train": texts}))
    c = load_corpus("hf:org/plain")
    got = {s: list(c.texts(s)) for s in SPLITS}
    assert sorted(t for s in SPLITS for t in got[s]) == sorted(texts)
    assert 15 <= len(got["valid"]) <= 50 and 15 <= len(got["test"]) <= 50


def test_hf_path_end_to_end_with_the_real_datasets_package(tmp_path: Path) -> None:
    """`hf:<dataset>` through the real `datasets` library on a local dataset folder (the hub is
    not reachable here): splits, the text column, then tokenizer and shards as for any corpus."""
    pytest.importorskip("datasets")
    from wm_bench.data.lm import LMDataConfig, prepare_config

    folder = tmp_path / "myset"
    folder.mkdir()
    words = ["alpha", "beta", "gamma", "delta", "river", "house", "garden", "letter"]
    for split, n in (("train", 40), ("validation", 6), ("test", 6)):
        with open(folder / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                text = " ".join(words[(i + j) % len(words)] for j in range(60)) + f" {split} {i}."
                fh.write(json.dumps({"text": text}) + "\n")
                fh.write(json.dumps({"text": "  "}) + "\n")  # empty rows are skipped
    c = load_corpus(f"hf:{folder}")
    assert c.info["splits"] == {"train": "train", "valid": "validation", "test": "test"}
    cfg = LMDataConfig(
        corpus=f"hf:{folder}", vocab_size=300, seq_len=16, cache_dir=str(tmp_path / "cache")
    )
    p = prepare_config(cfg, progress=False)
    test_text = p.tokenizer.decode(p.shards.tokens("test")[:400])
    assert "test 0." in test_text and "train" not in test_text
    assert len(p.shards.tokens("train")) > 3 * len(p.shards.tokens("valid"))
