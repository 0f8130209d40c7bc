"""Training FLOPs per token (wm_bench.flops): the stated formula on hand-checkable models."""

from __future__ import annotations

import dataclasses

import pytest

from wm_bench.flops import config_flops_per_token, mfu, peak_flops
from wm_bench.model import count_params
from wm_bench.presets import preset


def test_llama_is_six_n_plus_the_attention_term() -> None:
    cfg = preset("llama", "tiny", vocab_size=512)  # d 64, 4 layers, 2 heads of 32
    p = count_params(cfg)
    f = config_flops_per_token(cfg, 128)
    n = p["active"] - p["embedding"]  # the head counts, the input lookup does not
    assert f["matmul_params"] == n and f["unknown_mixers"] == []
    assert f["mixing_flops"] == 4 * (4 * 2 * 32 * 128)
    assert f["train_flops_per_token"] == 3 * (2 * n + f["mixing_flops"])


def test_a_dma_window_caps_the_keys_and_ssd_uses_its_chunk() -> None:
    cfg = preset("doge", "tiny", vocab_size=512)
    dense = config_flops_per_token(cfg, 1024)["mixing_flops"]
    block = cfg.blocks["D"]
    windowed = dataclasses.replace(cfg, blocks={"D": dataclasses.replace(
        block, mixer=dataclasses.replace(block.mixer, window=128))})  # fmt: skip
    assert config_flops_per_token(windowed, 1024)["mixing_flops"] == dense / 8
    ssd = preset("cheems", "tiny", vocab_size=512)  # 3 SSD (H 2, P 32, N 32, Q 64) + 1 DMA
    f = config_flops_per_token(ssd, 256)["mixing_flops"]
    assert f == 3 * 2 * 2 * (64 * 32 + 64 * 32 + 2 * 32 * 32) + 4 * 2 * 32 * 256


def test_mfu_needs_a_known_peak() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H100 PCIe") == pytest.approx(756e12)
    assert peak_flops("AMD EPYC") is None and peak_flops(None) is None
    got = mfu(100_000.0, 3e9, "NVIDIA H200")
    assert got["model_tflops"] == pytest.approx(300.0) and got["mfu"] == pytest.approx(300 / 989.4)
    assert mfu(None, 3e9, "NVIDIA H200")["mfu"] is None
    assert mfu(1000.0, 3e9, None) == {"model_tflops": 3.0, "peak_tflops": None, "mfu": None}
