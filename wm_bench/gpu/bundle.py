"""`make gpu-bundle`: the wheels and data an offline GPU machine lacks, in one carried folder."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIMIT_MIB = 64
DEVICE_PYTHON = "3.12"  # the lent H100/H200 image: Python 3.12, x86-64, manylinux
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
GROUPS = ("anchor", "dependency", "optional")  # optional items are dropped first past the limit
DATA_DIRS = ("corpus", "eval")  # from ../shared/data, which the device does not get


@dataclass(frozen=True)
class Item:
    """One distribution to carry.

    Args:
        req: pip requirement ("fla-core==0.6.0", "typepy<2") or, for how="local", a source folder.
        how: "download" (a wheel from the index), "build" (`pip wheel` of an sdist with `env`,
            no build isolation) or "local" (`pip wheel` of a folder, offline).
        group: "anchor" | "dependency" | "optional".
        install: "always" (shadow whatever the device has) or "if-missing".
        env: extra environment for a build (skip-CUDA flags).
    """

    req: str
    how: str = "download"
    group: str = "dependency"
    install: str = "if-missing"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The normalised distribution name (PEP 503 with underscores, as in wheel files)."""
        if self.how == "local":
            return norm(Path(self.req).name)
        return norm(re.split(r"[<>=!~ \[;]", self.req, maxsplit=1)[0])


def norm(name: str) -> str:
    """Normalise a distribution name the way wheel file names spell it."""
    return re.sub(r"[-_.]+", "_", name).lower()


_SKIP_CUDA = {"MAMBA_SKIP_CUDA_BUILD": "TRUE", "MAMBA_FORCE_BUILD": "TRUE"}
_SKIP_CUDA_DM = {"FLASH_DMATTN_SKIP_CUDA_BUILD": "TRUE", "FLASH_DMATTN_FORCE_BUILD": "TRUE"}

# What the lent device lacks (its package list: torch 2.11, triton 3.6, transformers, einops,
# tokenizers, tabulate are there; optuna and its database stack, the anchors, lm-eval are not).
ITEMS: tuple[Item, ...] = (
    # anchors, docs/anchors.md §3 (never package dependencies of wm_bench)
    Item("fla-core==0.6.0", group="anchor", install="always"),
    Item("flash-linear-attention==0.6.0", group="anchor", install="always"),
    Item("mamba_ssm==2.3.2.post1", "build", "anchor", "always", _SKIP_CUDA),
    Item("flash-dmattn==1.2.2", "build", "anchor", "always", _SKIP_CUDA_DM),
    Item("PEER-pytorch==0.2.2", group="anchor", install="always"),
    Item("einx==0.4.3", group="anchor"),
    Item("frozendict==2.5.1", group="anchor"),
    Item("einops==0.8.2", group="anchor"),
    # our own dependencies (pyproject) the device lacks; installed only where missing
    Item("optuna==5.0.0"),
    Item("alembic==1.20.1"),
    Item("colorlog==6.12.0"),
    Item("sqlalchemy==2.1.9"),
    Item("mako==1.4.3"),
    Item("tokenizers==0.23.3"),  # on the lent device; carried for other offline GPU machines
    Item("tabulate==0.10.0"),
    # lm-eval (the `eval` extra) and what it needs beyond the device's image: only if it fits
    *(
        Item(r, group="optional")
        for r in (
            "lm-eval==0.4.13",
            "datasets==5.2.0",
            "evaluate==0.4.6",
            "dill==0.4.1",
            "multiprocess==0.70.19",
            "pytablewriter==1.2.1",
            "dataproperty==1.1.1",
            "mbstrdecoder==1.1.5",
            "pathvalidate==3.3.1",
            "tabledata==1.3.5",
            "tcolorpy==0.1.7",
            "typepy==1.3.5",
            "chardet==5.2.0",
            "pytz==2026.6",
            "nltk==3.10.4",
            "defusedxml==0.7.1",
            "more-itertools==11.2.1",
        )
    ),
    *(
        Item(r, "build", "optional")
        for r in ("rouge-score==0.1.2", "sqlitedict==2.1.0", "word2number==1.1")
    ),
)


