"""Token shards: each split of a corpus tokenized once into a flat array on disk, then reused.

Layout: ``<cache>/shards/<corpus hash>-<tokenizer fingerprint>/`` holds ``train.bin``,
``valid.bin``, ``test.bin`` (raw little-endian token ids, uint16 when every id fits — vocabulary
≤ 65 536 — else uint32; read back as numpy memmaps) and ``meta.json`` (corpus spec and hash,
tokenizer name and fingerprint, vocabulary size, EOS id, dtype, documents / characters / tokens
per split, created_at, build seconds). Each document is followed by the EOS id, so a split's
stream reads ``doc₀ EOS doc₁ EOS …`` and every document ends in a separator.

Atomicity: a build writes everything into a hidden temporary folder beside the final one and
renames the folder into place as its last step (one atomic rename on POSIX). A build that is
interrupted therefore never leaves a folder that later loads; its temporary folder is removed
on error, or by the next build once the process that made it is gone. A loaded folder is also
checked: every file's size must equal its token count in meta.json times the item size, and its
sha256 must equal the one meta.json recorded when it was written. A folder that fails is rebuilt
(one line on stderr says so). Folders written before checksums existed get theirs recorded on
first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wm_bench.data.corpus import Corpus, default_cache_dir
from wm_bench.data.documents import SPLITS, file_sha256

SHARD_FORMAT = 1
BATCH_CHARS = 2_000_000  # characters per encode_batch call (the Rust backend parallelises a batch)
BATCH_DOCS = 1024


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id (< vocab_size) fits in 16 bits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


@dataclass(frozen=True)
class Shards:
    """A finished shard folder: `meta` (meta.json) and one token file per split."""

    dir: Path
    meta: dict[str, Any]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    def path(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
        return self.dir / f"{split}.bin"

    def tokens(self, split: str) -> np.ndarray:
        """[n] read-only memmap of the split's token ids (uint16 or uint32)."""
        n = self.meta["splits"][split]["tokens"]
        dt = self.dtype.newbyteorder("<")
        return np.memmap(self.path(split), dtype=dt, mode="r", shape=(n,))


def shard_dir(cache_dir: Path, corpus_hash: str, tokenizer: Any) -> Path:
    """The folder of (corpus, tokenizer): keyed by the corpus hash and tokenizer fingerprint."""
    return cache_dir / "shards" / f"{corpus_hash}-{tokenizer.fingerprint}"


