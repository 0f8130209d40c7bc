"""Result JSON schema, provenance, atomic writes, skip-if-done, DataFrame loader (no torch)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

SCHEMA_VERSION = 1
# ok: finished with finite metrics; diverged: stopped at a non-finite loss or gradient norm (a
# final outcome, skipped like ok); failed: an error (rerun by the next reproduce).
STATUSES = ("ok", "failed", "diverged")
FINAL_STATUSES = ("ok", "diverged")
REQUIRED_KEYS = (
    "schema_version",
    "run_id",
    "experiment",
    "variant",
    "seed",
    "scale",
    "status",
    "config",
    "config_hash",
    "metrics",
    "higher_is_better",
    "provenance",
    "started_at",
    "finished_at",
)
_TRACKED_PACKAGES = (
    "wm_bench",
    "torch",
    "triton",
    "lightning",
    "optuna",
    "numpy",
    "pandas",
    "tokenizers",
    "lm_eval",
)


def repo_root() -> Path:
    """The repository root (where pyproject.toml lives), for default results/ and reports/."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def portable_path(path: str | Path, root: str | Path | None = None) -> str:
    """How a path is recorded in results and reports: relative to the repository root (POSIX
    separators) when it lies inside it, else exactly as given (never made absolute).

    Args:
        path: a path as the user or the code gave it (relative to the working directory or
            absolute).
        root: the folder to relativise against (default: `repo_root()`).
    """
    base = Path(root) if root is not None else repo_root()
    try:
        rel = Path(path).expanduser().resolve().relative_to(base.resolve())
    except (ValueError, OSError):
        return str(path)
    return rel.as_posix() if rel.parts else "."


def default_results_dir() -> Path:
    return Path(os.environ.get("WM_BENCH_RESULTS", repo_root() / "results"))


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_id(variant: str, config_hash: str) -> str:
    """A file-system-safe id: variant name plus config hash (the hash already covers the seed)."""
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", variant)
    return f"{safe}__{config_hash}"


def result_path(results_dir: Path | str, experiment: str, scale: str, rid: str) -> Path:
    return Path(results_dir) / experiment / scale / f"{rid}.json"


# --------------------------------------------------------------------------------------------
# Provenance


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in _TRACKED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def provenance(device: dict[str, Any] | None = None) -> dict[str, Any]:
    """Commit (+ dirty flag), package versions, host and the device description given by the caller.

    Args:
        device: what ran the work, e.g. {"type": "cpu", "threads": 2} or
            {"type": "cuda", "name": "NVIDIA H100 80GB HBM3"}; the CPU model and core count are
            always added.
    """
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "versions": package_versions(),
        "device": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), **(device or {})},
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------------------------
# Machine paths in records, made relative to the repository root (`python -m wm_bench.migrate_paths`
# applies the same rewrite to files written before)

# A machine path: /work, /root, /home, /tmp, /Users, /var, /opt, /mnt, /srv, /scratch …, or a
# Windows drive (C:\). Not preceded by a word character, a dot or a slash, so URLs and relative
# paths ("a/tmp/b") do not match.
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~/\\-])(?:/(?:work|root|home|tmp|Users|var|opt|mnt|srv|scratch|private)(?=/|\b)"
    r"|[A-Za-z]:\\)(?:[^\s\"'`()<>,;|]*[^\s\"'`()<>,;|.:])?"  # a trailing "." or ":" is prose
)
FROZEN = ("config", "config_hash")  # never rewritten: the hash (and so the run id) comes from them


def portable(path: str, root: str | Path) -> str | None:
    """`path` relative to the repository `root` ("../x" for a folder beside it), lexically (the
    path may name another machine); None when it lies elsewhere."""
    p, base = PurePosixPath(path), PurePosixPath(str(root))
    for prefix, anchor in (("", base), ("../", base.parent)):
        if anchor == PurePosixPath("/"):
            break
        try:
            rel = p.relative_to(anchor).as_posix()
        except ValueError:
            continue
        return (prefix + rel) if rel != "." else (prefix.rstrip("/") or ".")
    return None


def _walk(obj: Any, where: str) -> Iterator[tuple[str, str]]:
    """(dotted path, string) of every string in `obj`."""
    if isinstance(obj, str):
        yield where, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{where}[{i}]")


def _rewrite(obj: Any, fix: Any) -> Any:
    """`obj` with every string passed through `fix`."""
    if isinstance(obj, str):
        return fix(obj)
    if isinstance(obj, dict):
        return {k: _rewrite(v, fix) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite(v, fix) for v in obj]
    return obj