class BundleError(RuntimeError):
    """The bundle cannot be made (over the size limit)."""


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pip(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {}), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cmd = [sys.executable, "-m", "pip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=900)


def _platform_args(python_version: str) -> list[str]:
    out = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for p in PLATFORMS:
        out += ["--platform", p]
    return out


def _tail(proc: subprocess.CompletedProcess, n: int = 6) -> str:
    lines = [
        ln
        for ln in (proc.stdout + proc.stderr).splitlines()
        if ln.strip() and "is ignored: it is neither a file nor a directory" not in ln
    ]
    return " | ".join(lines[-n:])


def fetch(item: Item, dest: Path, python_version: str = DEVICE_PYTHON) -> tuple[Path | None, str]:
    """Download or build one item's wheel into `dest`.

    Returns:
        (the wheel, "") or (None, the reason it failed).
    """
    with tempfile.TemporaryDirectory(prefix="wm-bundle-") as tmp:
        if item.how == "download":
            args = ["download", "--no-deps", "-q", "-d", tmp, *_platform_args(python_version)]
            proc = _pip([*args, item.req])
        elif item.how in ("build", "local"):
            args = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp]
            proc = _pip(
                [*args, *(["--no-index"] if item.how == "local" else []), item.req], item.env
            )
        else:
            raise ValueError(f"item {item.req!r}: how={item.how!r}; valid: download, build, local")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode or not wheels:
            return None, f"pip {item.how} failed: {_tail(proc)}"
        wheel = wheels[0]
        if item.how != "download" and not wheel.name.endswith("-none-any.whl"):
            return None, f"the build is not a pure wheel ({wheel.name}); it needs a compiler"
        target = dest / wheel.name
        shutil.move(str(wheel), target)
        return target, ""


def _existing(item: Item, dest: Path) -> Path | None:
    """A wheel already in `dest` for a pinned item (so re-runs are offline and fast)."""
    if "==" not in item.req:
        return None
    version = item.req.split("==", 1)[1].strip()
    for p in dest.glob("*.whl"):
        name, ver = p.name.split("-")[:2]
        if norm(name) == item.name and ver == version:
            return p
    return None


def _copy_data(src: Path, dest: Path, dirs: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for d in dirs:
        for f in sorted((src / d).rglob("*")):
            if f.is_file():
                rel = f.relative_to(src)
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest / rel)
                out.append({"path": f"data/{rel}", "size": f.stat().st_size, "sha256": sha256(f)})
    return out


