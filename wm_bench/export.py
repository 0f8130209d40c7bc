"""python -m wm_bench.export SRC DST: rewrite a saved model directory in the current format.

Converts an old directory (config.json + model.pt) to config.json + model.safetensors +
tokenizer.json (docs/export.md), keeping its run config, training context, tokenizer (byte for
byte) and save time, then loads the result back and checks that every weight is bitwise the
same. DST may equal SRC (converted in place, atomically); an existing other DST is replaced only
with --force, and only if it is a model directory itself. Exit status: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def export(src: str | Path, dst: str | Path, *, force: bool = False) -> Path:
    """Write model directory `src` (format 1 or 2) to `dst` in the current format.

    Args:
        src: a model directory (config.json + model.pt, or + model.safetensors).
        dst: the directory to write; may be `src` itself.
        force: replace an existing model directory at `dst` (never any other directory).
    Returns:
        `dst`.
    Raises:
        FileNotFoundError / ValueError: `src` does not load (see `wm_bench.from_pretrained`),
            `dst` exists without --force, or the written weights differ from `src`'s.
    """
    import torch

    from wm_bench.eval import checkpoint as ck
    from wm_bench.results import now_iso

    src, dst = Path(src), Path(dst)
    meta, fmt, model_cfg = ck._read(src)  # checks config.json before anything is loaded
    if dst.exists() and dst.resolve() != src.resolve() and not force:
        raise ValueError(
            f"{dst} exists; pass --force to replace it (done only if it is a model directory)"
        )
    tokenizer = ck.load_tokenizer(src)
    tok_text = (src / ck.TOKENIZER).read_text(encoding="utf-8")
    model = ck._load_model(src, impl="reference", note=False)
    state, tied = ck.split_shared(model.state_dict())
    new = ck.config_json(
        model_cfg,
        tokenizer,
        tied=tied,
        run=meta.get("run"),
        max_length=meta.get("max_length"),
        saved_at=meta.get("saved_at") or now_iso(),
    )
    new["converted"] = {"from_format": fmt, "at": now_iso()}
    ck.write_model_dir(dst, state, new, tok_text)
    back = ck._load_model(dst, impl="reference", note=False).state_dict()
    for name, t in model.state_dict().items():
        if not torch.equal(back[name], t):
            raise ValueError(f"{dst / ck.WEIGHTS}: {name} differs from {src} after the export")
    return dst


def main(argv: list[str] | None = None) -> int:
    """Command line: export SRC DST [--force]; one line on stderr and exit 2 on bad input."""
    p = argparse.ArgumentParser(
        prog="python -m wm_bench.export",
        description="Rewrite a saved wm_bench model directory (the old config.json + model.pt, "
        "or the current form) as config.json + model.safetensors + tokenizer.json, and check "
        "that the weights read back bitwise equal. See docs/export.md.",
    )
    p.add_argument("src", help="the model directory to read")
    p.add_argument("dst", help="the directory to write (may be SRC: converted in place)")
    p.add_argument(
        "--force", action="store_true", help="replace DST if it is an existing model directory"
    )
    args = p.parse_args(argv)
    try:
        out = export(args.src, args.dst, force=args.force)
    except (ValueError, FileNotFoundError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    print(f"wrote {out} (config.json, model.safetensors, tokenizer.json; weights bitwise equal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
