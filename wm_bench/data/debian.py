"""A larger corpus: English text from Debian packages (apt-get download + dpkg -x); needs apt.

It was the default until the package shipped its own (`wm_bench.data.bundled`, spec
``bundled``); the committed cpu-scale results were trained on it (docs/corpus.md).

Parts (one group each for the document-level split of `wm_bench.data.documents`):

- ``austen``: Jane Austen's six novels from ``r-cran-janeaustenr`` — R data (a lazy-load
  database, or .rda/.rds) read by the pure-Python `wm_bench.data.rdata`; one document per book
  (its character vector of lines joined by newlines).
- ``python-doc``: the reStructuredText sources of the Python documentation
  (``html/_sources/**/*.txt``) from ``python3.X-doc``, the package that the metapackage
  ``python3-doc`` depends on (or the newest one ``apt-cache`` lists); one document per file,
  with obvious markup stripped by `strip_rst`.
- ``gcide``: the GNU Collaborative International Dictionary of English from ``dict-gcide``
  (dictd format: ``gcide.index`` of headword, base-64 offset, length, and ``gcide.dict.dz``,
  gzip); entries in file order (the ``00-…`` database notes skipped, source-tag lines such as
  ``[1913 Webster]`` dropped), grouped into documents of `GCIDE_ENTRIES_PER_DOC` entries that
  share a first letter.

Nothing is installed and no root is needed: ``apt-get download`` fetches the .deb into a work
folder and ``dpkg -x`` unpacks it there. The files the parsers read are kept under
``<cache>/corpus/debian/raw/<part>/`` (≈ 31 MB in all, with ``versions.json`` naming the package
and version); the .deb and the rest of the unpacked tree are deleted. The parsed documents are
cached as JSON lines (``<part>.jsonl``, ≈ 49 MB in all, with ``<part>.json``). Later calls read
the JSON lines and use no network; a parser change (`EXTRACT_FORMAT`) re-parses the raw files,
still without network, and so does a corrupt ``<part>.jsonl``: its sha256 is recorded in
``<part>.json`` and checked on every load (one line on stderr says when it is rebuilt).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wm_bench.data.documents import ALTERNATIVES, CorpusError, Document, file_sha256

PARTS: dict[str, str] = {
    "austen": "r-cran-janeaustenr",
    "python-doc": "python3-doc",
    "gcide": "dict-gcide",
}
GCIDE_ENTRIES_PER_DOC = 100
EXTRACT_FORMAT = 1  # bump when a parser changes: cached text is re-parsed from the raw files
_TIMEOUT_S = 900


# ---------------------------------------------------------------------------------------------
# apt-get / dpkg


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CorpusError(
            f"the 'debian' corpus needs `{name}` (Debian/Ubuntu's apt-get and dpkg), which is not "
            f"on PATH. {ALTERNATIVES}"
        )
    return path


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CorpusError(f"{what} timed out after {_TIMEOUT_S} s. {ALTERNATIVES}") from None
    if p.returncode != 0:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:])
        raise CorpusError(f"{what} failed (exit {p.returncode}): {tail}. {ALTERNATIVES}")
    return p.stdout


def apt_download(package: str, workdir: Path) -> Path:
    """Fetch `package`'s .deb into `workdir` with ``apt-get download``; its path."""
    _run([_tool("apt-get"), "download", package], workdir, f"`apt-get download {package}`")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise CorpusError(f"`apt-get download {package}` left no .deb in {workdir}. {ALTERNATIVES}")
    return debs[-1]


def deb_field(deb: Path, name: str) -> str:
    """A control field of a .deb (``dpkg -f``)."""
    return _run([_tool("dpkg"), "-f", str(deb), name], deb.parent, f"`dpkg -f {deb.name}`").strip()


