"""Rewrite absolute machine paths in result files as repository-relative ones.

Usage: `python -m wm_bench.migrate_paths [PATH ...] [--check] [--root DIR]` (default PATH:
`results/`). Every string of a result record outside its `config` (e.g.
`extra.downstream.eval_data`, the "not run" reasons that name the data folder,
`extra.model_dir`, an error's traceback) has each absolute path replaced by the same path relative
to the repository root that made it (`--root`, default this checkout): `/…/main/outputs/x` →
`outputs/x`, `/…/shared/data/eval` beside the checkout → `../shared/data/eval`. The `config`
dict is never touched, so config hashes and run ids stay as they are; metrics are numbers and
are never touched either. Files are rewritten atomically (`write_json_atomic`), only when
something changes, so a second run changes nothing. `--check` rewrites nothing, lists every
absolute path left, and exits 1 when there is one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wm_bench.results import (
    ABSOLUTE_PATH,
    migrate_record,
    offenders,
    portable,
    portable_path,
    repo_root,
    write_json_atomic,
)

__all__ = ["ABSOLUTE_PATH", "main", "migrate", "migrate_record", "offenders", "portable"]


def result_files(paths: list[str | Path]) -> list[Path]:
    """Every *.json under the given files or folders (sorted; temporary files skipped)."""
    files: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            files.update(f for f in p.rglob("*.json") if not f.name.startswith("."))
        elif p.is_file():
            files.add(p)
        else:
            raise FileNotFoundError(f"{str(p)!r} is neither a result file nor a folder of them")
    return sorted(files)


def migrate(paths: list[str | Path], root: str | Path, *, check: bool = False) -> dict[str, Any]:
    """Migrate (or with `check`, only inspect) the result files under `paths`.

    Returns:
        {"files": how many were read, "changed": {file: [fields]} (rewritten, or that would be),
         "left": {file: [(field, path)]} (absolute paths still there, or that cannot be made
         relative)}.
    """
    report: dict[str, Any] = {"files": 0, "changed": {}, "left": {}}
    for f in result_files(paths):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{f}: not a readable JSON file ({e})") from None
        report["files"] += 1
        new, fields = migrate_record(rec, root) if isinstance(rec, dict) else (rec, [])
        if fields:
            report["changed"][str(f)] = fields
            if not check:
                write_json_atomic(f, new)
        left = offenders(rec if check else new)
        if left:
            report["left"][str(f)] = left
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite (or `--check`) the result files; exit 1 when `--check` finds paths."""
    p = argparse.ArgumentParser(
        prog="python -m wm_bench.migrate_paths",
        description="Rewrite absolute machine paths in result JSON files as paths relative to "
        "the repository root; config and config_hash are never changed.",
    )
    p.add_argument("paths", nargs="*", help="result files or folders (default: results/)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 listing paths")
    p.add_argument(
        "--root",
        default=None,
        help="the repository root that made the results (default: this checkout's)",
    )
    args = p.parse_args(argv)
    root = Path(args.root) if args.root else repo_root()
    try:
        rep = migrate(args.paths or [repo_root() / "results"], root, check=args.check)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f, fields in rep["changed"].items():
        verb = "would rewrite" if args.check else "rewrote"
        print(f"{verb} {portable_path(f)}: {', '.join(fields)}")
    for f, left in rep["left"].items():
        for field, path in left:
            print(f"absolute path in {portable_path(f)}: {field} = {path}")
    if args.check:
        bad = len(rep["left"])
        print(
            f"{bad} of {rep['files']} files hold an absolute path"
            if bad
            else f"no absolute paths in {rep['files']} files"
        )
        return 1 if bad else 0
    print(
        f"{len(rep['changed'])} of {rep['files']} files rewritten; "
        f"{len(rep['left'])} still hold a path outside the repository"
    )
    return 1 if rep["left"] else 0


if __name__ == "__main__":
    sys.exit(main())
