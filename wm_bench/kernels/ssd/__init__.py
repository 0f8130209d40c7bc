"""SSD (Mamba-2 state space duality) kernels: chunked and recurrent scans, one decoding step."""

from wm_bench.kernels.ssd.api import chunk_ssd, recurrent_ssd, ssd_step

__all__ = ["chunk_ssd", "recurrent_ssd", "ssd_step"]
