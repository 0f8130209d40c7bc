"""Expert-retrieval speed (docs/spec.md §6, claim C3): time of each expert layer vs N experts and k.

What runs. For every method, N ∈ experts(scale) and ratio ∈ ratios(scale), one FFN layer with
N experts and k = round(ratio·√N) experts per token (the paper's k: N = 1024 → 8, 16, 24, 32) is
timed on random tokens [B, T, d]: forward, and forward + backward into the input and every
parameter (`wm_bench.bench.ffn_speed`). One result file per point; nothing is trained.

Methods and the choices the paper does not state:
- SEIMoE: the paper's "MoE" — softmax router over N, top-k probabilities, a Python loop over
  the N experts (gather, MLP, index_add), one sigmoid-gated shared expert. Each expert is a
  non-gated MLP of width 4 (SEIMOE_D_FF): then a token activates 2·d·4·k expert parameters,
  exactly CDMoE's private 2·d·H_e·k with H_e = 4 heads, and the N experts hold 8·N·d parameters
  (at N = 16384, d = 1024: 134M, which fits; the paper's wider experts would not,
  docs/anchors.md §2).
- MoE: the fair baseline — the same kind of router, tokens sorted by expert, one grouped matmul
  per projection (`torch._grouped_mm` on Hopper GPUs; the loop over expert slices elsewhere),
  gated experts of width 8 (MOE_D_FF: the narrowest whose rows are 16-byte multiples in bf16,
  which torch._grouped_mm requires), no shared expert, Switch aux loss 0.01.
- PKM, PEER: product-key retrieval with 4 heads, query width 128 per head (layer defaults).
- CDMoE: 4 heads, retrieval width 256, shared gated MLP of width 4d (the Dec-2024 default), i.e.
  the whole layer as a model would run it.
Every layer runs with impl="auto" (Triton / grouped paths on CUDA, references on the CPU); the
impls that ran are recorded in each result.

How it times (issue 17). The methods of one (N, ratio) are built together and timed
round-robin (`wm_bench.bench.common.interleaved_times`): after one untimed first call each and
`warmup` untimed rounds, each of `repeats` rounds times every method's forward and
forward + backward once, in an order rotated every round, so that load from other processes
hits all methods alike. Each result keeps its per-repeat milliseconds
(`extra.fwd_ms_repeats`, `extra.fwd_bwd_ms_repeats`; the metrics are their medians), the
session it was timed in (`extra.session`: results of one session are paired by repeat), and the
1/5/15-minute load averages before and after (`timing.loadavg_before` / `loadavg_after`). The
report bootstraps the CDMoE speed-up from the repeats. Results timed the old way (median of 3,
one method at a time, no repeats kept) still load; a round-robin result of the same point
replaces them in the report.

Scales (edit the SpeedScale constants below): smoke is CPU plumbing in seconds (B·T = 64 tokens,
d = 32, N ∈ {16, 64}, two ratios, 3 repeats); cpu is one CPU process with 2 threads, B·T = 512
tokens, d = 64, N ∈ {16, …, 16384}, the four ratios, fp32, 10 round-robin repeats (≈ 13–15 min
on 2 idle cores); small / paper is one GPU with the paper's input (B = 8, T = 2048, d = 1024) in
bf16. CPU times are not comparable with the paper's GPU milliseconds; only the ratios between
methods are. How the cpu scale was sized, and its cost against the committed runs, is in
tasks/expert_speed/README.md.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

EXPERIMENT = "expert_speed"
METRIC = "fwd_bwd_ms"
HIGHER_IS_BETTER = False
METHODS: tuple[str, ...] = ("seimoe", "moe", "pkm", "peer", "cdmoe")
LABELS: dict[str, str] = {
    "seimoe": "SEIMoE",
    "moe": "MoE (grouped)",
    "pkm": "PKM",
    "peer": "PEER",
    "cdmoe": "CDMoE",
}
RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
EXPERTS: tuple[int, ...] = (16, 64, 256, 1024, 4096, 16384)
SEIMOE_D_FF = 4
MOE_D_FF = 8
HEADS = 4
CDMOE_D_RETRIEVAL = 256
PAPER_FILE = Path(__file__).with_name("paper_values.json")
# Claim C3: CDMoE 8–10× faster than the paper's MoE (SEIMoE, a loop over experts) with more than
# 1024 experts: judged over the points with N > CLAIM_MIN_EXPERTS (wm_bench.report.expert_speed).
CLAIM_C3: dict[str, Any] = {"subject": "cdmoe", "baseline": "seimoe", "min_speedup": 8.0}
CLAIM_MIN_EXPERTS = 1024
PROTOCOLS: tuple[str, ...] = ("median", "round_robin")  # median: the issue-11 way (no repeats)


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
            raise ValueError(f"SpeedScale: repeats={self.repeats} must be ≥ 1, warmup="
                             f"{self.warmup} ≥ 0")  # fmt: skip


SCALES: dict[str, SpeedScale] = {
    "smoke": SpeedScale(1, 64, 32, "float32", "cpu", (16, 64), (0.5, 1.0), repeats=3, warmup=0),
    "cpu": SpeedScale(2, 256, 64, "float32", "cpu", EXPERTS, RATIOS),
    "small": SpeedScale(8, 2048, 1024, "bfloat16", "cuda", EXPERTS, RATIOS),
    "paper": SpeedScale(8, 2048, 1024, "bfloat16", "cuda", EXPERTS, RATIOS),
}


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
        return {"method": self.method, "num_experts": self.num_experts, "top_k": self.top_k,
                "ratio": self.ratio}  # fmt: skip


def spec(scale: str) -> SpeedScale:
    """The SpeedScale of `scale`; ValueError naming the valid scales."""
    if scale not in SCALES:
        raise ValueError(f"expert_speed: unknown scale {scale!r}; valid: {list(SCALES)}")
    return SCALES[scale]


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

    n, k = p.num_experts, p.top_k
    kwargs: dict[str, dict[str, Any]] = {
        "seimoe": {"num_experts": n, "top_k": k, "d_ff": SEIMOE_D_FF},
        "moe": {"num_experts": n, "top_k": k, "d_ff": MOE_D_FF},
        "pkm": {"num_experts": n, "top_k": k, "num_heads": HEADS},
        "peer": {"num_experts": n, "top_k": k, "num_heads": HEADS},
        "cdmoe": {"num_experts": n, "top_k": k, "num_heads": HEADS,
                  "d_retrieval": CDMOE_D_RETRIEVAL},
    }  # fmt: skip
    if p.method not in kwargs:
        raise ValueError(f"expert_speed: unknown method {p.method!r}; valid: {list(kwargs)}")
    return FFNS[p.method][1](**kwargs[p.method])


def retrieval_bytes(p: SpeedPoint) -> int | None:
    """Bytes of expert rows one forward gathers (PKM: value rows; PEER/CDMoE: down + up rows).

    None for the MoE methods, whose experts are matmuls rather than gathered rows.
    """
    elem = {"float32": 4, "bfloat16": 2, "float16": 2}[p.dtype]
    tokens = p.batch * p.seq_len
    rows = {"pkm": 1, "peer": 2, "cdmoe": 2}.get(p.method)
    return None if rows is None else tokens * HEADS * p.top_k * rows * p.d_model * elem


def point_hash(p: SpeedPoint, s: SpeedScale | None = None) -> str:
    """A stable 16-hex-digit hash of the point, the method settings above and, for round-robin
    timing, the protocol (repeats, warm-up). Without `s` (or with the median protocol) it is the
    hash the issue-11 results carry."""
    from wm_bench.config import config_hash, to_dict

    body: dict[str, Any] = {"point": asdict(p), "ffn": to_dict(ffn_config(p))}
    if s is not None and s.protocol != "median":
        body["timing"] = {"protocol": s.protocol, "repeats": s.repeats, "warmup": s.warmup}
    return config_hash(body)


def measure(p: SpeedPoint, s: SpeedScale, *, device: str | None = None, seed: int = 0) -> dict:
    """Build the layer of a point and time it (see wm_bench.bench.ffn_speed.time_ffn)."""
    import torch

    from wm_bench.bench.ffn_speed import time_ffn
    from wm_bench.layers.ffn import build_ffn

    torch.manual_seed(seed)
    layer = build_ffn(p.d_model, ffn_config(p))
    return time_ffn(
        layer, batch=p.batch, seq_len=p.seq_len, d_model=p.d_model, dtype=p.dtype,
        device=device or p.device, repeats=s.repeats, warmup=s.warmup, seed=seed,
    )  # fmt: skip


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def measure_group(
    pts: list[SpeedPoint], s: SpeedScale, *, device: str | None = None, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Time the methods of one (N, ratio) round-robin (see the module docstring).

    Returns:
        method → {"fwd_ms", "fwd_bwd_ms" (medians), "fwd_ms_repeats", "fwd_bwd_ms_repeats",
        "first_fwd_s", "first_fwd_bwd_s", "peak_mib", "peak_kind", "params", "impls"} for the
        methods that ran, or {"error": text} for a method that failed to build or run.
    """
    import resource

    import torch

    from wm_bench.bench.common import interleaved_times, synchronizer
    from wm_bench.bench.cuda_timing import timed_call
    from wm_bench.bench.ffn_speed import DTYPES, layer_calls
    from wm_bench.layers.ffn import build_ffn

    dev = device or pts[0].device
    cuda = dev.startswith("cuda")
    sync = synchronizer(dev)
    out: dict[str, dict[str, Any]] = {}
    fns: dict[str, Any] = {}
    layers: dict[str, Any] = {}
    for p in pts:
        try:
            torch.manual_seed(seed)
            dtype = DTYPES[p.dtype]
            layer = build_ffn(p.d_model, ffn_config(p)).to(device=dev, dtype=dtype)
            g = torch.Generator(device="cpu").manual_seed(seed)
            x = torch.randn(p.batch, p.seq_len, p.d_model, generator=g).to(dev, dtype)
            x.requires_grad_(True)
            dy = torch.randn(p.batch, p.seq_len, p.d_model, generator=g).to(dev, dtype)
            fwd, fwd_bwd = layer_calls(layer, x, dy)

            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            _, first_fwd = timed_call(fwd, sync)
            _, first_fwd_bwd = timed_call(fwd_bwd, sync)
            if cuda:
                from wm_bench.bench.cuda_timing import peak_mib

                peak, kind = peak_mib(fwd_bwd), "cuda allocator peak above the inputs, one fwd+bwd"
            else:
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                peak = max(0.0, rss - rss0)
                kind = "growth of the process's peak RSS at the first calls (CPU, coarse)"
        except Exception as e:  # recorded per method: one running out of memory must not stop
            out[p.method] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            if cuda:
                torch.cuda.empty_cache()
            continue
        layers[p.method] = layer
        fns[f"{p.method}/fwd"], fns[f"{p.method}/fwd_bwd"] = fwd, fwd_bwd
        out[p.method] = {
            "first_fwd_s": first_fwd, "first_fwd_bwd_s": first_fwd_bwd, "peak_mib": peak,
            "peak_kind": kind,
            "params": sum(q.numel() for q in layer.parameters() if q.requires_grad),
            "impls": dict(getattr(layer, "resolved_impls", {}) or {}),
        }  # fmt: skip
    if fns:
        try:
            times = interleaved_times(fns, repeats=s.repeats, warmup=s.warmup, sync=sync)
        except Exception as e:
            err = f"{type(e).__name__} during the round-robin: {e}"[:2000]
            return {m: (v if "error" in v else {"error": err}) for m, v in out.items()}
        for m in layers:
            for key in ("fwd", "fwd_bwd"):
                reps = [1e3 * t for t in times[f"{m}/{key}"]]
                out[m][f"{key}_ms_repeats"] = reps
                out[m][f"{key}_ms"] = statistics.median(reps)
    return out


