"""What a run measures after training: test perplexity by length, a DataModule's own metrics,
DMA mask diagnostics, downstream tasks, and which way each metric is better."""

from __future__ import annotations

import time
from typing import Any

from wm_bench.config import RunConfig
from wm_bench.metric_names import loss_at, ppl_at
from wm_bench.train.module import LMModule

HIGHER_IS_BETTER = {
    "loss": False,
    "ppl": False,
    "accuracy": True,
    "acc": True,
    "acc_norm": True,
    "exact_match": True,  # downstream (lm-eval) metrics
}


def higher_is_better(metric: str, default: bool | None = None) -> bool:
    """Direction of a metric name such as "valid/accuracy" or "test/ppl@512"; `default` for a
    name it does not know (KeyError without one)."""
    kind = metric.split("/")[-1].split("@")[0]
    return HIGHER_IS_BETTER[kind] if default is None else HIGHER_IS_BETTER.get(kind, default)


def length_perplexities(cfg: RunConfig, dm: Any, module: LMModule) -> dict[str, float]:
    """Test perplexity at the data config's `eval_lengths` (sliding window), when it has them.

    Metrics "test/ppl@L" and "test/loss@L" per length L, all over the same test tokens (the first
    `eval_max_tokens` of the test split), so lengths longer than training measure extrapolation.
    """
    lengths = tuple(getattr(cfg.data, "eval_lengths", ()) or ())
    if not lengths or not hasattr(dm, "eval_tokens"):
        return {}
    from wm_bench.eval.perplexity import perplexity_at_lengths

    tokens = dm.eval_tokens("test")
    res = perplexity_at_lengths(
        module.model,
        tokens,
        lengths,
        max_tokens=getattr(cfg.data, "eval_max_tokens", None),
        batch_size=max(1, cfg.train.batch_size // 2),
        device=module.device,
    )
    out = {}
    for length, r in res.items():
        out[ppl_at(length)] = r["ppl"]
        out[loss_at(length)] = r["nll"]
    return out


def datamodule_metrics(dm: Any, module: LMModule) -> dict[str, float]:
    """Metrics a DataModule computes on the trained model itself, when it defines
    `eval_metrics(model, device=...)` (passkey: accuracy per (length, depth))."""
    fn = getattr(dm, "eval_metrics", None)
    return dict(fn(module.model, device=module.device)) if callable(fn) else {}


def mask_diagnostics(cfg: RunConfig, dm: Any, module: LMModule) -> dict[str, Any] | None:
    """DMA mask diagnostics on MQAR (`wm_bench.eval.mask_diagnostics`); None where they do not
    apply (other data, or no DMA layer)."""
    from wm_bench.eval.mask_diagnostics import for_run

    return for_run(cfg, dm, module.model)


def downstream_metrics(
    cfg: RunConfig, dm: Any, module: LMModule, progress: bool
) -> tuple[dict[str, float], dict]:
    """Downstream tasks through lm-eval when the config asks: (metrics, record for "extra")."""
    if cfg.downstream is None:
        return {}, {}
    if not hasattr(dm, "prepared"):
        raise ValueError(f"downstream tasks need a tokenized LM dataset, not {cfg.data.name!r}")
    from wm_bench.eval.downstream import evaluate
    from wm_bench.eval.harness import WmBenchLM

    d = cfg.downstream
    lm = WmBenchLM(
        model=module.model,
        tokenizer=dm.prepared.tokenizer,
        batch_size=d.batch_size,
        max_length=d.max_length or cfg.data.seq_len,
        device=str(module.device),
    )
    t0 = time.perf_counter()
    rec = evaluate(lm, d, seed=cfg.seed, progress=progress)
    rec["wall_s"] = round(time.perf_counter() - t0, 3)
    module.model.train()
    return {f"downstream/{k}": v for k, v in rec.pop("metrics").items()}, rec
