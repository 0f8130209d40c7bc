"""The MQAR report: golden Markdown from fixture results, figure written, PDF opens, no torch."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import pytest

from wm_bench.report import build_pdf, build_report
from wm_bench.report.mqar import gain
from wm_bench.results import make_result, write_result

GOLDEN = Path(__file__).parent / "golden" / "mqar.md"
BASE_ACC = {"based": 0.30, "qcattn": 0.50, "ssd": 0.20, "dma": 1.00}


def _provenance(commit: str, threads: int) -> dict:
    return {
        "git_commit": commit,
        "git_dirty": False,
        "versions": {"python": "3.12.0", "torch": "2.13.0", "wm_bench": "0.1.0"},
        "device": {"cpu_model": "Fixture CPU", "cpu_count": 2, "type": "cpu", "threads": threads},
        "platform": "Linux-fixture",
    }


def _write(
    results: Path,
    *,
    scale: str,
    seq_len: int,
    d: int,
    mixer: str,
    lr: float,
    seed: int,
    acc: float | None,
    wall: float | None,
    prov: dict,
) -> None:
    kv = seq_len // 4
    tags = {
        "seq_len": seq_len,
        "d_model": d,
        "mixer": mixer,
        "lr": lr,
        "num_kv_pairs": kv,
        "cell": f"L{seq_len}-d{d}-{mixer}",
    }
    ident = {"experiment": "mqar", "variant": mixer, "seed": seed, "scale": scale}
    h = hashlib.sha256(repr((scale, seq_len, d, mixer, lr, seed)).encode()).hexdigest()[:16]
    ok = acc is not None
    rec = make_result(
        **ident,
        config={**ident, "tags": tags},
        config_hash=h,
        status="ok" if ok else "failed",
        metrics={"valid/accuracy": acc, "valid/loss": 1.0} if ok else None,
        higher_is_better={"valid/accuracy": True, "valid/loss": False} if ok else None,
        timing={"wall_s": wall} if wall is not None else None,
        error=None if ok else "RuntimeError: fixture failure\nTraceback (most recent call last): …",
    )
    rec["provenance"] = prov
    rec["started_at"] = rec["finished_at"] = "2026-01-01T00:00:00+00:00"
    write_result(rec, results)


def write_fixture(results: Path) -> None:
    """cpu: L ∈ {64, 256} × d ∈ {32, 64} × 4 mixers × 2 LRs × 2 seeds, one failed run; smoke: 2."""
    prov = _provenance("a" * 40, 2)
    grid = itertools.product((64, 256), (32, 64), BASE_ACC.items(), (1e-3, 3e-3), (0, 1))
    for seq_len, d, (mixer, base), lr, seed in grid:
        acc = base + 0.1 * (d == 64) - 0.1 * (seq_len == 256)
        acc = min(1.0, acc + 0.05 * (lr == 3e-3) + 0.02 * seed)
        acc, wall = round(acc, 4), 1.5 * seq_len / 64 * d / 32
        if (seq_len, d, mixer, lr, seed) == (256, 64, "ssd", 3e-3, 1):
            acc, wall = None, None  # failed
        cell = {"seq_len": seq_len, "d": d, "mixer": mixer, "lr": lr, "seed": seed}
        _write(results, scale="cpu", **cell, acc=acc, wall=wall, prov=prov)
    smoke = _provenance("b" * 40, 1)
    for mixer, acc, wall in (("based", 0.125, 2.0), ("dma", None, None)):  # dma failed
        cell = {"seq_len": 64, "d": 32, "mixer": mixer, "lr": 3e-3, "seed": 0}
        _write(results, scale="smoke", **cell, acc=acc, wall=wall, prov=smoke)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    root = tmp_path_factory.mktemp("report")
    results, reports = root / "results", root / "reports"
    write_fixture(results)
    return results, reports, build_report("mqar", results, reports)


def test_mqar_markdown_matches_golden(built: tuple[Path, Path, list[Path]]) -> None:
    _, reports, paths = built
    text = (reports / "mqar.md").read_text()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert paths[0] == reports / "mqar.md"
    assert text == GOLDEN.read_text()


def test_mqar_report_is_deterministic(built: tuple[Path, Path, list[Path]], tmp_path: Path) -> None:
    results, reports, _ = built
    build_report("mqar", results, tmp_path)
    assert (tmp_path / "mqar.md").read_text() == (reports / "mqar.md").read_text()


def test_mqar_report_keeps_scales_apart_and_states_c2_cell(built) -> None:
    text = (built[1] / "mqar.md").read_text()
    assert text.index("## CPU scale") < text.index("## smoke (plumbing only, numbers meaningless)")
    assert "Verdict (cpu scale, L = 256, d = 64, kv = 64)" in text
    assert "RuntimeError: fixture failure" in text


def test_mqar_figures_written(built: tuple[Path, Path, list[Path]]) -> None:
    _, reports, paths = built
    for scale in ("cpu", "smoke"):
        png = reports / f"mqar-{scale}.png"
        assert png in paths
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mqar_report_states_whether_plus_150_percent_is_reachable(built) -> None:
    text = (built[1] / "mqar.md").read_text()
    assert "| 256 | 64 | 64 | 0.560 | 0.250 | over SSD only |" in text  # QCAttn > 0.40
    assert "unreachable (QCAttn 0.56 > 0.40)" in text
    assert "**Verdict (cpu scale, L = 256, d = 64, kv = 64): C2 inconclusive**" in text
    smoke = text.split("## smoke")[1].split("### Claim C2 at this scale")[1]
    assert smoke.lstrip().startswith("No verdict at the smoke scale")


def test_verdicts_json_has_one_entry_per_claim_and_scale(built) -> None:
    doc = json.loads((built[1] / "verdicts.json").read_text())
    got = [(e["claim"], e["scale"], e["verdict"]) for e in doc["verdicts"]]
    assert got == [("C2", "cpu", "inconclusive"), ("C2", "smoke", None)]
    cpu = doc["verdicts"][0]
    assert cpu["threshold"] == 0.99 and cpu["direction"] == "greater" and cpu["n"] == 2
    assert {"rule", "reason", "mde", "estimate", "ci_low", "ci_high"} <= set(cpu)


def test_verdicts_json_keeps_other_experiments_entries(built, tmp_path: Path) -> None:
    from wm_bench.report import verdicts

    verdicts.write("rope", [{"claim": "C1", "experiment": "rope", "scale": "cpu"}], tmp_path)
    build_report("mqar", built[0], tmp_path)
    claims = [e["claim"] for e in verdicts.load(tmp_path)]
    assert claims == ["C1", "C2", "C2"]


def test_pdf_opens_with_claims_at_a_glance(built, tmp_path: Path) -> None:
    from pypdf import PdfReader

    pdf = build_pdf(built[1])
    reader = PdfReader(pdf)
    assert len(reader.pages) >= 2
    first = reader.pages[0].extract_text()
    assert "Claims at a glance" in first and "C2" in first and "inconclusive" in first
    assert any("MQAR" in page.extract_text() for page in reader.pages[1:])
    assert any(page.images for page in reader.pages)  # the figures are embedded


def test_pdf_survives_missing_image(tmp_path: Path) -> None:
    from pypdf import PdfReader

    (tmp_path / "x.md").write_text("# Title X\n\n![gone](nothere.png)\n")
    reader = PdfReader(build_pdf(tmp_path))
    assert "figure missing: nothere.png" in reader.pages[0].extract_text()


def test_empty_results_give_a_report_that_says_so(tmp_path: Path) -> None:
    paths = build_report("mqar", tmp_path / "results", tmp_path / "reports")
    assert paths == [tmp_path / "reports" / "mqar.md"]
    assert "No results yet" in paths[0].read_text()


def test_build_report_rejects_unknown_experiment(tmp_path: Path) -> None:
    valid = r"valid: \['arch', 'expert_speed', 'ffn', 'mqar', 'mqar_dma', 'passkey', 'rope'\]"
    with pytest.raises(ValueError, match=valid):
        build_report("nope", tmp_path, tmp_path)


def test_gain_handles_zero_denominators() -> None:
    assert gain(1.0, 0.4) == pytest.approx(1.5)
    assert gain(0.5, 0.0) == float("inf")
    assert gain(0.0, 0.0) is None


def test_report_imports_no_torch(
    built: tuple[Path, Path, list[Path]], tmp_path: Path, report_imports_none
) -> None:
    report_imports_none(["mqar"], built[0], tmp_path)
