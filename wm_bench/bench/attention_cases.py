"""The attention benchmark's problems: shapes, variants, their FLOPs, inputs and executed tiles."""

from __future__ import annotations

from typing import Any

SHAPES = {  # (B, H, T, D): head dims 64 and 128, 2K to 16K tokens
    "b8_h16_t2k_d64": (8, 16, 2048, 64),
    "b4_h16_t4k_d128": (4, 16, 4096, 128),
    "b1_h16_t16k_d64": (1, 16, 16384, 64),
}
INTERPRET_SHAPES = {"tiny_b1_h2_t48_d16": (1, 2, 48, 16)}
VARIANTS = ("causal", "bias", "w2", "w8")  # w2 / w8: window T/2, T/8


def window_of(variant: str, T: int) -> int | None:
    """The top-w window of a variant at length T (None: no window)."""
    return {"w2": T // 2, "w8": T // 8}.get(variant)


def visible_pairs(T: int, window: int | None) -> int:
    """(query, key) pairs one causal (batch, head) attends to: Σ_i min(i + 1, w)."""
    if window is None:
        return T * (T + 1) // 2
    w = min(window, T)
    return w * (w + 1) // 2 + (T - w) * w


def useful_flops(B: int, H: int, T: int, D: int, window: int | None, backward: bool) -> float:
    """4·D FLOPs per visible pair forward (q·k, p·v); fwd+bwd 3.5×, as docs/anchors.md §2 counts."""
    f = 4.0 * D * B * H * visible_pairs(T, window)
    return f * 3.5 if backward else f


def make_inputs(
    B: int, H: int, T: int, D: int, *, dtype: Any, device: str, bias_kind: str, seed: int
) -> dict[str, Any]:
    """q, k, v [B, T, H, D] and key_bias [B, H, T] leaves, and a fixed cotangent do."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device)

    bias = rnd(B, H, T)
    if bias_kind == "smooth":
        bias = bias.cumsum(-1) / T**0.5  # a random walk: neighbouring keys rank alike
    inp = {n: rnd(B, T, H, D).to(dtype).requires_grad_(True) for n in ("q", "k", "v")}
    inp["key_bias"] = bias.to(dtype).requires_grad_(True)
    inp["do"] = rnd(B, T, H, D).to(dtype)
    return inp


def executed_tiles(
    key_bias: Any, window: int | None, tie_break: str, block_m: int, block_n: int
) -> int:
    """(query block, key tile) products our forward computes.

    No window: the causal lower triangle of the block grid. Top-w window (`triton_slots`): per
    query block, one gathered tile per group of block_n slots holding a key alive at the block's
    first row and born before it, plus the block's own diagonal tiles.
    """
    import torch

    B, H, T = key_bias.shape
    nq, nk = -(-T // block_m), -(-T // block_n)
    q0 = torch.arange(nq, device=key_bias.device) * block_m  # first row of each query block
    if window is None or window >= T:
        k0 = torch.arange(nk, device=key_bias.device) * block_n
        return int((k0[None, :] < (q0[:, None] + block_m)).sum()) * B * H
    from wm_bench.kernels.attention.triton_slots import window_chains
    from wm_bench.kernels.attention.triton_window import window_last_row_triton

    last = window_last_row_triton(key_bias.detach().float(), window, tie_break=tie_break)
    last = last.view(B * H, T)
    chain, seg, _ = window_chains(last, window)
    W = min(window, T)
    pos = torch.arange(T, device=last.device).expand(B * H, T).contiguous()
    slot_at = torch.searchsorted(seg[:, 1:].contiguous(), pos.to(seg.dtype), right=True)
    slot = torch.full((B * H, T + 1), W, dtype=torch.long, device=last.device)
    slot.scatter_(1, chain.long(), slot_at.long())  # padding entries of chain land on column T
    slot = slot[:, :T]
    j = torch.arange(T, device=last.device)
    alive = (j[None, None, :] < q0[None, :, None]) & (last.long()[:, None, :] >= q0[None, :, None])
    alive &= (slot < W)[:, None, :]  # [BH, nq, T]
    n_groups = -(-W // block_n)
    group = (slot // block_n).clamp(max=n_groups)[:, None, :].expand_as(alive)
    hits = torch.zeros(B * H, nq, n_groups + 1, dtype=torch.int32, device=last.device)
    hits.scatter_add_(2, group, alive.to(torch.int32))
    diag = sum(-(-min(block_m, T - int(r)) // block_n) for r in q0.tolist())
    return int((hits[..., :n_groups] > 0).sum()) + diag * B * H
