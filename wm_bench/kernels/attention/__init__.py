"""Attention kernels: causal/GQA softmax attention with DMA per-key bias and top-w window."""

from wm_bench.kernels.attention.api import attention, window_last_row

__all__ = ["attention", "window_last_row"]
