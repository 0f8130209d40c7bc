"""SSD: reference chunked ≡ recurrent ≡ stepped, forward and every gradient, RoPE on B/C; the
torch_fast chunked scan ≡ the reference chunked scan."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from wm_bench.kernels.rope import apply_rope, rope_cos_sin
from wm_bench.kernels.ssd import chunk_ssd, recurrent_ssd, ssd_step
from wm_bench.testing import assert_close

# (H, P, G, N): Mamba-2 shared B/C (G = 1), grouped (G = 2), Cheems per-head (G = H, N = P).
LAYOUTS = {"shared": (3, 4, 1, 8), "grouped": (4, 3, 2, 5), "per_head": (3, 4, 3, 4)}


def make_inputs(
    T: int,
    layout: str | tuple[int, int, int, int],
    *,
    batch: int = 2,
    dtype: torch.dtype = torch.float64,
    with_d: bool = True,
    with_init: bool = True,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Random SSD inputs: dt in (0.01, 1), A in (−2.2, −0.2)."""
    H, P, G, N = LAYOUTS[layout] if isinstance(layout, str) else layout
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return {
        "x": rnd(batch, T, H, P).to(dtype),
        "dt": (torch.rand(batch, T, H, generator=g, dtype=torch.float64) + 0.01).to(dtype),
        "A": -(2 * torch.rand(H, generator=g, dtype=torch.float64) + 0.2).to(dtype),
        "B": (0.5 * rnd(batch, T, G, N)).to(dtype),
        "C": (0.5 * rnd(batch, T, G, N)).to(dtype),
        "D": rnd(H).to(dtype) if with_d else None,
        "initial_state": rnd(batch, H, P, N).to(dtype) if with_init else None,
    }


def run_both(inp: dict, chunk_size: int) -> tuple[tuple, tuple]:
    args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"])
    kw = {"D": inp["D"], "initial_state": inp["initial_state"], "return_final_state": True}
    return chunk_ssd(*args, chunk_size=chunk_size, **kw), recurrent_ssd(*args, **kw)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("with_init", [False, True])
@pytest.mark.parametrize("with_d", [False, True])
@pytest.mark.parametrize("T", [1, 7, 16, 17, 33])
@pytest.mark.parametrize("chunk_size", [4, 8, 16])
def test_chunked_ssd_matches_recurrent(chunk_size, T, with_d, with_init, layout):
    inp = make_inputs(T, layout, with_d=with_d, with_init=with_init, seed=T * 7 + chunk_size)
    (y_c, s_c), (y_r, s_r) = run_both(inp, chunk_size)
    assert y_c.shape == inp["x"].shape and y_c.dtype == torch.float64
    assert_close(y_c, y_r, "exact64")
    assert_close(s_c, s_r, "exact64")


def test_chunked_ssd_matches_recurrent_in_fp32():
    inp = make_inputs(45, "grouped", dtype=torch.float32, seed=3)
    (y_c, s_c), (y_r, s_r) = run_both(inp, 16)
    assert y_c.dtype == torch.float32 and s_c.dtype == torch.float32
    assert_close(y_c, y_r, "fp32")
    assert_close(s_c, s_r, "fp32")


def test_final_state_is_none_unless_requested():
    inp = make_inputs(9, "shared")
    args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"])
    assert chunk_ssd(*args, chunk_size=4)[1] is None
    assert recurrent_ssd(*args)[1] is None


GRAD_NAMES = ("x", "dt", "A", "B", "C", "D", "initial_state")


def run_with_state(fn, t: dict, **kwargs):
    """fn(x, dt, A, B, C, D=…, return_final_state=True, **kwargs) on the tensors of `t`."""
    return fn(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"], return_final_state=True, **kwargs)


def grads(fn, inp: dict, gy: torch.Tensor, gs: torch.Tensor) -> list[torch.Tensor]:
    leaves = {k: inp[k].detach().clone().requires_grad_(True) for k in GRAD_NAMES}
    y, s = run_with_state(fn, leaves, initial_state=leaves["initial_state"])
    loss = (y * gy).sum() + (s * gs).sum()  # random cotangents, never a plain .sum()
    return list(torch.autograd.grad(loss, [leaves[k] for k in GRAD_NAMES]))


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float64, "fp64"), (torch.float32, 1e-4)], ids=["fp64", "fp32"]
)
@pytest.mark.parametrize(("T", "chunk_size"), [(1, 4), (17, 8), (33, 16)])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_chunked_ssd_gradients_match_recurrent(layout, T, chunk_size, dtype, tol):
    inp = make_inputs(T, layout, dtype=dtype, seed=11 + T)
    H, P, _, N = LAYOUTS[layout]
    g = torch.Generator().manual_seed(99)
    gy = torch.randn(2, T, H, P, generator=g, dtype=torch.float64).to(dtype)
    gs = torch.randn(2, H, P, N, generator=g, dtype=torch.float64).to(dtype)
    chunked = grads(lambda *a, **k: chunk_ssd(*a, chunk_size=chunk_size, **k), inp, gy, gs)
    recurrent = grads(recurrent_ssd, inp, gy, gs)
    for name, a, b in zip(GRAD_NAMES, chunked, recurrent):
        assert_close(a, b, tol, what=f"d{name}")