def _paths_under(root: str | Path) -> re.Pattern[str]:
    """ABSOLUTE_PATH, widened by the checkout `root` and the folder above it, so a checkout under
    an unusual top folder (CI's /check/…) is made relative too."""
    base = PurePosixPath(str(root))
    anchors = [str(a) for a in (base, base.parent) if a != PurePosixPath("/")]
    if not anchors:
        return ABSOLUTE_PATH
    literal = "|".join(re.escape(a) for a in anchors)
    tail = r"(?:/[^\s\"'`()<>,;|]*[^\s\"'`()<>,;|.:])?"
    return re.compile(rf"(?<![\w.~/\\-])(?:{literal})(?![\w.-]){tail}|{ABSOLUTE_PATH.pattern}")


def migrate_record(rec: dict[str, Any], root: str | Path) -> tuple[dict[str, Any], list[str]]:
    """(the record with its absolute paths made relative, dotted fields that changed).

    `config` and `config_hash` are returned unchanged; a path outside the repository and the
    folder beside it is left as it is (`offenders` still lists it).
    """

    pattern = _paths_under(root)

    def fix(s: str) -> str:
        return pattern.sub(lambda m: portable(m.group(0), root) or m.group(0), s)

    out = {k: (v if k in FROZEN else _rewrite(v, fix)) for k, v in rec.items()}
    before, after = dict(_walk(rec, "")), dict(_walk(out, ""))
    return out, sorted(k for k in before if before[k] != after.get(k))


def offenders(rec: Any) -> list[tuple[str, str]]:
    """(dotted field, absolute path) for every absolute machine path in a record."""
    return [(k, m.group(0)) for k, s in _walk(rec, "") for m in ABSOLUTE_PATH.finditer(s)]


# --------------------------------------------------------------------------------------------
# Writing and reading


def make_result(
    *,
    experiment: str,
    variant: str,
    seed: int,
    scale: str,
    config: dict[str, Any],
    config_hash: str,
    status: str,
    metrics: dict[str, float] | None = None,
    higher_is_better: dict[str, bool] | None = None,
    impls: dict[str, str] | None = None,
    params: dict[str, int] | None = None,
    timing: dict[str, Any] | None = None,
    device: dict[str, Any] | None = None,
    started_at: str | None = None,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
    resumed_from_step: int | None = None,
) -> dict[str, Any]:
    """Assemble one result record (docs/design.md §4) and validate it.

    `resumed_from_step`: the optimiser step of the checkpoint this run resumed from (None when
    it ran from step 0 in one go).
    """
    rec = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id(variant, config_hash),
        "experiment": experiment,
        "variant": variant,
        "seed": seed,
        "scale": scale,
        "status": status,
        "error": error,
        "config": config,
        "config_hash": config_hash,
        "impls": impls or {},
        "metrics": metrics or {},
        "higher_is_better": higher_is_better or {},
        "params": params or {},
        "timing": timing or {},
        "provenance": provenance(device),
        "started_at": started_at or now_iso(),
        "finished_at": now_iso(),
        "extra": extra or {},
        "resumed_from_step": resumed_from_step,
    }
    validate(rec)
    return rec


def validate(rec: dict[str, Any]) -> None:
    """Raise ValueError naming what is wrong with a result record."""
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"result record lacks keys {missing}")
    if rec["status"] not in STATUSES:
        raise ValueError(f"result status={rec['status']!r}; valid: {list(STATUSES)}")
    for name, value in rec["metrics"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"metric {name!r}={value!r} is not a number")
        if not math.isfinite(value):
            raise ValueError(f"metric {name!r}={value!r} is not finite (a finished run has none)")
        if name not in rec["higher_is_better"]:
            raise ValueError(f"metric {name!r} has no higher_is_better entry")


def strict_json(obj: Any, path: str = "") -> tuple[Any, list[str]]:
    """(copy of obj with every NaN/±inf float replaced by None, the dotted paths replaced).

    JSON has no NaN or Infinity; Python's json module writes them as bare tokens that strict
    parsers reject. Callers record the returned paths (`write_json_atomic` adds them under
    "nonfinite" in a top-level dict) so the replacement is visible.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None, [path or "<root>"]
    if isinstance(obj, dict):
        out, bad = {}, []
        for k, v in obj.items():
            out[k], b = strict_json(v, f"{path}.{k}" if path else str(k))
            bad += b
        return out, bad
    if isinstance(obj, (list, tuple)):
        out_l, bad = [], []
        for i, v in enumerate(obj):
            x, b = strict_json(v, f"{path}[{i}]")
            out_l.append(x)
            bad += b
        return out_l, bad
    return obj, []


def write_json_atomic(path: Path | str, obj: Any) -> Path:
    """Write strict JSON via a temp file in the same folder + rename (never half a file).

    Non-finite floats become null; their paths are listed under "nonfinite" when obj is a dict.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj, bad = strict_json(obj)
    if bad and isinstance(obj, dict):
        obj["nonfinite"] = sorted(set(obj.get("nonfinite") or []) | set(bad))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def writer_rank() -> int:
    """This process' global rank when Lightning trains on several (0 otherwise), read from
    Lightning's rank-zero state only where Lightning is already loaded (no torch import here)."""
    mod = sys.modules.get("lightning.fabric.utilities.rank_zero")
    only = getattr(mod, "rank_zero_only", None)
    return int(getattr(only, "rank", 0) or 0)


