"""The default LM corpus: public-domain English shipped inside the package, checked on load.

Spec ``bundled`` (every part) or ``bundled:<part>[,<part>…]``. One part is shipped:

- ``austen``: Jane Austen's six novels (1811–1818; public domain), one document per chapter
  (269 in all), one group per novel. The split rule of `wm_bench.data.documents` then puts one
  chapter of each novel in valid and one in test (max(1, round(1 % · n)) of its 24–61 chapters):
  six chapters each, ≈ 2 % of the text, every novel in every split.

Each part is a file ``wm_bench/data/bundled/<part>.jsonl.xz``: JSON lines, one document a line
(``{"text", "source", "group"}``), xz-compressed and read with Python's `lzma` (no apt, no
network, no cache; Linux and macOS alike). ``manifest.json`` beside it records the sha256 of
every ``.xz`` file (checked on every load: a mismatch is a `BundledCorpusError` naming the file),
of its decompressed content, and of the source it was built from; ``NOTICE.md`` gives each text's
source and licence.

Maintainers rebuild the files from their source with
``python -m wm_bench.data.bundled --build SRC.jsonl`` (see `build`); the JSON-lines content is a
pure function of the source, the xz bytes of it and the liblzma version. Without ``--build``
the module checks the package data and prints each split's size.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import lzma
import re
import sys
from pathlib import Path
from typing import Any

from wm_bench.data.documents import CorpusError, Document, read_manifest

DATA_DIR = Path(__file__).resolve().with_name("bundled")  # wm_bench/data/bundled
MANIFEST = "manifest.json"
PARTS: tuple[str, ...] = ("austen",)  # kept in step with manifest.json (a test checks)
BUNDLE_FORMAT = 1  # bump when the chapter splitter changes (then rebuild the files)
AUSTEN_SOURCE = (
    "Jane Austen's six novels, public domain; texts of Project Gutenberg ebooks as packaged by "
    "the R package janeaustenr (Debian: r-cran-janeaustenr), split into chapters"
)
AUSTEN_BOOKS = (
    "emma",
    "mansfieldpark",
    "northangerabbey",
    "persuasion",
    "prideprejudice",
    "sensesensibility",
)


class BundledCorpusError(CorpusError):
    """A bundled corpus file is missing, unreadable or does not match its manifest sha256."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_manifest(root: str | Path | None = None) -> dict[str, Any]:
    """The manifest of a bundled-data folder: {"parts": {part: {"file", "sha256", ...}}, ...}.

    Args:
        root: the folder (default: the package's `DATA_DIR`).
    Raises:
        BundledCorpusError naming the manifest when it is missing, unreadable or malformed.
    """
    path = Path(root if root is not None else DATA_DIR) / MANIFEST
    what = "bundled corpus"
    return read_manifest(
        path, key="parts", fields=("file", "sha256"), what=what, error=BundledCorpusError
    )


def read_part(part: str, root: str | Path | None = None) -> list[Document]:
    """The documents of one bundled part, after checking its file against the manifest.

    Args:
        part: a part name (`PARTS`).
        root: the folder holding `manifest.json` and the part's file (default: `DATA_DIR`).
    Returns:
        The part's documents in file order.
    Raises:
        ValueError for an unknown part; BundledCorpusError naming the file when it is missing,
        its sha256 differs from the manifest's, or it does not decompress and parse.
    """
    folder = Path(root if root is not None else DATA_DIR)
    entry = load_manifest(folder)["parts"].get(part)
    if entry is None:
        raise ValueError(f"bundled corpus: unknown part {part!r}; valid: {list(PARTS)}")
    path = folder / entry["file"]
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BundledCorpusError(
            f"bundled corpus: {path} cannot be read ({e}); reinstall wm_bench"
        ) from None
    if (got := _sha256(raw)) != entry["sha256"]:
        raise BundledCorpusError(
            f"bundled corpus: {path} has sha256 {got}, but {MANIFEST} records {entry['sha256']}; "
            "the file is corrupt or was changed: reinstall wm_bench, or rebuild it with "
            "`python -m wm_bench.data.bundled --build SRC.jsonl` (docs/corpus.md)"
        )
    try:
        lines = lzma.decompress(raw).decode("utf-8").splitlines()
        return [Document(**json.loads(line)) for line in lines if line]
    except (lzma.LZMAError, UnicodeDecodeError, ValueError, TypeError) as e:
        raise BundledCorpusError(f"bundled corpus: {path} does not parse ({e})") from None


def bundled_documents(
    parts: tuple[str, ...] | None = None, root: str | Path | None = None
) -> tuple[list[Document], dict[str, Any]]:
    """Documents of the chosen parts (default: all) and their provenance for the corpus info.

    Returns:
        (docs, {"bundled": {part: {"file", "sha256", "documents", "licence"}}}).
    """
    manifest = load_manifest(root)
    docs: list[Document] = []
    info: dict[str, Any] = {}
    for part in parts or PARTS:
        docs.extend(read_part(part, root))
        e = manifest["parts"][part]
        info[part] = {k: e[k] for k in ("file", "sha256", "documents", "licence") if k in e}
    return docs, {"bundled": info}


# ---------------------------------------------------------------------------------------------
# Building the shipped files (maintainers)

