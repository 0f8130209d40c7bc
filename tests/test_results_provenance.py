"""Every committed result file says where it came from: a provenance block with the commit, the
package versions and the device (runs, benchmark JSONs and sweep study files alike)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_committed_result_file_has_a_provenance_block() -> None:
    files = sorted(f for f in (ROOT / "results").rglob("*.json") if not f.name.startswith("."))
    assert files, "no result files found"
    missing = []
    for f in files:
        doc = json.loads(f.read_text())
        prov = doc.get("provenance") if isinstance(doc, dict) else None
        if not (isinstance(prov, dict) and prov.get("git_commit") and prov.get("versions")):
            missing.append(str(f.relative_to(ROOT)))
    assert not missing, "result files without a provenance block:\n" + "\n".join(missing)
