"""wm_bench.migrate_paths: absolute paths made relative, config and metrics left untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wm_bench.config import DownstreamConfig, RunConfig, config_hash, run_from_dict, to_dict
from wm_bench.data.lm import LMDataConfig
from wm_bench.migrate_paths import main, migrate_record, portable
from wm_bench.presets import preset
from wm_bench.results import make_result, repo_root, write_json_atomic, write_result

ROOT = "/work/main"  # the repository root of the (other) machine that made the fixture


def _record(eval_data: str | None = None) -> dict:
    down = DownstreamConfig(tasks=("arc_easy", "mmlu"), shots=(0,), eval_data=eval_data)
    model = preset("llama", "tiny", vocab_size=300)
    data = LMDataConfig(corpus="debian", vocab_size=300, seq_len=48)
    cfg = RunConfig(experiment="arch", variant="llama", model=model, data=data, downstream=down)
    where = "/work/shared/data/eval"
    extra = {
        "downstream": {
            "eval_data": where,
            "not_run": {"mmlu": f"not run: no data (mmlu.jsonl not in {where})"},
        },
        "model_dir": f"{ROOT}/outputs/models/arch/smoke/llama__x",
        "note": "copied from /opt/elsewhere/file.txt.",  # outside the checkout and beside it
    }
    return make_result(
        experiment="arch",
        variant="llama",
        seed=0,
        scale="smoke",
        config=to_dict(cfg),
        config_hash=config_hash(cfg),
        status="ok",
        metrics={"valid/loss": 3.25, "downstream/arc_easy@0shot/acc": 0.5},
        higher_is_better={"valid/loss": False, "downstream/arc_easy@0shot/acc": True},
        extra=extra,
    )


def _hash_holds(rec: dict) -> bool:
    return config_hash(run_from_dict(rec["config"])) == rec["config_hash"]


def test_portable_is_relative_to_the_root_or_beside_it() -> None:
    assert portable(f"{ROOT}/outputs/m", ROOT) == "outputs/m"
    assert portable(ROOT, ROOT) == "."
    assert portable("/work/shared/data/eval", ROOT) == "../shared/data/eval"
    assert portable("/opt/x", ROOT) is None


def test_migration_rewrites_paths_in_place_once_and_keeps_config_and_metrics(
    tmp_path: Path, capsys
) -> None:
    rec = _record()
    f = write_json_atomic(tmp_path / "arch" / "smoke" / "llama.json", rec)
    assert _hash_holds(rec)
    assert main([str(tmp_path), "--check", "--root", ROOT]) == 1
    out = capsys.readouterr().out
    assert "extra.downstream.eval_data = /work/shared/data/eval" in out
    assert "extra.model_dir" in out and "1 of 1 files hold an absolute path" in out
    assert json.loads(f.read_text()) == rec  # --check changes nothing

    assert main([str(tmp_path), "--root", ROOT]) == 1  # the /opt path stays: outside the checkout
    new = json.loads(f.read_text())
    assert new["config"] == rec["config"] and new["config_hash"] == rec["config_hash"]
    assert new["metrics"] == rec["metrics"] and _hash_holds(new)
    down = new["extra"]["downstream"]
    assert down["eval_data"] == "../shared/data/eval"
    assert down["not_run"]["mmlu"] == "not run: no data (mmlu.jsonl not in ../shared/data/eval)"
    assert new["extra"]["model_dir"] == "outputs/models/arch/smoke/llama__x"
    assert new["extra"]["note"] == "copied from /opt/elsewhere/file.txt."
    assert "absolute path in" in capsys.readouterr().out

    text = f.read_text()
    assert main([str(tmp_path), "--root", ROOT]) == 1  # idempotent: nothing left to rewrite
    assert f.read_text() == text
    assert "0 of 1 files rewritten" in capsys.readouterr().out


def test_config_is_never_rewritten_even_when_it_holds_a_path(tmp_path: Path, capsys) -> None:
    rec = _record(eval_data=f"{ROOT}/data/eval")  # a runtime field: not in the hash
    new, fields = migrate_record(rec, ROOT)
    assert new["config"] == rec["config"] and _hash_holds(new)
    assert "config.downstream.eval_data" not in fields and "extra.model_dir" in fields
    write_json_atomic(tmp_path / "r.json", rec)
    assert main([str(tmp_path / "r.json"), "--root", ROOT]) == 1
    assert "config.downstream.eval_data" in capsys.readouterr().out  # listed, left alone


def test_clean_files_pass_the_check_and_bad_input_is_one_error(tmp_path: Path, capsys) -> None:
    rec = _record()
    clean, _ = migrate_record(rec, ROOT)
    clean["extra"].pop("note")
    write_json_atomic(tmp_path / "ok.json", clean)
    assert main([str(tmp_path), "--check", "--root", ROOT]) == 0
    assert "no absolute paths in 1 files" in capsys.readouterr().out
    assert main([str(tmp_path / "nope"), "--check"]) == 2
    assert "'" + str(tmp_path / "nope") + "' is neither" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main([str(tmp_path), "--check"]) == 2
    assert "bad.json: not a readable JSON file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, found",
    [
        ("not in /work/shared/data/eval)", ["/work/shared/data/eval"]),
        ("see /tmp/a/b.", ["/tmp/a/b"]),
        ("https://example.org/home/a and a/tmp/b and /workspace", []),
        ("C:\\Users\\me\\run", ["C:\\Users\\me\\run"]),
    ],
)
def test_what_counts_as_an_absolute_machine_path(text: str, found: list[str]) -> None:
    from wm_bench.migrate_paths import ABSOLUTE_PATH

    assert [m.group(0) for m in ABSOLUTE_PATH.finditer(text)] == found


def test_new_results_are_written_without_the_checkout_path(tmp_path: Path) -> None:
    rec = _record()
    rec["error"] = f'Traceback:\n  File "{repo_root() / "wm_bench" / "cli.py"}", line 1'
    rec["extra"]["model_dir"] = str(repo_root() / "outputs" / "models" / "m")
    written = json.loads(write_result(rec, tmp_path).read_text())
    assert written["error"] == 'Traceback:\n  File "wm_bench/cli.py", line 1'
    assert written["extra"]["model_dir"] == "outputs/models/m"
    assert written["config"] == rec["config"] and written["metrics"] == rec["metrics"]


@pytest.mark.parametrize("root", ["/check/work/main", "/builds/ci/wm_bench"])
def test_a_checkout_under_any_top_folder_is_made_relative(root: str) -> None:
    # CI clones under /check/…, which the generic pattern does not know: the checkout itself must
    # still be recognised, and a sibling folder that only shares a name prefix must not be.
    parent = root.rsplit("/", 1)[0]
    rec = _record()
    rec["error"] = f'File "{root}/wm_bench/cli.py", line 1; data in {parent}/shared/eval.'
    rec["extra"]["model_dir"] = f"{root}x/outputs"
    new, fields = migrate_record(rec, root)
    assert new["error"] == 'File "wm_bench/cli.py", line 1; data in ../shared/eval.'
    assert new["extra"]["model_dir"] == f"../{root.rsplit('/', 1)[1]}x/outputs"
    assert "error" in fields and new["config"] == rec["config"]
