"""Ahead-of-time sm_90a compile of every registered Triton kernel, with ptxas resource reports."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from wm_bench.gpu import H100_SMEM_PER_BLOCK
from wm_bench.gpu.registry import SPEC_MODULES, CompileConfig, KernelSpec, collect

CACHE_VERSION = 2  # 2: rows carry ptx_sha256
TARGET = ("cuda", 90, 32)
_PTXAS_RE = {
    "stack_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "registers": re.compile(r"Used (\d+) registers"),
    "smem_static": re.compile(r"(\d+) bytes smem"),
}
_INSTR_RE = {
    "wgmma": re.compile(r"\bwgmma\.mma_async"),
    "tma": re.compile(r"\bcp\.async\.bulk\.tensor"),
    "mma": re.compile(r"\bmma\.sync"),
}
_ENTRY_RE = re.compile(r"\.entry\s+([A-Za-z_$][\w$]*)\s*\(")
_DEBUG_LABEL_RE = re.compile(r"^\$L__tmp\d+:$")
_LD_RE = re.compile(r"\bld\.global(?:\.[a-z0-9_:]+)*?(?:\.v(\d))?\.[bfsu](8|16|32|64)\b")
_CP_ASYNC_RE = re.compile(
    r"\bcp\.async\.c[ag]\.shared\.global(?:\.[a-z0-9_:]+)*\s+\[[^\]]*\],\s*\[[^\]]*\],"
    r"\s*(0x[0-9a-fA-F]+|\d+)"
)


def find_ptxas() -> dict[str, str | None]:
    """The assembler to read resources with: the wheel's ptxas-blackwell, else its plain ptxas.

    Returns:
        {"path", "kind" ("ptxas-blackwell" | "ptxas"), "version"} (path None when neither exists).
    """
    import triton

    bindir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for kind in ("ptxas-blackwell", "ptxas"):
        path = bindir / kind
        if path.exists():
            out = subprocess.run([str(path), "--version"], capture_output=True, text=True)
            m = re.search(r"release ([\d.]+), V([\d.]+)", out.stdout)
            version = m.group(2) if m else None
            return {"path": str(path), "kind": kind, "version": version}
    return {"path": None, "kind": None, "version": None}


def parse_ptxas(log: str) -> dict[str, int]:
    """Registers/thread, spills, stack frame and static shared memory from `ptxas -v` output."""
    out = {}
    for key, rx in _PTXAS_RE.items():
        m = rx.search(log)
        out[key] = int(m.group(1)) if m else 0
    return out


def ptx_fingerprint(ptx: str) -> str:
    """SHA-256 of the PTX's code, with what does not reach the machine code left out: source
    locations (.loc, .file), the debug sections and their scope labels ($L__tmpN), comments, and
    the kernel's own name. Two kernels with the same fingerprint assemble to the same code, so a
    refactor of Triton source (a helper pulled out, a kernel renamed) that keeps every
    fingerprint provably keeps the compiled kernels as they were."""
    code = ptx.split("\t.section\t.debug", 1)[0]
    m = _ENTRY_RE.search(code)
    if m:
        code = code.replace(m.group(1), "KERNEL")  # also in its parameters' names
    keep = []
    for line in code.splitlines():
        s = line.split("//", 1)[0].rstrip()
        if s and not s.lstrip().startswith((".loc", ".file")) and not _DEBUG_LABEL_RE.match(s):
            keep.append(s)
    return hashlib.sha256("\n".join(keep).encode()).hexdigest()


def scan_ptx(ptx: str) -> dict[str, int]:
    """Counts of wgmma / TMA / mma.sync instructions and the widest global load in bytes
    (ld.global and cp.async into shared memory)."""
    counts = {k: len(rx.findall(ptx)) for k, rx in _INSTR_RE.items()}
    widths = [int(v or 1) * int(bits) // 8 for v, bits in _LD_RE.findall(ptx)]
    widths += [int(n, 0) for n in _CP_ASYNC_RE.findall(ptx)]  # pipelined loads into shared memory
    counts["ld_bytes_max"] = max(widths, default=0)
    return counts


def run_ptxas(ptx: str, ptxas: dict[str, str | None], maxnreg: int | None) -> dict[str, Any]:
    """Assemble the PTX for sm_90a with `-v` and parse its report (lowering .version if needed)."""
    if not ptxas["path"]:
        return {"ptxas_error": "no ptxas in the triton wheel (backends/nvidia/bin)"}
    with tempfile.TemporaryDirectory(prefix="wm-ptxas-") as tmp:
        src, dst = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        cmd = [str(ptxas["path"]), "-arch=sm_90a", "-v", str(src), "-o", str(dst)]
        if maxnreg:
            cmd.insert(1, f"--maxrregcount={maxnreg}")
        src.write_text(ptx)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        log, patched = proc.stdout + proc.stderr, None
        m = re.search(r"Unsupported \.version ([\d.]+); current version is '([\d.]+)'", log)
        if proc.returncode and m:  # an older plain ptxas: retry at the version it knows
            patched = m.group(2)
            src.write_text(re.sub(r"^\.version [\d.]+", f".version {patched}", ptx, flags=re.M))
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            log = proc.stdout + proc.stderr
    if proc.returncode:
        return {"ptxas_error": log.strip()[-2000:], "ptx_version_patched": patched}
    return {**parse_ptxas(log), "ptxas_log": log.strip(), "ptx_version_patched": patched}


def _jsonable(d: Any) -> Any:
    if isinstance(d, dict):
        return {str(k): _jsonable(v) for k, v in d.items()}
    return d if isinstance(d, (int, float, str, bool, type(None))) else str(d)


def _label(case: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in _jsonable(case).items()) or "-"


def cache_key(spec: KernelSpec, case: dict, config: CompileConfig, ptxas: dict) -> str:
    """Hash of (kernel source, signature, case, config, triton and ptxas versions)."""
    import triton

    blob = json.dumps(
        [
            CACHE_VERSION,
            spec.fn.cache_key,
            spec.signature_for(case, config),
            sorted(map(str, spec.attrs(case, config).items())),
            _jsonable(spec.constexprs(case, config)),
            [config.num_warps, config.num_stages],
            triton.__version__,
            ptxas.get("version"),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def compile_one(spec: KernelSpec, case: dict, config: CompileConfig, ptxas: dict) -> dict:
    """Compile one (kernel, case, config) for sm_90a and read its resources.

    Returns:
        A JSON-ready row: status "ok" | "error", registers, spills, stack, shared memory
        (static from ptxas + dynamic from triton), instruction counts and timings.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    row: dict[str, Any] = {"status": "ok", "error": None}
    t0 = time.perf_counter()
    try:
        sig, attrs = spec.signature_for(case, config), spec.attrs(case, config)
        src = ASTSource(spec.fn, sig, spec.constexprs(case, config), attrs)
        opts = {"num_warps": config.num_warps, "num_stages": config.num_stages}
        kernel = triton.compile(
            src, target=GPUTarget(*TARGET), options={**opts, "enable_fp_fusion": True}
        )
    except Exception as e:  # a compile error is a result, not a crash
        msg = str(e).strip() or type(e).__name__
        row.update(status="error", error=f"{type(e).__name__}: {msg}")
        row["compile_s"] = round(time.perf_counter() - t0, 2)
        return row
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    ptx = kernel.asm["ptx"]
    row["smem_dynamic"] = int(getattr(kernel.metadata, "shared", 0) or 0)
    row["instructions"] = scan_ptx(ptx)
    row["ptx_sha256"] = ptx_fingerprint(ptx)
    t1 = time.perf_counter()
    row.update(run_ptxas(ptx, ptxas, getattr(kernel.metadata, "maxnreg", None)))
    row["ptxas_s"] = round(time.perf_counter() - t1, 2)
    row["smem_bytes"] = row["smem_dynamic"] + row.get("smem_static", 0)
    return row


