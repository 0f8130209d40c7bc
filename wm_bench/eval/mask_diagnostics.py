"""DMA mask diagnostics on MQAR: which induction-circuit edges the top-w key selection keeps."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from wm_bench.kernels.attention.last_row import window_last_row
from wm_bench.kernels.attention.reference import causal_mask

IGNORE_INDEX = -100
EDGES: tuple[str, ...] = ("prev_token", "prev_token_values", "query_value", "diagonal")
DEFAULT_EXAMPLES = 256  # test examples the diagnostics read (the first ones of the test split)
PAIR_BUDGET = 1 << 24  # at most ≈ this many (row, key) pairs: fewer examples for long sequences


def dma_layers(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """The model's DMA mixers in layer order.

    Args:
        model: a `wm_bench.model.LanguageModel` (anything with `.blocks[i].mixer`).
    Returns:
        [(layer index, DMA module)], empty when the model has no DMA layer.
    """
    from wm_bench.layers.mixers.dma import DMA

    blocks = getattr(model, "blocks", [])
    return [(i, b.mixer) for i, b in enumerate(blocks) if isinstance(b.mixer, DMA)]


@torch.no_grad()
def capture_key_biases(model: nn.Module, input_ids: Tensor) -> dict[int, Tensor]:
    """Each DMA layer's per-key bias on `input_ids`, as the layer computed it in the forward pass.

    A forward hook on each DMA layer's W_Δ (`dt_proj`) records its input (the layer's values,
    flattened over heads) during one forward of `model.hidden`; the bias is then the layer's own
    `key_bias` of those values, so A, the bias form and the dtype rules are the layer's.

    Args:
        model: a LanguageModel with DMA layers.
        input_ids: [B, T] int64 on the model's device.
    Returns:
        {layer index: bias [B, Hkv, T] float32 or wider}.
    """
    layers = dma_layers(model)
    seen: dict[int, Tensor] = {}
    hooks = [
        dma.dt_proj.register_forward_hook(
            lambda _m, inp, _out, i=i: seen.__setitem__(i, inp[0].detach())
        )
        for i, dma in layers
    ]
    try:
        model.hidden(input_ids)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for i, dma in layers:
        v = seen[i].unflatten(-1, (dma.n_kv_heads, dma.head_dim))  # [B, T, Hkv, P]
        out[i] = dma.key_bias(v)
    return out


def keep_mask(key_bias: Tensor, window: int | None, tie_break: str) -> Tensor:
    """The key selection of the attention kernel: row i keeps key j iff j ≤ i ≤ last_row[j].

    The same rule as `wm_bench.kernels.attention.reference.attention` (per key, the last query
    row whose top-`window` by bias among its visible keys still holds it, `window_last_row`);
    window None keeps every causally visible key.

    Args:
        key_bias: [B, H, S] per-key bias.
        window: w ≥ 1 or None.
        tie_break: "smaller_index" or "larger_index".
    Returns:
        [B, H, S, S] bool: keep[b, h, i, j] (query row i, key j), already causal.
    """
    S = key_bias.shape[-1]
    causal = causal_mask(S, S, key_bias.device)[None, None]  # [1, 1, S, S]
    if window is None:
        return causal.expand(*key_bias.shape[:2], S, S)
    last = window_last_row(key_bias, window, tie_break=tie_break)  # [B, H, S]
    rows = torch.arange(S, device=key_bias.device)[:, None]  # [S, 1]
    return causal & (rows <= last[:, :, None, :])


def _fraction(kept: Tensor) -> float | None:
    return float(kept.float().mean()) if kept.numel() else None


def edge_fractions(
    keep: Tensor, input_ids: Tensor, labels: Tensor, num_kv_pairs: int
) -> dict[str, float | None]:
    """Fractions of the induction circuit's edges that a keep-mask retains.

    MQAR layout (`wm_bench.data.mqar`): key j at position 2j, its value at 2j + 1 (j < kv); a
    query repeats key j at a later position p, labelled with the value.

    Args:
        keep: [B, H, T, T] bool (query row, key).
        input_ids: [B, T] int64.
        labels: [B, T] int64 (IGNORE_INDEX where unlabelled).
        num_kv_pairs: kv.
    Returns:
        prev_token: rows t ≥ 1 keeping key t − 1 (all rows);
        prev_token_values: value rows 2j + 1 keeping their key 2j (the edge the first layer of
            an induction circuit uses to copy the key into the value's position);
        query_value: query rows p keeping the position 2j + 1 of the value they ask for (the
            edge the second layer reads the answer through);
        diagonal: rows t keeping key t.
        Each is averaged over rows, heads and examples (None when there is no such edge).
    """
    T = keep.shape[2]
    t = torch.arange(1, T, device=keep.device)
    vrows = torch.arange(1, min(2 * num_kv_pairs, T), 2, device=keep.device)
    diag = torch.arange(T, device=keep.device)
    out: dict[str, float | None] = {
        "prev_token": _fraction(keep[:, :, t, t - 1]),
        "prev_token_values": _fraction(keep[:, :, vrows, vrows - 1]),
        "diagonal": _fraction(keep[:, :, diag, diag]),
    }
    values = input_ids[:, 1 : 2 * num_kv_pairs : 2]  # [B, kv] the values in context order
    b, p = torch.nonzero(labels != IGNORE_INDEX, as_tuple=True)  # labelled query positions
    match = values[b] == labels[b, p][:, None]  # [M, kv]
    found = match.any(-1)
    b, p = b[found], p[found]
    vpos = 2 * match[found].float().argmax(-1) + 1  # [M] position of the asked-for value
    out["query_value"] = _fraction(keep[b, :, p, vpos])  # [M, H]
    return out


def bias_spread(key_bias: Tensor) -> dict[str, float | None]:
    """max − min of the bias over each row's visible keys (rows ≥ 1), summarised.

    Args:
        key_bias: [B, H, S].
    Returns:
        {"median", "min", "max"} over rows, heads and examples (None for S < 2).
    """
    b = key_bias.double()
    spread = (b.cummax(-1).values - b.cummin(-1).values)[..., 1:]  # [B, H, S − 1]
    if not spread.numel():
        return {"median": None, "min": None, "max": None}
    flat = spread.flatten()
    return {
        "median": float(flat.quantile(0.5)),
        "min": float(flat.min()),
        "max": float(flat.max()),
    }


@torch.no_grad()
def mask_diagnostics(
    model: nn.Module, input_ids: Tensor, labels: Tensor, num_kv_pairs: int
) -> list[dict[str, Any]]:
    """Per DMA layer: kept edge fractions, A per head and the per-row bias spread.

    Runs one forward pass in eval mode without gradients and puts the model back in its
    previous mode; the global RNG state is left untouched.

    Args:
        model: a LanguageModel.
        input_ids, labels: [B, T] int64 MQAR examples.
        num_kv_pairs: kv of the examples.
    Returns:
        One dict per DMA layer (layer order): layer, window, tie_break, bias_form, A (list per
        KV head), kept ({edge: fraction}, see `edge_fractions`), bias_spread ({median, min,
        max}). Empty when the model has no DMA layer.
    """
    layers = dma_layers(model)
    if not layers:
        return []
    device = next(model.parameters()).device
    x, y = input_ids.to(device), labels.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            biases = capture_key_biases(model, x)
    finally:
        model.train(was_training)
    out = []
    for i, dma in layers:
        bias = biases[i]  # [B, Hkv, T]
        keep = keep_mask(bias, dma.cfg.window, dma.cfg.tie_break)
        out.append(
            {
                "layer": i,
                "window": dma.cfg.window,
                "tie_break": dma.cfg.tie_break,
                "bias_form": dma.cfg.bias_form,
                "A": [float(a) for a in dma.A.detach().cpu()],
                "kept": edge_fractions(keep, x, y, num_kv_pairs),
                "bias_spread": bias_spread(bias),
            }
        )
    return out


def for_run(cfg: Any, dm: Any, model: nn.Module, n_examples: int = DEFAULT_EXAMPLES) -> Any:
    """The diagnostics a run records (`extra.mask_diagnostics`), or None when they do not apply.

    They apply to MQAR runs (`cfg.data.name == "mqar"`) whose model has DMA layers, and read
    the first `n_examples` examples of the run's test split (the DataModule's validation set),
    fewer (at least 8) when longer sequences would exceed PAIR_BUDGET (row, key) pairs.

    Args:
        cfg: the RunConfig.
        dm: its DataModule (an MqarDataModule).
        model: the LanguageModel, at initialisation or after training.
    Returns:
        {"n_examples": n, "layers": [per-layer dicts of `mask_diagnostics`]} or None.
    """
    if getattr(cfg.data, "name", None) != "mqar" or not dma_layers(model):
        return None
    x, y = dm.val_dataloader().dataset.tensors  # no iteration: no RNG is drawn
    n = min(n_examples, max(8, PAIR_BUDGET // (x.shape[1] * x.shape[1])))
    x, y = x[:n], y[:n]
    layers = mask_diagnostics(model, x, y, cfg.data.num_kv_pairs)
    return {"n_examples": int(x.shape[0]), "layers": layers}


def summary_rows(diag: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Flatten a run's `{"init": …, "final": …}` record into one row per (stage, layer)."""
    rows = []
    for stage in ("init", "final"):
        d = (diag or {}).get(stage) or {}
        for layer in d.get("layers", []):
            rows.append({"stage": stage, **layer})
    return rows


__all__ = [
    "EDGES",
    "bias_spread",
    "capture_key_biases",
    "dma_layers",
    "edge_fractions",
    "for_run",
    "keep_mask",
    "mask_diagnostics",
    "summary_rows",
]
