"""`make gpu-suite`: everything a lent GPU must measure, in one time-boxed call (≤ 9 minutes)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

BENCHMARKS = ("ssd", "attention", "train")  # wm_bench.bench.<name> modules with main(argv)
TOTAL_BUDGET_S = 540.0
BUDGETS = {  # seconds per section; their sum fits the 9-minute box
    "env": 30,
    "install": 60,
    "tests": 90,
    "bench:ssd": 110,
    "bench:attention": 100,
    "bench:train": 70,
    "mqar-small": 80,
}
GPU_SECTIONS = ("tests", *(f"bench:{b}" for b in BENCHMARKS), "mqar-small")
_PROBE = r"""
import json, platform, shutil, subprocess, sys
info = {"python": platform.python_version(), "executable": sys.executable, "cuda": False}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    info["cuda"] = torch.cuda.is_available()
    if info["cuda"]:
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, capability=list(torch.cuda.get_device_capability(0)),
                    sm_count=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1))
except Exception as e:
    info["torch_error"] = repr(e)
try:
    import triton
    info["triton"] = triton.__version__
except Exception as e:
    info["triton_error"] = repr(e)
smi = shutil.which("nvidia-smi")
if smi:
    q = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        out = subprocess.run([smi, "--query-gpu=" + q, "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    except Exception as e:
        info["nvidia_smi_error"] = repr(e)
print("WM_ENV " + json.dumps(info))
"""
_FAKE = r"""
import json, os, sys, time
sleeps = dict(kv.split("=") for kv in os.environ.get("WM_BENCH_FAKE_SLEEP", "").split(",") if kv)
time.sleep(float(sleeps.get(sys.argv[1], 0)))  # e.g. WM_BENCH_FAKE_SLEEP=tests=5 tests a timeout
out = os.path.join(os.environ["WM_BENCH_RESULTS"], "bench", "fake", sys.argv[1] + ".json")
os.makedirs(os.path.dirname(out), exist_ok=True)
json.dump({"fake": True, "section": sys.argv[1]}, open(out, "w"))
print(f"fake {sys.argv[1]}: 1 passed (stub section, no GPU used)")
"""


@dataclass
class Ctx:
    """What every section needs: where to write, the clock, the environment of subprocesses."""

    run_dir: Path
    deadline: float
    budgets: dict[str, float]
    env: dict[str, str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)


def _now() -> str:
    from wm_bench.results import now_iso

    return now_iso()


def _write(ctx: Ctx, rec: dict[str, Any]) -> dict[str, Any]:
    from wm_bench.results import write_json_atomic

    write_json_atomic(ctx.run_dir / f"{rec['section'].replace(':', '-')}.json", rec)
    ctx.records.append(rec)
    note = f" — {rec['note']}" if rec.get("note") else ""
    print(
        f"[gpu-suite] {rec['section']}: {rec['status']} in {rec['wall_s']:.1f} s{note}", flush=True
    )
    return rec


def skip(ctx: Ctx, name: str, reason: str) -> dict[str, Any]:
    """Record a skipped section with its reason (e.g. "no CUDA")."""
    rec = {"section": name, "status": "skipped", "reason": reason, "note": reason, "wall_s": 0.0}
    return _write(ctx, rec)


def run_section(
    ctx: Ctx, name: str, cmd: list[str], note: Any = None, **extra: Any
) -> dict[str, Any]:
    """Run one section as a subprocess in its own time box; write its JSON as soon as it ends.

    Args:
        ctx: the run.
        name: section name (its JSON is <run>/<name>.json, its output <run>/<name>.log).
        cmd: the command.
        note: a function of (output, status) for the summary note (default: the last line).
        extra: more fields for the record.
    Returns:
        The record: status ok | failed | timeout | skipped, rc, wall_s, log tail, note.
    """
    left = ctx.deadline - time.monotonic() - 5
    box = min(ctx.budgets.get(name, 60), left)
    if left < 10:
        return skip(ctx, name, f"out of time: the {TOTAL_BUDGET_S:.0f} s box is spent")
    log = ctx.run_dir / f"{name.replace(':', '-')}.log"
    print(f"[gpu-suite] {name}: running (box {box:.0f} s) …", flush=True)
    rec: dict[str, Any] = {"section": name, "command": cmd, "budget_s": round(box), **extra}
    rec["started_at"], t0 = _now(), time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ctx.env},
            start_new_session=True,  # a timeout ends the whole process group
        )
        try:
            rc = proc.wait(timeout=box)
            rec["status"] = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc, rec["status"] = None, "timeout"
    text = log.read_text(errors="replace")
    rec |= {"rc": rc, "wall_s": round(time.monotonic() - t0, 1), "finished_at": _now()}
    rec |= {
        "log": log.name,
        "log_tail": text[-3000:],
        "note": (note or partial(_note, name))(text, rec["status"]),
    }
    if name == "tests" and rc == 5:  # pytest: no GPU-marked test collected
        rec |= {"status": "ok", "note": "no gpu-marked tests collected"}
    if rec["status"] != "ok":
        print("\n".join(text.splitlines()[-15:]), flush=True)
    _write(ctx, rec)
    return rec


def _kill(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=5)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def _env_note(text: str, status: str) -> str:
    info = _parse_env(text)
    gpu = info.get("name") or "no CUDA"
    return f"{gpu}; torch {info.get('torch')}, triton {info.get('triton')}, {info.get('python')}"


def _parse_env(text: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith("WM_ENV "):
            return json.loads(line[len("WM_ENV ") :])
    return {"cuda": False}


def _note(name: str, text: str, status: str) -> str:
    if status == "timeout":
        return "time box spent; partial output in the log"
    if name == "tests":
        counts = re.findall(r"(\d+) (passed|failed|skipped|error|errors|xfailed)", text)
        if counts:
            return ", ".join(f"{n} {w}" for n, w in counts)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:120] if lines else ""


def env_section(ctx: Ctx, fake: bool) -> dict[str, Any]:
    """Versions, the GPU and nvidia-smi (a subprocess, so a hung driver cannot stall the run)."""
    rec = run_section(ctx, "env", [sys.executable, "-c", _PROBE], note=_env_note)
    info = _parse_env(rec.get("log_tail", ""))
    if fake:
        info |= {"cuda": True, "name": "fake-gpu", "fake": True}
    rec["info"] = info
    from wm_bench.results import write_json_atomic

    write_json_atomic(ctx.run_dir / "env.json", rec)
    return info


def install_section(ctx: Ctx, bundle: Path, site: Path) -> dict[str, Any]:
    """pip install the bundle's wheels (offline, no deps) into a private --target folder.

    Wheels marked "if-missing" are skipped when the machine already has that distribution;
    every wheel's sha256 is checked against the manifest first.
    """
    from wm_bench.gpu.bundle import norm, sha256

    manifest_path = bundle / "manifest.json"
    if not manifest_path.exists():
        return skip(ctx, "install", f"no bundle at {bundle} (run `make gpu-bundle` and carry it)")
    man = json.loads(manifest_path.read_text())
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if man.get("python_version") != here:
        rec = {"section": "install", "status": "failed", "wall_s": 0.0}
        note = f"bundle built for Python {man.get('python_version')}, this python is {here}: "
        return _write(ctx, rec | {"note": note + f"rebuild with `make gpu-bundle PYVER={here}`"})
    search = [p for p in sys.path if Path(p or ".").resolve() != site.resolve()]
    present = {norm(d.metadata["Name"] or "") for d in metadata.distributions(path=search)}
    wheels, skipped, bad = [], [], []
    for item in man["items"]:
        if item["status"] != "ok":
            continue
        if item["install"] == "if-missing" and item["name"] in present:
            skipped.append(item["req"])
        elif sha256(bundle / item["file"]) != item["sha256"]:
            bad.append(item["file"])
        else:
            wheels.append(str(bundle / item["file"]))
    extra = {"installed": wheels, "present_skipped": skipped, "target": str(site)}
    extra["missing_in_bundle"] = [i["req"] for i in man["items"] if i["status"] != "ok"]
    if bad:
        rec = {"section": "install", "status": "failed", "wall_s": 0.0, **extra}
        return _write(ctx, rec | {"note": f"sha256 mismatch: {bad}"})
    site.mkdir(parents=True, exist_ok=True)
    ctx.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), ctx.env.get("PYTHONPATH")]))
    if (bundle / "data").exists():
        ctx.env["WM_BENCH_SHARED_DATA"] = str((bundle / "data").resolve())
    if not wheels:
        rec = {"section": "install", "status": "ok", "wall_s": 0.0, **extra}
        return _write(ctx, rec | {"note": "nothing to install"})
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile"]
    pip += ["--no-cache-dir", "--upgrade", "--disable-pip-version-check", "--target", str(site)]
    done = f"{len(wheels)} wheels into {site}; {len(skipped)} already present"
    note = lambda t, s: done if s == "ok" else _note("install", t, s)  # noqa: E731
    return run_section(ctx, "install", [*pip, *wheels], note=note, **extra)


def plan(selected: list[str]) -> list[str]:
    """Expand SECTIONS ("all", "tests", "bench", "bench:ssd", "mqar") to GPU section names.

    Raises:
        ValueError: an unknown section name, naming the valid ones.
    """
    valid = ["all", "env", "install", "bench", "mqar", *GPU_SECTIONS]
    out: list[str] = []
    for s in selected or ["all"]:
        if s not in valid:
            raise ValueError(f"unknown section {s!r}; valid: {valid}")
        if s == "all":
            out += GPU_SECTIONS
        elif s == "bench":
            out += [x for x in GPU_SECTIONS if x.startswith("bench:")]
        elif s in ("mqar", "mqar-small"):
            out.append("mqar-small")
        elif s not in ("env", "install"):  # those two always run
            out.append(s)
    return [s for s in GPU_SECTIONS if s in out]


def gpu_command(name: str, ctx: Ctx, mqar_limit: int) -> list[str] | str:
    """The command of a GPU section, or a reason to skip it."""
    py = sys.executable
    if name == "tests":
        return [py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"]
    if name.startswith("bench:"):
        mod = f"wm_bench.bench.{name.split(':', 1)[1]}"
        if importlib.util.find_spec(mod) is None:
            return f"{mod} does not exist yet"
        return [py, "-c", f"import sys; from {mod} import main; sys.exit(main([]))"]
    out_dir = ctx.run_dir / "mqar-outputs"
    cmd = [py, "-m", "wm_bench.cli", "reproduce", "mqar", "--scale", "small"]
    cmd += ["--limit", str(mqar_limit), "--no-report", "--quiet"]
    return [*cmd, "--results-dir", ctx.env["WM_BENCH_RESULTS"], "--out-dir", str(out_dir)]


def _no_checkpoints(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "/mqar-outputs" in info.name else info


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-gpu"


def _publish(ctx: Ctx, results_root: Path, device: str) -> Path:
    """Section JSONs → results/bench/gpu/<device>/; the run's results tree merges into results/."""
    dest = results_root / "bench" / "gpu" / device
    dest.mkdir(parents=True, exist_ok=True)
    for f in ctx.run_dir.glob("*.json"):
        shutil.copyfile(f, dest / f.name)
    produced = ctx.run_dir / "results"
    if produced.exists():
        shutil.copytree(produced, results_root, dirs_exist_ok=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    """Run the GPU suite; with no CUDA every GPU section is skipped ("no CUDA") and it exits 0.

    Returns:
        0 when no section failed or timed out, else 1.
    """
    from tabulate import tabulate

    from wm_bench.results import provenance, repo_root, write_json_atomic

    root = repo_root()
    p = argparse.ArgumentParser(prog="wm-bench gpu suite", description=main.__doc__)
    p.add_argument("--sections", default=os.environ.get("SECTIONS", "all"))
    p.add_argument("--bundle", default=str(root / ".carry/bundle"))
    p.add_argument("--out-root", default=str(root / "outputs/gpu-suite"))
    p.add_argument("--site", default=str(root / "outputs/gpu-site"), help="private pip --target")
    p.add_argument("--results-root", default=str(root / "results"))
    p.add_argument(
        "--fake", action="store_true", default=os.environ.get("WM_BENCH_FAKE_GPU") == "1"
    )
    p.add_argument("--total-budget", type=float, default=TOTAL_BUDGET_S)
    p.add_argument("--budget", action="append", default=[], metavar="SECTION=SECONDS")
    p.add_argument("--mqar-limit", type=int, default=int(os.environ.get("MQAR_LIMIT", "4")))
    p.add_argument(
        "--archive", default=os.environ.get("ARCHIVE") or None, help="a .tar.gz of the run"
    )
    p.add_argument("--keep-partial", action="store_true", help="publish even after a failure")
    args = p.parse_args(argv)
    try:
        selected = plan([s.strip() for s in args.sections.split(",") if s.strip()])
        budgets = dict(BUDGETS) | {k: float(v) for k, v in (b.split("=", 1) for b in args.budget)}
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.monotonic()
    run_dir = Path(args.out_root) / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(run_dir, start + args.total_budget, budgets)
    ctx.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    ctx.env["WM_BENCH_RESULTS"] = str(run_dir / "results")
    ctx.env["PYTHONUNBUFFERED"] = "1"
    print(f"[gpu-suite] run folder {run_dir}; sections {selected}; box {args.total_budget:.0f} s")
    info = env_section(ctx, args.fake)
    if info.get("cuda"):
        install_section(ctx, Path(args.bundle), Path(args.site))
    else:
        skip(ctx, "install", "no CUDA: nothing here would use the bundle")
    no_cuda = "no CUDA" + (
        f" (torch {info.get('torch')} at {info.get('executable')}; set GPU_PY to a CUDA python)"
        if info.get("torch")
        else f" (torch not importable: {info.get('torch_error', '?')})"
    )
    for name in selected:
        cmd = [sys.executable, "-c", _FAKE, name.replace(":", "-")] if args.fake else None
        cmd = cmd or gpu_command(name, ctx, args.mqar_limit)
        if not info.get("cuda"):
            skip(ctx, name, no_cuda)
        elif isinstance(cmd, str):
            skip(ctx, name, cmd)
        else:
            run_section(ctx, name, cmd)
    bad = [r["section"] for r in ctx.records if r["status"] in ("failed", "timeout")]
    device = _slug(info.get("name", "")) if info.get("cuda") else None
    bundle_man = Path(args.bundle) / "manifest.json"
    summary = {
        "schema": "gpu-suite/1",
        "run_dir": str(run_dir),
        "sections": [
            {k: r.get(k) for k in ("section", "status", "wall_s", "note")} for r in ctx.records
        ],
        "ok": not bad,
        "fake": args.fake,
        "env": info,
        "wall_s": round(time.monotonic() - start, 1),
        "provenance": provenance({"type": "cuda" if info.get("cuda") else "cpu", **info}),
        "bundle": json.loads(bundle_man.read_text()).get("provenance")
        if bundle_man.exists()
        else None,
    }
    write_json_atomic(run_dir / "summary.json", summary)
    publish = bool(device) and (not bad or args.keep_partial)
    if publish:
        dest = _publish(ctx, Path(args.results_root), device)
        print(f"[gpu-suite] results copied to {dest} (and the run's results/ merged)")
    elif device:
        print(f"[gpu-suite] {bad} failed: nothing published (--keep-partial to publish anyway)")
    else:
        print("[gpu-suite] no CUDA: nothing published to results/")
    if args.archive:  # laid out like the checkout: `tar xzf` in the repository root
        with tarfile.open(args.archive, "w:gz") as tar:
            tar.add(run_dir, f"outputs/gpu-suite/{run_dir.name}", filter=_no_checkpoints)
            if publish and (run_dir / "results").exists():
                tar.add(run_dir / "results", "results")
            for f in sorted(run_dir.glob("*.json")) if publish else []:
                tar.add(f, f"results/bench/gpu/{device}/{f.name}")
        print(f"[gpu-suite] archive {args.archive} (unpack with `tar xzf` in the checkout)")
    rows = [
        [r["section"], r["status"], f"{r['wall_s']:.1f}", (r.get("note") or "")[:70]]
        for r in ctx.records
    ]
    print(tabulate(rows, headers=["section", "status", "s", "note"]))
    print(f"total {summary['wall_s']:.0f} s of {args.total_budget:.0f}; run folder {run_dir}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
