"""SSD benchmark: static bounds without timings, the pipeline on fakes, the interpreter run."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from wm_bench.bench import roofline as rl
from wm_bench.bench import ssd
from wm_bench.bench.ssd import SHAPES, Case, build_cases, case_bounds, main
from wm_bench.bench.ssd_impls import SSD_ARGS, Impl, fla_inputs
from wm_bench.bench.ssd_measure import Settings, bench_ssd
from wm_bench.kernels.ssd import chunk_ssd

TIMING_KEYS = ("fwd_ms", "fwd_bwd_ms", "fwd_graph_ms", "achieved_gbps", "pct_of_roofline")


def _keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _keys(v)}
    return set()


def test_cases_listed_shapes_first_then_the_sweep_without_its_duplicate():
    cases = build_cases("all", ssd.SWEEP_T, interpret=False)
    assert [c.name for c in cases[:3]] == list(SHAPES)
    sweep = [c for c in cases if c.group == "sweep"]
    assert [c.T for c in sweep] == [512, 1024, 4096, 8192, 16384, 32768]  # 2048 is shape 1
    assert all(c.layout == (32, 64, 1, 128) and c.B == 8 for c in sweep)
    assert [c.name for c in build_cases("shapes", ssd.SWEEP_T, False)] == list(SHAPES)
    assert build_cases("sweep", ssd.SWEEP_T, False) == sweep
    assert [c.name for c in build_cases("cheems_b8_t2k,sweep_t512", (512,), False)] == [
        "cheems_b8_t2k",
        "sweep_t512",
    ]
    with pytest.raises(ValueError, match="nope.*valid"):
        build_cases("nope", (), interpret=False)


def test_bounds_use_the_anchor_minimum_bytes():
    b = case_bounds(Case("m", *SHAPES["mamba2_b8_t2k"], "shape"), 2)
    # docs/anchors.md §2: mamba_ssm's graph-replayed forward, 0.298 ms, is 482 GB/s of these bytes.
    assert rl.achieved_gbps(b["fwd"]["bytes"], 0.298) == pytest.approx(482, abs=1)
    assert b["fwd_bwd"]["bytes"] == 2 * b["fwd"]["bytes"]
    assert b["fwd"]["bound"] == "memory" and b["fwd"]["lower_bound_ms"] > 0


@pytest.mark.usefixtures("no_kernel_device")
def test_without_cuda_static_table_exit_0_and_no_timings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WM_BENCH_RESULTS", str(tmp_path))
    assert main([]) == 0
    text = capsys.readouterr().out
    assert "no CUDA: timings not measured" in text and "cheems_b8_t2k" in text
    assert not any(tmp_path.rglob("*")), "the static mode writes no file unless --out is given"
    out = tmp_path / "static.json"
    assert main(["--static", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["mode"] == "static" and rec["gpu_timings"] is False
    assert not _keys(rec) & set(TIMING_KEYS), "a static record holds no measured numbers"
    assert all(c["bounds"]["fwd"]["lower_bound_ms"] > 0 for c in rec["cases"])


def test_fla_mapping_shapes_and_values():
    x, dt = torch.randn(1, 5, 4, 3), torch.rand(1, 5, 4)
    A, B, C = -torch.rand(4), torch.randn(1, 5, 2, 6), torch.randn(1, 5, 2, 6)
    m = fla_inputs(x, dt, A, B, C)
    assert m["q"].shape == m["k"].shape == (1, 5, 4, 6)
    assert torch.equal(m["k"][:, :, 1], B[:, :, 0]) and torch.equal(m["q"][:, :, 2], C[:, :, 1])
    assert torch.allclose(m["v"], x * dt[..., None]) and torch.allclose(m["g"], dt * A)


# ---- the measuring pipeline on fake implementations, with the CUDA-only helpers faked --------

LAST, BWD = [""], [False]
MS = {"ours": (1.0, 2.0), "mamba_ssm": (2.0, 4.0), "fla": (0.5, None), "broken": (9.0, 9.0)}


class _Mark(torch.autograd.Function):
    """Identity that notes the backward ran (or refuses it, as fla's gated backward may)."""

    @staticmethod
    def forward(ctx, y, refuse):
        ctx.refuse = refuse
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        if ctx.refuse:
            raise RuntimeError("gated backward refused on this GPU (#640)")
        BWD[0] = True
        return g, None


def _fake(name: str, scale: float = 1.0, refuse: bool = False) -> Impl:
    def fn(x, dt, A, B, C, *, chunk):
        LAST[0] = name
        return _Mark.apply(chunk_ssd(x, dt, A, B, C, chunk_size=chunk)[0] * scale, refuse)

    def timed(inp, chunk):
        return partial(fn, chunk=chunk), [inp[k] for k in SSD_ARGS]

    return Impl(name, "ours" if name == "ours" else "anchor", {}, fn, timed, "fake")


def _fake_timer(s):
    def timer(fn):
        BWD[0] = False
        fn()
        return MS[LAST[0]][1 if BWD[0] else 0]

    return timer


class _FakeCuda(Settings):
    @property
    def cuda(self) -> bool:
        return True


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    impls = [_fake("ours"), _fake("mamba_ssm"), _fake("fla", refuse=True), _fake("broken", 1.5)]
    monkeypatch.setattr("wm_bench.bench.ssd_impls.load_impls", lambda n, interpret: (impls, {}))
    monkeypatch.setattr("wm_bench.bench.ssd_measure._timer", _fake_timer)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    fake_gpu = {"type": "cuda", "name": "Fake GPU"}
    monkeypatch.setattr("wm_bench.bench.cuda_timing.device_info", lambda d: fake_gpu)
    monkeypatch.setattr("wm_bench.bench.cuda_timing.peak_mib", lambda fn: (fn(), 64.0)[1])

    def graph(fn, **kw):
        fn()
        if LAST[0] == "mamba_ssm":
            raise RuntimeError("operation not permitted when stream is capturing")
        return MS[LAST[0]][0] / 2

    monkeypatch.setattr("wm_bench.bench.cuda_timing.graph_bench_ms", graph)
    cases = [
        Case("tiny_a", 1, 40, 2, 16, 1, 16, "shape"),
        Case("tiny_b", 2, 40, 2, 16, 1, 16, "shape"),
    ]
    s = _FakeCuda(chunk=16, dtype="float32", device="cpu", check_max_tokens=40)
    out = tmp_path / "ssd-fake.json"
    rec = bench_ssd(cases, ["ours", "mamba_ssm", "fla", "broken"], s, out, progress=False)
    return rec, out


def test_pipeline_checks_before_timing_and_reports_each_outcome(fake_run):
    rec, out = fake_run
    assert json.loads(out.read_text()) == json.loads(json.dumps(rec))
    first, second = rec["cases"]
    ours = first["results"]["ours"]
    assert ours["status"] == "ok" and ours["check"]["max"] < 1e-5
    assert set(ours["check"]) >= {"y", "dx", "ddt", "dA", "dB", "dC"}
    assert (ours["fwd_ms"], ours["fwd_bwd_ms"], ours["fwd_graph_ms"]) == (1.0, 2.0, 0.5)
    gbps = ours["fwd_roofline"]["achieved_gbps"]
    assert gbps == pytest.approx(first["bounds"]["fwd"]["bytes"] / 1e-3 / 1e9)
    assert ours["peak_fwd_bwd_mib"] == 64.0
    mamba = first["results"]["mamba_ssm"]
    assert mamba["fwd_graph_ms"] is None and "capturing" in mamba["graph_error"]
    fla = first["results"]["fla"]  # backward refused: forward still timed, fwd+bwd not
    assert fla["status"] == "fwd-only" and "#640" in fla["bwd_error"]
    assert fla["fwd_ms"] == 0.5 and fla["fwd_bwd_ms"] is None
    broken = first["results"]["broken"]  # wrong forward: reported as wrong, never timed
    assert broken["status"] == "wrong" and broken["check"]["y"] > 0.1
    assert not set(broken) & set(TIMING_KEYS)
    # tiny_b (B·T = 80 > 40) inherits the verdicts of tiny_a instead of a new fp64 reference
    assert second["results"]["ours"]["check"]["inherited_from"] == "tiny_a"
    assert second["results"]["broken"]["status"] == "wrong"
    assert first["ratios"]["mamba_ssm"]["fwd_bwd_ms"] == 0.5
    assert rec["goals"]["fwd_bwd_at_most_0.8x_mamba_ssm"]["met"] is True
    assert rec["goals"]["peak_fwd_bwd_at_most_mamba_ssm"]["met"] is True
    assert rec["goals"]["fwd_at_least_50pct_roofline_T8k"]["met"] is None  # no T ≥ 8K case
    rows = ssd.result_rows(rec)
    assert {(r["case"], r["impl"]) for r in rows} >= {("tiny_a", "ours"), ("tiny_b", "fla")}


def test_budget_spent_marks_cases_skipped(tmp_path, monkeypatch):
    cases = [Case("tiny", 1, 16, 2, 16, 1, 16, "shape")]
    s = Settings(chunk=16, dtype="float32", device="cpu", budget_s=-1.0)
    rec = bench_ssd(cases, ["ours"], s, None, progress=False)
    assert "time budget" in rec["cases"][0]["skipped"] and not rec["cases"][0]["results"]


@pytest.mark.interpret
@pytest.mark.usefixtures("interpreter")
def test_interpret_mode_writes_correctness_for_our_kernel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WM_BENCH_RESULTS", str(tmp_path))
    assert main(["--interpret", "--quiet"]) == 0
    rec = json.loads((tmp_path / "bench" / "ssd-cpu-interpret.json").read_text())
    assert rec["mode"] == "interpret" and rec["gpu_timings"] is False
    assert rec["settings"]["dtype"] == "float32" and rec["settings"]["chunk"] == 16
    ours = rec["cases"][0]["results"]["ours"]
    assert ours["status"] == "ok", ours
    for name in ("y", "dx", "ddt", "dA", "dB", "dC"):
        assert ours["check"][name] < 1e-3, (name, ours["check"])
    assert ours["fwd_ms"] > 0 and ours["fwd_bwd_ms"] > 0
    assert "fwd_roofline" not in ours, "no GB/s or % of the H100 from interpreter wall clock"
    assert "interpreter" in capsys.readouterr().out.lower()
