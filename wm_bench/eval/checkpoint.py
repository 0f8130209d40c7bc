"""A trained model on disk in the field's layout: config.json + model.safetensors + tokenizer.json.

Layout of a model directory (format 2, written by `save_pretrained`; docs/export.md has every
field):

    config.json        {"format": 2, "wm_bench_version": ..., "model": <ModelConfig as a dict>,
                        "weights": {"dtype": "float32", "tied": {alias: stored name}},
                        "tokenizer": {"name", "eos_id", "vocab_size"}, "max_length": ...,
                        "run": <RunConfig as a dict, or null>, "saved_at": ..., plus the common
                        Hugging Face keys (vocab_size, hidden_size, ...) for other tools}
    model.safetensors  the LanguageModel's state dict under its own names, floating tensors in
                       fp32; a tensor shared by several names (tied embeddings: head.weight is
                       embed.weight) is stored once and re-tied on load from `weights.tied`
    tokenizer.json     the `tokenizers` tokenizer the model was trained with

Load it with `wm_bench.from_pretrained(dir)` (the model, in eval mode) and
`wm_bench.load_tokenizer(dir)`; `load_pretrained(dir)` returns both and the config.json dict.
A directory of the old format 1 (model.pt, a `torch.save`d state dict) still loads, with one line
on stderr that suggests `python -m wm_bench.export OLD NEW`. Writes go to a temporary sibling
first and are renamed into place, so an interrupted save never leaves a half-written directory.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

FORMAT = 2
OLD_FORMAT = 1  # config.json + model.pt (torch.save) + tokenizer.json; loads, never written
CONFIG, WEIGHTS, OLD_WEIGHTS, TOKENIZER = (
    "config.json",
    "model.safetensors",
    "model.pt",
    "tokenizer.json",
)
FILES = (CONFIG, WEIGHTS, TOKENIZER)
REQUIRED = {OLD_FORMAT: ("run", "tokenizer", "eos_id"), FORMAT: ("model", "weights", "tokenizer")}
FIX = "save the model again (train with --save-model) or restore the file from a copy"
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


# ---------------------------------------------------------------------------------- writing


def save_pretrained(path: str | Path, model: Any, run_cfg: Any, tokenizer: Any) -> Path:
    """Write `model` (a LanguageModel), its RunConfig and its tokenizer to directory `path`.

    Args:
        path: target directory; an existing model directory there is replaced (atomically), an
            existing non-empty directory without a config.json is refused (ValueError).
        model: the trained LanguageModel (its `cfg` is what config.json's "model" records).
        run_cfg: its RunConfig, recorded as provenance (None: no run recorded).
        tokenizer: a `wm_bench.data.tokenizer.Tokenizer`.
    Returns:
        The directory written.
    """
    from wm_bench.config import to_dict
    from wm_bench.results import now_iso

    state, tied = split_shared(model.state_dict())
    seq_len = getattr(getattr(run_cfg, "data", None), "seq_len", None)
    meta = config_json(
        model.cfg,
        tokenizer,
        tied=tied,
        run=None if run_cfg is None else to_dict(run_cfg),
        max_length=int(seq_len) if seq_len else None,
        saved_at=now_iso(),
    )
    return write_model_dir(path, state, meta, tokenizer.backend.to_str())


def split_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state dict as safetensors can store it, and the names it left out as aliases.

    Args:
        state: a module's state dict (any device and dtype).
    Returns:
        (tensors, tied): `tensors` holds each distinct tensor once, on the CPU, contiguous, with
        its own storage, floating ones as fp32 and others in their dtype; `tied` maps each name
        dropped because it is the very same tensor as an earlier one (same storage, offset, shape
        and strides: tied embeddings) to the name kept.
    """
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    storages: set[int] = set()
    for name, t in state.items():
        t = t.detach()
        if t.numel():
            view = (
                t.device,
                t.dtype,
                t.untyped_storage().data_ptr(),
                t.storage_offset(),
                tuple(t.shape),
                t.stride(),
            )
            if view in seen:
                tied[name] = seen[view]
                continue
            seen[view] = name
        t = t.to("cpu", torch.float32 if t.is_floating_point() else t.dtype)
        ptr = t.untyped_storage().data_ptr()
        whole = t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size()
        if not whole or (t.numel() and ptr in storages):  # a view into another tensor: own copy
            t = t.clone(memory_format=torch.contiguous_format)
        storages.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    return tensors, tied


def config_json(
    model_cfg: Any,
    tokenizer: Any,
    *,
    tied: dict[str, str],
    run: dict[str, Any] | None,
    max_length: int | None,
    saved_at: str,
) -> dict[str, Any]:
    """The config.json dict of a format-2 directory (docs/export.md lists its fields)."""
    from wm_bench import __version__
    from wm_bench.config import to_dict

    return {
        "format": FORMAT,
        "wm_bench_version": __version__,
        "model_type": "wm_bench",
        "model": to_dict(model_cfg),
        "weights": {"dtype": "float32", "tied": dict(tied)},
        "tokenizer": {
            "name": tokenizer.name,
            "eos_id": int(tokenizer.eos_id),
            "vocab_size": int(tokenizer.vocab_size),
        },
        "max_length": max_length,
        "run": run,
        "saved_at": saved_at,
        # the common Hugging Face keys, for tools that read them; the loader reads "model"
        "vocab_size": model_cfg.vocab_size,
        "hidden_size": model_cfg.d_model,
        "num_hidden_layers": model_cfg.n_layers,
        "tie_word_embeddings": bool(model_cfg.tie_embeddings),
        "eos_token_id": int(tokenizer.eos_id),
        "torch_dtype": "float32",
    }


def write_model_dir(
    path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], tokenizer_json: str
) -> Path:
    """Write config.json, model.safetensors and tokenizer.json to `path`, atomically.

    Everything goes to a temporary sibling first; an existing model directory at `path` is moved
    aside, the new one renamed into place, then the old one deleted (and put back if the rename
    fails). Refuses (ValueError) to replace a file or a non-empty directory with no config.json.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if (
        path.exists()
        and not (path / CONFIG).is_file()
        and (not path.is_dir() or any(path.iterdir()))
    ):
        raise ValueError(
            f"{path} exists and is not a wm_bench model directory (no {CONFIG}); refusing to "
            "replace it: give a new or empty directory"
        )
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    moved = False
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "wm_bench_format": "2"})
        (tmp / TOKENIZER).write_text(tokenizer_json, encoding="utf-8")
        (tmp / CONFIG).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        shutil.copymode(tmp / CONFIG, tmp / WEIGHTS)  # safetensors writes 0600: the umask's mode
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            moved = True
        tmp.rename(path)
    except BaseException:
        if moved and not path.exists():
            old.rename(path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if moved:
        shutil.rmtree(old, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------- reading


def read_config(path: str | Path) -> dict[str, Any]:
    """The checked config.json dict of model directory `path` (format 1 or 2).

    Raises:
        FileNotFoundError: `path` is not a directory, or has no config.json.
        ValueError: config.json is not JSON, not a mapping, of a format this version does not
            read, lacks a key its format needs, or holds an invalid model config. Every message
            names the file and what was expected.
    """
    return _read(Path(path))[0]


def from_pretrained(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    impl: str = "auto",
) -> Any:
    """The LanguageModel saved in directory `path`, in eval mode.

    Args:
        path: a model directory (format 2: model.safetensors; format 1: model.pt, loaded with
            `torch.load(weights_only=True)` and one line on stderr suggesting re-export).
        device: where the model goes ("cpu", "cuda", "cuda:1", a torch.device).
        dtype: floating dtype of the parameters (torch.float32/float16/bfloat16/float64 or its
            name); None keeps the saved fp32.
        impl: kernel implementation, "auto" | "reference" | "triton" (a runtime choice).
    Returns:
        The model (`wm_bench.model.LanguageModel`) on `device`, in eval mode.
    Raises:
        FileNotFoundError: the directory, config.json or the weights file is missing.
        ValueError: a file is corrupt, of an unknown format, lacks keys, or the weights do not
            match the model config (missing or unexpected names, other shapes); the message
            names the file and what was expected.
    """
    torch_dtype = _dtype(dtype)
    model = _load_model(Path(path), impl=impl, note=True)
    return model.to(device=device, dtype=torch_dtype).eval()


def load_tokenizer(path: str | Path) -> Any:
    """The `wm_bench.data.tokenizer.Tokenizer` saved in model directory `path`.

    Raises FileNotFoundError (no tokenizer.json) or ValueError (it does not parse) naming it.
    """
    from tokenizers import Tokenizer as Backend

    from wm_bench.data.tokenizer import Tokenizer

    path = Path(path)
    meta, fmt, _ = _read(path)
    tok_file = path / TOKENIZER
    if not tok_file.is_file():
        raise FileNotFoundError(
            f"{path} is not a wm_bench model directory (missing {TOKENIZER}, the tokenizer the "
            f"model was trained with); {FIX}"
        )
    try:
        backend = Backend.from_str(tok_file.read_text(encoding="utf-8"))
    except Exception as e:  # the tokenizers package raises its own Exception type
        raise ValueError(
            f"{tok_file} is corrupt ({type(e).__name__}: {_first_line(e)}); {FIX}"
        ) from None
    if fmt == OLD_FORMAT:
        return Tokenizer(backend, name=meta["tokenizer"], eos_id=meta["eos_id"])
    t = meta["tokenizer"]
    return Tokenizer(backend, name=t["name"], eos_id=t["eos_id"], vocab_size=t.get("vocab_size"))


def load_pretrained(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    impl: str = "auto",
) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, config.json dict) of model directory `path`.

    `from_pretrained`, `load_tokenizer` and `read_config` in one call (the tokenizer is checked
    first, so a broken one fails before the weights are read); same arguments and errors.
    """
    meta = read_config(path)
    tok = load_tokenizer(path)
    return from_pretrained(path, device=device, dtype=dtype, impl=impl), tok, meta


