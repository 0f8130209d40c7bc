"""Attention benchmark: FLOP counts, the static table without CUDA, goals, the interpreter run."""

from __future__ import annotations

import json

import pytest
import torch

from wm_bench.bench import attention as ab


@pytest.mark.parametrize("window", [None, 1, 3, 10, 50])
def test_visible_pairs_counts_the_mask(window: int | None) -> None:
    T = 17
    want = sum(min(i + 1, window or T) for i in range(T))
    assert ab.visible_pairs(T, window) == want


def test_useful_flops_backward_is_3_5x() -> None:
    f = ab.useful_flops(2, 3, 64, 32, 8, False)
    assert f == 4 * 32 * 2 * 3 * ab.visible_pairs(64, 8)
    assert ab.useful_flops(2, 3, 64, 32, 8, True) == pytest.approx(3.5 * f)


def test_window_of_variants() -> None:
    assert [ab.window_of(v, 4096) for v in ab.VARIANTS] == [None, None, 2048, 512]


@pytest.mark.usefixtures("no_kernel_device")
def test_without_cuda_prints_the_flop_table_and_measures_nothing(capsys, tmp_path) -> None:
    assert ab.main(["--out", str(tmp_path / "x.json")]) == 0
    out = capsys.readouterr().out
    assert "b1_h16_t16k_d64" in out and "not measured" in out
    assert not (tmp_path / "x.json").exists()


def test_bad_names_are_rejected_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"--variants 'w3'.*'causal'"):
        ab.main(["--variants", "w3"])
    with pytest.raises(ValueError, match=r"--impls .*'flex'"):
        ab.main(["--impls", "ours,xformers"])


def _case(T: int, results: dict[str, dict[str, float]]) -> dict:
    variants: dict = {}
    for key, ms in results.items():
        variant, impl = key.split(":")
        r = variants.setdefault(variant, {"results": {}})["results"]
        r[impl] = {"status": "ok", "fwd_bwd_ms": ms}
    return {"name": f"t{T}", "dims": {"T": T}, "variants": variants}


def test_goals_from_measured_cases() -> None:
    cases = [
        _case(2048, {"causal:ours": 1.0, "causal:sdpa_flash": 0.95}),
        _case(
            16384,
            {
                "causal:ours": 2.0,
                "causal:sdpa_flash": 1.0,
                "causal:sdpa_cudnn": 3.0,
                "w8:ours": 1.5,
                "bias:ours": 1.0,
                "bias:flex": 4.0,
                "w2:ours": 1.0,
                "w2:flex": 2.0,
                "w8:flex": 9.0,
            },
        ),
    ]
    g = ab.goals(cases)
    assert g["causal fwd+bwd throughput ≥ 0.9× SDPA-FLASH"]["met"] is False  # 0.95, 0.5
    assert g["bias + w=T/8 at T=16384 faster than dense causal SDPA-CUDNN"]["met"] is True
    flex = g["with bias, ≥ 3× faster than flex at T ≥ 4096"]
    assert flex["values"] == [4.0, 2.0, 6.0] and flex["met"] is False
    assert g["with bias, ≥ 3× faster than flash_dmattn at T ≥ 4096"]["met"] is None


@pytest.mark.interpret
@pytest.mark.usefixtures("interpreter")
def test_executed_tiles_count_slot_groups_and_diagonals() -> None:
    T = 64
    causal = ab.executed_tiles(torch.zeros(1, 1, T), None, "smaller_index", 16, 16)
    assert causal == 4 * 5 // 2  # lower triangle of a 4×4 block grid
    # w = 8 ≤ 16: all slots form one group; the first block has no key born before it.
    iid = ab.executed_tiles(torch.randn(2, 3, T), 8, "smaller_index", 16, 16)
    assert iid == 2 * 3 * (4 + 3)  # 4 diagonal tiles + 1 slot tile for blocks 1..3
    wide = ab.executed_tiles(torch.randn(1, 1, T), 40, "smaller_index", 16, 16)
    assert 4 + 3 <= wide <= 4 + 3 * 3  # up to ⌈40/16⌉ = 3 slot groups per later block


@pytest.mark.interpret
@pytest.mark.usefixtures("interpreter")
def test_interpreter_run_checks_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "attn.json"
    assert ab.main(["--out", str(out), "--quiet", "--repeats", "1"]) == 0
    rec = json.loads(out.read_text())
    assert rec["mode"] == "interpret" and rec["provenance"]
    (case,) = rec["cases"]
    assert set(case["variants"]) == set(ab.VARIANTS)
    for entry in case["variants"].values():
        r = entry["results"]["ours"]
        assert r["status"] == "ok" and r["check_max_rel_rms"] < 1e-4 and r["fwd_ms"] > 0
    assert "skipped sdpa_flash: needs CUDA" in capsys.readouterr().out
