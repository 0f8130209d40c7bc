"""Documents and their split: the pieces every corpus source shares (no source imports another).

Splits are by DOCUMENT, never by line, and deterministic. In-memory sources: exact duplicate
documents are dropped; within each group (a sub-source: austen, python-doc, gcide, files,
wikitext; for ``bundled``, each novel) documents are ordered by the sha256 of their text, the
first max(1, round(1 % · n)) go to valid, the next max(1, round(1 % · n)) to test, the rest to
train (a group of fewer than 3 documents goes wholly to train); each split is then ordered by
the same hash, which mixes the groups (so the first N tokens of train are a sample of all of
them).

`corpus_hash` identifies the content for caching and provenance: the sha256 of every document's
digest in split order (so it changes with the text or the split rule, not with the spec's
spelling); `wm_bench.data.corpus` keys a streamed hf corpus by its spec and fingerprints instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 8 MiB blocks (the data cache's integrity check)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 23):
            h.update(block)
    return h.hexdigest()


def read_manifest(
    path: Path, *, key: str, fields: tuple[str, ...], what: str, error: type[Exception]
) -> dict[str, Any]:
    """The JSON manifest of shipped package data at `path`: a `key` map whose entries hold the
    string `fields` (e.g. a file name and its sha256).

    Raises `error` naming `what` and the file when it is missing, unreadable or malformed.
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what}: {path} is missing; reinstall wm_bench") from None
    except (OSError, ValueError) as e:
        raise error(f"{what}: {path} is unreadable ({e})") from None
    entries = manifest.get(key) if isinstance(manifest, dict) else None
    if not isinstance(entries, dict) or not all(
        isinstance(v, dict) and all(isinstance(v.get(f), str) for f in fields)
        for v in entries.values()
    ):
        raise error(f"{what}: {path} has no {key!r} map with {' and '.join(fields)}")
    return manifest


SPLITS: tuple[str, ...] = ("train", "valid", "test")
CORPUS_FORMAT = 1  # bump when parsing or splitting changes: every corpus hash changes with it
HOLDOUT_FRACTION = 0.01  # of each group, for valid and for test

ALTERNATIVES = (
    "Other corpus sources: 'bundled' (the default: public-domain text shipped with wm_bench, "
    "nothing to fetch), 'files:<glob>' (your own text files, one document per file), "
    "'hf:<dataset>[:<config>]' (a Hugging Face dataset; pip install 'wm_bench[hf]'), "
    "'wikitext2:<dir>' (a WikiText-2 raw folder)."
)


class CorpusError(RuntimeError):
    """A corpus source cannot be read here (a missing tool or package, a failed download)."""


@dataclass(frozen=True)
class Document:
    """One document: its text, where it came from (e.g. "janeaustenr/emma") and its group."""

    text: str
    source: str
    group: str


def text_digest(text: str) -> bytes:
    """sha256 of a document's UTF-8 text (the split and hash key)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def split_documents(docs: Iterable[Document]) -> dict[str, list[Document]]:
    """Split documents train/valid/test by the per-group hash rule of the module docstring.

    Returns:
        {"train": [...], "valid": [...], "test": [...]}, each ordered by text hash; no text is
        in two splits. ValueError if valid or test would be empty (fewer than 3 documents).
    """
    seen: set[bytes] = set()
    groups: dict[str, list[tuple[bytes, Document]]] = {}
    for d in docs:
        key = text_digest(d.text)
        if key not in seen:  # exact duplicates would otherwise straddle splits
            seen.add(key)
            groups.setdefault(d.group, []).append((key, d))
    out: dict[str, list[tuple[bytes, Document]]] = {s: [] for s in SPLITS}
    for name in sorted(groups):
        items = sorted(groups[name], key=lambda kd: kd[0])
        n = len(items)
        if n < 3:
            out["train"] += items
            continue
        k = max(1, round(HOLDOUT_FRACTION * n))
        out["valid"] += items[:k]
        out["test"] += items[k : 2 * k]
        out["train"] += items[2 * k :]
    if not out["valid"] or not out["test"]:
        sizes = {g: len(v) for g, v in groups.items()}
        raise ValueError(
            f"corpus too small to split by document: groups {sizes}; a group needs ≥ 3 "
            "distinct documents to give valid and test one each"
        )
    return {s: [d for _, d in sorted(v, key=lambda kd: kd[0])] for s, v in out.items()}


def corpus_hash(splits: dict[str, list[Document]]) -> str:
    """16 hex digits of sha256 over the format version and every document digest, split by split."""
    h = hashlib.sha256(f"wm_bench-corpus-v{CORPUS_FORMAT}\n".encode())
    for s in SPLITS:
        h.update(f"[{s}]".encode())
        for d in splits[s]:
            h.update(text_digest(d.text))
    return h.hexdigest()[:16]