def _matches(p: SpeedPoint, only: list[str]) -> bool:
    for cond in only:
        key, _, value = cond.partition("=")
        if str(p.tags.get(key)) != value:
            return False
    return True


def reproduce(
    scale: str,
    *,
    only: list[str] | None = None,
    limit: int | None = None,
    results_dir: str | Path | None = None,
    force: bool = False,
    threads: int | None = None,
    quiet: bool = False,
    dry_run: bool = False,
) -> int:
    """Time every point of the grid at `scale`, one result file each; finished points skipped.
    With `dry_run`, list the points with their hash and done/pending state and time nothing.

    Returns:
        0 when every point is ok (or was done already), 1 when some failed, 2 on bad arguments.
    """
    import torch

    from wm_bench.config import to_dict
    from wm_bench.results import find_done, make_result, now_iso, write_result

    s = spec(scale)
    pts = points(scale)
    for cond in only or []:
        key = cond.partition("=")[0]
        if "=" not in cond or key not in pts[0].tags:
            print(f"error: --only {cond!r}: expected KEY=VALUE with KEY in "
                  f"{list(pts[0].tags)}", file=sys.stderr)  # fmt: skip
            return 2
    pts = [p for p in pts if _matches(p, only or [])][: limit if limit is not None else None]
    if not pts:
        print("nothing to run (check --only / --limit)", file=sys.stderr)
        return 2
    if dry_run:
        rows = [(p.method, f"N={p.num_experts} k={p.top_k} ratio={p.ratio:g}", point_hash(p, s),
                 "pending" if force or find_done(point_hash(p, s), EXPERIMENT, scale, p.method,
                                                 results_dir) is None else "done")
                for p in pts]  # fmt: skip
        n_pending = sum(r[3] == "pending" for r in rows)
        print(f"{EXPERIMENT} @ {scale}: {len(rows)} planned points, {len(rows) - n_pending} done, "
              f"{n_pending} pending (dry run: nothing timed or written)")  # fmt: skip
        for r in rows:
            print("  " + "  ".join(r))
        return 0
    if s.device == "cuda" and not torch.cuda.is_available():
        print(f"error: scale {scale!r} times on CUDA and none is available; use --scale cpu",
              file=sys.stderr)  # fmt: skip
        return 2
    if threads:
        torch.set_num_threads(threads)
    device_info: dict[str, Any]
    if s.device == "cuda":
        from wm_bench.bench.cuda_timing import device_info as cuda_info

        device_info = cuda_info()
    else:
        device_info = {"type": "cpu", "threads": torch.get_num_threads()}
    print(f"{EXPERIMENT} @ {scale}: {len(pts)} points on {s.device}, {s.protocol}, "
          f"{s.repeats} repeats")  # fmt: skip
    groups: dict[tuple[int, float], list[SpeedPoint]] = {}
    for p in pts:
        groups.setdefault((p.num_experts, p.ratio), []).append(p)
    t_all, failed, done = time.perf_counter(), 0, 0
    for (n, ratio), group in groups.items():
        pending = [p for p in group if force or find_done(
            point_hash(p, s), EXPERIMENT, scale, p.method, results_dir) is None]  # fmt: skip
        done += len(group) - len(pending)
        if not pending:
            continue
        started, t0, load0 = now_iso(), time.perf_counter(), _loadavg()
        if s.protocol == "round_robin":
            ms = measure_group(pending, s)
        else:
            ms = {}
            for p in pending:
                try:
                    ms[p.method] = measure(p, s)
                except Exception as e:  # recorded, as in the round-robin path
                    ms[p.method] = {"error": f"{type(e).__name__}: {e}"[:2000]}
        wall, load1 = time.perf_counter() - t0, _loadavg()
        session = f"{started} N={n} ratio={ratio:g}"
        for p in pending:
            m = ms[p.method]
            common = dict(
                experiment=EXPERIMENT, variant=p.method, seed=0, scale=scale,
                config={"point": asdict(p), "ffn": to_dict(ffn_config(p)), "tags": p.tags,
                        "timing": {"protocol": s.protocol, "repeats": s.repeats,
                                   "warmup": s.warmup}},
                config_hash=point_hash(p, s), device=device_info, started_at=started,
            )  # fmt: skip
            timing = {"wall_s": wall / len(pending), "group_wall_s": wall,
                      "loadavg_before": load0, "loadavg_after": load1}  # fmt: skip
            if "error" in m:
                failed += 1
                rec = make_result(status="failed", error=m["error"], timing=timing, **common)
            else:
                metrics = {"fwd_ms": m["fwd_ms"], "fwd_bwd_ms": m["fwd_bwd_ms"]}
                rb = retrieval_bytes(p)
                if rb is not None:
                    metrics["retrieval_gbps"] = rb / (m["fwd_ms"] * 1e6)
                extra = {"retrieval_bytes": rb, "session": session,
                         "group": [q.method for q in pending]}  # fmt: skip
                for key in ("fwd_ms_repeats", "fwd_bwd_ms_repeats"):
                    if key in m:
                        extra[key] = [round(x, 4) for x in m[key]]
                timing.update({k: m[k] for k in ("peak_mib", "peak_kind", "first_fwd_s",
                                                  "first_fwd_bwd_s")})  # fmt: skip
                rec = make_result(
                    status="ok", metrics=metrics,
                    higher_is_better={"fwd_ms": False, "fwd_bwd_ms": False,
                                      "retrieval_gbps": True},
                    impls=m["impls"], params={"total": m["params"]}, timing=timing, extra=extra,
                    **common,
                )  # fmt: skip
            write_result(rec, results_dir)
            done += 1
            if not quiet:
                what = (f"fwd {rec['metrics']['fwd_ms']:.2f} ms, fwd+bwd "
                        f"{rec['metrics']['fwd_bwd_ms']:.2f} ms" if rec["status"] == "ok"
                        else rec["error"].splitlines()[0][:120])  # fmt: skip
                elapsed = (time.perf_counter() - t_all) / 60
                load = load1[0] if load1 else "?"
                print(f"[{done}/{len(pts)}] {p.method} N={p.num_experts} k={p.top_k}: {what} "
                      f"({elapsed:.1f} min, load {load})", flush=True)  # fmt: skip
        if s.device == "cuda":
            torch.cuda.empty_cache()
    print(f"done: {len(pts)} points in {(time.perf_counter() - t_all) / 60:.1f} min, "
          f"{failed} failed")  # fmt: skip
    return 1 if failed else 0


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


__all__ = [
    "CLAIM_C3",
    "EXPERIMENT",
    "LABELS",
    "METHODS",
    "SCALES",
    "SpeedPoint",
    "SpeedScale",
    "k_for",
    "load_paper",
    "paper_points",
    "points",
    "reproduce",
]
