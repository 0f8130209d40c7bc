"""Triton attention ≡ dense reference: output and dq, dk, dv, d key_bias (interpreter on CPU; CUDA).

The oracle is `attention(impl="reference")` (einsum scores, the top-w mask from the direct rank
definition, masked softmax), independent of both the SDPA fast path and the kernels.
"""

from __future__ import annotations

import pytest
import torch

from wm_bench.kernels.attention import api
from wm_bench.kernels.attention.last_row import window_last_row
from wm_bench.testing import assert_close

pytestmark = pytest.mark.interpret


def make(
    device: torch.device,
    B: int,
    T: int,
    S: int,
    H: int,
    Hkv: int,
    K: int,
    V: int,
    *,
    bias: str | None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor | None]:
    """q, k, v and key_bias ("randn", "ties": few distinct values, or None) on `device`."""
    g = torch.Generator().manual_seed(seed)
    out = {
        "q": torch.randn(B, T, H, K, generator=g),
        "k": torch.randn(B, S, Hkv, K, generator=g),
        "v": torch.randn(B, S, Hkv, V, generator=g),
        "key_bias": None,
    }
    if bias == "randn":
        out["key_bias"] = torch.randn(B, H, S, generator=g)
    elif bias == "ties":
        out["key_bias"] = torch.randint(0, 3, (B, H, S), generator=g).float()
    return {n: (t.to(device, dtype) if t is not None else None) for n, t in out.items()}


def reference_attention(*args, **kwargs) -> torch.Tensor:
    return api.attention(*args, **kwargs, impl="reference")


def forward_and_grads(fn, inp: dict, seed: int = 7, **kw) -> list[torch.Tensor]:
    """[o, dq, dk, dv, (d key_bias)] under a fixed random cotangent."""
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in inp.items() if t is not None}
    o = fn(**leaves, **kw)
    g = torch.Generator().manual_seed(seed)
    do = torch.randn(o.shape, generator=g).to(o.device, o.dtype)
    grads = torch.autograd.grad(o, list(leaves.values()), do)
    return [o.detach(), *grads]


