"""Layers: parameters around the kernels (position encodings, sequence mixers, FFNs, norms)."""
