"""CDMoE Triton kernel specs for the sm_90a ahead-of-time compile check: `wm-bench gpu compile`.

Expert mix: the three kernels at the launch config `triton_mix.GPU_CONFIGS` ships, with bf16
activations and tables, int64 expert ids (what product_key_topk returns), fp32 gates (the layers'
softmax) and fp32 [M, J] side buffers; one case per activation (each is its own specialisation).
The width D is a runtime int that the kernels walk in BLOCK_D tiles, so D = 256 and D = 1024
(both multiples of 16: aligned row strides) compile to the same binary: one compile covers both.
Product-key top-k: the selection kernel at the candidate-list widths of k = 16, 32, 64 (the
CDMoE presets' k = √N / 4 for N up to 65536), with the warps the launcher picks for each.
No kernel here uses tl.dot: instructions=().
"""

from __future__ import annotations

from wm_bench.gpu.registry import CompileConfig, KernelSpec
from wm_bench.kernels.cdmoe.triton_mix import (
    ACTIVATIONS,
    GPU_CONFIGS,
    _mix_bwd_table,
    _mix_bwd_token,
    _mix_fwd,
)
from wm_bench.kernels.cdmoe.triton_topk import _pk_select, _warps, candidate_pairs

TOPK = (16, 32, 64)  # experts per head for the product-key selection cases


def _config(kind: str) -> CompileConfig:
    """The shipped launch of one expert-mix kernel: warps, stages and block constexprs."""
    cfg = dict(GPU_CONFIGS[kind])
    warps, stages = cfg.pop("num_warps"), cfg.pop("num_stages")
    return CompileConfig(num_warps=warps, num_stages=stages, constexprs=cfg)


def _mix_specs() -> list[KernelSpec]:
    ints = ("J", "D", "stride_x", "stride_w", "stride_y")
    fwd_sig = {"X": "*bf16", "DOWN": "*bf16", "UP": "*bf16", "IDX": "*i64", "GATE": "*fp32"}
    fwd_sig |= {"Y": "*bf16", "H": "*fp32", "A": "*fp32"} | dict.fromkeys(ints, "i32")
    ints = ("J", "D", "stride_dy", "stride_w", "stride_dx")
    tok_sig = {"DY": "*bf16", "DOWN": "*bf16", "UP": "*bf16", "IDX": "*i64", "GATE": "*fp32"}
    tok_sig |= {"H": "*fp32", "DX": "*bf16", "DGATE": "*fp32", "DH": "*fp32"}
    tok_sig |= dict.fromkeys(ints, "i32")
    ints = ("S", "J", "D", "stride_x", "stride_dy", "stride_dw")
    tab_sig = {"X": "*bf16", "DY": "*bf16", "A": "*fp32", "DH": "*fp32", "PAIRS": "*i32"}
    tab_sig |= {"EXPERT": "*i64", "STARTS": "*i32", "DDOWN": "*bf16", "DUP": "*bf16"}
    tab_sig |= dict.fromkeys(ints, "i32")
    # Pointers from torch are 16-byte aligned; D = 256 or 1024 and the row strides (= D) are
    # 16-divisible, which the launcher specialises on (vector loads along D). J = He·k and the
    # segment count S need not be.
    out = []
    for name, fn, sig, kind in (
        ("cdmoe_mix_fwd", _mix_fwd, fwd_sig, "fwd"),
        ("cdmoe_mix_bwd_token", _mix_bwd_token, tok_sig, "bwd_token"),
        ("cdmoe_mix_bwd_table", _mix_bwd_table, tab_sig, "bwd_table"),
    ):
        cases = {act: {"ACT": act} for act in ACTIVATIONS} if kind != "bwd_table" else {"all": {}}
        aligned = tuple(n for n in sig if sig[n].startswith("*") or n.startswith("stride"))
        aligned += ("D",)
        out.append(
            KernelSpec(
                name=name,
                fn=fn,
                signature=sig,
                cases=tuple(cases.values()),
                case_names=tuple(cases),
                configs=(_config(kind),),
                instructions=(),
                aligned=aligned,
            )
        )
    return out


def _topk_spec(k: int) -> KernelSpec:
    """The selection kernel for top-k, at the padded candidate count the launcher uses."""
    block_p = candidate_pairs.__wrapped__(k, k, "cpu")[0].numel()
    sig = {"T1": "*fp32", "I1": "*i64", "T2": "*fp32", "I2": "*i64", "PA": "*i32"}
    sig |= {"PB": "*i32", "OUT": "*i64", "P": "i32", "n": "i32", "k": "i32", "stride_t": "i32"}
    return KernelSpec(
        name=f"cdmoe_pk_select_k{k}",
        fn=_pk_select,
        signature=sig,
        cases=({"BLOCK_P": block_p, "BLOCK_K": k},),
        case_names=(f"p{block_p}",),
        configs=(CompileConfig(num_warps=_warps(block_p), num_stages=1),),
        instructions=(),
        aligned=("T1", "I1", "T2", "I2", "PA", "PB", "OUT"),
    )


KERNEL_SPECS: list[KernelSpec] = [*_mix_specs(), *(_topk_spec(k) for k in TOPK)]
