"""Fixtures every test folder shares: where Triton kernels run, and CUDA-only tests.

    def test_kernel(triton_device): ...   # CUDA, or the CPU under TRITON_INTERPRET=1; else skipped
    def test_timing(cuda_device): ...     # CUDA only

Comparisons use `wm_bench.testing.assert_close` (one error metric, named tolerances).
"""

from __future__ import annotations

import pytest
import torch

from wm_bench.testing import triton_device as _where_triton_runs


@pytest.fixture
def triton_device() -> torch.device:
    """The device a Triton kernel runs on here; the test is skipped where none can."""
    device = _where_triton_runs()
    if device is None:
        pytest.skip("needs CUDA, or TRITON_INTERPRET=1 on the CPU (make test-interpret)")
    return device


@pytest.fixture
def cuda_device() -> torch.device:
    """The CUDA device; the test is skipped without one."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")
