"""Triton chunked SSD ≡ reference, forward and every gradient (TRITON_INTERPRET=1 on CPU; CUDA)."""

from __future__ import annotations

import pytest
import torch

from wm_bench.kernels._impl import interpreting
from wm_bench.kernels.ssd import chunk_ssd, recurrent_ssd, ssd_step
from wm_bench.testing import assert_close

pytestmark = pytest.mark.interpret

# (H, P, G, N) at interpreter scale; every tile dim ≥ 16 (tl.dot's minimum on the GPU).
LAYOUTS = {"grouped": (2, 16, 1, 16), "per_head": (2, 16, 2, 16)}
GRAD_NAMES = ("x", "dt", "A", "B", "C", "D", "initial_state")


def make_inputs(
    device: torch.device,
    T: int,
    dims: tuple[int, int, int, int],
    *,
    batch: int = 2,
    with_d: bool = True,
    with_init: bool = True,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """fp32 SSD inputs on device: dt in (0.01, 1), A in (−2.2, −0.2)."""
    H, P, G, N = dims
    g = torch.Generator().manual_seed(seed)
    inp = {
        "x": torch.randn(batch, T, H, P, generator=g),
        "dt": torch.rand(batch, T, H, generator=g) + 0.01,
        "A": -(2 * torch.rand(H, generator=g) + 0.2),
        "B": 0.5 * torch.randn(batch, T, G, N, generator=g),
        "C": 0.5 * torch.randn(batch, T, G, N, generator=g),
        "D": torch.randn(H, generator=g) if with_d else None,
        "initial_state": torch.randn(batch, H, P, N, generator=g) if with_init else None,
    }
    return {k: (v.to(device) if v is not None else None) for k, v in inp.items()}


def run(impl: str, inp: dict, chunk_size: int, seed: int = 99) -> dict[str, torch.Tensor]:
    """y, final_state and the gradient of every present input under random cotangents."""
    names = [k for k in GRAD_NAMES if inp[k] is not None]
    leaves = {k: inp[k].detach().clone().requires_grad_(True) for k in names}
    y, s = chunk_ssd(
        leaves["x"], leaves["dt"], leaves["A"], leaves["B"], leaves["C"],
        chunk_size=chunk_size, D=leaves.get("D"), initial_state=leaves.get("initial_state"),
        return_final_state=True, impl=impl,
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(y.shape, generator=g).to(y)
    gs = torch.randn(s.shape, generator=g).to(s)
    loss = (y.float() * gy.float()).sum() + (s * gs).sum()  # random cotangents, never .sum()
    grads = torch.autograd.grad(loss, [leaves[k] for k in names])
    return {"y": y, "final_state": s, **{f"d{k}": gr for k, gr in zip(names, grads)}}


def assert_all_close(got: dict, want: dict, tol: str | float) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert_close(got[name], want[name], tol, what=name)


# T ∈ {1, 15, 16, 17, 40} at chunk 16: one step, a short chunk, exact, one past, 2.5 chunks; each
# layout sees every T, with D / initial_state varied across them instead of crossed with them.
CASES = [
    ("grouped", 1, True, True),
    ("grouped", 15, False, False),
    ("grouped", 16, True, False),
    ("grouped", 17, False, True),
    ("grouped", 40, True, True),
    ("per_head", 1, False, False),
    ("per_head", 15, True, True),
    ("per_head", 16, False, True),
    ("per_head", 17, True, False),
    ("per_head", 40, False, False),
]


@pytest.mark.parametrize(("layout", "T", "with_d", "with_init"), CASES)
def test_triton_ssd_matches_reference_forward_and_every_gradient(
    layout, T, with_d, with_init, triton_device
):
    inp = make_inputs(triton_device, T, LAYOUTS[layout], with_d=with_d, with_init=with_init, seed=T)
    assert_all_close(run("triton", inp, 16), run("reference", inp, 16), 1e-4)


@pytest.mark.parametrize(
    ("dims", "T"),
    [((4, 32, 2, 32), 70), ((3, 24, 1, 20), 45)],
    ids=["multi_tile_2_heads_per_group", "ragged_P24_N20"],
)
def test_triton_ssd_multi_tile_chunks_and_ragged_dims(dims, T, triton_device):
    # Chunk 32 over 16-wide tiles (interpreter config): the causal block loops, the P / N tiling
    # of the state kernels, the per-tile partial sums and the masks of P, N not powers of two.
    inp = make_inputs(triton_device, T, dims, seed=5)
    assert_all_close(run("triton", inp, 32), run("reference", inp, 32), 1e-4)


def test_triton_ssd_16bit_inputs_accumulate_in_fp32(triton_device):
    # fp16 takes the same 16-bit tl.dot path as bf16 (the interpreter's bf16 dot is unusable).
    half = torch.float16 if interpreting() else torch.bfloat16
    inp = make_inputs(triton_device, 33, LAYOUTS["grouped"], seed=7)
    low = {k: (v.to(half) if k in ("x", "B", "C") else v) for k, v in inp.items()}
    got = run("triton", low, 16)
    assert got["y"].dtype == half and got["final_state"].dtype == torch.float32
    assert got["dx"].dtype == half and got["dB"].dtype == half and got["ddt"].dtype == torch.float32
    up = {k: (v.float() if v is not None else None) for k, v in low.items()}
    assert_all_close(got, run("reference", up, 16), "bf16" if half == torch.bfloat16 else "fp16")


@pytest.mark.parametrize("mode", ["dt=1e4", "dt=50|1e-3"])
def test_triton_ssd_is_finite_and_close_for_large_dt(mode, triton_device):
    inp = make_inputs(triton_device, 48, LAYOUTS["per_head"], batch=1, seed=9)
    inp["A"] = torch.tensor([-1.0, -16.0], device=triton_device)
    if mode == "dt=1e4":  # every decay underflows to exactly 0
        inp["dt"] = torch.full_like(inp["dt"], 1e4)
    else:  # decays from 1 down to exp(−800) interleaved
        pick = torch.rand(inp["dt"].shape, generator=torch.Generator().manual_seed(2)) < 0.5
        inp["dt"] = torch.where(
            pick.to(triton_device), torch.full_like(inp["dt"], 50.0), inp["dt"] * 1e-3
        )
    # Segment sums are differences of fp32 chunk cumsums (as in mamba_ssm): at |cumsum| ~ 10³
    # the exponent carries ~1e-4 absolute error, so this stress case is held to 1e-2, not 1e-4.
    assert_all_close(run("triton", inp, 16), run("reference", inp, 16), 1e-2)


def test_triton_ssd_takes_strided_views_without_copies_of_meaning(triton_device):
    # Mamba-2 splits x, B, C out of one projection: row-strided views; dt is time-major.
    torch.manual_seed(0)
    bsz, T, H, P, G, N = 2, 21, 2, 16, 1, 16
    proj = torch.randn(bsz, T, H * P + 2 * G * N, device=triton_device)
    x = proj[..., : H * P].unflatten(-1, (H, P))
    B = (0.5 * proj[..., H * P : H * P + G * N]).unflatten(-1, (G, N))
    C = (0.5 * proj[..., H * P + G * N :]).unflatten(-1, (G, N))
    dt = (torch.rand(H, T, bsz, device=triton_device) + 0.01).permute(
        2, 1, 0
    )  # [B, T, H], not contiguous
    inp = {"x": x, "dt": dt, "A": -torch.rand(H, device=triton_device) - 0.2, "B": B, "C": C}
    inp |= {"D": None, "initial_state": None}
    assert not x.is_contiguous() and not dt.is_contiguous()
    assert_all_close(run("triton", inp, 16), run("reference", inp, 16), 1e-4)


def test_triton_ssd_final_state_only_when_requested(triton_device):
    inp = make_inputs(triton_device, 20, LAYOUTS["grouped"], with_init=False)
    y, s = chunk_ssd(
        inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], chunk_size=16, impl="triton"
    )
    assert s is None and y.dtype == torch.float32 and y.shape == inp["x"].shape


def test_triton_ssd_rejects_what_it_cannot_run_naming_the_value(triton_device):
    inp = make_inputs(triton_device, 6, LAYOUTS["grouped"])
    x, dt, A, B, C = inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"]
    with pytest.raises(ValueError, match=r"impl='triton'.*x\.dtype=torch\.float64"):
        chunk_ssd(x.double(), dt, A, B, C, chunk_size=16, impl="triton")
    with pytest.raises(ValueError, match=r"chunk_size=24 with impl='triton'"):
        chunk_ssd(x, dt, A, B, C, chunk_size=24, impl="triton")
    with pytest.raises(ValueError, match=r"impl='triton'.*\['reference'\]"):
        recurrent_ssd(x, dt, A, B, C, impl="triton")
    s = torch.zeros(2, 2, 16, 16, device=triton_device)
    with pytest.raises(ValueError, match=r"impl='triton'.*\['reference'\]"):
        ssd_step(x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], s, impl="triton")