def problems(row: dict[str, Any]) -> list[str]:
    """What fails the check for one row (empty when it passes)."""
    out = []
    if row["status"] != "ok":
        return [f"compile error: {_last_line(row['error'])}"]
    if row.get("ptxas_error"):
        out.append(f"ptxas failed: {_last_line(row['ptxas_error'])}")
    spill = row.get("spill_stores", 0) + row.get("spill_loads", 0)
    if spill and row["pickable"]:
        out.append(
            f"spills {row['spill_stores']} B stores / {row['spill_loads']} B loads in a config "
            "the autotuner may pick"
        )
    if row.get("smem_bytes", 0) > H100_SMEM_PER_BLOCK:
        out.append(f"shared memory {row['smem_bytes'] / 1024:.1f} KB > 227 KB per block")
    for instr in row["intended"]:
        if not row.get("instructions", {}).get(instr):
            out.append(f"spec says {instr!r} but the PTX has none")
    return out


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


_WORK: list[tuple[KernelSpec, dict, CompileConfig]] = []  # set before the worker pool forks
_PTXAS: dict = {}


def _work(i: int) -> dict:
    spec, case, config = _WORK[i]
    return compile_one(spec, case, config, _PTXAS)


def run(
    specs: list[KernelSpec],
    *,
    jobs: int = 1,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Compile every kernel × case × config (cached by source hash).

    Args:
        specs: kernels from `registry.collect`.
        jobs: parallel compile processes (forked).
        cache_dir: per-row JSON cache (None = no cache).
        progress: print one line per compiled row.
    Returns:
        (rows, ptxas description).
    """
    global _PTXAS
    ptxas = find_ptxas()
    _PTXAS = ptxas
    work, rows, todo = [], [], []
    for spec in specs:
        for c, case in enumerate(spec.cases):
            for config in spec.configs:
                row = {
                    "kernel": spec.name,
                    "module": spec.module,
                    "case": _jsonable(dict(case)),
                    "case_label": spec.case_names[c] if spec.case_names else _label(dict(case)),
                    "config": {"num_warps": config.num_warps, "num_stages": config.num_stages}
                    | {"constexprs": _jsonable(dict(config.constexprs))},
                    "config_label": config.label(),
                    "pickable": config.pickable,
                    "intended": list(spec.instructions),
                    "cached": False,
                }
                try:
                    key = cache_key(spec, dict(case), config, ptxas)
                except Exception as e:  # e.g. a constexpr without a value: a row, not a crash
                    row.update(status="error", error=f"{type(e).__name__}: {e}", compile_s=0.0)
                    rows.append(row)
                    continue
                path = cache_dir / f"{key}.json" if cache_dir else None
                if path and path.exists():
                    row.update(json.loads(path.read_text()), cached=True)
                else:
                    todo.append((len(rows), path))
                    work.append((spec, dict(case), config))
                rows.append(row)
    _WORK[:] = work
    results: list[dict]
    if jobs > 1 and len(work) > 1 and hasattr(os, "fork"):
        import multiprocessing as mp

        results = []
        try:
            with ProcessPoolExecutor(min(jobs, len(work)), mp_context=mp.get_context("fork")) as ex:
                for n, res in enumerate(ex.map(_work, range(len(work)))):
                    results.append(res)
                    _progress(progress, rows[todo[n][0]], res, n, len(work))
        except BrokenProcessPool as e:  # the compiler crashed a worker: report, do not cache
            crash = {"status": "error", "error": f"compile worker died ({e})", "compile_s": 0.0}
            results += [crash] * (len(work) - len(results))
            todo = [(i, None) for i, _ in todo]
    else:
        results = []
        for n in range(len(work)):
            results.append(_work(n))
            _progress(progress, rows[todo[n][0]], results[-1], n, len(work))
    for (idx, path), res in zip(todo, results):
        rows[idx].update(res)
        if path:
            from wm_bench.results import write_json_atomic

            write_json_atomic(path, res)
    for row in rows:
        row["problems"] = problems(row)
    return rows, ptxas


def _progress(on: bool, row: dict, res: dict, n: int, total: int) -> None:
    if on:
        what = f"{row['kernel']} [{row['case_label']}] {row['config_label']}"
        print(f"  [{n + 1}/{total}] {what}: {res['status']} in {res['compile_s']} s", flush=True)


def render_table(rows: list[dict], errors: list[tuple[str, str]]) -> str:
    """The terminal table: one line per row, then one per specs module that failed to import."""
    from tabulate import tabulate

    def ins(r: dict, k: str) -> str:
        n = r.get("instructions", {}).get(k, 0)
        want = "!" if k in r["intended"] and not n else ""
        return f"{n}{want}" if n or want else "-"

    table = []
    for r in rows:
        ok = r["status"] == "ok"
        table.append(
            [
                r["kernel"],
                r["case_label"],
                r["config_label"],
                r.get("registers", "") if ok else "",
                f"{r.get('spill_stores', 0)}/{r.get('spill_loads', 0)}" if ok else "",
                r.get("stack_bytes", "") if ok else "",
                f"{r.get('smem_bytes', 0) / 1024:.1f}" if ok else "",
                ins(r, "wgmma") if ok else "",
                ins(r, "tma") if ok else "",
                r.get("instructions", {}).get("ld_bytes_max", "") if ok else "",
                f"{r.get('compile_s', 0):.1f}" + (" (cache)" if r["cached"] else ""),
                "; ".join(r["problems"]) or "ok",
            ]
        )
    for mod, msg in errors:
        table.append([mod, "", "", "", "", "", "", "", "", "", "", f"import error: {msg}"])
    head = ["kernel", "case", "config", "regs", "spill st/ld B", "stack B", "smem KB"]
    head += ["wgmma", "tma", "ld B", "compile s", "status"]
    return tabulate(table, headers=head, tablefmt="simple")


def _public(ptxas: dict) -> dict:
    """The ptxas description with its path relative to the triton package (no local paths)."""
    path = ptxas.get("path")
    rel = path[path.rfind("triton/backends") :] if path and "triton/backends" in path else path
    return {**ptxas, "path": rel}


def main(argv: list[str] | None = None) -> int:
    """`wm-bench gpu compile`: compile the registry for sm_90a, print the table, write the JSON.

    Returns:
        0 when every row passes; 1 on a compile error, a spill in a pickable config, shared
        memory over 227 KB, a missing intended instruction, or a specs module that fails to import.
    """
    from wm_bench.results import now_iso, provenance, repo_root, write_json_atomic

    p = argparse.ArgumentParser(prog="wm-bench gpu compile", description=main.__doc__)
    p.add_argument("--out", default=str(repo_root() / "results/bench/compile-sm90a.json"))
    p.add_argument("--cache-dir", default=str(repo_root() / "outputs/compile-cache"))
    p.add_argument("--no-cache", action="store_true", help="recompile everything")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--kernel", action="append", default=[], help="only kernels with this name")
    p.add_argument("--modules", default=",".join(SPEC_MODULES), help="specs modules, comma list")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    import triton

    t0 = time.perf_counter()
    specs, errors = collect([m for m in args.modules.split(",") if m])
    if args.kernel:
        specs = [s for s in specs if s.name in args.kernel]
    n = sum(len(s.cases) * len(s.configs) for s in specs)
    print(f"compiling {len(specs)} kernels, {n} (case, config) pairs for sm_90a …", flush=True)
    cache = None if args.no_cache else Path(args.cache_dir)
    rows, ptxas = run(specs, jobs=args.jobs, cache_dir=cache, progress=not args.quiet)
    print(render_table(rows, errors))
    failed = [
        f"{r['kernel']} [{r['case_label']}] {r['config_label']}: {p}"
        for r in rows
        for p in r["problems"]
    ]
    failed += [f"{mod}: import error: {msg}" for mod, msg in errors]
    doc = {
        "schema": "compile-sm90a/1",
        "target": {"backend": TARGET[0], "arch": "sm_90a", "warp_size": TARGET[2]},
        "smem_limit_bytes": H100_SMEM_PER_BLOCK,
        "ok": not failed,
        "problems": failed,
        "module_errors": [{"module": m, "error": e} for m, e in errors],
        "rows": [{k: v for k, v in r.items() if k != "ptxas_log"} for r in rows],
        "wall_s": round(time.perf_counter() - t0, 1),
        "created_at": now_iso(),
        "provenance": provenance({"type": "cpu", "compile_target": "sm_90a"})
        | {"triton_version": triton.__version__, "ptxas": _public(ptxas)},
    }
    out = write_json_atomic(args.out, doc)
    wall = doc["wall_s"]
    print(f"ptxas: {ptxas['kind']} {ptxas['version']}; wrote {out} in {wall} s")
    if failed:
        print(f"FAILED: {len(failed)} problem(s) in the sm_90a compile check:", file=sys.stderr)
        for line in failed:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"OK: {len(rows)} compiles for sm_90a, no spills, shared memory within 227 KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
