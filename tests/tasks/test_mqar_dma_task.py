"""tasks/mqar_dma: variants differ by one factor, staged LR choice, cells, sizes, hashes, report."""

from __future__ import annotations

from pathlib import Path

import pytest
from task_results import write_fake_result

import wm_bench_tasks.mqar_dma as task
from wm_bench.config import RunConfig, config_hash, from_dict, to_dict
from wm_bench.sweep import group_cells


def fake_result(
    rdir: Path, cfg: RunConfig, acc: float | None, status: str = "ok", extra: dict | None = None
) -> None:
    """A result file with what the staged planner and the report read."""
    metrics = {} if acc is None else {"valid/accuracy": acc}
    error = None if status == "ok" else "boom"
    write_fake_result(
        rdir, cfg, metrics, higher_is_better=True, status=status, error=error, extra=extra
    )


DIAG = {
    "init": {
        "n_examples": 4,
        "layers": [
            {
                "layer": 0,
                "window": 8,
                "A": [0.0],
                "kept": {
                    "prev_token_values": 0.5,
                    "query_value": 0.5,
                    "diagonal": 0.12,
                    "prev_token": 0.2,
                },
                "bias_spread": {"median": 0.0, "min": 0.0, "max": 0.0},
            }
        ],
    },
    "final": {
        "n_examples": 4,
        "layers": [
            {
                "layer": 0,
                "window": 8,
                "A": [0.3],
                "kept": {
                    "prev_token_values": 0.25,
                    "query_value": 0.75,
                    "diagonal": 0.1,
                    "prev_token": 0.2,
                },
                "bias_spread": {"median": 1e-3, "min": 0.0, "max": 2e-2},
            }
        ],
    },
}


def mixer(cfg: RunConfig):
    return cfg.model.blocks[cfg.model.pattern].mixer


def test_cpu_scale_tunes_every_variant_and_seeds_the_core_ones_in_two_cells() -> None:
    assert list(task.SCALES) == ["smoke", "cpu", "small", "paper"]
    cpu = task.SCALES["cpu"]
    assert len(cpu.lrs) >= 3 and len(cpu.seeds) >= 3 and len(cpu.cells) >= 2
    first = cpu.cells[0]
    assert (first.seq_len, first.d_model, first.num_kv_pairs) == (64, 64, 8)
    assert cpu.cells[1].seq_len > first.seq_len
    assert {task.PAPER_FIG, *task.BASELINES} <= set(cpu.core)
    assert set(cpu.variants) == set(task.VARIANTS) == set(task.LANES)
    assert sum(v.ours for v in task.VARIANTS.values()) <= 2
    assert "paper-figure" in task.__doc__ and "ours" in task.__doc__


def test_each_variant_is_its_factor() -> None:
    cell = task.SCALES["cpu"].cells[0]
    m = {v: mixer(task.make_run("cpu", v, cell, 1e-3, 0)) for v in task.VARIANTS}
    assert m["qcattn"].name == "qcattn" and not m["qcattn"].qk_norm and m["qcattn_qknorm"].qk_norm
    assert (m["dma_kv_qknorm"].window, m["dma_kv_qknorm"].qk_norm) == (8, True)
    assert (m["dma_kv"].window, m["dma_kv"].qk_norm) == (8, False)
    assert (m["dma_2kv"].window, m["dma_dense"].window, m["dma_dense_qknorm"].window) == (
        16,
        None,
        None,
    )
    fig = m["dma_paper_fig"]
    assert (fig.window, fig.a_init, fig.bias_form, fig.qk_norm) == (None, 1.0, "exp", False)
    assert all(m[v].a_init == 0.0 for v in ("dma_kv", "dma_2kv", "dma_dense", "dma_kv_qknorm"))
    assert (m["ours_dma_kv_a1"].window, m["ours_dma_kv_a1"].a_init) == (8, 1.0)
    temp = m["ours_dma_qknorm_temp"]
    assert temp.qk_norm and temp.window is None
    assert temp.qk_temperature == task.qk_temperature_init(64, 64) == pytest.approx(1.4972, 1e-4)
    assert (m["ssd"].name, m["ssd"].d_state, m["ssd"].n_heads) == ("ssd", 128, 1)
    assert (m["mamba2"].name, m["mamba2"].expand, m["mamba2"].d_state) == ("mamba2", 1, 128)
    # besides the named fields, the DMA variants share every field with the suite default
    base = m["dma_kv_qknorm"]
    for v in ("dma_kv", "dma_dense", "dma_2kv"):
        diff = {k for k in base.__dataclass_fields__ if getattr(base, k) != getattr(m[v], k)}
        assert diff <= {"window", "qk_norm"}


