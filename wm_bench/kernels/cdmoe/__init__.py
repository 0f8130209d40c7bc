"""CDMoE retrieval kernels: product-key top-k and single-neuron expert mixing (see api.py)."""

from wm_bench.kernels.cdmoe.api import ACTIVATIONS, IMPLS, expert_mix, product_key_topk

__all__ = ["ACTIVATIONS", "IMPLS", "expert_mix", "product_key_topk"]