def _read(path: Path) -> tuple[dict[str, Any], int, Any]:
    """(config.json dict, its format, the ModelConfig it describes), every problem a clear error."""
    from wm_bench import __version__
    from wm_bench.config import ModelConfig, RunConfig, from_dict

    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} is not a wm_bench model directory (no such directory); one holds {CONFIG}, "
            f"{WEIGHTS} and {TOKENIZER}, as training with --save-model writes"
        )
    conf = path / CONFIG
    if not conf.is_file():
        raise FileNotFoundError(
            f"{path} is not a wm_bench model directory (missing {CONFIG}); one holds {CONFIG}, "
            f"{WEIGHTS} and {TOKENIZER}, as training with --save-model writes "
            "(or wm_bench.eval.checkpoint.save_pretrained)"
        )
    try:
        meta = json.loads(conf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{conf} is corrupt: not valid JSON ({_first_line(e)}); {FIX}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{conf} is corrupt: a {type(meta).__name__}, not a mapping; {FIX}")
    fmt = meta.get("format")
    if type(fmt) is not int or fmt not in REQUIRED:
        by = meta.get("wm_bench_version")
        by = (
            f"; it was written by wm_bench {by}: load it with that version"
            if isinstance(by, str) and by != __version__
            else ""
        )
        raise ValueError(
            f"{conf}: format {fmt!r} is not one wm_bench {__version__} reads (expected {FORMAT}: "
            f"{WEIGHTS}, or {OLD_FORMAT}: the old {OLD_WEIGHTS}){by}; {FIX}"
        )
    missing = [k for k in REQUIRED[fmt] if k not in meta]
    if missing:
        raise ValueError(
            f"{conf} lacks the key(s) {missing} (format {fmt} needs {list(REQUIRED[fmt])}); {FIX}"
        )
    try:
        if fmt == OLD_FORMAT:
            model_cfg = from_dict(RunConfig, meta["run"]).model
            _check_keys(
                conf,
                "tokenizer, eos_id",
                {"name": meta["tokenizer"], "eos_id": meta["eos_id"]},
                {"name": str, "eos_id": int},
            )
        else:
            model_cfg = from_dict(ModelConfig, meta["model"], path="model")
            _check_keys(conf, "tokenizer", meta["tokenizer"], {"name": str, "eos_id": int})
            _check_keys(conf, "weights", meta["weights"], {"tied": dict})
            tied = meta["weights"]["tied"]
            if not all(isinstance(a, str) and isinstance(b, str) for a, b in tied.items()):
                raise ValueError(
                    f"{conf}: weights.tied is {tied!r}, expected a mapping of tensor names "
                    f"(alias → stored name); {FIX}"
                )
    except (TypeError, KeyError) as e:
        raise ValueError(f"{conf}: its model config is invalid ({_first_line(e)}); {FIX}") from None
    except ValueError as e:
        if str(e).startswith(str(conf)):
            raise
        raise ValueError(f"{conf}: its model config is invalid ({_first_line(e)}); {FIX}") from None
    return meta, fmt, model_cfg


def _check_keys(conf: Path, key: str, value: Any, want: dict[str, type]) -> None:
    """ValueError unless `value` (config.json's `key`) is a mapping with `want`'s typed keys."""
    spec = ", ".join(f"{k}: {t.__name__}" for k, t in want.items())
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), t) and not isinstance(value.get(k), bool) for k, t in want.items()
    ):
        raise ValueError(f"{conf}: {key!r} is {value!r}, expected a mapping {{{spec}}}; {FIX}")


