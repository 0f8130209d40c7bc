"""GPU readiness without a GPU: sm_90a compile checks, the device bundle and the one-call suite."""

from __future__ import annotations

H100_SMEM_PER_BLOCK = 227 * 1024  # bytes: the opt-in shared-memory limit of one block on sm_90
