"""The downstream sets shipped as package data: xz files, their manifest, a checked cache copy."""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().with_name("data")  # wm_bench/eval/data
MANIFEST = "manifest.json"
LABEL = "package:eval"  # how results and `wm-bench eval` name this source
SOURCE = (
    "Eval Gauntlet local data of mosaicml/llm-foundry (Apache-2.0), which re-packages the "
    "public sets; each set keeps its own licence (see NOTICE.md)"
)
_CHUNK = 1 << 20


class EvalDataError(ValueError):
    """A packaged eval-data file is missing, unreadable or does not match its manifest sha256."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(src: str | Path = DATA_DIR) -> dict[str, Any]:
    """The manifest of a packaged-data folder: {"files": {name: {"sha256", "rows", ...}}, ...}."""
    from wm_bench.data.documents import read_manifest

    return read_manifest(
        Path(src) / MANIFEST,
        key="files",
        fields=("sha256",),
        what="packaged eval data",
        error=EvalDataError,
    )


def default_cache_root() -> Path:
    """Where the decompressed copies live: <$WM_BENCH_CACHE or ~/.cache/wm_bench>/eval_data."""
    from wm_bench.data.corpus import default_cache_dir

    return default_cache_dir() / "eval_data"


def _decompress(xz_path: Path, dest: Path, want: str) -> None:
    """Decompress `xz_path` to `dest` atomically, checking the sha256 of what comes out."""
    if not xz_path.is_file():
        raise EvalDataError(f"packaged eval data: {xz_path} is missing; reinstall wm_bench")
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, lzma.open(xz_path, "rb") as src:
            for block in iter(lambda: src.read(_CHUNK), b""):
                h.update(block)
                out.write(block)
        if h.hexdigest() != want:
            raise EvalDataError(
                f"packaged eval data: {xz_path} decompresses to sha256 {h.hexdigest()}, but "
                f"{MANIFEST} records {want} for {dest.name}; the package is corrupt, reinstall it"
            )
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the copy from other users of the cache
        os.replace(tmp, dest)
    except (lzma.LZMAError, EOFError) as e:
        raise EvalDataError(f"packaged eval data: {xz_path} is not a valid xz file ({e})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def packaged_eval_data(src: str | Path = DATA_DIR, cache_root: str | Path | None = None) -> Path:
    """The packaged task files as a folder of plain JSON lines, each checked against its sha256.

    Decompressed once into `<cache_root>/<manifest digest>/` (a changed manifest gets a fresh
    folder); every call re-checks each copy's sha256 (≈ 7 MB, tens of milliseconds), and a copy
    that no longer matches is decompressed again, with one line on stderr saying so.

    Why plain copies rather than pointing the YAMLs at the .xz files: lm-eval's json loader
    (Hugging Face `datasets`) would extract them itself into its own cache, unchecked by us, and
    `plan`, `render_tasks` and `wm-bench lm-eval --include_path` then treat the packaged data as
    one more folder of task files, exactly like `--eval-data DIR`.

    Args:
        src: the folder with `manifest.json` and the `<file>.xz` it lists (default: the package's).
        cache_root: where to decompress (default: `default_cache_root()`).
    Returns:
        The folder holding every file the manifest lists.
    Raises:
        EvalDataError (a ValueError) naming the file whose xz is missing or corrupt, or whose
        decompressed content does not match the manifest.
    """
    src = Path(src)
    manifest = load_manifest(src)
    digest = hashlib.sha256((src / MANIFEST).read_bytes()).hexdigest()[:16]
    dest = Path(cache_root) if cache_root is not None else default_cache_root()
    dest = dest / digest
    dest.mkdir(parents=True, exist_ok=True)
    for name, entry in sorted(manifest["files"].items()):
        want, target = entry["sha256"], dest / name
        if target.is_file():
            if sha256_file(target) == want:
                continue
            print(
                f"eval data: cached {target} does not match its sha256; decompressing it again",
                file=sys.stderr,
            )
        _decompress(src / entry.get("xz", f"{name}.xz"), target, want)
    return dest


def build(src: str | Path, out: str | Path = DATA_DIR, info: dict[str, Any] | None = None) -> dict:
    """Maintainers: compress every `*.jsonl` of `src` into `out` (xz -9e) and write the manifest.

    Args:
        src: a folder of JSON-lines task files.
        out: the package-data folder.
        info: extra per-file fields to keep (e.g. benchmark, licence), {file name: {...}}.
    Returns:
        The manifest written.
    """
    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    for path in sorted(src.glob("*.jsonl")):
        data = path.read_bytes()
        xz = out / f"{path.name}.xz"
        xz.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        files[path.name] = {
            **(info or {}).get(path.name, {}),
            "xz": xz.name,
            "rows": sum(1 for line in data.splitlines() if line.strip()),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    manifest = {"format": 1, "source": SOURCE, "notice": "NOTICE.md", "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """`python -m wm_bench.eval.packaged --build DIR`: repack; without it, check the package."""
    p = argparse.ArgumentParser(prog="python -m wm_bench.eval.packaged", description=main.__doc__)
    p.add_argument("--build", metavar="DIR", help="compress DIR/*.jsonl into the package data")
    args = p.parse_args(argv)
    if args.build:
        old = load_manifest()["files"] if (DATA_DIR / MANIFEST).is_file() else {}
        keep = ("task", "benchmark", "licence")
        info = {k: {f: v[f] for f in keep if f in v} for k, v in old.items()}
        manifest = build(args.build, DATA_DIR, info)
        print(f"wrote {len(manifest['files'])} files and {MANIFEST} to {DATA_DIR}")
        return 0
    folder = packaged_eval_data()
    print(f"{LABEL}: {len(load_manifest()['files'])} files checked, in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