def unpack(deb: Path, dest: Path) -> Path:
    """``dpkg -x`` the .deb into `dest` (no installation, no root); `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    _run([_tool("dpkg"), "-x", str(deb), str(dest)], deb.parent, f"`dpkg -x {deb.name}`")
    return dest


def python_doc_package(workdir: Path) -> str:
    """The versioned docs package behind ``python3-doc`` (e.g. python3.11-doc)."""
    pat = re.compile(r"\bpython3\.\d+-doc\b")
    meta = apt_download("python3-doc", workdir)
    m = pat.search(deb_field(meta, "Depends"))
    if m:
        return m.group(0)
    found = _run(
        [_tool("apt-cache"), "search", "--names-only", r"^python3\.[0-9]+-doc$"],
        workdir,
        "`apt-cache search python3.X-doc`",
    )
    names = sorted(pat.findall(found), key=lambda s: int(s.split(".")[1].split("-")[0]))
    if not names:
        raise CorpusError(f"no python3.X-doc package is known to apt. {ALTERNATIVES}")
    return names[-1]


# ---------------------------------------------------------------------------------------------
# Parsers (pure functions of the unpacked files: tested on small synthetic inputs)


def austen_documents(root: Path) -> list[Document]:
    """One Document per character vector (book) in the R package data under `root`."""
    from wm_bench.data.rdata import character_vectors, read_r_data_dir

    docs = []
    for data_dir in sorted({p.parent for p in root.rglob("data/*") if p.is_file()}):
        for name, lines in character_vectors(read_r_data_dir(data_dir)):
            text = "\n".join(s or "" for s in lines).strip()
            if text:
                docs.append(Document(text, f"janeaustenr/{name}", "austen"))
    return docs


_RST_ADORNMENT = re.compile(r"^\s*([=\-~^\"'`#*+<>:._])\1{3,}\s*$")
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
_RST_DROP_DIRECTIVES = {
    "index",
    "highlight",
    "toctree",
    "testsetup",
    "testcleanup",
    "raw",
    "include",
    "literalinclude",
    "moduleauthor",
    "sectionauthor",
    "image",
    "figure",
    "only",
}
_RST_OPTION = re.compile(r"^\s+:[\w -]+:(\s.*)?$")
_RST_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
_RST_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?")


def _role_text(m: re.Match) -> str:
    text = re.sub(r"\s*<[^>]*>$", "", m.group(1)) or m.group(1)  # "title <target>" → "title"
    if text.startswith("~"):  # Sphinx shows only the last component: ~os.path.join → join
        text = text[1:].rsplit(".", 1)[-1]
    return text.lstrip("!")


def strip_rst(text: str) -> str:
    """Minimal reStructuredText clean-up: keep the prose and code, drop the scaffolding.

    Section adornment lines, comments and targets (``.. _x:``), index/toctree-style directives
    and directive options (``   :synopsis: …``) are dropped; other directives keep their
    argument (``.. function:: open(file)`` → ``open(file)``); roles keep their text
    (``:func:`os.path.join``` → ``os.path.join``, ``:func:`~os.path.join``` → ``join``), links
    their title, ````literals```` lose their backquotes.
    """
    out: list[str] = []
    after_directive = False
    for line in text.splitlines():
        if _RST_ADORNMENT.match(line):
            continue
        d = _RST_DIRECTIVE.match(line)
        if d:
            after_directive = True
            if d.group(2) not in _RST_DROP_DIRECTIVES and d.group(3):
                out.append(d.group(1) + d.group(3))
            continue
        if after_directive and _RST_OPTION.match(line):
            continue
        after_directive = False
        if line.lstrip().startswith(".."):  # comment, target, substitution, footnote
            continue
        line = _RST_ROLE.sub(_role_text, line)
        line = _RST_LINK.sub(r"\1", line)
        out.append(line.replace("``", ""))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def python_doc_documents(root: Path) -> list[Document]:
    """One Document per reST source file (``_sources/**/*.txt``) under `root`."""
    docs = []
    for f in sorted(root.rglob("_sources/**/*.txt")):
        text = strip_rst(f.read_text(encoding="utf-8", errors="replace"))
        if text:
            rel = f.as_posix().split("/_sources/", 1)[1]
            docs.append(Document(text, f"python-doc/{rel}", "python-doc"))
    return docs


_B64 = {
    c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}
_GCIDE_TAG = re.compile(
    r"^\s*\[(?:[^\]\n]*(?:Webster|WordNet|PJC|Century)[^\]\n]*|[A-Z]{2,4})\]\s*$"
)


def dictd_number(s: str) -> int:
    """A dictd index number: base 64, most significant digit first (not RFC 4648 padding)."""
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def dictd_entries(index_text: str, data: bytes) -> Iterator[tuple[str, str]]:
    """(headword, entry text) in file order; entries shared by several headwords once, the
    ``00-…`` database notes skipped."""
    spans: dict[tuple[int, int], str] = {}
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-") or parts[0].startswith("00database"):
            continue
        span = (dictd_number(parts[1]), dictd_number(parts[2]))
        spans.setdefault(span, parts[0])
    for (off, n), head in sorted(spans.items()):
        yield head, data[off : off + n].decode("utf-8", errors="replace")


def gcide_documents(dict_path: Path, index_path: Path) -> list[Document]:
    """Documents of ≤ `GCIDE_ENTRIES_PER_DOC` consecutive entries with the same first letter."""
    raw = dict_path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw  # .dict.dz is gzip (dictzip)
    index = index_path.read_text(encoding="utf-8", errors="replace")
    docs: list[Document] = []
    chunk: list[str] = []
    letter = ""

    def flush() -> None:
        if chunk:
            n = sum(d.source.startswith(f"gcide/{letter}-") for d in docs)
            text = "\n\n".join(chunk)
            docs.append(Document(text, f"gcide/{letter}-{n:04d}", "gcide"))
            chunk.clear()

    for _head, entry in dictd_entries(index, data):
        lines = [ln.rstrip() for ln in entry.splitlines() if not _GCIDE_TAG.match(ln)]
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if not text:
            continue
        # The letter of the entry as printed ("Chough …"), not of the index line that points
        # to it first ("Alpine chough"): consecutive entries then share it.
        first = text[0].lower() if "a" <= text[0].lower() <= "z" else "#"
        if first != letter or len(chunk) >= GCIDE_ENTRIES_PER_DOC:
            flush()
            letter = first
        chunk.append(text)
    flush()
    return docs


# ---------------------------------------------------------------------------------------------
# Fetch once, cache the raw files and the parsed text

# The files each part's parser reads (globs under the unpacked .deb), kept in the raw cache.
_RAW_FILES = {
    "austen": ("**/data/*",),
    "python-doc": ("**/_sources/**/*.txt",),
    "gcide": ("**/gcide.dict*", "**/gcide.index"),
}


def _fetch_raw(part: str, dest: Path, log: Any) -> None:
    """Download and unpack one part's package; keep only the files its parser reads in `dest`."""
    with tempfile.TemporaryDirectory(prefix=f".work-{part}-", dir=dest.parent) as tmp:
        work = Path(tmp)
        if part == "python-doc":
            pkg = python_doc_package(work)
            log(f"  python3-doc → {pkg}")
        else:
            pkg = PARTS[part]
        deb = apt_download(pkg, work)
        root = unpack(deb, work / "root")
        keep = work / "keep"
        for pattern in _RAW_FILES[part]:
            for f in root.glob(pattern):
                if f.is_file():
                    target = keep / f.relative_to(root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, target)
        if not keep.is_dir():
            raise CorpusError(f"{pkg} ({deb.name}) has none of {_RAW_FILES[part]}. {ALTERNATIVES}")
        record = {"packages": {pkg: deb_field(deb, "Version")}, "deb": deb.name}
        (keep / "versions.json").write_text(json.dumps(record, indent=1) + "\n")
        os.replace(keep, dest)  # atomic: a raw folder exists only once complete