def check_shards(folder: Path) -> tuple[Shards | None, str | None]:
    """(the Shards in `folder`, None) if complete and intact, else (None, what is wrong)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != SHARD_FORMAT:
            return None, f"meta.json has format {meta.get('format')!r}, not {SHARD_FORMAT}"
        item = np.dtype(meta["dtype"]).itemsize
        for s in SPLITS:
            size = (folder / f"{s}.bin").stat().st_size
            if size != meta["splits"][s]["tokens"] * item:
                want = meta["splits"][s]["tokens"] * item
                return None, f"{s}.bin has {size} bytes, meta.json says {want}"
        legacy = [s for s in SPLITS if "sha256" not in meta["splits"][s]]
        for s in SPLITS:
            digest = file_sha256(folder / f"{s}.bin")
            if s in legacy:
                meta["splits"][s]["sha256"] = digest
            elif digest != meta["splits"][s]["sha256"]:
                return None, f"{s}.bin does not match its sha256 in meta.json (corrupt)"
    except FileNotFoundError as e:
        return None, f"{Path(e.filename).name if e.filename else 'a file'} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return None, f"meta.json is unreadable ({type(e).__name__}: {e})"
    if legacy:  # written before checksums: record them now (best effort; sizes matched)
        with contextlib.suppress(OSError):
            _write_meta(folder, meta)
    return Shards(folder, meta), None


def open_shards(folder: Path) -> Shards | None:
    """The Shards in `folder` if complete and intact (sizes and checksums), else None."""
    return check_shards(folder)[0]


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    tmp = folder / f".meta.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, folder / "meta.json")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(final: Path) -> None:
    """Remove temporary folders of earlier builds of `final` whose process is gone."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _batches(texts: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    chars = 0
    for t in texts:
        batch.append(t)
        chars += len(t)
        if chars >= BATCH_CHARS or len(batch) >= BATCH_DOCS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _write_split(
    corpus: Corpus, tokenizer: Any, split: str, path: Path, dtype: np.dtype, progress: bool
) -> dict[str, int]:
    from tqdm.auto import tqdm

    stats = corpus.stats()
    total = stats[split]["characters"] if stats else None
    counts: dict[str, Any] = {"documents": 0, "characters": 0, "tokens": 0}
    digest = hashlib.sha256()
    eos = np.array([tokenizer.eos_id], dtype=dtype)
    bar = tqdm(
        total=total,
        unit="char",
        unit_scale=True,
        desc=f"tokenize {split}",
        file=sys.stderr,
        disable=not progress,
        mininterval=1.0,
    )
    with open(path, "wb") as fh, bar:
        for batch in _batches(corpus.texts(split)):
            parts = []
            for ids in tokenizer.encode_batch(batch):
                parts += [np.asarray(ids, dtype=np.int64), eos]
            arr = np.concatenate(parts)
            if arr.size and int(arr.max()) >= tokenizer.vocab_size:
                raise ValueError(
                    f"tokenizer {tokenizer.name} produced id {int(arr.max())} ≥ its "
                    f"vocab_size {tokenizer.vocab_size}"
                )
            data = arr.astype(dtype.newbyteorder("<")).tobytes()
            fh.write(data)
            digest.update(data)
            n_chars = sum(len(t) for t in batch)
            counts["documents"] += len(batch)
            counts["characters"] += n_chars
            counts["tokens"] += int(arr.size)
            bar.update(n_chars)
        fh.flush()
        os.fsync(fh.fileno())
    if counts["documents"] == 0:
        raise ValueError(f"corpus {corpus.spec!r} has no {split} documents")
    counts["sha256"] = digest.hexdigest()
    return counts


def build_shards(
    corpus: Corpus,
    tokenizer: Any,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Shards:
    """Reuse the shards of (corpus, tokenizer) or build them (once, atomically).

    Args:
        corpus: a `wm_bench.data.corpus.Corpus`.
        tokenizer: a `wm_bench.data.tokenizer.Tokenizer` (encode_batch, eos_id, vocab_size,
            name, fingerprint).
        cache_dir: cache root (default `default_cache_dir()`).
        progress: a tqdm bar per split while building.
    Returns:
        The finished Shards.
    """
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    final = shard_dir(root, corpus.hash, tokenizer)
    found, problem = check_shards(final)
    if found is not None:
        return found
    if final.exists():  # only a finished build is renamed into place: this one was damaged
        print(f"token shards {final} are damaged ({problem}); rebuilding them", file=sys.stderr)
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        dtype = token_dtype(tokenizer.vocab_size)
        splits = {}
        for s in SPLITS:
            splits[s] = _write_split(corpus, tokenizer, s, tmp / f"{s}.bin", dtype, progress)
            splits[s]["file"] = f"{s}.bin"
        meta = {
            "format": SHARD_FORMAT,
            "corpus": corpus.spec,
            "corpus_hash": corpus.hash,
            "corpus_info": corpus.info,
            "tokenizer": tokenizer.name,
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "vocab_size": tokenizer.vocab_size,
            "eos_id": tokenizer.eos_id,
            "dtype": dtype.name,
            "byteorder": "little",
            "separator": "eos after every document",
            "splits": splits,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.rename(tmp, final)  # the commit point
        except OSError:
            if open_shards(final) is None:  # not a concurrent build that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    done = open_shards(final)
    if done is None:
        raise RuntimeError(f"shards in {final} failed their consistency check after the build")
    return done