def write_result(rec: dict[str, Any], results_dir: Path | str | None = None) -> Path:
    """Validate `rec` and write it to its place under `results_dir` (default: results/).

    Absolute paths inside the checkout or beside it, in any field but `config`, are written
    relative to the repository root (`migrate_record`), so that an error's traceback or
    message never carries this machine's path; `config` (and so the hash) is left as it is.
    Under several ranks (DDP, FSDP: docs/scale_out.md) only global rank 0 writes; the others
    return the path without writing, so a run has exactly one result file.
    """
    validate(rec)
    rdir = results_dir if results_dir is not None else default_results_dir()
    path = result_path(rdir, rec["experiment"], rec["scale"], rec["run_id"])
    if writer_rank() != 0:
        return path
    rec = migrate_record(rec, repo_root())[0]
    return write_json_atomic(path, rec)


def iter_results(
    results_dir: Path | str | None = None, experiment: str | None = None
) -> Iterator[dict]:
    """Yield every result record under results_dir (optionally one experiment), sorted by path."""
    root = Path(results_dir) if results_dir is not None else default_results_dir()
    base = root / experiment if experiment else root
    if not base.exists():
        return
    for p in sorted(base.rglob("*.json")):
        if p.name.startswith("."):
            continue
        # results/<experiment>/<scale>/<run>.json is a run record; other JSON (results/bench/)
        # is one only when it says so
        rec = _read_record(p, required=len(p.relative_to(root).parts) == 3)
        if rec is not None:
            yield rec


def _read_record(p: Path, *, required: bool) -> dict | None:
    """The run record in file `p` (None if it is other JSON and not `required`).

    ValueError naming the file and the fix when it is not JSON or lacks required fields.
    """
    fix = "delete it, or rerun its config with --force"
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"result file {p} is corrupt: not valid JSON ({e}); {fix}") from None
    is_record = isinstance(rec, dict) and "run_id" in rec
    if not is_record and not required:
        return None
    if not isinstance(rec, dict):
        raise ValueError(f"result file {p} holds a {type(rec).__name__}, not a record; {fix}")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"result file {p} lacks required field(s) {missing}; {fix}")
    return rec


def load_result(cfg: Any, results_dir: Path | str | None = None) -> dict[str, Any] | None:
    """The stored result record of RunConfig `cfg` whatever its status; None when there is none
    or it cannot be read (the staged tasks read their tune stage through this)."""
    from wm_bench.config import config_hash

    rdir = results_dir if results_dir is not None else default_results_dir()
    p = result_path(rdir, cfg.experiment, cfg.scale, run_id(cfg.variant, config_hash(cfg)))
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def find_done(
    config_hash: str,
    experiment: str,
    scale: str,
    variant: str,
    results_dir: Path | str | None = None,
) -> dict | None:
    """The finished ("ok" or "diverged") result for this config hash, if any (skip-if-done)."""
    rdir = results_dir if results_dir is not None else default_results_dir()
    p = result_path(rdir, experiment, scale, run_id(variant, config_hash))
    if p.exists():
        rec = _read_record(p, required=True)
        if rec is not None and rec.get("status") in FINAL_STATUSES:
            return rec
    return None


def load_results(results_dir: Path | str | None = None, experiment: str | None = None):
    """All results as a pandas DataFrame: one row per run, metrics as `metric:<name>` columns."""
    import pandas as pd

    rows = []
    for rec in iter_results(results_dir, experiment):
        row = {
            k: rec.get(k)
            for k in ("run_id", "experiment", "variant", "seed", "scale", "status", "error")
        }
        row["config_hash"] = rec.get("config_hash")
        row["device"] = (rec.get("provenance") or {}).get("device", {}).get("type")
        for k, v in (rec.get("config", {}).get("tags") or {}).items():
            row[f"tag:{k}"] = v
        for k, v in rec.get("metrics", {}).items():
            row[f"metric:{k}"] = v
        for k, v in (rec.get("params") or {}).items():
            row[f"params:{k}"] = v
        for k, v in (rec.get("timing") or {}).items():
            if isinstance(v, (int, float)):
                row[f"timing:{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)