@pytest.mark.parametrize("impl", ["reference", "torch_fast"])
def test_chunked_ssd_passes_gradcheck(impl):
    inp = make_inputs(5, (4, 2, 2, 2), batch=1, seed=5)  # (H, P, G, N): tiny, grouped

    def fn(x, dt, A, B, C, D, s0):
        kw = {"D": D, "initial_state": s0, "return_final_state": True, "impl": impl}
        return chunk_ssd(x, dt, A, B, C, chunk_size=2, **kw)

    leaves = [inp[k].detach().clone().requires_grad_(True) for k in GRAD_NAMES]
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, "exact64"), (torch.float32, "fp32")])
@pytest.mark.parametrize(("T", "chunk_size"), [(1, 4), (17, 8), (40, 16)])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fast_chunked_ssd_matches_the_reference_forward_and_gradients(
    layout, T, chunk_size, dtype, tol
):
    inp = make_inputs(T, layout, dtype=dtype, seed=21 + T)
    H, P, _, N = LAYOUTS[layout]
    g = torch.Generator().manual_seed(7)
    gy = torch.randn(2, T, H, P, generator=g, dtype=torch.float64).to(dtype)
    gs = torch.randn(2, H, P, N, generator=g, dtype=torch.float64).to(dtype)
    args = (inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"])
    kw = {"D": inp["D"], "initial_state": inp["initial_state"], "return_final_state": True}
    runs = {}
    for impl in ("torch_fast", "reference"):
        y, s = chunk_ssd(*args, chunk_size=chunk_size, impl=impl, **kw)
        run = partial(chunk_ssd, chunk_size=chunk_size, impl=impl)
        runs[impl] = [y, s, *grads(run, inp, gy, gs)]
    for name, a, b in zip(("y", "final_state", *GRAD_NAMES), runs["torch_fast"], runs["reference"]):
        assert_close(a, b, tol, what=name)


@pytest.mark.parametrize("impl", ["reference", "torch_fast"])
@pytest.mark.parametrize("dt_value", [50.0, None], ids=["dt=50", "dt=mixed"])
def test_chunked_ssd_is_finite_for_large_dt_and_long_T(dt_value, impl):
    T = 2048
    inp = make_inputs(T, "per_head", batch=1, dtype=torch.float32, with_init=False, seed=1)
    if dt_value is None:  # huge and tiny steps interleaved: decays from 1 down to exp(-800)
        g = torch.Generator().manual_seed(2)
        pick = torch.rand(1, T, 3, generator=g) < 0.5
        inp["dt"] = torch.where(pick, torch.full_like(inp["dt"], 50.0), inp["dt"] * 1e-3)
    else:
        inp["dt"] = torch.full_like(inp["dt"], dt_value)
    inp["A"] = torch.tensor([-1.0, -4.0, -16.0])
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items() if v is not None}
    y, s = run_with_state(chunk_ssd, leaves, impl=impl)
    assert torch.isfinite(y).all() and torch.isfinite(s).all()
    g = torch.Generator().manual_seed(3)
    loss = (y * torch.randn(y.shape, generator=g)).sum() + (
        s * torch.randn(s.shape, generator=g)
    ).sum()
    loss.backward()
    for name, leaf in leaves.items():
        assert torch.isfinite(leaf.grad).all(), f"non-finite d{name}"
    y_r, s_r = recurrent_ssd(
        inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], return_final_state=True
    )
    assert_close(y.detach(), y_r, "fp32")
    assert_close(s.detach(), s_r, "fp32")


def test_bf16_inputs_give_bf16_output_and_fp32_state():
    inp = make_inputs(20, "shared", dtype=torch.bfloat16, seed=4)
    (y, s), _ = run_both(inp, 8)
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32
    up = {k: (v.float() if v is not None else None) for k, v in inp.items()}
    (y32, s32), _ = run_both(up, 8)
    assert_close(y, y32, "bf16")
    assert_close(s, s32, "fp32")


