"""Reports as pure functions of results/: Markdown, PNG figures, one PDF; never imports torch."""

from __future__ import annotations

import importlib
from pathlib import Path

from wm_bench.report.pdf import build_pdf
from wm_bench.results import default_results_dir, iter_results, repo_root

# experiment → module with build(records, reports_dir) -> list[Path]
BUILDERS: dict[str, str] = {
    "mqar": "wm_bench.report.mqar",
    "expert_speed": "wm_bench.report.expert_speed",
    "rope": "wm_bench.report.rope",
    "ffn": "wm_bench.report.ffn",
    "arch": "wm_bench.report.arch",
    "mqar_dma": "wm_bench.report.mqar_dma",
    "passkey": "wm_bench.report.passkey",
}


def build_report(
    experiment: str,
    results_dir: Path | str | None = None,
    reports_dir: Path | str | None = None,
) -> list[Path]:
    """Write the report of one experiment from its result files.

    Args:
        experiment: a key of BUILDERS (e.g. "mqar").
        results_dir: folder holding <experiment>/<scale>/*.json (default: results/).
        reports_dir: output folder (default: <repo>/reports).
    Returns:
        The written files (Markdown first, then figures, then reports/verdicts.json when the
        experiment judges a claim: its entries there are replaced, the others kept).
    """
    if experiment not in BUILDERS:
        raise ValueError(f"no report for experiment {experiment!r}; valid: {sorted(BUILDERS)}")
    rdir = Path(results_dir) if results_dir is not None else default_results_dir()
    odir = Path(reports_dir) if reports_dir is not None else repo_root() / "reports"
    records = list(iter_results(rdir, experiment))
    records = [r for r in records if r.get("experiment") == experiment]
    module = importlib.import_module(BUILDERS[experiment])
    written = list(module.build(records, odir))
    if hasattr(module, "verdicts"):
        from wm_bench.report import verdicts

        if records or (odir / verdicts.FILE).is_file():
            written.append(verdicts.write(experiment, module.verdicts(records), odir))
    return written


__all__ = ["BUILDERS", "build_pdf", "build_report"]
