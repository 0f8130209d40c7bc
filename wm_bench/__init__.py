"""wm_bench: benchmark-and-ablation suite for hybrid LM architectures (Wonderful Matrices, arXiv 2412.11834)."""

__version__ = "0.1.0"
