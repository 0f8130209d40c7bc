"""Packaged downstream data: manifest, notice, sha256 checks, resolution order, symbolic labels."""

from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path

import pytest

from wm_bench.eval import downstream, packaged
from wm_bench.results import portable_path, repo_root

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty suite cache and no $WM_BENCH_EVAL_DATA: the packaged data is the default."""
    monkeypatch.setenv("WM_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(downstream.ENV_VAR, raising=False)
    return tmp_path / "cache"


def test_manifest_notice_and_package_data_agree() -> None:
    manifest = packaged.load_manifest()
    files = manifest["files"]
    tasks = {t.file: k for k, t in downstream.TASKS.items()}
    assert len(files) == 9 and set(files) <= set(tasks)
    assert {tasks[f] for f in files} == set(downstream.TASKS) - {"mmlu", "hellaswag"}
    notice = (packaged.DATA_DIR / "NOTICE.md").read_text()
    for name, entry in files.items():
        assert entry["task"] == tasks[name]
        row = next(line for line in notice.splitlines() if line.startswith(f"| `{name}`"))
        assert entry["sha256"] in row and f"| {entry['rows']} |" in row and entry["licence"] in row
    xz = sum((packaged.DATA_DIR / e["xz"]).stat().st_size for e in files.values())
    assert xz <= 3 * 2**20  # the limit
    tomllib = pytest.importorskip("tomllib")
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = globs["package-data"]["wm_bench"]
    shipped = {p.name for g in globs for p in (ROOT / "wm_bench").glob(g)}
    assert {e["xz"] for e in files.values()} | {"manifest.json", "NOTICE.md"} <= shipped


def test_packaged_data_decompresses_once_and_matches_its_sha256(cache: Path) -> None:
    folder = packaged.packaged_eval_data()
    assert folder.parent == cache / "eval_data"
    files = packaged.load_manifest()["files"]
    for name, entry in files.items():
        assert packaged.sha256_file(folder / name) == entry["sha256"]
        assert len((folder / name).read_bytes().splitlines()) == entry["rows"]
    stamp = {n: (folder / n).stat().st_mtime_ns for n in files}
    assert packaged.packaged_eval_data() == folder  # second load: checked, not rewritten
    assert {n: (folder / n).stat().st_mtime_ns for n in files} == stamp


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "pkg"
    shutil.copytree(packaged.DATA_DIR, src)
    return src


def test_a_corrupt_packaged_file_is_one_error_naming_it(tmp_path: Path) -> None:
    src = _copy_package(tmp_path)
    (src / "piqa.jsonl.xz").write_bytes(lzma.compress(b'{"query": "changed"}\n'))
    with pytest.raises(packaged.EvalDataError, match=r"piqa\.jsonl\.xz decompresses to sha256"):
        packaged.packaged_eval_data(src, tmp_path / "c1")
    (src / "piqa.jsonl.xz").write_bytes(b"not xz at all")
    with pytest.raises(packaged.EvalDataError, match=r"piqa\.jsonl\.xz is not a valid xz file"):
        packaged.packaged_eval_data(src, tmp_path / "c2")
    (src / "piqa.jsonl.xz").unlink()
    with pytest.raises(packaged.EvalDataError, match=r"piqa\.jsonl\.xz is missing"):
        packaged.packaged_eval_data(src, tmp_path / "c3")
    assert issubclass(packaged.EvalDataError, ValueError)  # the CLI's one-line `error: …`
    assert not list((tmp_path / "c1").rglob("piqa.jsonl*"))  # nothing half-written left behind


def test_a_changed_cached_copy_is_decompressed_again(tmp_path: Path, capsys) -> None:
    src = _copy_package(tmp_path)
    folder = packaged.packaged_eval_data(src, tmp_path / "c")
    (folder / "copa.jsonl").write_text("{}\n")
    assert packaged.packaged_eval_data(src, tmp_path / "c") == folder
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cached" in err and "copa.jsonl does not match" in err
    want = packaged.load_manifest(src)["files"]["copa.jsonl"]["sha256"]
    assert packaged.sha256_file(folder / "copa.jsonl") == want


def test_a_manifest_entry_without_sha256_is_refused(tmp_path: Path) -> None:
    src = _copy_package(tmp_path)
    manifest = json.loads((src / "manifest.json").read_text())
    del manifest["files"]["copa.jsonl"]["sha256"]
    (src / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(packaged.EvalDataError, match="manifest.json has no 'files' map"):
        packaged.packaged_eval_data(src, tmp_path / "c")


def test_resolution_order_is_flag_then_variable_then_package(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, env = tmp_path / "flag", tmp_path / "env"
    flag.mkdir()
    env.mkdir()
    path, label = downstream.resolve_eval_source(None)
    assert label == "package:eval" and path.parent == cache / "eval_data"
    monkeypatch.setenv(downstream.ENV_VAR, str(env))
    assert downstream.resolve_eval_source(None) == (env, "$WM_BENCH_EVAL_DATA")
    assert downstream.resolve_eval_source(flag) == (flag, str(flag))  # outside the repo: as given
    monkeypatch.setenv(downstream.ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"\$WM_BENCH_EVAL_DATA=.*nope.* not a directory"):
        downstream.resolve_eval_source(None)
    with pytest.raises(FileNotFoundError, match=r"--eval-data .*missing.* not a directory"):
        downstream.resolve_eval_source(tmp_path / "missing")


def test_paths_are_recorded_relative_to_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = repo_root()
    assert portable_path(root / "outputs" / "models" / "x") == "outputs/models/x"
    assert portable_path(root) == "."
    monkeypatch.chdir(root / "wm_bench")
    assert portable_path("../tests") == "tests"  # relative to the working directory, resolved
    assert portable_path(tmp_path / "d") == str(tmp_path / "d")  # outside: as the user gave it
    assert portable_path("../../elsewhere") == "../../elsewhere"
    path, label = downstream.resolve_eval_source(root / "tests")
    assert label == "tests" and path == root / "tests"


def test_not_run_reasons_name_the_source_not_the_folder(cache: Path) -> None:
    folder = packaged.packaged_eval_data()
    run, skipped = downstream.plan(["arc_easy", "mmlu"], folder, "local", "package:eval")
    assert run == ["arc_easy"]
    assert skipped == {"mmlu": "not run: no data (mmlu.jsonl not in package:eval)"}


def test_saved_models_are_recorded_without_the_machine_path(tmp_path: Path) -> None:
    from wm_bench.train.run import recorded_model_dir

    inside = repo_root() / "outputs" / "models" / "arch" / "cpu" / "r"
    assert recorded_model_dir(inside, repo_root() / "outputs") == "outputs/models/arch/cpu/r"
    out = tmp_path / "out"
    assert recorded_model_dir(out / "models" / "a" / "r", out) == "<out-dir>/models/a/r"