def _load_model(path: Path, *, impl: str, note: bool) -> Any:
    """Build the model of `path`'s config.json and load its weights (fp32, CPU, train mode)."""
    from wm_bench.model import build_model

    meta, fmt, model_cfg = _read(path)
    name = WEIGHTS if fmt == FORMAT else OLD_WEIGHTS
    weights = path / name
    if not weights.is_file():
        other = OLD_WEIGHTS if fmt == FORMAT else WEIGHTS
        hint = (
            f" ({other} is there, which format {3 - fmt} uses: was {CONFIG} replaced?)"
            if (path / other).is_file()
            else ""
        )
        raise FileNotFoundError(
            f"{path} is not a wm_bench model directory (missing {name}: {CONFIG} says format "
            f"{fmt}, whose weights are {name}){hint}; {FIX}"
        )
    if fmt == FORMAT:
        state = _read_safetensors(weights)
        for alias, kept in meta["weights"]["tied"].items():
            if kept not in state:
                raise ValueError(
                    f"{path / CONFIG} ties {alias} to {kept}, which {weights} does not hold; {FIX}"
                )
            state.setdefault(alias, state[kept])
    else:
        state = _read_torch(weights)
        if note:
            print(
                f"note: {path} is an old wm_bench model directory ({OLD_WEIGHTS}, format 1); "
                f"loaded it, but re-export it: python -m wm_bench.export {path} NEW_DIR",
                file=sys.stderr,
            )
    model = build_model(model_cfg, impl=impl)
    _check_match(weights, path / CONFIG, state, model.state_dict())
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{weights} does not match the model in {CONFIG} ({_first_line(e)}); {FIX}"
        ) from None
    return model


