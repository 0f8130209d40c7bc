"""Text corpora for language modelling: sources by spec string, document-level splits, a hash.

A corpus is chosen by a spec string:

- ``bundled`` (the default, `DEFAULT_CORPUS`) or ``bundled:<part>[,<part>…]`` with part
  ``austen``: public-domain English shipped inside the package (Jane Austen's six novels, one
  document per chapter, one group per novel), xz-compressed and sha256-checked on every load;
  needs nothing but the installed package (no apt, no network, no cache). See
  `wm_bench.data.bundled` and docs/corpus.md.
- ``debian`` or ``debian:<part>[,<part>…]`` with parts ``austen``, ``python-doc``,
  ``gcide``: real English text from Debian packages (≈ 49 MB, the default before the bundled
  corpus), fetched once with ``apt-get download`` and unpacked with ``dpkg -x`` (no root,
  nothing installed); see `wm_bench.data.debian`.
- ``files:<glob>``: your own text files, one document per file (``**`` recurses).
- ``wikitext2:<dir>``: a WikiText-2 raw folder, one document per article (an article starts at
  a `` = Title = `` line). With ``train.txt`` present the official splits are used; with only
  ``valid.txt``/``test.txt`` (as in ``../shared/data/corpus/wikitext-2``) their articles are
  pooled and split by the rule below.
- ``hf:<dataset>[:<config>][@<N>]``: a Hugging Face dataset's "text" column, one document per
  non-empty row, through the optional ``datasets`` package (``pip install 'wm_bench[hf]'``).
  ``@N`` streams and reads at most N documents per split (for large datasets); without it the
  dataset is downloaded into the Hugging Face cache. The dataset's own validation/test splits are
  used when it has them; otherwise its training rows are bucketed by hash (below).

Splits are by document and deterministic (`wm_bench.data.documents`); streamed hf training rows go
to train / valid / test when their text's hash modulo 10 000 is < 9800 / < 9900 / else.
Cache root: ``$WM_BENCH_CACHE``, else ``~/.cache/wm_bench``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wm_bench.data.documents import (
    ALTERNATIVES,
    CORPUS_FORMAT,
    SPLITS,
    CorpusError,
    Document,
    corpus_hash,
    split_documents,
    text_digest,
)

DEFAULT_CORPUS = "bundled"  # the corpus of LM runs that name none (docs/corpus.md)
KINDS = ("bundled", "debian", "files", "wikitext2", "hf")
SPEC_FORMS = (
    "'bundled' (the default) or 'bundled:<parts>' (parts: austen)",
    "'debian' or 'debian:<parts>' (parts: austen, python-doc, gcide)",
    "'files:<glob>'",
    "'wikitext2:<dir>'",
    "'hf:<dataset>[:<config>][@<N>]'",
)


@dataclass
class Corpus:
    """A corpus split train/valid/test by document; `hash` keys every cache built from it.

    In-memory sources fill `splits`; lazy ones (hf) give `stream(split)` instead.
    """

    spec: str
    hash: str
    info: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, list[Document]] | None = None
    stream: Callable[[str], Iterable[str]] | None = None

    def texts(self, split: str) -> Iterator[str]:
        """The documents' texts of `split` ("train", "valid" or "test"), in split order."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
        if self.splits is not None:
            return (d.text for d in self.splits[split])
        assert self.stream is not None
        return iter(self.stream(split))

    def stats(self) -> dict[str, dict[str, int]] | None:
        """{split: {"documents", "characters"}} for in-memory corpora (None for streamed)."""
        if self.splits is None:
            return None
        return {
            s: {"documents": len(docs), "characters": sum(len(d.text) for d in docs)}
            for s, docs in self.splits.items()
        }


