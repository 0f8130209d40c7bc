"""tasks/passkey: models, scales and budget, hashes, cells; the report and its heat maps."""

from __future__ import annotations

from pathlib import Path

import pytest
from task_results import write_fake_result

import wm_bench_tasks.passkey as task
from wm_bench.config import RunConfig, config_hash, from_dict, to_dict
from wm_bench.sweep import group_cells


def test_scales_models_and_budget() -> None:
    assert list(task.SCALES) == ["smoke", "cpu", "small", "paper"]
    assert task.MODELS == ("qcattn", "dma_dense", "dma_window", "ssd", "cheems")
    cpu = task.SCALES["cpu"]
    assert max(cpu.test_lengths) > cpu.seq_len  # an extrapolation row
    assert 0.0 in cpu.test_depths and 1.0 in cpu.test_depths and len(cpu.test_depths) >= 5
    assert 0 < task.estimate_minutes("cpu") <= 45
    for big in ("small", "paper"):
        assert task.SCALES[big].seq_len >= 2048 and task.SCALES[big].n_layers >= 4


def test_each_model_is_what_it_says() -> None:
    cfgs = {m: task.model_config("cpu", m) for m in task.MODELS}
    s = task.SCALES["cpu"]

    def mixers(m: str) -> dict[str, object]:
        return {k: b.mixer for k, b in cfgs[m].blocks.items()}

    (q,) = mixers("qcattn").values()
    assert q.name == "qcattn" and not q.qk_norm
    (d,) = mixers("dma_dense").values()
    (w,) = mixers("dma_window").values()
    assert (d.name, d.window, d.qk_norm, d.a_init) == ("dma", None, True, 0.0)
    assert w.window == s.window < s.seq_len and (w.qk_norm, w.a_init) == (True, 0.0)
    (ssd,) = mixers("ssd").values()
    assert ssd.name == "ssd"
    hyb = cfgs["cheems"]
    assert hyb.pattern == "S" * (s.n_layers - 1) + "D"
    assert (hyb.blocks["S"].mixer.name, hyb.blocks["D"].mixer) == ("ssd", d)
    assert all(c.n_layers == s.n_layers and c.tie_embeddings for c in cfgs.values())
    with pytest.raises(ValueError, match="unknown model 'rwkv'"):
        task.model_config("cpu", "rwkv")
    with pytest.raises(ValueError, match=r"valid: \['smoke', 'cpu', 'small', 'paper'\]"):
        task.runs("huge")


@pytest.mark.parametrize("scale", list(task.SCALES))
def test_runs_hash_uniquely_round_trip_and_group_by_model(scale: str) -> None:
    cfgs = task.runs(scale)
    s = task.SCALES[scale]
    assert len(cfgs) == len(s.models) * len(s.seeds)
    assert len({config_hash(c) for c in cfgs}) == len(cfgs)
    for cfg in cfgs:
        assert cfg.data.name == "passkey" and cfg.data.vocab_size == cfg.model.vocab_size
        assert cfg.data.test_lengths == s.test_lengths and cfg.train.early_stop_value == 0.99
        back = from_dict(RunConfig, to_dict(cfg))
        assert back == cfg and config_hash(back) == config_hash(cfg)
    cells = group_cells(cfgs, task.cell_key)
    assert len(cells) == len(s.models)


def fake(rdir: Path, model: str, grid: dict[tuple[int, float], float], status: str = "ok") -> None:
    from wm_bench.metric_names import passkey_cell

    cfg = task.make_run("cpu", model, 0)
    metrics = {passkey_cell(n, d): v for (n, d), v in grid.items()} if status == "ok" else {}
    error = None if status == "ok" else "x"
    write_fake_result(rdir, cfg, metrics, higher_is_better=True, status=status, error=error)


def test_report_has_a_heat_map_and_a_table_per_model(tmp_path: Path) -> None:
    from wm_bench.report import build_report

    s = task.SCALES["cpu"]
    cells = [(n, d) for n in s.test_lengths for d in s.test_depths]
    fake(tmp_path, "qcattn", {(n, d): 1.0 if n <= s.seq_len else 0.25 for n, d in cells})
    fake(tmp_path, "dma_window", {(n, d): 1.0 if d == 0.0 else 0.0 for n, d in cells})
    fake(tmp_path, "ssd", {}, status="failed")
    paths = build_report("passkey", tmp_path, tmp_path / "reports")
    md = paths[0].read_text()
    assert paths[1].name == "passkey-cpu.png" and paths[1].stat().st_size > 5000
    assert "### QCAttn (1 run(s))" in md and "### DMA, window (1 run(s))" in md
    assert "| 256 (extrap.) | 0.25 |" in md and "| 128 (train) | 1.00 |" in md
    assert "| QCAttn | 1 | 0.75 | 1.00 | 0.25 |" in md  # grid mean, at training length, beyond
    assert "### Failed runs" in md and "ssd" in md


def test_the_new_reports_import_no_torch(tmp_path: Path, report_imports_none) -> None:
    report_imports_none(["passkey", "mqar_dma"], tmp_path, tmp_path / "rep")
