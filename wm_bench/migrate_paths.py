"""Rewrite absolute machine paths in result files as repository-relative ones (issue 19, point 3).

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
import re
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

# A machine path: /work, /root, /home, /tmp, /Users, /var, /opt, /mnt, /srv, /scratch …, or a
# Windows drive (C:\). Not preceded by a word character, a dot or a slash, so URLs and relative
# paths ("a/tmp/b") do not match.
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~/\\-])(?:/(?:work|root|home|tmp|Users|var|opt|mnt|srv|scratch|private)(?=/|\b)"
    r"|[A-Za-z]:\\)(?:[^\s\"'`()<>,;|]*[^\s\"'`()<>,;|.:])?"  # a trailing "." or ":" is prose
)
FROZEN = ("config", "config_hash")  # never rewritten: the hash (and so the run id) comes from them


def portable(path: str, root: str | Path) -> str | None:
    """`path` relative to the repository `root` ("../x" for a folder beside it), lexically (the
    path may name another machine); None when it lies elsewhere."""
    p, base = PurePosixPath(path), PurePosixPath(str(root))
    for prefix, anchor in (("", base), ("../", base.parent)):
        if anchor == PurePosixPath("/"):
            break
        try:
            rel = p.relative_to(anchor).as_posix()
        except ValueError:
            continue
        return (prefix + rel) if rel != "." else (prefix.rstrip("/") or ".")
    return None


def _walk(obj: Any, where: str) -> Iterator[tuple[str, str]]:
    """(dotted path, string) of every string in `obj`."""
    if isinstance(obj, str):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{where}[{i}]")


def _rewrite(obj: Any, fix: Any) -> Any:
    """`obj` with every string passed through `fix`."""
    if isinstance(obj, str):
        return fix(obj)
    if isinstance(obj, dict):
        return {k: _rewrite(v, fix) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite(v, fix) for v in obj]
    return obj


def _paths_under(root: str | Path) -> re.Pattern[str]:
    """ABSOLUTE_PATH, widened by the checkout `root` and the folder above it, so a checkout under
    an unusual top folder (CI's /check/…) is made relative too."""
    base = PurePosixPath(str(root))
    anchors = [str(a) for a in (base, base.parent) if a != PurePosixPath("/")]
    if not anchors:
        return ABSOLUTE_PATH
    literal = "|".join(re.escape(a) for a in anchors)
    tail = r"(?:/[^\s\"'`()<>,;|]*[^\s\"'`()<>,;|.:])?"
    return re.compile(rf"(?<![\w.~/\\-])(?:{literal})(?![\w.-]){tail}|{ABSOLUTE_PATH.pattern}")


def migrate_record(rec: dict[str, Any], root: str | Path) -> tuple[dict[str, Any], list[str]]:
    """(the record with its absolute paths made relative, dotted fields that changed).

    `config` and `config_hash` are returned unchanged; a path outside the repository and the
    folder beside it is left as it is (`offenders` still lists it).
    """

    pattern = _paths_under(root)

    def fix(s: str) -> str:
        return pattern.sub(lambda m: portable(m.group(0), root) or m.group(0), s)

    out = {k: (v if k in FROZEN else _rewrite(v, fix)) for k, v in rec.items()}
    before, after = dict(_walk(rec, "")), dict(_walk(out, ""))
    return out, sorted(k for k in before if before[k] != after.get(k))


def offenders(rec: Any) -> list[tuple[str, str]]:
    """(dotted field, absolute path) for every absolute machine path in a record."""
    return [(k, m.group(0)) for k, s in _walk(rec, "") for m in ABSOLUTE_PATH.finditer(s)]


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
    from wm_bench.results import write_json_atomic

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
    from wm_bench.results import portable_path, repo_root

    p = argparse.ArgumentParser(
        prog="python -m wm_bench.migrate_paths",
        description="Rewrite absolute machine paths in result JSON files as paths relative to "
        "the repository root; config and config_hash are never changed.",
    )
    p.add_argument("paths", nargs="*", help="result files or folders (default: results/)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 listing paths")
    p.add_argument("--root", default=None, help="the repository root that made the results "
                   "(default: this checkout's)")  # fmt: skip
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
        print(f"{bad} of {rep['files']} files hold an absolute path" if bad else
              f"no absolute paths in {rep['files']} files")  # fmt: skip
        return 1 if bad else 0
    print(f"{len(rep['changed'])} of {rep['files']} files rewritten; "
          f"{len(rep['left'])} still hold a path outside the repository")  # fmt: skip
    return 1 if rep["left"] else 0


if __name__ == "__main__":
    sys.exit(main())