# ---- GPU: realistic shapes in bf16 against the fp32 reference on the same (bf16-valued) inputs.

GPU_SHAPES = {  # (B, T, H, P, G, N, Q, with D): awkward T, every chunk size, both layouts
    "mamba2_q64": (2, 1000, 8, 64, 1, 128, 64, True),
    "mamba2_q256": (2, 777, 8, 64, 1, 128, 256, True),
    "cheems_q128": (2, 1000, 4, 128, 4, 128, 128, False),
}


@pytest.mark.gpu
@pytest.mark.parametrize("shape", list(GPU_SHAPES))
def test_gpu_bf16_matches_fp32_reference(shape, gpu_device):
    bsz, T, H, P, G, N, Q, with_d = GPU_SHAPES[shape]
    inp = make_inputs(gpu_device, T, (H, P, G, N), batch=bsz, with_d=with_d, seed=1)
    inp["dt"] = inp["dt"] * 0.1  # Δ log-uniform-ish in [1e-3, 0.1] as at init (docs/spec.md §2.2)
    low = {k: (v.bfloat16() if k in ("x", "B", "C") else v) for k, v in inp.items()}
    up = {k: (v.float() if v is not None else None) for k, v in low.items()}
    assert_all_close(run("triton", low, Q), run("reference", up, Q), 2e-2)


