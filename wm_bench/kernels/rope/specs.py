"""RoPE Triton kernel specs for the sm_90a ahead-of-time compile check (`wm_bench.gpu.compile`)."""

from __future__ import annotations

from wm_bench.gpu.registry import CompileConfig, KernelSpec
from wm_bench.kernels.rope.triton import _rope_kernel


def _signature(x_type: str) -> dict[str, str]:
    """What `launch_rope` passes: x/y in the activation dtype, fp32 tables, i32 sizes/strides."""
    ints = ("T", "H", "stride_xb", "stride_xt", "stride_xh")
    ints += ("stride_yb", "stride_yt", "stride_yh", "stride_ct")
    return {"X": x_type, "COS": "*fp32", "SIN": "*fp32", "Y": x_type} | dict.fromkeys(ints, "i32")


# Head dims 64 and 128 (HALF = D/2, BLOCK_D = next_pow2(HALF)); BLOCK_H = min(next_pow2(H), 16):
# 16 for attention heads, 1 for SSD's B/C with one group. CONJ=True is the backward.
_CASES = tuple(
    {"HALF": half, "BLOCK_D": half, "BLOCK_H": bh, "CONJ": conj}
    for half, bh, conj in (
        (32, 16, False),
        (32, 16, True),
        (64, 16, False),
        (64, 16, True),
        (64, 1, False),
    )
)

# The runtime marks 16-divisible ints; with D ∈ {64, 128} every stride is a multiple of 16.
_ALIGNED = ("X", "COS", "SIN", "Y", "stride_xb", "stride_xt", "stride_xh")
_ALIGNED += ("stride_yb", "stride_yt", "stride_yh", "stride_ct")

# launch_rope has no autotuner: the one config is Triton's default launch (4 warps, 3 stages).
_DEFAULT_LAUNCH = (CompileConfig(num_warps=4, num_stages=3),)

KERNEL_SPECS: list[KernelSpec] = [
    KernelSpec(
        name="rope_bf16",
        fn=_rope_kernel,
        signature=_signature("*bf16"),
        cases=_CASES,
        configs=_DEFAULT_LAUNCH,
        instructions=(),  # elementwise: no matrix instructions expected
        aligned=_ALIGNED,
    ),
    KernelSpec(
        name="rope_fp32",
        fn=_rope_kernel,
        signature=_signature("*fp32"),
        cases=(_CASES[2],),
        configs=_DEFAULT_LAUNCH,
        instructions=(),
        aligned=_ALIGNED,
    ),
]
