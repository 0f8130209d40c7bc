"""The downstream tasks the suite knows: one `TaskSpec` line each, and the sources they run from.

Kept apart from `wm_bench.eval.downstream` (which runs them) so that `wm_bench.config` can
check a `DownstreamConfig` against this table without importing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SOURCES = ("local", "hub")


@dataclass(frozen=True)
class TaskSpec:
    """One downstream task: its headline metric, local data file and lm-eval name."""

    key: str
    label: str
    metric: str
    file: str
    hub: str


TASKS: dict[str, TaskSpec] = {t.key: t for t in (
    TaskSpec("mmlu", "MMLU", "acc", "mmlu.jsonl", "mmlu"),
    TaskSpec("triviaqa", "TriviaQA", "exact_match", "triviaqa_sm_sub.jsonl", "triviaqa"),
    TaskSpec("arc_easy", "ARC-E", "acc", "arc_easy.jsonl", "arc_easy"),
    TaskSpec("arc_challenge", "ARC-C", "acc_norm", "arc_challenge.jsonl", "arc_challenge"),
    TaskSpec("piqa", "PIQA", "acc", "piqa.jsonl", "piqa"),
    TaskSpec("hellaswag", "HellaSwag", "acc_norm", "hellaswag.jsonl", "hellaswag"),
    TaskSpec("openbookqa", "OBQA", "acc_norm", "openbook_qa.jsonl", "openbookqa"),
    TaskSpec("winogrande", "Winogrande", "acc", "winogrande.jsonl", "winogrande"),
    TaskSpec("lambada_openai", "LAMBADA", "acc", "lambada_openai.jsonl", "lambada_openai"),
    TaskSpec("copa", "COPA", "acc", "copa.jsonl", "copa"),
    TaskSpec("boolq", "BoolQ", "acc", "boolq.jsonl", "boolq"),
)}  # fmt: skip
PAPER_TASKS: tuple[str, ...] = (
    "mmlu",
    "triviaqa",
    "arc_easy",
    "arc_challenge",
    "piqa",
    "hellaswag",
    "openbookqa",
    "winogrande",
)


def check_tasks(keys: Any) -> tuple[str, ...]:
    """Validate task keys; ValueError naming the bad ones and the valid keys."""
    keys = tuple(keys)
    bad = [k for k in keys if k not in TASKS]
    if bad:
        raise ValueError(f"unknown downstream task(s) {bad}; valid: {list(TASKS)}")
    return keys
