"""The authors' other architectures (TransXSSM, OTCE): layout, matching, listing.

That they build, backpropagate, decode like their forward and are causal with every FFN they
offer is tested with every other preset in tests/test_model.py.
"""

from __future__ import annotations

import json

import pytest

from wm_bench.model import count_params
from wm_bench.presets import PRESET_FFNS, PRESETS, SIZES, match_params, otce_pattern, preset
from wm_bench_tasks.arch import with_knob

LINEAGE = ("transxssm", "otce")
VARIANTS = [(name, ffn) for name in LINEAGE for ffn in PRESET_FFNS[name]]


# The layouts docs/lineage.md states, one per named size.
PATTERNS = {
    "transxssm": {
        "tiny": "SSSA", "cpu": "SSSA", "20m": "SSSSSSSA", "60m": "SSSSSSSA", "160m": "SSSSSSSA",
        "320m": "SSSSSSSA", "1.3b": "SSSSSSSA",
    },
    "otce": {
        "tiny": "OTCE", "cpu": "OTCE", "20m": "OOOTCCCE", "60m": "OOOOOTCCCE",
        "160m": "OOOOOOTCCCCE", "320m": "OOOOOOOOTCCCCCCE", "1.3b": "OOOOOOOOOOOOTTCCCCCCCCCE",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", LINEAGE)
def test_pattern_is_the_documented_layout_at_every_size(name):
    assert set(PATTERNS[name]) == set(SIZES)
    for size, pattern in PATTERNS[name].items():
        cfg = preset(name, size)
        assert cfg.pattern == pattern, (size, cfg.pattern)
        assert len(cfg.layer_letters()) == SIZES[size].n_layers


def test_block_contents_follow_the_sources():
    t = preset("transxssm", "320m")
    ssd, attn = t.blocks["S"].mixer, t.blocks["A"].mixer
    assert (ssd.name, ssd.position, attn.name) == ("ssd", "rope", "qcattn")
    assert ssd.rope_base == attn.rope_base  # one unified RoPE
    assert ssd.d_state is None and ssd.expand == 1  # N = P = d / n_heads = attention head dim
    o = preset("otce", "320m")
    assert o.blocks["O"].mixer == o.blocks["C"].mixer
    assert (o.blocks["O"].mixer.name, o.blocks["O"].mixer.position) == ("ssd", "rope")
    assert o.blocks["T"].mixer.name == o.blocks["E"].mixer.name == "qcattn"
    assert o.blocks["T"].mixer.n_kv_heads == 4  # GQA, half the heads (16 / 8 in the source)
    moe = o.blocks["T"].ffn
    assert (moe.name, moe.num_experts, moe.top_k, moe.shared_expert) == ("moe", 4, 1, True)
    assert o.blocks["E"].ffn.name == "mlp"  # the Expresser stays dense
    # MoE blocks use 4d per token (2d shared + 2d routed): the dense 4d MLP's active width.
    assert moe.d_ff * 2 == o.blocks["E"].ffn.d_ff


def test_otce_pattern_keeps_every_stage_and_rejects_too_few_layers():
    for n in range(4, 40):
        p = otce_pattern(n)
        assert len(p) == n and p == "".join(sorted(p, key="OTCE".index))
        assert all(p.count(x) >= 1 for x in "OTCE") and p.count("E") == 1
    assert otce_pattern(24) == "O" * 12 + "TT" + "C" * 9 + "E"  # the released 12 / 2 / 9 / 1
    with pytest.raises(ValueError, match="n_layers"):
        otce_pattern(3)


@pytest.mark.parametrize(("name", "ffn"), VARIANTS)
@pytest.mark.parametrize("size", list(SIZES))
def test_active_parameters_match_llama_within_5_percent(name, ffn, size):
    # As tasks/arch matches every variant: the FFN width knob, active parameters, 5 % (meta).
    target = count_params(preset("llama", size))["active"]
    d = SIZES[size].d_model
    base = preset(name, size, ffn=ffn)
    cfg, _ = match_params(lambda x: with_knob(base, x), target, lo=4, hi=16 * d, key="active")
    assert abs(count_params(cfg)["active"] - target) / target <= 0.05
    assert cfg.pattern == base.pattern


def test_wm_bench_list_shows_them(capsys):
    from wm_bench.cli import main

    assert main(["list"]) == 0
    listed = json.loads(capsys.readouterr().out)["presets"]
    assert set(LINEAGE) <= set(listed) and set(LINEAGE) <= set(PRESETS)


def test_unknown_ffn_names_the_choices():
    with pytest.raises(ValueError, match="'cdmoe'.*moe"):
        preset("otce", "tiny", ffn="cdmoe")
    with pytest.raises(ValueError, match="'moe'.*mlp"):
        preset("transxssm", "tiny", ffn="moe")
