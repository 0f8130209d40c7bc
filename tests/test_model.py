"""Model assembly and presets: every preset with each of its FFNs builds, trains a step, decodes
like its forward and is causal."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from wm_bench.model import build_model, count_params
from wm_bench.presets import PRESET_FFNS, SIZES, match_params, preset
from wm_bench.testing import assert_close

# Every preset with every FFN it offers (the default first).
VARIANTS = [(name, ffn) for name, ffns in PRESET_FFNS.items() for ffn in ffns]


def _tiny(name: str, ffn: str, *, double: bool = False):
    """(config, model) of preset `name` at the tiny size, seeded; float64 in eval mode if asked."""
    torch.manual_seed(0)
    cfg = preset(name, "tiny", ffn=ffn)
    model = build_model(cfg, impl="reference")
    return cfg, (model.double().eval() if double else model)


@pytest.mark.parametrize(("name", "ffn"), VARIANTS)
def test_every_preset_builds_and_backpropagates_at_tiny(name, ffn):
    cfg, model = _tiny(name, ffn)
    ids = torch.randint(0, cfg.vocab_size, (2, 19))
    out = model(ids)
    assert out.logits.shape == (2, 19, cfg.vocab_size)
    loss = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten()
    )
    loss = loss + out.aux_loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.resolved_impls(), "layers must record which impl ran"


@pytest.mark.parametrize(("name", "ffn"), VARIANTS)
def test_decoding_step_by_step_equals_full_forward(name, ffn):
    cfg, model = _tiny(name, ffn, double=True)
    ids = torch.randint(0, cfg.vocab_size, (2, 11))
    with torch.no_grad():
        full = model(ids).logits
        states = model.init_state(2, dtype=torch.float64)
        steps = []
        for t in range(ids.shape[1]):
            logits, states = model.step(ids[:, t : t + 1], states)
            steps.append(logits)
    assert_close(torch.cat(steps, 1), full, tol="exact64", what="decoded logits")


@pytest.mark.parametrize(("name", "ffn"), VARIANTS)
def test_model_is_causal(name, ffn):
    cfg, model = _tiny(name, ffn, double=True)
    ids = torch.randint(0, cfg.vocab_size, (1, 16))
    ids2 = ids.clone()
    ids2[:, 9:] = torch.randint(0, cfg.vocab_size, (1, 7))
    with torch.no_grad():
        a, b = model(ids).logits, model(ids2).logits
    assert_close(a[:, :9], b[:, :9], tol="exact64", what="logits before the change")


def test_cheems_320m_is_near_the_paper_size():
    counts = count_params(preset("cheems", "320m"))
    # docs/spec.md §2.6/§7: d 1024, 16 layers, 8 heads, vocab 32768, untied, MLP 4d ≈ 336M dense.
    assert 0.95 * 336e6 <= counts["total"] <= 1.05 * 336e6, counts
    assert counts["active"] == counts["total"]  # dense MLP: everything is active


def test_cdmoe_preset_counts_fewer_active_than_total_params():
    counts = count_params(preset("cheems", "20m", ffn="cdmoe"))
    assert counts["active"] < counts["total"]


def test_tie_embeddings_counts_the_table_once():
    cfg = preset("llama", "tiny")
    untied = count_params(cfg)["total"]
    tied = count_params(dataclasses.replace(cfg, tie_embeddings=True))["total"]
    assert untied - tied == cfg.vocab_size * cfg.d_model


def test_match_params_finds_a_width_within_tolerance():
    target = count_params(preset("llama", "20m"))["total"]

    def build(n_layers: int):
        return dataclasses.replace(preset("cheems", "20m"), n_layers=n_layers)

    cfg, x = match_params(build, target, lo=1, hi=40, tol=0.05)
    got = count_params(cfg)["total"]
    assert abs(got - target) / target <= 0.05
    with pytest.raises(ValueError, match="tolerance"):
        match_params(build, target * 100, lo=1, hi=4)


def test_unknown_preset_and_size_name_the_choices():
    with pytest.raises(ValueError, match="'gpt5'.*cheems"):
        preset("gpt5")
    with pytest.raises(ValueError, match="'7b'.*tiny"):
        preset("llama", "7b")
    assert "tiny" in SIZES
