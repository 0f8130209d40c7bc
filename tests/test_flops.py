"""Training FLOPs per token (wm_bench.flops): the stated formula on hand-checkable models."""

from __future__ import annotations

import dataclasses

import pytest

from wm_bench.config import BlockConfig, ModelConfig
from wm_bench.flops import config_flops_per_token, mfu, peak_flops
from wm_bench.layers.ffn import FFNS
from wm_bench.layers.mixers import MIXERS
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
    mixer = dataclasses.replace(block.mixer, window=128)
    windowed = dataclasses.replace(cfg, blocks={"D": dataclasses.replace(block, mixer=mixer)})
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


# The counts flops.py gave before each mixer reported its own (it guessed the formula from the
# layer's attribute names then): (mixing FLOPs, training FLOPs) per token, pinned so that moving
# the formulas into the layers changed no number. Presets at "tiny" with a 512-token vocabulary.
PRESET_FLOPS: dict[tuple[str, int], tuple[int, int]] = {
    ("llama", 100): (102400, 2083200),
    ("llama", 1024): (1048576, 4921728),
    ("mamba2", 100): (917504, 5026464),
    ("mamba2", 1024): (917504, 5026464),
    ("jamba", 100): (369664, 2930412),
    ("jamba", 1024): (606208, 3640044),
    ("cheems", 100): (99328, 2077524),
    ("cheems", 1024): (335872, 2787156),
    ("doge", 100): (102400, 2775984),
    ("doge", 1024): (1048576, 5614512),
    ("transxssm", 100): (99328, 2076360),
    ("transxssm", 1024): (335872, 2785992),
    ("otce", 100): (133120, 2230704),
    ("otce", 1024): (606208, 3649968),
}
# One registered mixer per block, 2 blocks of d 64 with the default MLP, vocabulary 256;
# Based reports no mixing FLOPs (None) and is listed as unknown.
BLOCK_MIXERS: dict[str, tuple[str, dict]] = {
    "qcattn-block": ("qcattn", {}),
    "qcattn_gqa-block": ("qcattn", {"n_kv_heads": 1, "head_dim": 24}),
    "ssd-block": ("ssd", {}),
    "ssd_q16-block": ("ssd", {"chunk_size": 16, "d_state": 16, "n_groups": 1, "expand": 2}),
    "mamba2-block": ("mamba2", {"head_dim": 32, "d_state": 64}),
    "dma-block": ("dma", {}),
    "dma_w-block": ("dma", {"window": 40}),
    "based-block": ("based", {}),
}
BLOCK_FLOPS: dict[tuple[str, int], tuple[int, int]] = {
    ("qcattn-block", 16): (8192, 765312),
    ("qcattn-block", 100): (51200, 894336),
    ("qcattn_gqa-block", 16): (12288, 765312),
    ("qcattn_gqa-block", 100): (76800, 958848),
    ("ssd-block", 16): (16384, 793056),
    ("ssd-block", 100): (40960, 866784),
    ("ssd_q16-block", 16): (28672, 854496),
    ("ssd_q16-block", 100): (28672, 854496),
    ("mamba2-block", 16): (90112, 1227792),
    ("mamba2-block", 100): (163840, 1448976),
    ("dma-block", 16): (8192, 768816),
    ("dma-block", 100): (51200, 897840),
    ("dma_w-block", 16): (8192, 768816),
    ("dma_w-block", 100): (20480, 805680),
    ("based-block", 16): (0, 866688),
    ("based-block", 100): (0, 866688),
}


def model_of(case: str) -> ModelConfig:
    """A PRESET_FLOPS name's preset, or a BLOCK_FLOPS case's two-block model."""
    if case not in BLOCK_MIXERS:
        return preset(case, "tiny", vocab_size=512)
    name, kw = BLOCK_MIXERS[case]
    block = BlockConfig(mixer=MIXERS[name][1](**kw), ffn=FFNS["mlp"][1]())
    return ModelConfig(vocab_size=256, d_model=64, n_layers=2, pattern="M", blocks={"M": block})


@pytest.mark.parametrize(("case", "seq_len"), [*sorted(PRESET_FLOPS), *sorted(BLOCK_FLOPS)])
def test_flops_are_what_they_were_before_each_mixer_reported_its_own(case, seq_len):
    f = config_flops_per_token(model_of(case), seq_len)
    expected = {**PRESET_FLOPS, **BLOCK_FLOPS}[case, seq_len]
    assert (f["mixing_flops"], f["train_flops_per_token"]) == expected
    assert f["unknown_mixers"] == (["Based"] if case == "based-block" else [])