def test_iterated_ssd_step_matches_chunked():
    T = 13
    inp = make_inputs(T, "grouped", seed=8)
    y_c, s_c = chunk_ssd(
        inp["x"],
        inp["dt"],
        inp["A"],
        inp["B"],
        inp["C"],
        chunk_size=4,
        D=inp["D"],
        initial_state=inp["initial_state"],
        return_final_state=True,
    )
    s = inp["initial_state"]
    ys = []
    for t in range(T):
        x_t, dt_t = inp["x"][:, t], inp["dt"][:, t]
        y_t, s = ssd_step(x_t, dt_t, inp["A"], inp["B"][:, t], inp["C"][:, t], s, D=inp["D"])
        ys.append(y_t)
    assert_close(torch.stack(ys, dim=1), y_c, "exact64")
    assert_close(s, s_c, "exact64")


def rope_bc(inp: dict, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    T, N = inp["B"].shape[1], inp["B"].shape[3]
    cos, sin = rope_cos_sin(T, N, offset=offset)
    return apply_rope(inp["B"], cos, sin), apply_rope(inp["C"], cos, sin)


@pytest.mark.parametrize("layout", ["shared", "per_head"])
def test_chunked_ssd_with_rope_on_bc_matches_recurrent(layout):
    inp = make_inputs(21, layout, seed=12)
    inp["B"], inp["C"] = rope_bc(inp, offset=0)
    (y_c, s_c), (y_r, s_r) = run_both(inp, 8)
    assert_close(y_c, y_r, "exact64")
    assert_close(s_c, s_r, "exact64")


def test_ssd_with_rope_depends_only_on_relative_position():
    inp = make_inputs(19, "per_head", with_init=False, seed=13)
    args = (inp["x"], inp["dt"], inp["A"])
    y0, _ = chunk_ssd(*args, *rope_bc(inp, offset=0), chunk_size=8, D=inp["D"])
    y1, _ = chunk_ssd(*args, *rope_bc(inp, offset=1000), chunk_size=8, D=inp["D"])
    assert_close(y1, y0, "fp32")  # tables are fp32: the tolerance is the table rounding


def test_ssd_step_with_rope_decodes_like_chunked():
    T, (H, P, _, N) = 11, LAYOUTS["per_head"]
    inp = make_inputs(T, "per_head", with_init=False, seed=14)
    Br, Cr = rope_bc(inp, offset=0)
    y_c, _ = chunk_ssd(inp["x"], inp["dt"], inp["A"], Br, Cr, chunk_size=4, D=inp["D"])
    s = torch.zeros(2, H, P, N, dtype=torch.float64)
    for t in range(T):
        cos, sin = rope_cos_sin(1, N, offset=t)  # the decoder only knows its own position
        b_t = apply_rope(inp["B"][:, t : t + 1], cos, sin)[:, 0]
        c_t = apply_rope(inp["C"][:, t : t + 1], cos, sin)[:, 0]
        y_t, s = ssd_step(inp["x"][:, t], inp["dt"][:, t], inp["A"], b_t, c_t, s, D=inp["D"])
        assert_close(y_t, y_c[:, t], "fp32")


def test_ssd_rejects_bad_inputs_naming_the_value():
    inp = make_inputs(6, "grouped")
    x, dt, A, B, C = inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"]
    with pytest.raises(ValueError, match="'triton'"):
        chunk_ssd(x, dt, A, B, C, impl="triton")
    with pytest.raises(ValueError, match="'cuda'"):
        recurrent_ssd(x, dt, A, B, C, impl="cuda")
    with pytest.raises(ValueError, match="G=3"):
        chunk_ssd(x, dt, A, B[:, :, :1].expand(-1, -1, 3, -1), C[:, :, :1].expand(-1, -1, 3, -1))
    with pytest.raises(ValueError, match=r"dt has shape \(2, 6, 3\)"):
        chunk_ssd(x, dt[..., :3], A, B, C)
    with pytest.raises(ValueError, match="chunk_size=0"):
        chunk_ssd(x, dt, A, B, C, chunk_size=0)
    with pytest.raises(ValueError, match="int64"):
        chunk_ssd(x.long(), dt, A, B, C)
    with pytest.raises(ValueError, match=r"initial_state has shape \(2, 4, 3\)"):
        chunk_ssd(x, dt, A, B, C, initial_state=inp["initial_state"][..., 0])
    s = torch.zeros(2, 4, 3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"x_t has shape \(2, 6, 4, 3\)"):
        ssd_step(x, dt[:, 0], A, B[:, 0], C[:, 0], s)
    with pytest.raises(ValueError, match="'fast'"):
        ssd_step(x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], s, impl="fast")