def default_cache_dir() -> Path:
    """``$WM_BENCH_CACHE`` if set, else ``~/.cache/wm_bench``."""
    env = os.environ.get("WM_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wm_bench"


def parse_spec(spec: str) -> tuple[str, str]:
    """(kind, argument) of a corpus spec; ValueError naming the valid forms."""
    kind, _, arg = spec.partition(":")
    ok = kind in KINDS and (kind in ("bundled", "debian") or bool(arg))
    if kind in ("bundled", "debian") and arg:
        if kind == "bundled":
            from wm_bench.data.bundled import PARTS
        else:
            from wm_bench.data.debian import PARTS

        bad = sorted(set(arg.split(",")) - set(PARTS))
        if bad:
            raise ValueError(f"corpus {spec!r}: unknown {kind} part(s) {bad}; valid: {list(PARTS)}")
    if not ok:
        raise ValueError(f"corpus {spec!r} not understood; valid forms: {', '.join(SPEC_FORMS)}")
    return kind, arg


def _in_memory(spec: str, splits: dict[str, list[Document]], info: dict[str, Any]) -> Corpus:
    return Corpus(spec=spec, hash=corpus_hash(splits), info=info, splits=splits)


def load_corpus(
    spec: str = DEFAULT_CORPUS, *, cache_dir: str | Path | None = None, progress: bool = True
) -> Corpus:
    """Load (fetching once where needed) the corpus named by `spec`.

    Args:
        spec: a corpus spec (module docstring).
        cache_dir: cache root (default `default_cache_dir()`); the debian source keeps its
            extracted text under ``<cache_dir>/corpus/debian`` (the bundled source needs none).
        progress: print what is being fetched.
    Returns:
        The Corpus. Raises ValueError on a bad spec, CorpusError when the source is unavailable.
    """
    kind, arg = parse_spec(spec)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if kind == "bundled":
        from wm_bench.data.bundled import PARTS as BUNDLED_PARTS
        from wm_bench.data.bundled import bundled_documents

        docs, info = bundled_documents(tuple(arg.split(",")) if arg else BUNDLED_PARTS)
        return _in_memory(spec, split_documents(docs), info)
    if kind == "debian":
        from wm_bench.data.debian import PARTS, debian_documents

        parts = tuple(arg.split(",")) if arg else tuple(PARTS)
        docs, info = debian_documents(parts, cache, progress=progress)
        return _in_memory(spec, split_documents(docs), info)
    if kind == "files":
        return _in_memory(spec, split_documents(file_documents(arg)), {"glob": arg})
    if kind == "wikitext2":
        return _in_memory(spec, *wikitext2_splits(arg))
    return hf_corpus(spec, arg)


def file_documents(pattern: str) -> list[Document]:
    """One Document per file matching `pattern` (sorted; UTF-8, undecodable bytes replaced)."""
    paths = sorted(p for p in glob.glob(os.path.expanduser(pattern), recursive=True))
    files = [Path(p) for p in paths if Path(p).is_file()]
    if not files:
        raise ValueError(f"corpus 'files:{pattern}': no file matches {pattern!r}")
    return [
        Document(f.read_text(encoding="utf-8", errors="replace"), str(f), "files") for f in files
    ]


_WIKI_TITLE = re.compile(r"^ ?= [^=].* = ?$")  # " = Title = "; sections are " = = Sub = = "


def wikitext_articles(text: str) -> list[str]:
    """Split WikiText raw text into articles, each from its `` = Title = `` line to the next."""
    articles: list[list[str]] = []
    for line in text.splitlines():
        if _WIKI_TITLE.match(line.rstrip("\n")) or not articles:
            articles.append([])
        articles[-1].append(line)
    out = ["\n".join(a).strip("\n") for a in articles]
    return [a for a in out if a.strip()]


def wikitext2_splits(folder: str) -> tuple[dict[str, list[Document]], dict[str, Any]]:
    """(splits, info) of a WikiText-2 raw folder (module docstring: official or pooled)."""
    root = Path(folder).expanduser()
    names = {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"}
    missing = [n for s, n in names.items() if s != "train" and not (root / n).is_file()]
    if missing:
        raise ValueError(f"corpus 'wikitext2:{folder}': {missing} not found in {root}")

    def docs(fname: str) -> list[Document]:
        text = (root / fname).read_text(encoding="utf-8")
        return [Document(a, f"wikitext2/{fname}", "wikitext") for a in wikitext_articles(text)]

    if (root / "train.txt").is_file():
        return {s: docs(n) for s, n in names.items()}, {"splits": "official"}
    pooled = docs("valid.txt") + docs("test.txt")
    return split_documents(pooled), {"splits": "valid+test pooled, split by document"}


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets (optional dependency, imported only when chosen)

_HF_SPLITS = {"train": ("train",), "valid": ("validation", "valid", "dev"), "test": ("test",)}


def _hf_bucket(text: str) -> str:
    b = int.from_bytes(text_digest(text)[:4], "big") % 10_000
    return "train" if b < 9800 else "valid" if b < 9900 else "test"


def hf_corpus(spec: str, arg: str) -> Corpus:
    """A lazy Corpus over a Hugging Face dataset (`hf:<dataset>[:<config>][@<N>]`)."""
    try:
        import datasets
    except ImportError:
        raise CorpusError(
            f"corpus {spec!r} needs the optional `datasets` package: pip install "
            "'datasets>=2.18' (or pip install 'wm_bench[hf]'). " + ALTERNATIVES
        ) from None
    body, _, cap_s = arg.partition("@")
    if cap_s and not (cap_s.isdigit() and int(cap_s) > 0):
        raise ValueError(f"corpus {spec!r}: '@{cap_s}' must be a positive document count")
    cap = int(cap_s) if cap_s else None
    name, _, config = body.partition(":")
    dsd = datasets.load_dataset(name, config or None, streaming=cap is not None)
    found = {s: next((c for c in cands if c in dsd), None) for s, cands in _HF_SPLITS.items()}
    if found["train"] is None:
        raise ValueError(f"corpus {spec!r}: no 'train' split; the dataset has {sorted(dsd)}")
    for s in {v for v in found.values() if v}:
        cols = getattr(dsd[s], "column_names", None)
        if cols is not None and "text" not in cols:
            raise ValueError(f"corpus {spec!r}: split {s!r} has no 'text' column; columns: {cols}")
    official = found["valid"] is not None and found["test"] is not None

    def rows(hf_split: str) -> Iterator[str]:
        n = 0
        for row in dsd[hf_split]:
            text = row["text"]
            if text and text.strip():
                yield text
                n += 1
                if cap is not None and n >= cap:
                    return

    def stream(split: str) -> Iterator[str]:
        if official:
            return rows(found[split])
        return (t for t in rows(found["train"]) if _hf_bucket(t) == split)

    prints = sorted(f"{s}={getattr(dsd[s], '_fingerprint', '')}" for s in dsd)
    ident = "\n".join([f"wm_bench-corpus-v{CORPUS_FORMAT}", "hf", spec, *prints])
    info = {"splits": found if official else "train bucketed by hash", "streaming": cap is not None}
    return Corpus(spec, hashlib.sha256(ident.encode()).hexdigest()[:16], info, stream=stream)