def _read_safetensors(weights: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises its own error type for a bad header or size
        raise ValueError(
            f"{weights} is corrupt or not a safetensors file ({type(e).__name__}: "
            f"{_first_line(e)}); {FIX}"
        ) from None


def _read_torch(weights: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or garbage: pickle, zip and runtime errors alike
        raise ValueError(  # torch's own message is long and suggests unsafe loading: not shown
            f"{weights} is corrupt or not a saved state dict (torch.load raised "
            f"{type(e).__name__}); {FIX}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights} is not a state dict (name → tensor mapping); {FIX}")
    return state


def _check_match(
    weights: Path, conf: Path, state: dict[str, torch.Tensor], want: dict[str, torch.Tensor]
) -> None:
    """ValueError listing missing and unexpected names and other shapes, if there are any."""
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [
        f"{k} {list(state[k].shape)} (the model's: {list(v.shape)})"
        for k, v in want.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{what} {_few(names)}"
        for what, names in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if names
    ]
    if problems:
        raise ValueError(
            f"{weights} does not match the model in {conf.name} ({'; '.join(problems)}); {FIX}"
        )


def _few(names: list[str], n: int = 3) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """None, or the floating torch dtype named by `dtype` (ValueError naming the valid ones)."""
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype in DTYPES.values()):
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"dtype={dtype!r} is not a floating dtype; valid: None, {sorted(DTYPES)}")


def _first_line(e: BaseException) -> str:
    """The first line of an error message, at most 200 characters."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
