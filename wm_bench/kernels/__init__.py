"""Kernels: per op, reference.py (the spec), api.py (the public surface) and triton.py."""