def parse_part(part: str, raw: Path) -> list[Document]:
    """The documents of one part from its raw files (no network)."""
    if part == "austen":
        docs = austen_documents(raw)
    elif part == "python-doc":
        docs = python_doc_documents(raw)
    else:
        dz, idx = sorted(raw.rglob("gcide.dict*")), sorted(raw.rglob("gcide.index"))
        if not dz or not idx:
            raise CorpusError(f"no gcide.dict(.dz)/gcide.index under {raw}. {ALTERNATIVES}")
        docs = gcide_documents(dz[0], idx[0])
    if not docs:
        raise CorpusError(f"no {part} text found under {raw}. {ALTERNATIVES}")
    return docs


def _write_atomic(path: Path, lines: Iterator[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)


def debian_documents(
    parts: tuple[str, ...], cache_dir: Path, *, progress: bool = True
) -> tuple[list[Document], dict[str, Any]]:
    """Documents of the chosen parts; (docs, provenance {"packages": {part: {pkg: version}}}).

    Two caches under ``<cache_dir>/corpus/debian``: ``raw/<part>/`` holds the package files the
    parser reads (fetched once: the only step that uses the network), ``<part>.jsonl`` the parsed
    documents, rebuilt from raw/ whenever `EXTRACT_FORMAT` changes or it fails its checksum.
    """

    def log(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    folder = cache_dir / "corpus" / "debian"
    docs: list[Document] = []
    info: dict[str, Any] = {}
    for part in parts:
        raw, cache, meta = folder / "raw" / part, folder / f"{part}.jsonl", folder / f"{part}.json"
        record = _read_record(meta)
        problem = None if cache.is_file() and record.get("format") == EXTRACT_FORMAT else "stale"
        if problem is None and not _cache_intact(cache, meta, record):
            problem = f"its sha256 differs from the one in {meta.name}"
        found = None if problem else _load_jsonl(cache)
        if problem is None and found is None:
            problem = "it does not parse as JSON-lines documents"
        if problem is not None:
            if problem != "stale":
                print(
                    f"corpus debian/{part}: cached text {cache} is corrupt ({problem}); "
                    f"re-parsing it from {raw}",
                    file=sys.stderr,
                )
            record, found = _extract(part, raw, cache, meta, log)
        docs.extend(found)
        info[part] = record["packages"]
    return docs, {"packages": info}


def _extract(
    part: str, raw: Path, cache: Path, meta: Path, log: Any
) -> tuple[dict[str, Any], list[Document]]:
    """Parse one part from its raw files (fetching them first if missing) into the text cache."""
    if not (raw / "versions.json").is_file():
        raw.parent.mkdir(parents=True, exist_ok=True)
        log(f"corpus debian/{part}: fetching {PARTS[part]} (apt-get download, dpkg -x) …")
        _fetch_raw(part, raw, log)
    t0 = time.perf_counter()
    found = parse_part(part, raw)
    lines = (json.dumps(d.__dict__, ensure_ascii=False) + "\n" for d in found)
    _write_atomic(cache, lines)
    record = {
        "format": EXTRACT_FORMAT,
        "part": part,
        "documents": len(found),
        "sha256": file_sha256(cache),
        **json.loads((raw / "versions.json").read_text()),
    }
    _write_atomic(meta, iter([json.dumps(record, indent=1) + "\n"]))  # meta last
    log(f"corpus debian/{part}: {len(found)} documents in {time.perf_counter() - t0:.0f} s")
    return record, found


def _load_jsonl(cache: Path) -> list[Document] | None:
    """The documents in a part's text cache; None when it does not parse."""
    try:
        with open(cache, encoding="utf-8") as fh:
            return [Document(**json.loads(line)) for line in fh]
    except (OSError, ValueError, TypeError):
        return None


def _read_record(meta: Path) -> dict[str, Any]:
    """A part's cache record (<part>.json); {} when missing or unreadable (re-parsed then)."""
    try:
        record = json.loads(meta.read_text()) if meta.is_file() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _cache_intact(cache: Path, meta: Path, record: dict[str, Any]) -> bool:
    """True when `cache` matches the sha256 in its record; a record from before checksums gets
    the file's sha256 added (the file is trusted once)."""
    digest = file_sha256(cache)
    if "sha256" not in record:
        record["sha256"] = digest
        with contextlib.suppress(OSError):
            _write_atomic(meta, iter([json.dumps(record, indent=1) + "\n"]))
        return True
    return record["sha256"] == digest
