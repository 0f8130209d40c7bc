"""A trained model on disk, in a form the evaluation tools can load without the training stack.

Layout of a model directory (written by `save_pretrained`, read by `load_pretrained`):

    config.json     {"format": 1, "run": <RunConfig as a dict>, "tokenizer": <name>,
                     "max_length": <training context>, "saved_at": ...}
    model.pt        the LanguageModel's state dict (fp32 tensors, `torch.save`)
    tokenizer.json  the `tokenizers` tokenizer the model was trained with

This is what `wm-bench lm-eval --model wm_bench --model_args pretrained=<dir>` and
`WmBenchLM(pretrained=<dir>)` take. Writes go to a temporary sibling first and are renamed into
place, so an interrupted save never leaves a half-written directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

FORMAT = 1
FILES = ("config.json", "model.pt", "tokenizer.json")


def save_pretrained(path: str | Path, model: Any, run_cfg: Any, tokenizer: Any) -> Path:
    """Write `model` (a LanguageModel), its RunConfig and its tokenizer to directory `path`.

    Args:
        path: target directory (replaced if it exists).
        model: the trained LanguageModel.
        run_cfg: its RunConfig (the model config is read back from it).
        tokenizer: a `wm_bench.data.tokenizer.Tokenizer`.
    Returns:
        The directory written.
    """
    from wm_bench.config import to_dict
    from wm_bench.results import now_iso

    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    torch.save(state, tmp / "model.pt")
    (tmp / "tokenizer.json").write_text(tokenizer.backend.to_str())
    meta = {
        "format": FORMAT,
        "run": to_dict(run_cfg),
        "tokenizer": tokenizer.name,
        "eos_id": tokenizer.eos_id,
        "max_length": int(getattr(run_cfg.data, "seq_len", 0) or 0) or None,
        "saved_at": now_iso(),
    }
    (tmp / "config.json").write_text(json.dumps(meta, indent=1))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def load_pretrained(
    path: str | Path, *, device: str | torch.device = "cpu", impl: str = "auto"
) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, config.json dict) of a directory `save_pretrained` wrote.

    Raises FileNotFoundError naming the missing file and what a model directory holds.
    """
    from tokenizers import Tokenizer as Backend

    from wm_bench.config import RunConfig, from_dict
    from wm_bench.data.tokenizer import Tokenizer
    from wm_bench.model import build_model

    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a wm_bench model directory (missing {', '.join(missing)}); training "
            "with --save-model writes one (or wm_bench.eval.checkpoint.save_pretrained)"
        )
    fix = "save the model again (train with --save-model) or restore the file from a copy"
    conf = path / "config.json"
    try:
        meta = json.loads(conf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{conf} is corrupt: not valid JSON ({_first_line(e)}); {fix}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{conf} is corrupt: a {type(meta).__name__}, not a mapping; {fix}")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{conf}: format {meta.get('format')!r}, expected {FORMAT}; {fix}")
    missing = [k for k in ("run", "tokenizer", "eos_id") if k not in meta]
    if missing:
        raise ValueError(f"{conf} lacks the key(s) {missing}; {fix}")
    try:
        cfg = from_dict(RunConfig, meta["run"])
        model = build_model(cfg.model, impl=impl)
    except ValueError as e:
        raise ValueError(f"{conf}: its run config is invalid ({_first_line(e)}); {fix}") from None
    weights = path / "model.pt"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or garbage: pickle, zip and runtime errors alike
        raise ValueError(  # torch's own message is long and suggests unsafe loading: not shown
            f"{weights} is corrupt or not a saved state dict (torch.load raised "
            f"{type(e).__name__}); {fix}"
        ) from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{weights} does not match the model in {conf.name} ({_first_line(e)}); {fix}"
        ) from None
    model.to(device).eval()
    tok_file = path / "tokenizer.json"
    try:
        backend = Backend.from_str(tok_file.read_text(encoding="utf-8"))
    except Exception as e:  # the tokenizers package raises its own Exception type
        raise ValueError(
            f"{tok_file} is corrupt ({type(e).__name__}: {_first_line(e)}); {fix}"
        ) from None
    tok = Tokenizer(backend, name=meta["tokenizer"], eos_id=meta["eos_id"], path=None)
    return model, tok, meta


def _first_line(e: BaseException) -> str:
    """The first line of an error message, at most 200 characters."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
