"""The attention implementations the benchmark times: ours, SDPA (FLASH, CUDNN), Flex, flash-dmattn.

Each is a function (inputs, variant, window, tie_break) → o [B, T, H, D].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from wm_bench.bench.attention_cases import VARIANTS

IMPLS = ("ours", "sdpa_flash", "sdpa_cudnn", "flex", "flash_dmattn")
SUPPORTS = {  # impl → variants it can run
    "ours": VARIANTS,
    "sdpa_flash": ("causal",),
    "sdpa_cudnn": ("causal",),
    "flex": VARIANTS,
    "flash_dmattn": ("bias", "w2", "w8"),
}


def ours(impl: str) -> Callable[..., Any]:
    """Our attention with `impl` ("triton": the kernel timed; "reference": the check's)."""

    def run(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
        from wm_bench.kernels.attention import attention

        bias = None if variant == "causal" else inp["key_bias"]
        q, k, v = inp["q"], inp["k"], inp["v"]
        return attention(q, k, v, key_bias=bias, window=window, tie_break=tie_break, impl=impl)

    return run


def _sdpa(backend_name: str) -> Callable[..., Any]:
    def run(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = getattr(SDPBackend, backend_name)
        q, k, v = (inp[n].transpose(1, 2) for n in ("q", "k", "v"))  # views, no copies
        with sdpa_kernel([backend]):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return o.transpose(1, 2)

    return run


_FLEX_CACHE: dict[Any, Any] = {}


def _flex(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
    """FlexAttention (compiled): the bias as a score_mod, causal / top-w as a block mask."""
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, k, v = (inp[n].transpose(1, 2) for n in ("q", "k", "v"))
    B, H, T, _ = q.shape
    key = (variant, window, tie_break, B, H, T, inp["key_bias"].data_ptr())
    if key not in _FLEX_CACHE:
        if window is None:

            def mask_mod(b, h, qi, kj):
                return kj <= qi
        else:
            from wm_bench.kernels.attention.last_row import window_last_row

            last = window_last_row(inp["key_bias"].detach().float(), window, tie_break=tie_break)

            def mask_mod(b, h, qi, kj):
                return (kj <= qi) & (qi <= last[b, h, kj])

        block_mask = create_block_mask(mask_mod, B, H, T, T, device=q.device)
        _FLEX_CACHE.clear()  # one problem's mask at a time (they are O(T²/128²) each)
        _FLEX_CACHE[key] = (block_mask, torch.compile(flex_attention, dynamic=False))
    block_mask, fn = _FLEX_CACHE[key]
    if variant == "causal":
        o = fn(q, k, v, block_mask=block_mask)
    else:
        bias = inp["key_bias"]

        def score_mod(score, b, h, qi, kj):
            return score + bias[b, h, kj]

        o = fn(q, k, v, score_mod=score_mod, block_mask=block_mask)
    return o.transpose(1, 2)


def _flash_dmattn(inp: dict, variant: str, window: int | None, tie_break: str) -> Any:
    """flash-dmattn's Triton backend: it takes a dense [B, H, T, S] bias and mask."""
    import torch
    from flash_dmattn import triton_dmattn_func

    q, k, v, kb = inp["q"], inp["k"], inp["v"], inp["key_bias"]
    B, T, H, _ = q.shape
    bias = kb[:, :, None, :].expand(B, H, T, T)
    mask = None
    if window is not None:
        from wm_bench.kernels.attention.last_row import window_last_row
        from wm_bench.kernels.attention.reference import causal_mask

        last = window_last_row(kb.detach().float(), window, tie_break=tie_break)
        rows = torch.arange(T, device=q.device)[:, None]
        keep = causal_mask(T, T, q.device) & (rows <= last[:, :, None, :])
        mask = keep.to(q.dtype)
    return triton_dmattn_func(q, k, v, attn_mask=mask, attn_bias=bias, is_causal=True)


RUNNERS: dict[str, Callable[..., Any]] = {
    "ours": ours("triton"),
    "sdpa_flash": _sdpa("FLASH_ATTENTION"),
    "sdpa_cudnn": _sdpa("CUDNN_ATTENTION"),
    "flex": _flex,
    "flash_dmattn": _flash_dmattn,
}


def availability(impls: Sequence[str], cuda: bool) -> dict[str, str]:
    """impl → why it cannot run here ("" when it can)."""
    import importlib.util

    why = {}
    for name in impls:
        if name == "ours":
            why[name] = ""
        elif not cuda:
            why[name] = "needs CUDA"
        elif name == "flash_dmattn" and importlib.util.find_spec("flash_dmattn") is None:
            why[name] = "flash_dmattn not importable (pip install flash-dmattn; benchmark-only)"
        else:
            why[name] = ""
    return why