def test_configs_follow_the_mqar_recipe_and_round_trip() -> None:
    cfgs = task.runs("cpu", results_dir="/nonexistent")
    assert len({config_hash(c) for c in cfgs}) == len(cfgs) == task.planned_runs("cpu")["tune"]
    for cfg in cfgs[::5]:
        assert cfg.experiment == "mqar_dma" and cfg.model.n_layers == 2
        assert cfg.model.tie_embeddings and cfg.model.blocks["M"].ffn.name == "mlp"
        assert (cfg.optim.weight_decay, cfg.optim.min_lr_ratio) == (0.1, 0.0)
        assert cfg.train.early_stop_metric == "valid/accuracy"
        assert cfg.train.early_stop_value == 0.99
        assert cfg.data.num_kv_pairs == cfg.tags["num_kv_pairs"] and cfg.optim.lr == cfg.tags["lr"]
        assert cfg.tags["lane"] == task.LANES[cfg.variant]
        back = from_dict(RunConfig, to_dict(cfg))
        assert back == cfg and config_hash(back) == config_hash(cfg)


def test_staged_plan_adds_seeds_at_each_variants_best_lr(tmp_path: Path) -> None:
    scale = "cpu"
    s = task.SCALES[scale]
    first = task.runs(scale, results_dir=tmp_path)
    assert {c.seed for c in first} == {0} and {c.tags["cell"] for c in first} == {s.cells[0].key}
    # qcattn: the middle LR wins; dma_kv: all tie at 1/kv → the smallest LR; ssd: every LR failed
    accs = {"qcattn": [0.2, 0.99, 0.5], "dma_kv": [0.14, 0.14, 0.14], "ssd": [None, None, None]}
    for v, values in accs.items():
        for lr, acc in zip(s.lrs, values):
            cfg = task.make_run(scale, v, s.cells[0], lr, 0)
            fake_result(tmp_path, cfg, acc, "ok" if acc is not None else "failed")
    assert task.best_lr(scale, "qcattn", tmp_path) == s.lrs[1]
    assert task.best_lr(scale, "dma_kv", tmp_path) == s.lrs[0]
    assert task.best_lr(scale, "ssd", tmp_path) is None
    assert task.best_lr(scale, "dma_dense", tmp_path) is None  # not tuned yet
    second = task.runs(scale, results_dir=tmp_path)
    added = [c for c in second if config_hash(c) not in {config_hash(x) for x in first}]
    assert {c.variant for c in added} == {"qcattn", "dma_kv"}  # core variants with a best LR
    q = [c for c in added if c.variant == "qcattn"]
    assert {c.optim.lr for c in q} == {s.lrs[1]}
    want = {(s.cells[0].key, x) for x in s.seeds} | {
        (cell.key, x) for cell in s.cells[1:] for x in s.later_seeds
    }
    assert {(c.tags["cell"], c.seed) for c in q} == want - {(s.cells[0].key, 0)}
    assert len(q) == len(want) - 1  # the tune run is not repeated
    # a non-core variant adds nothing: its tune runs are all it has
    for lr in s.lrs:
        fake_result(tmp_path, task.make_run(scale, "dma_2kv", s.cells[0], lr, 0), 0.3)
    third = task.runs(scale, results_dir=tmp_path)
    assert len(third) == len(second)


