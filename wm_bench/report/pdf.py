"""reports/*.md → reports/report.pdf via Markdown → HTML → WeasyPrint, images embedded.

Markdown and WeasyPrint come with the optional `pdf` extra (`pip install 'wm_bench[pdf]'`); they
are imported only when a PDF is made, so the Markdown reports and figures need neither."""

from __future__ import annotations

import html
import importlib
import re
from pathlib import Path
from typing import Any

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


class MissingExtra(ImportError, ValueError):
    """An optional package is not installed; the message names the extra that brings it. Also a
    ValueError, so that `wm-bench` prints it as one line instead of a traceback."""


def _require(module: str) -> Any:
    """Import `module` (a `pdf` extra package) or raise MissingExtra saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(
            f"the PDF report needs the optional package {e.name or module!r}, which is not "
            "installed: pip install 'wm_bench[pdf]' (`wm-bench report` without --pdf writes the "
            "Markdown reports and figures without it)",
            name=e.name or module,
        ) from None
    except OSError as e:  # WeasyPrint is installed but cannot load Pango (a system library)
        raise MissingExtra(
            f"{module} is installed but cannot load its system libraries ({e}); install Pango "
            "(e.g. apt-get install libpango-1.0-0 libpangoft2-1.0-0), see WeasyPrint's "
            "installation notes",
            name=module,
        ) from None


def _local_images(body: str, base: Path, folder: Path | None = None) -> str:
    """Replace <img> tags whose local file is missing by a visible note (no broken render); the
    sources of a report in a subfolder (`folder`, e.g. reports/sweeps/) are made relative to
    `base`, which the PDF's images resolve against."""

    def fix(m: re.Match) -> str:
        src = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I):
            return m.group(0)
        path = (folder or base) / src
        if path.is_file():
            return m.group(0).replace(src, html.escape(path.relative_to(base).as_posix()))
        return f'<span class="missing">[figure missing: {html.escape(src)}]</span>'

    return _IMG.sub(fix, body)


def _fetcher():
    """A URL fetcher restricted to local files and data URLs (no network), where supported."""
    urls = _require("weasyprint.urls")
    if not hasattr(urls, "URLFetcher"):  # older WeasyPrint: its default fetcher
        return None
    return urls.URLFetcher(allowed_protocols=("file", "data"))


def render_html(reports_dir: Path) -> str:
    """One HTML document: "Claims at a glance" (from reports/verdicts.json, when there is one),
    then every reports/*.md (sorted by name), then every reports/sweeps/*.md, one section each."""
    from wm_bench.report import verdicts

    markdown = _require("markdown")

    sections = []
    if (Path(reports_dir) / verdicts.FILE).is_file():
        glance = verdicts.glance_markdown(verdicts.load(reports_dir))
        body = markdown.markdown(glance, extensions=["tables", "sane_lists"])
        sections.append(f'<section class="report glance">\n{body}\n</section>')
    rdir = Path(reports_dir)
    for md in [*sorted(rdir.glob("*.md")), *sorted(rdir.glob("sweeps/*.md"))]:
        body = markdown.markdown(md.read_text(), extensions=["tables", "fenced_code", "sane_lists"])
        body = _local_images(body, rdir, md.parent)
        sections.append(f'<section class="report">\n{body}\n</section>')
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
    Raises:
        MissingExtra: Markdown or WeasyPrint is not installed (the `pdf` extra).
    """
    from wm_bench.results import repo_root

    weasyprint = _require("weasyprint")
    rdir = Path(reports_dir) if reports_dir is not None else repo_root() / "reports"
    if not any(rdir.glob("*.md")):
        raise ValueError(f"no Markdown reports in {rdir}; run `wm-bench report` first")
    out = rdir / PDF_NAME
    base = str(rdir.resolve()) + "/"
    doc = weasyprint.HTML(string=render_html(rdir), base_url=base, url_fetcher=_fetcher())
    doc.write_pdf(out)
    return out