@pytest.mark.gpu
def test_gpu_fp32_matches_reference_tightly(gpu_device):
    inp = make_inputs(gpu_device, 300, (4, 64, 1, 128), batch=1, seed=2)
    assert_all_close(run("triton", inp, 64), run("reference", inp, 64), 1e-4)


@pytest.mark.gpu
def test_gpu_offsets_past_int32_at_64k_tokens(gpu_device):
    # B·NC·H·P·N = 8·1024·32·64·128 = 2.1e9 > 2³¹ state elements: the last batch row of the big
    # call must equal a call on that row alone, and that call must match the reference.
    bsz, T, H, P, G, N, Q = 8, 65536, 32, 64, 1, 128, 64
    g = torch.Generator(device=gpu_device).manual_seed(0)
    x = torch.randn(bsz, T, H, P, device=gpu_device, dtype=torch.bfloat16, generator=g)
    dt = 0.1 * torch.rand(bsz, T, H, device=gpu_device, generator=g) + 1e-3
    A = -torch.linspace(1.0, 16.0, H, device=gpu_device)
    B = (0.3 * torch.randn(bsz, T, G, N, device=gpu_device, generator=g)).bfloat16()
    C = (0.3 * torch.randn(bsz, T, G, N, device=gpu_device, generator=g)).bfloat16()
    with torch.no_grad():
        y, s = chunk_ssd(x, dt, A, B, C, chunk_size=Q, return_final_state=True, impl="triton")
        last = (x[-1:], dt[-1:], A, B[-1:], C[-1:])
        y1, s1 = chunk_ssd(*last, chunk_size=Q, return_final_state=True, impl="triton")
        assert torch.isfinite(y).all() and torch.isfinite(s).all()
        assert_close(y[-1:], y1, 1e-6)
        assert_close(s[-1:], s1, 1e-6)
        del y, s
        up = [t.float() for t in last]
        y_r, s_r = chunk_ssd(*up, chunk_size=Q, return_final_state=True, impl="reference")
    assert_close(y1, y_r, "bf16")
    assert_close(s1, s_r, "bf16")