def test_cell_key_groups_lr_and_seed_and_keeps_the_tune_stage_apart(tmp_path: Path) -> None:
    s = task.SCALES["cpu"]
    tune = task.tune_runs("cpu")
    cells = group_cells(tune, task.cell_key)
    assert len(cells) == len(s.variants)
    assert all(len(m) == len(s.lrs) for m in cells.values())
    seeds = task.seed_runs("cpu", "qcattn", s.lrs[0])
    keys = {task.cell_key(c) for c in seeds}
    assert not keys & set(cells) and len(keys) == len(s.cells)


def test_sizes_and_estimates() -> None:
    for scale in task.SCALES:
        n = task.planned_runs(scale)
        s = task.SCALES[scale]
        assert n["tune"] == len(s.variants) * len(s.lrs)
    assert task.planned_runs("cpu") == {"tune": 36, "seeds": 24, "total": 60}
    assert len(task.runs("smoke", results_dir="/nonexistent")) == 24
    # the cpu budget: each of the two lanes (run side by side, one thread each) ≤ 90 min
    lanes = [task.estimate_minutes("cpu", lane) for lane in (0, 1)]
    assert all(0 < m <= 90 for m in lanes)
    assert sum(lanes) == pytest.approx(task.estimate_minutes("cpu"))


def test_unknown_names_raise_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"valid: \['smoke', 'cpu', 'small', 'paper'\]"):
        task.runs("huge")
    with pytest.raises(ValueError, match="unknown variant 'gla'"):
        task.mixer_config("gla", task.SCALES["cpu"].cells[0])
    with pytest.raises(ValueError, match="window spec '3kv'"):
        task.SCALES["cpu"].cells[0].window("3kv")
    with pytest.raises(ValueError, match="unknown variant"):
        task.Scale(cells=task.CELLS_CPU, lrs=(1e-3,), seeds=(0,), core=("nope",))


def test_report_renders_from_fake_results(tmp_path: Path) -> None:
    from wm_bench.report import build_report

    s = task.SCALES["cpu"]
    accs = {"qcattn": 0.99, "ssd": 0.13, "dma_paper_fig": 0.995, "dma_kv": 0.14, "dma_dense": 0.99}
    for v, acc in accs.items():
        extra = {"mask_diagnostics": DIAG} if v.startswith("dma") else None
        for lr in s.lrs:
            fake_result(tmp_path, task.make_run("cpu", v, s.cells[0], lr, 0), acc, extra=extra)
        for cfg in task.seed_runs("cpu", v, s.lrs[0]):
            fake_result(tmp_path, cfg, acc + 0.001 * cfg.seed, extra=extra)
    fake_result(tmp_path, task.make_run("cpu", "dma_2kv", s.cells[0], 1e-2, 0), None, "failed")
    paths = build_report("mqar_dma", tmp_path, tmp_path / "reports")
    md = paths[0].read_text()
    assert "## CPU scale" in md and "Mask diagnostics" in md and "C2 mechanism" in md
    assert "Claim C2 on the paper-figure form" in md and "**Verdict (cpu scale" in md
    assert "DMA w = kv" in md and "0.001 (of 3)" in md
    assert "50 % → 25 %" in md and "0 → 0.3" in md  # prev-token kept, A: init → final
    assert "Factors with a decided effect" in md and "### Failed runs" in md
    assert "- no window vs w = kv (no QK-norm) (L64-d64-kv8): DMA no window" in md


def test_smoke_report_draws_no_verdict(tmp_path: Path) -> None:
    from wm_bench.report.mqar_dma import render

    s = task.SCALES["smoke"]
    tmp = tmp_path / "r"
    for v in ("qcattn", "ssd", "dma_paper_fig"):
        fake_result(tmp, task.make_run("smoke", v, s.cells[0], s.lrs[0], 0), 0.5)
    from wm_bench.results import iter_results

    md = render(list(iter_results(tmp, "mqar_dma")))
    assert "No mechanism is drawn at the smoke scale" in md and "No verdict at the smoke" in md
