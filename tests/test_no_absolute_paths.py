"""No absolute machine path in the committed results/ and reports/ (JSON and Markdown files)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A path of some machine: /work, /root, /home, /tmp, /Users, /var, /opt, or a drive (C:\); not
# when it continues a word, a URL or a relative path ("https://x.org/home", "a/tmp").
MACHINE_PATH = re.compile(r"(?<![\w.~/\\-])(?:/(?:work|root|home|tmp|Users|var|opt)\b|[A-Za-z]:\\)")


def _offenders(folder: Path) -> list[str]:
    found = []
    for f in sorted(folder.rglob("*")):
        if f.suffix not in (".json", ".md") or f.name.startswith(".") or not f.is_file():
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for m in MACHINE_PATH.finditer(line):
                found.append(f"{f.relative_to(ROOT)}:{n}: {line[m.start() : m.start() + 60]}")
    return found


def test_results_and_reports_hold_no_absolute_paths() -> None:
    found = _offenders(ROOT / "results") + _offenders(ROOT / "reports")
    assert not found, (
        f"{len(found)} absolute path(s); rewrite results with `python -m wm_bench.migrate_paths` "
        "and regenerate the reports (`wm-bench report <experiment>`):\n" + "\n".join(found[:20])
    )


def test_the_pattern_finds_machine_paths_and_nothing_else() -> None:
    hits = ['"/work/shared/data/eval"', "(x not in /tmp/a)", "/home/u", "C:\\Users\\x", "/opt"]
    misses = ["https://example.org/home/a", "tokens/s", "a/tmp/b", "/workspace", "mean/var"]
    assert all(MACHINE_PATH.search(s) for s in hits)
    assert not any(MACHINE_PATH.search(s) for s in misses)
