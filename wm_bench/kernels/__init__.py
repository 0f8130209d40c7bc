"""Kernels: each op folder has reference.py (the spec), api.py (the public surface) and later triton.py."""
