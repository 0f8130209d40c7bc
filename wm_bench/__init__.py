"""wm_bench: benchmarks and ablations for hybrid LMs (Wonderful Matrices, arXiv 2412.11834)."""

__version__ = "0.1.0"
