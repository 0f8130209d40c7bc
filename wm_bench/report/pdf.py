"""reports/*.md → reports/report.pdf via Markdown → HTML → WeasyPrint, images embedded."""

from __future__ import annotations

import html
import re
from pathlib import Path

PDF_NAME = "report.pdf"
_IMG = re.compile(r'<img\b[^>]*\bsrc="([^"]*)"[^>]*>')
_CSS = """
@page { size: A4 landscape; margin: 14mm; }
body { font-family: sans-serif; font-size: 9pt; line-height: 1.35; }
section.report + section.report { break-before: page; }
h1 { font-size: 16pt; } h2 { font-size: 13pt; margin-top: 1.2em; } h3 { font-size: 11pt; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 7.5pt; }
th, td { border: 0.5pt solid #999; padding: 2px 4px; }
th { background: #eee; }
blockquote { border-left: 3pt solid #c60; margin: 0.5em 0; padding: 0.2em 0.8em;
             background: #fff4e8; }
img { max-width: 100%; }
code { font-size: 8pt; }
.missing { color: #a00; font-style: italic; }
"""


def _local_images(body: str, base: Path) -> str:
    """Replace <img> tags whose local file is missing by a visible note (no broken render)."""

    def fix(m: re.Match) -> str:
        src = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I) or (base / src).is_file():
            return m.group(0)
        return f'<span class="missing">[figure missing: {html.escape(src)}]</span>'

    return _IMG.sub(fix, body)


def _fetcher():
    """A URL fetcher restricted to local files and data URLs (no network), where supported."""
    try:
        from weasyprint.urls import URLFetcher
    except ImportError:  # older WeasyPrint: its default fetcher
        return None
    return URLFetcher(allowed_protocols=("file", "data"))


def render_html(reports_dir: Path) -> str:
    """One HTML document: "Claims at a glance" (from reports/verdicts.json, when there is one),
    then every reports/*.md (sorted by name), one section each."""
    import markdown

    from wm_bench.report import verdicts

    sections = []
    if (Path(reports_dir) / verdicts.FILE).is_file():
        glance = verdicts.glance_markdown(verdicts.load(reports_dir))
        body = markdown.markdown(glance, extensions=["tables", "sane_lists"])
        sections.append(f'<section class="report glance">\n{body}\n</section>')
    for md in sorted(Path(reports_dir).glob("*.md")):
        body = markdown.markdown(md.read_text(), extensions=["tables", "fenced_code", "sane_lists"])
        sections.append(f'<section class="report">\n{_local_images(body, reports_dir)}\n</section>')
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>wm_bench reports</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def build_pdf(reports_dir: Path | str | None = None) -> Path:
    """Render every reports/*.md into reports/report.pdf.

    Args:
        reports_dir: the reports folder (default: <repo>/reports); images resolve against it.
    Returns:
        The PDF path.
    """
    from weasyprint import HTML

    from wm_bench.results import repo_root

    rdir = Path(reports_dir) if reports_dir is not None else repo_root() / "reports"
    if not any(rdir.glob("*.md")):
        raise ValueError(f"no Markdown reports in {rdir}; run `wm-bench report` first")
    out = rdir / PDF_NAME
    doc = HTML(string=render_html(rdir), base_url=str(rdir.resolve()) + "/", url_fetcher=_fetcher())
    doc.write_pdf(out)
    return out
