"""Fixtures of the kernel tests, beside tests/conftest.py's `triton_device` and `cuda_device`."""

from __future__ import annotations

import pytest
import torch

from wm_bench.kernels._impl import interpreting


@pytest.fixture
def gpu_device(cuda_device: torch.device) -> torch.device:
    """CUDA with compiled kernels: realistic shapes, skipped under the interpreter (too slow)."""
    if interpreting():
        pytest.skip("realistic shapes need compiled kernels, not TRITON_INTERPRET=1")
    return cuda_device
