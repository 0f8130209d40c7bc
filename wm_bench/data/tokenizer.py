"""Tokenizers: a byte-level BPE trained on a corpus' training split, or a cached HF tokenizer.

Specs:
- ``bpe``: byte-level BPE (GPT-2 style: bytes mapped to 256 printable symbols, the GPT-2
  pre-tokenizer regex, no normalisation, so decode(encode(s)) == s for every string) trained with
  the ``tokenizers`` package on the corpus' TRAINING split only, merges seen at least twice, up
  to `vocab_size` tokens: the 256 byte symbols, the special token ``<|endoftext|>`` (the
  document separator, id 0) and the merges (fewer if the corpus runs out of pairs). Cached as
  ``<cache>/tokenizers/bpe<vocab>-<corpus hash>/tokenizer.json`` and never retrained for the
  same (corpus hash, vocab size) — unless the file is corrupt: its sha256 is recorded in the
  folder's meta.json and checked on every load, and a file that fails (or cannot be parsed) is
  retrained, with one line on stderr saying so.
- ``hf:<name>``: ``transformers.AutoTokenizer.from_pretrained(name, local_files_only=True)``:
  nothing is downloaded; a tokenizer not in the local Hugging Face cache is a clear error. Its
  EOS token separates documents; the config's vocab_size does not apply (its own size does).

Text that contains the literal string ``<|endoftext|>`` is encoded as the separator (as in
GPT-2); the corpora here do not contain it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

EOS = "<|endoftext|>"
BPE_FORMAT = 1  # bump when training settings change: the cache key changes with it
MIN_BPE_VOCAB = 257  # 256 byte symbols + <|endoftext|>


class Tokenizer:
    """The suite's tokenizer interface over a `tokenizers.Tokenizer` (BPE or an HF fast one).

    Attributes:
        name: what it is, e.g. "bpe8192@<corpus hash>" or "hf:gpt2".
        vocab_size: the real number of ids (ids are in [0, vocab_size)).
        eos_id: the document separator's id.
        fingerprint: 12 hex digits of sha256 of the serialized tokenizer (keys token shards).
        path: its tokenizer.json in the cache (None for hf tokenizers).
    """

    def __init__(
        self,
        backend: Any,
        *,
        name: str,
        eos_id: int,
        vocab_size: int | None = None,
        path: Path | None = None,
    ) -> None:
        self.backend, self.name, self.eos_id, self.path = backend, name, int(eos_id), path
        self.vocab_size = int(vocab_size if vocab_size is not None else backend.get_vocab_size())
        self.fingerprint = hashlib.sha256(backend.to_str().encode()).hexdigest()[:12]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no special tokens added)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """encode() of each text (in parallel in the Rust backend)."""
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encs]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids` (special tokens kept, so <|endoftext|> shows)."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"


def check_tokenizer_spec(spec: str, vocab_size: int) -> None:
    """ValueError unless `spec` is "bpe" (with vocab_size ≥ 257) or "hf:<name>"."""
    if spec == "bpe":
        if vocab_size < MIN_BPE_VOCAB:
            raise ValueError(
                f"bpe vocab_size={vocab_size} must be ≥ {MIN_BPE_VOCAB} (256 bytes + {EOS})"
            )
    elif not (spec.startswith("hf:") and len(spec) > 3):
        raise ValueError(f"tokenizer {spec!r}; valid: 'bpe' or 'hf:<name>' (e.g. 'hf:gpt2')")


def train_bpe(texts: Iterable[str], vocab_size: int, *, progress: bool = False) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts` (see the module docstring)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def bpe_dir(cache_dir: Path, corpus_hash: str, vocab_size: int) -> Path:
    """Where the BPE of (corpus hash, vocab size) is cached."""
    return cache_dir / "tokenizers" / f"bpe{vocab_size}-v{BPE_FORMAT}-{corpus_hash}"


def load_tokenizer(
    spec: str,
    *,
    corpus: Any = None,
    vocab_size: int = 8192,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Tokenizer:
    """The tokenizer named by `spec`, training (once) and caching a BPE where needed.

    Args:
        spec: "bpe" or "hf:<name>".
        corpus: a `wm_bench.data.corpus.Corpus` (needed for "bpe": its train split and hash).
        vocab_size: the BPE's target size (ignored for hf).
        cache_dir: cache root (default `wm_bench.data.corpus.default_cache_dir()`).
        progress: show the trainer's progress and say what happens.
    Returns:
        A Tokenizer. ValueError on a bad spec or an hf tokenizer that is not cached locally.
    """
    check_tokenizer_spec(spec, vocab_size)
    if spec.startswith("hf:"):
        return _hf_tokenizer(spec[3:])
    from tokenizers import Tokenizer as HFTokenizer

    from wm_bench.data.corpus import default_cache_dir

    if corpus is None:
        raise ValueError("tokenizer 'bpe' needs the corpus whose train split it is trained on")
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    folder = bpe_dir(root, corpus.hash, vocab_size)
    path = folder / "tokenizer.json"
    name = f"bpe{vocab_size}@{corpus.hash}"
    backend = _cached_bpe(folder, path) if path.is_file() else None
    if backend is None:
        if progress:
            print(f"training {name} on the train split of {corpus.spec!r} …", file=sys.stderr)
        t0 = time.perf_counter()
        # the trainer's own bars only on a terminal (elsewhere they print bare newlines)
        tok = train_bpe(
            corpus.texts("train"), vocab_size, progress=progress and sys.stderr.isatty()
        )
        folder.mkdir(parents=True, exist_ok=True)
        text = tok.to_str()
        meta = {
            "corpus": corpus.spec,
            "corpus_hash": corpus.hash,
            "vocab_size_requested": vocab_size,
            "vocab_size": tok.get_vocab_size(),
            "bpe_format": BPE_FORMAT,
            "train_seconds": round(time.perf_counter() - t0, 2),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
        _atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1) + "\n")
        _atomic_write_text(path, text)  # last: its presence means "done"
        backend = HFTokenizer.from_str(text)
    return Tokenizer(backend, name=name, eos_id=backend.token_to_id(EOS), path=path)


def _cached_bpe(folder: Path, path: Path) -> Any:
    """The cached BPE backend at `path` if intact, else None (after saying why on stderr).

    Intact: its bytes match the sha256 in meta.json and it parses. A file cached before
    checksums were recorded gets its sha256 added to meta.json once it parses.
    """
    from tokenizers import Tokenizer as HFTokenizer

    meta_path = folder / "meta.json"
    try:
        data = path.read_bytes()
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if not isinstance(meta, dict):
            meta = {}
    except (OSError, ValueError):
        data, meta = None, {}
    problem = None
    if data is None:
        problem = "cannot be read"
    elif meta.get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
        problem = "does not match its sha256 in meta.json"
    else:
        try:
            backend = HFTokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # the tokenizers package raises its own Exception type
            problem = f"cannot be parsed ({type(e).__name__})"
        else:
            if meta and "sha256" not in meta:
                meta["sha256"] = hashlib.sha256(data).hexdigest()
                with contextlib.suppress(OSError):
                    _atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
            return backend
    print(f"tokenizer {path} is corrupt ({problem}); retraining it", file=sys.stderr)
    path.unlink(missing_ok=True)
    return None


def _hf_tokenizer(name: str) -> Tokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ValueError(
            f"tokenizer 'hf:{name}' needs the `transformers` package (pip install transformers); "
            "or use tokenizer 'bpe'"
        ) from None
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"tokenizer 'hf:{name}' is not in the local Hugging Face cache (nothing is downloaded "
            f'at run time): fetch it once where a hub is reachable, e.g. `python -c "from '
            f"transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{name}')\"`, "
            f"or use tokenizer 'bpe'. ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"tokenizer 'hf:{name}' has no fast (Rust) version; use a fast one")
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer 'hf:{name}' has no EOS token to separate documents")
    backend = tok.backend_tokenizer
    backend.no_truncation()  # whole documents, never cut to the model's max length
    backend.no_padding()
    return Tokenizer(backend, name=f"hf:{name}", eos_id=tok.eos_token_id, vocab_size=len(tok))
