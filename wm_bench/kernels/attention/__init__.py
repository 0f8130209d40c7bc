"""Attention kernels: causal/GQA softmax attention with DMA per-key bias and top-w window."""

from wm_bench.kernels.attention.api import attention, dense_attention_reference, window_last_row

__all__ = ["attention", "dense_attention_reference", "window_last_row"]
