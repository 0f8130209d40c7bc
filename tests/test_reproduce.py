"""`wm-bench reproduce`: a smoke run writes valid results and a report, and a rerun resumes."""

from __future__ import annotations

from wm_bench.cli import main
from wm_bench.results import iter_results, validate

SMOKE = ["reproduce", "mqar", "--scale", "smoke", "--quiet"]


def test_smoke_reproduce_writes_results_and_report_then_resumes(reproduce_dirs, tmp_path, capsys):
    assert main([*SMOKE, "--only", "mixer=qcattn", "--only", "seq_len=64", *reproduce_dirs]) == 0
    recs = list(iter_results(tmp_path / "res"))
    assert len(recs) == 1 and recs[0]["status"] == "ok"
    validate(recs[0])
    assert recs[0]["config"]["tags"]["mixer"] == "qcattn"
    assert "valid/accuracy" in recs[0]["metrics"]
    report = (tmp_path / "rep" / "mqar.md").read_text()
    assert "## smoke" in report and "QCAttn" in report
    assert (tmp_path / "rep" / "mqar-smoke.png").stat().st_size > 0
    assert (tmp_path / "out" / "optuna" / "mqar-smoke.journal").exists()
    capsys.readouterr()

    # the same cell again: nothing reruns
    assert main([*SMOKE, "--only", "mixer=qcattn", *reproduce_dirs]) == 0
    out = capsys.readouterr().out
    assert "done before" in out or "skipped" in out
    assert len(list(iter_results(tmp_path / "res"))) == 1


def test_only_with_an_unknown_tag_names_the_valid_tags(reproduce_dirs, tmp_path, capsys):
    assert main([*SMOKE, "--only", "colour=red", *reproduce_dirs]) == 2
    err = capsys.readouterr().err
    assert "colour" in err and "mixer" in err and "seq_len" in err


def test_limit_zero_is_a_one_line_error(reproduce_dirs, tmp_path, capsys):
    assert main([*SMOKE, "--limit", "0", *reproduce_dirs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--limit" in err and "'0'" in err and err.count("\n") == 1


def test_only_matching_nothing_runs_nothing_and_says_so(reproduce_dirs, tmp_path, capsys):
    assert main([*SMOKE, "--only", "mixer=nosuch", *reproduce_dirs]) == 2
    assert "nothing to run" in capsys.readouterr().err
