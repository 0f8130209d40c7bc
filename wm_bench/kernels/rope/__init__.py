"""RoPE kernels: rotary position embedding tables and rotate-half application."""

from wm_bench.kernels.rope.api import apply_rope, rope_cos_sin

__all__ = ["apply_rope", "rope_cos_sin"]