def build_bundle(
    out: Path,
    items: tuple[Item, ...] = ITEMS,
    *,
    limit_bytes: int = LIMIT_MIB << 20,
    data_src: Path | None = None,
    data_dirs: tuple[str, ...] = DATA_DIRS,
    python_version: str = DEVICE_PYTHON,
    progress: bool = True,
) -> dict[str, Any]:
    """Gather the wheels (and data) into `out` and write `out/manifest.json`.

    Args:
        out: the bundle folder (git-ignored, e.g. .carry/bundle).
        items: what to carry; anchors and dependencies first, optional items while they fit.
        limit_bytes: the most the bundle may weigh.
        data_src: a ../shared/data folder to copy (None or absent: no data).
        data_dirs: its sub-folders to copy.
        python_version: the device's Python, for binary wheels.
        progress: one line per item.
    Returns:
        The manifest.
    Raises:
        BundleError: the required items and data alone pass the limit.
    """
    from wm_bench.results import now_iso, provenance, write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    wheels_dir = out / "wheels"
    old = out / "manifest.json"
    if old.exists() and json.loads(old.read_text()).get("python_version") != python_version:
        shutil.rmtree(wheels_dir, ignore_errors=True)  # binary wheels of another Python
    wheels_dir.mkdir(exist_ok=True)
    keep: set[Path] = set()
    entries: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []
    shutil.rmtree(out / "data", ignore_errors=True)
    total = 0
    required = [i for i in items if i.group != "optional"]
    optional = [i for i in items if i.group == "optional"]
    for n, item in enumerate(required + optional):
        if n == len(required) and data_src is not None and data_src.exists():
            data = _copy_data(data_src, out / "data", data_dirs)  # data before optional wheels
            total += sum(d["size"] for d in data)
        entry: dict[str, Any] = {"req": item.req, "name": item.name, "group": item.group}
        entry |= {"install": item.install, "how": item.how}
        wheel, reason = _existing(item, wheels_dir), ""
        if wheel is None:
            wheel, reason = fetch(item, wheels_dir, python_version)
        if wheel is None:
            entry |= {"status": "missing", "reason": reason}
        elif item.group == "optional" and total + wheel.stat().st_size > limit_bytes:
            wheel.unlink()
            entry |= {"status": "skipped", "reason": f"would pass the {limit_bytes} B limit"}
        else:
            size = wheel.stat().st_size
            total += size
            keep.add(wheel)
            entry |= {"status": "ok", "file": f"wheels/{wheel.name}", "size": size}
            entry |= {"sha256": sha256(wheel), "version": wheel.name.split("-")[1]}
        entries.append(entry)
        if progress:
            note = entry.get("reason", entry.get("file", ""))
            print(f"  [{n + 1}/{len(items)}] {item.req}: {entry['status']} {note}", flush=True)
    if not optional and data_src is not None and data_src.exists():
        data = _copy_data(data_src, out / "data", data_dirs)
        total += sum(d["size"] for d in data)
    for stale in wheels_dir.glob("*.whl"):
        if stale not in keep:
            stale.unlink()
    manifest = {
        "schema": "gpu-bundle/1",
        "created_at": now_iso(),
        "python_version": python_version,
        "platforms": list(PLATFORMS),
        "limit_bytes": limit_bytes,
        "total_bytes": total,
        "items": entries,
        "data": data,
        "data_source": str(data_src) if data_src is not None and data_src.exists() else None,
        "provenance": provenance({"type": "cpu", "role": "bundle builder"}),
    }
    if total > limit_bytes:
        raise BundleError(
            f"bundle is {total / 2**20:.1f} MiB > the {limit_bytes / 2**20:.1f} MiB limit; "
            f"largest: {_largest(entries, data)}"
        )
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _largest(entries: list[dict], data: list[dict]) -> str:
    sized = [(e["size"], e["req"]) for e in entries if e.get("size")]
    sized += [(d["size"], d["path"]) for d in data]
    return ", ".join(f"{name} {size / 2**20:.1f} MiB" for size, name in sorted(sized)[::-1][:4])


def main(argv: list[str] | None = None) -> int:
    """Build the device bundle; print its contents, size and what is missing.

    Returns:
        0 when built (missing items are listed), 1 over the size limit, or with --strict when
        an item is missing.
    """
    from wm_bench.results import repo_root

    p = argparse.ArgumentParser(prog="wm-bench gpu bundle", description=main.__doc__)
    p.add_argument("--out", default=str(repo_root() / ".carry/bundle"))
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    p.add_argument("--data", default=str(repo_root().parent / "shared/data"))
    p.add_argument("--no-data", action="store_true", help="carry no data files")
    p.add_argument("--no-optional", action="store_true", help="leave lm-eval and its needs out")
    p.add_argument("--python-version", default=DEVICE_PYTHON)
    p.add_argument("--strict", action="store_true", help="fail when any item is missing")
    args = p.parse_args(argv)
    items = tuple(i for i in ITEMS if not (args.no_optional and i.group == "optional"))
    out = Path(args.out)
    print(f"building the GPU bundle in {out} (limit {args.limit_mib} MiB) …", flush=True)
    try:
        man = build_bundle(
            out,
            items,
            limit_bytes=int(args.limit_mib * 2**20),
            data_src=None if args.no_data else Path(args.data),
            python_version=args.python_version,
        )
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from tabulate import tabulate

    rows = [
        [e["req"], e["group"], e["status"], f"{e.get('size', 0) / 1024:.0f}", e.get("reason", "")]
        for e in man["items"]
    ]
    data_kb = sum(d["size"] for d in man["data"]) / 1024
    rows.append(
        [
            f"data/ ({len(man['data'])} files)",
            "data",
            "ok" if man["data"] else "none",
            f"{data_kb:.0f}",
            man["data_source"] or "no ../shared/data",
        ]
    )
    print(tabulate(rows, headers=["item", "group", "status", "KiB", "note"]))
    missing = [e["req"] for e in man["items"] if e["status"] != "ok"]
    print(f"bundle: {man['total_bytes'] / 2**20:.1f} MiB in {out} (manifest.json)")
    if missing:
        print(f"WARNING: not in the bundle: {', '.join(missing)}", file=sys.stderr)
    return 1 if missing and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