def compare(inp: dict, tol: str | float = "fp32", **kw) -> None:
    got = forward_and_grads(api.attention, inp, impl="triton", **kw)
    want = forward_and_grads(reference_attention, inp, **kw)
    names = ["o", "dq", "dk", "dv", "dbias"][: len(want)]
    for name, a, b in zip(names, got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert_close(a, b, tol, floor=1.0, what=name)  # w = 1: every row keeps one key, dq = 0


# (B, T, S, H, Hkv, K, V): awkward lengths, GQA, decoding alignment (T < S), V ≠ K.
SHAPES = {
    "mha": (2, 37, 37, 2, 2, 32, 32),
    "gqa": (1, 45, 45, 4, 2, 32, 32),
    "end_aligned": (1, 20, 45, 2, 1, 32, 32),
    "v_narrow": (1, 29, 29, 2, 1, 32, 16),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "mode", ["plain", "bias", "bias_window", "ties_window_smaller", "ties_window_larger"]
)
def test_matches_dense_reference(shape: str, mode: str, triton_device) -> None:
    B, T, S, H, Hkv, K, V = SHAPES[shape]
    bias = {"plain": None, "bias": "randn", "bias_window": "randn"}.get(mode, "ties")
    inp = make(triton_device, B, T, S, H, Hkv, K, V, bias=bias)
    kw: dict = {}
    if "window" in mode:
        kw["window"] = 7
        kw["tie_break"] = "larger_index" if mode.endswith("larger") else "smaller_index"
    compare(inp, **kw)


@pytest.mark.parametrize("head_dim", [32, 64, 128, 256])
def test_head_dims(head_dim: int, triton_device) -> None:
    inp = make(triton_device, 1, 19, 19, 1, 1, head_dim, head_dim, bias="randn", seed=head_dim)
    compare(inp, window=5)


@pytest.mark.parametrize(
    ("T", "S", "window", "bias"),
    [(70, 70, 20, "randn"), (70, 70, 37, "ties"), (30, 70, 20, "randn"), (70, 70, 69, "randn")],
)
def test_windows_spanning_several_slot_groups(
    T: int, S: int, window: int, bias: str, triton_device
) -> None:
    """w > BLOCK_N (16 under the interpreter): several gathered slot tiles per query block,
    chains of several keys per slot, GQA, and queries end-aligned to longer keys."""
    inp = make(triton_device, 1, T, S, 4, 2, 16, 16, bias=bias, seed=window)
    compare(inp, window=window)


@pytest.mark.parametrize("window", [1, 2, 19, 100])
def test_window_edges(window: int, triton_device) -> None:
    """w = 1 (one key per row), w = T (nothing evicted) and w > T behave like the definition."""
    inp = make(triton_device, 1, 19, 19, 2, 1, 16, 16, bias="ties", seed=window)
    compare(inp, window=window)


def test_non_causal_and_custom_scale(triton_device) -> None:
    compare(make(triton_device, 1, 21, 33, 2, 1, 16, 16, bias="randn"), causal=False, scale=0.3)
    compare(make(triton_device, 1, 21, 33, 2, 1, 16, 16, bias=None), causal=False)


def test_window_really_masks(triton_device) -> None:
    """A tight window changes the output (the comparison above is not vacuous)."""
    inp = make(triton_device, 1, 40, 40, 1, 1, 16, 16, bias="randn")
    full = api.attention(**inp, impl="triton")
    tight = api.attention(**inp, window=2, impl="triton")
    assert (full - tight).abs().max() > 1e-2


@pytest.mark.parametrize("tie_break", ["smaller_index", "larger_index"])
@pytest.mark.parametrize("bias", ["randn", "ties"])
@pytest.mark.parametrize("window", [1, 3, 8, 40])
def test_window_last_row_matches_reference(
    tie_break: str, bias: str, window: int, triton_device
) -> None:
    from wm_bench.kernels.attention.triton_window import window_last_row_triton

    kb = make(triton_device, 2, 1, 37, 3, 1, 16, 16, bias=bias, seed=window)["key_bias"]
    got = window_last_row_triton(kb, window, tie_break=tie_break)
    want = window_last_row(kb, window, tie_break=tie_break)
    assert torch.equal(got.long(), want)


def test_deterministic(triton_device) -> None:
    inp = make(triton_device, 1, 45, 45, 4, 2, 32, 32, bias="randn")
    a = forward_and_grads(api.attention, inp, impl="triton", window=9)
    b = forward_and_grads(api.attention, inp, impl="triton", window=9)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_rejects_too_wide_heads(triton_device) -> None:
    inp = make(triton_device, 1, 4, 4, 1, 1, 264, 264, bias=None)
    with pytest.raises(ValueError, match="K=264"):
        api.attention(**inp, impl="triton")


# ---- realistic shapes in bf16 (CUDA) ------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["plain", "bias", "bias_window"])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_gpu_bf16_realistic(mode: str, head_dim: int, gpu_device) -> None:
    B, T, H, Hkv = 2, 1031, 8, 2
    bias = None if mode == "plain" else "randn"
    inp = make(gpu_device, B, T, T, H, Hkv, head_dim, head_dim, bias=bias, dtype=torch.bfloat16)
    kw = {"window": T // 8} if mode == "bias_window" else {}
    got = forward_and_grads(api.attention, inp, impl="triton", **kw)
    ref_in = {n: (t.float() if t is not None else None) for n, t in inp.items()}
    want = forward_and_grads(reference_attention, ref_in, **kw)
    for name, a, b in zip(["o", "dq", "dk", "dv", "dbias"], got, want, strict=False):
        assert_close(a, b, 3e-2, floor=1.0, what=name)  # bf16 storage, T = 1031


@pytest.mark.parametrize("name", ["qcattn", "dma"])
def test_mixers_run_on_the_kernel(name: str, triton_device) -> None:
    """The qcattn and dma mixers with impl='triton' ≡ impl='reference' (output and weight grads)
    and record the kernel they used."""
    from wm_bench.layers.mixers import MIXERS

    cls, cfg_cls = MIXERS[name]
    kwargs = {"n_heads": 4, "n_kv_heads": 2}
    if name == "dma":
        kwargs["window"] = 6
    cfg = cfg_cls(**kwargs)
    torch.manual_seed(0)
    ref = cls(64, cfg, impl="reference").to(triton_device)
    tri = cls(64, cfg, impl="triton").to(triton_device)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(2, 23, 64, device=triton_device)
    outs = []
    for m in (ref, tri):
        y = m(x)
        y.square().sum().backward()
        outs.append((y.detach(), [p.grad.clone() for p in m.parameters()]))
    assert tri.resolved_impls["attention"] == "triton"
    assert_close(outs[1][0], outs[0][0], "fp32")
    for a, b in zip(outs[1][1], outs[0][1], strict=True):
        assert_close(a, b, 1e-4, floor=1.0)
