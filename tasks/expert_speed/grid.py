"""The expert-speed grid: methods, scales, points, their FFN configs and hashes, and the paper's
values (what is timed; how: tasks/expert_speed/timing.py; why: tasks/expert_speed)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import pick

EXPERIMENT = "expert_speed"
METRIC = "fwd_bwd_ms"
HIGHER_IS_BETTER = False
RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
EXPERTS: tuple[int, ...] = (16, 64, 256, 1024, 4096, 16384)
SEIMOE_D_FF = 4
MOE_D_FF = 8
HEADS = 4
CDMOE_D_RETRIEVAL = 256
PAPER_FILE = Path(__file__).with_name("paper_values.json")


@dataclass(frozen=True)
class SpeedMethod:
    """One timed method: the FFN of the layer registry it builds (its key is the registry name),
    the config fields it fixes besides num_experts and top_k, its label, and the expert rows of
    D values one token gathers per head and expert (None: experts that are matmuls)."""

    fields: dict[str, Any]
    label: str
    gathered_rows: int | None = None


# The one table of the methods: adding a method here times it at every scale and reports it.
METHOD_TABLE: dict[str, SpeedMethod] = {
    "seimoe": SpeedMethod({"d_ff": SEIMOE_D_FF}, "SEIMoE"),
    "moe": SpeedMethod({"d_ff": MOE_D_FF}, "MoE (grouped)"),
    "pkm": SpeedMethod({"num_heads": HEADS}, "PKM", gathered_rows=1),  # value rows
    "peer": SpeedMethod({"num_heads": HEADS}, "PEER", gathered_rows=2),  # down and up rows
    "cdmoe": SpeedMethod(
        {"num_heads": HEADS, "d_retrieval": CDMOE_D_RETRIEVAL}, "CDMoE", gathered_rows=2
    ),
}
METHODS: tuple[str, ...] = tuple(METHOD_TABLE)
LABELS: dict[str, str] = {key: m.label for key, m in METHOD_TABLE.items()}
# Claim C3: CDMoE 8–10× faster than the paper's MoE (SEIMoE, a loop over experts) with more than
# 1024 experts: judged over the points with N > CLAIM_MIN_EXPERTS (wm_bench.report.expert_speed).
CLAIM_C3: dict[str, Any] = {"subject": "cdmoe", "baseline": "seimoe", "min_speedup": 8.0}
CLAIM_MIN_EXPERTS = 1024
# median: the first protocol (median of 3 calls, one method at a time, no repeats kept)
PROTOCOLS: tuple[str, ...] = ("median", "round_robin")


@dataclass(frozen=True)
class SpeedScale:
    """One scale: the input, the grid and how to time."""

    batch: int
    seq_len: int
    d_model: int
    dtype: str
    device: str  # "cpu" or "cuda"
    experts: tuple[int, ...]
    ratios: tuple[float, ...]
    methods: tuple[str, ...] = METHODS
    repeats: int = 10
    warmup: int = 1
    protocol: str = "round_robin"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"SpeedScale.protocol={self.protocol!r}; valid: {list(PROTOCOLS)}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(
                f"SpeedScale: repeats={self.repeats} must be ≥ 1, warmup={self.warmup} ≥ 0"
            )


SCALES: dict[str, SpeedScale] = {
    "smoke": SpeedScale(1, 64, 32, "float32", "cpu", (16, 64), (0.5, 1.0), repeats=3, warmup=0),
    "cpu": SpeedScale(2, 256, 64, "float32", "cpu", EXPERTS, RATIOS),
    "small": SpeedScale(8, 2048, 1024, "bfloat16", "cuda", EXPERTS, RATIOS),
    "paper": SpeedScale(8, 2048, 1024, "bfloat16", "cuda", EXPERTS, RATIOS),
}


# The SpeedPoint fields a result's tags carry (what reports label a timed point by).
TAG_FIELDS = ("method", "num_experts", "top_k", "ratio")


@dataclass(frozen=True)
class SpeedPoint:
    """One timed layer: method, N, k (and the ratio it came from), input and device."""

    method: str
    num_experts: int
    top_k: int
    ratio: float
    batch: int
    seq_len: int
    d_model: int
    dtype: str
    device: str

    @property
    def tags(self) -> dict[str, Any]:
        """The fields reports label the point by (the whole point is in its result's config)."""
        return {f: getattr(self, f) for f in TAG_FIELDS}


def spec(scale: str) -> SpeedScale:
    """The SpeedScale of `scale`; ValueError naming the valid scales."""
    return pick(SCALES, scale, "expert_speed: unknown scale")


def k_for(num_experts: int, ratio: float) -> int:
    """k = round(ratio·√N), at least 1 (the paper's k column)."""
    return max(1, round(ratio * math.isqrt(num_experts)))


def points(scale: str) -> list[SpeedPoint]:
    """Every point of the grid at `scale`, ordered by (N, ratio, method)."""
    s = spec(scale)
    return [
        SpeedPoint(m, n, k_for(n, r), r, s.batch, s.seq_len, s.d_model, s.dtype, s.device)
        for n in s.experts
        for r in s.ratios
        for m in s.methods
    ]


def ffn_config(p: SpeedPoint) -> Any:
    """The FFN config of a point (layer registry imported lazily)."""
    from wm_bench.layers.ffn import FFNS

    fields = pick(METHOD_TABLE, p.method, "expert_speed: unknown method").fields
    return FFNS[p.method][1](num_experts=p.num_experts, top_k=p.top_k, **fields)


def retrieval_bytes(p: SpeedPoint) -> int | None:
    """Bytes of expert rows one forward gathers (PKM: value rows; PEER/CDMoE: down + up rows).

    None for the MoE methods, whose experts are matmuls rather than gathered rows.
    """
    elem = {"float32": 4, "bfloat16": 2, "float16": 2}[p.dtype]
    tokens = p.batch * p.seq_len
    rows = METHOD_TABLE[p.method].gathered_rows
    return None if rows is None else tokens * HEADS * p.top_k * rows * p.d_model * elem


def point_hash(p: SpeedPoint, s: SpeedScale | None = None) -> str:
    """A stable 16-hex-digit hash of the point, the method settings above and, for round-robin
    timing, the protocol (repeats, warm-up). Without `s` (or with the median protocol) it is the
    hash the results timed by the median protocol carry."""
    from wm_bench.config import config_hash, to_dict

    body: dict[str, Any] = {"point": asdict(p), "ffn": to_dict(ffn_config(p))}
    if s is not None and s.protocol != "median":
        body["timing"] = {"protocol": s.protocol, "repeats": s.repeats, "warmup": s.warmup}
    return config_hash(body)


@lru_cache(maxsize=1)
def load_paper() -> dict[str, Any]:
    """The paper's speed figure as shipped in paper_values.json."""
    return json.loads(PAPER_FILE.read_text())


def paper_points() -> dict[tuple[str, int, float], float]:
    """(method, N, ratio) → the paper's milliseconds (SEIMoE, PKM, PEER, CDMoE; N ≤ 1024)."""
    src = load_paper()
    out = {}
    for n, row in src["rows"].items():
        for label, method in src["methods"].items():
            for ratio, ms in zip(src["ratios"], row[label], strict=True):
                out[(method, int(n), float(ratio))] = float(ms)
    return out