# A chapter starts at its heading line ("CHAPTER IV", "Chapter 12"), or at the "VOLUME II" line
# just above it; the title page and any preface join the first chapter.
_CHAPTER = re.compile(
    r"^(?:VOLUME [IVXLC]+[ \t]*\n(?:[ \t]*\n)*)?(?:CHAPTER|Chapter) (?:[IVXLC]+|\d+)\.?[ \t]*$",
    re.M,
)
# A modern editor's note that closes one Project Gutenberg text (Northanger Abbey: "A NOTE ON
# THE TEXT", from a Signet Classic edition): not Austen's, so not shipped.
_EDITORS_NOTE = re.compile(r"\n+A NOTE ON THE TEXT\n.*\Z", re.S)


def chapters(text: str) -> list[str]:
    """A novel's text cut at its chapter headings (module comment above `_CHAPTER`).

    Returns:
        The chapters in order, each stripped, each opening with its heading (the first also
        with the front matter); [text] when no heading is found.
    """
    text = _EDITORS_NOTE.sub("", text)
    starts = [m.start() for m in _CHAPTER.finditer(text)][1:]
    bounds = [0, *starts, len(text)]
    out = [text[a:b].strip() for a, b in itertools.pairwise(bounds)]
    return [c for c in out if c]


def austen_chapter_documents(src_docs: list[dict[str, Any]]) -> list[Document]:
    """Chapter documents of the six novels from janeaustenr book documents.

    Args:
        src_docs: JSON objects with "text" and "source" ("janeaustenr/<book>"), e.g. the lines
            of the debian corpus cache ``corpus/debian/austen.jsonl``.
    Returns:
        Documents with source "austen/<book>/<chapter, from 01>" and group "austen/<book>",
        books in alphabetical order. ValueError when a book is missing or repeated.
    """
    books: dict[str, str] = {}
    for d in src_docs:
        book = str(d["source"]).rsplit("/", 1)[-1]
        if book in books:
            raise ValueError(f"austen source: book {book!r} appears twice")
        books[book] = d["text"]
    if sorted(books) != sorted(AUSTEN_BOOKS):
        raise ValueError(f"austen source: books {sorted(books)}; expected {list(AUSTEN_BOOKS)}")
    return [
        Document(text, f"austen/{book}/{i:02d}", f"austen/{book}")
        for book in sorted(books)
        for i, text in enumerate(chapters(books[book]), start=1)
    ]


def jsonl_bytes(docs: list[Document]) -> bytes:
    """The shipped JSON-lines content of `docs`: one ``{"text", "source", "group"}`` a line."""
    return "".join(
        json.dumps({"text": d.text, "source": d.source, "group": d.group}, ensure_ascii=False)
        + "\n"
        for d in docs
    ).encode("utf-8")


def build(src: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Maintainers: rebuild the ``austen`` part and the manifest from janeaustenr's books.

    Args:
        src: JSON lines of the six books (``{"text", "source": "janeaustenr/<book>", ...}``), as
            ``wm-bench data prepare --corpus debian:austen`` caches them in
            ``<cache>/corpus/debian/austen.jsonl`` (needs apt-get once).
        out: the package-data folder (default `DATA_DIR`).
    Returns:
        The manifest written. The JSON lines are a pure function of `src` (sorted, fixed
        separators); they are compressed with xz preset 9e.
    """
    src, out = Path(src), Path(out if out is not None else DATA_DIR)
    src_bytes = src.read_bytes()
    src_docs = [json.loads(line) for line in src_bytes.decode("utf-8").splitlines() if line]
    docs = austen_chapter_documents(src_docs)
    content = jsonl_bytes(docs)
    xz = lzma.compress(content, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    out.mkdir(parents=True, exist_ok=True)
    (out / "austen.jsonl.xz").write_bytes(xz)
    part = {
        "file": "austen.jsonl.xz",
        "sha256": _sha256(xz),
        "content_sha256": _sha256(content),
        "bytes": len(content),
        "documents": len(docs),
        "characters": sum(len(d.text) for d in docs),
        "groups": len({d.group for d in docs}),
        "licence": "public domain",
        "source": AUSTEN_SOURCE,
        "source_sha256": _sha256(src_bytes),
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "notice": "NOTICE.md",
        "build": "python -m wm_bench.data.bundled --build SRC.jsonl (docs/corpus.md)",
        "parts": {"austen": part},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """`python -m wm_bench.data.bundled [--build SRC.jsonl]`: rebuild, or check and summarise."""
    p = argparse.ArgumentParser(prog="python -m wm_bench.data.bundled", description=main.__doc__)
    p.add_argument("--build", metavar="SRC.jsonl", help="rebuild the austen part from SRC")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default: package)")
    args = p.parse_args(argv)
    if args.build:
        manifest = build(args.build, args.out)
        for name, e in manifest["parts"].items():
            print(
                f"{name}: {e['documents']} documents, {e['characters']:,} characters, "
                f"{e['file']} sha256 {e['sha256']}"
            )
        return 0
    from wm_bench.data.documents import corpus_hash, split_documents

    splits = split_documents(bundled_documents(root=args.out)[0])
    where = Path(args.out if args.out is not None else DATA_DIR) / MANIFEST
    print(f"bundled corpus (hash {corpus_hash(splits)}): every file matches {where}")
    for split, docs in splits.items():
        chars = sum(len(d.text) for d in docs)
        print(f"  {split:<6} {len(docs):>5} documents {chars:>11,} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
