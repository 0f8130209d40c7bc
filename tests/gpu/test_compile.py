"""sm_90a ahead-of-time compile driver: RoPE resources, tl.dot under 16 caught, clear failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from wm_bench.gpu import compile as gc  # noqa: E402
from wm_bench.gpu.registry import CompileConfig, KernelSpec, as_spec, collect  # noqa: E402


@triton.jit
def _dot_kernel(A, B, C, BLOCK: tl.constexpr):
    """Test-only: one BLOCK×BLOCK tile product (the interpreter runs BLOCK=8; the GPU cannot)."""
    o = tl.arange(0, BLOCK)
    a = tl.load(A + o[:, None] * BLOCK + o[None, :])
    b = tl.load(B + o[:, None] * BLOCK + o[None, :])
    tl.store(C + o[:, None] * BLOCK + o[None, :], tl.dot(a, b))


_DOT_SIG = {"A": "*bf16", "B": "*bf16", "C": "*fp32"}


@triton.jit
def _masked_row(base, offs, n):
    return tl.load(base + offs, mask=offs < n, other=0.0)


@triton.jit
def _scale_inline(X, Y, n, BLOCK: tl.constexpr):
    """Test-only: y = 2x, the masked load written out."""
    offs = tl.arange(0, BLOCK)
    x = tl.load(X + offs, mask=offs < n, other=0.0)
    tl.store(Y + offs, 2.0 * x, mask=offs < n)


@triton.jit
def _scale_helper(X, Y, n, BLOCK: tl.constexpr):
    """Test-only: the same kernel with the load in a @triton.jit helper."""
    offs = tl.arange(0, BLOCK)
    x = _masked_row(X, offs, n)
    tl.store(Y + offs, 2.0 * x, mask=offs < n)


@triton.jit
def _scale_other(X, Y, n, BLOCK: tl.constexpr):
    """Test-only: a different kernel (y = 3x)."""
    offs = tl.arange(0, BLOCK)
    x = tl.load(X + offs, mask=offs < n, other=0.0)
    tl.store(Y + offs, 3.0 * x, mask=offs < n)


KERNEL_SPECS = [  # read by `--modules <this module>` below: a specs module with a bad shape
    KernelSpec(name="dot8", fn=_dot_kernel, signature=_DOT_SIG, cases=({"BLOCK": 8},))
]


def test_rope_compiles_with_registers_no_spills_and_json_provenance(tmp_path, capsys):
    out, cache = tmp_path / "compile-sm90a.json", tmp_path / "cache"
    argv = ["--modules", "wm_bench.kernels.rope.specs", "--kernel", "rope_fp32", "--out", str(out)]
    argv += ["--cache-dir", str(cache), "--jobs", "1"]
    assert gc.main(argv) == 0
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert row["status"] == "ok" and row["problems"] == []
    assert 0 < row["registers"] <= 255
    assert row["spill_stores"] == row["spill_loads"] == 0
    assert row["instructions"]["wgmma"] == 0 and row["intended"] == []  # elementwise
    prov = doc["provenance"]
    assert prov["triton_version"] == triton.__version__ and prov["ptxas"]["version"]
    assert "git_commit" in prov and prov["versions"]["torch"]
    assert doc["ok"] is True and "rope_fp32" in capsys.readouterr().out
    # a second run reads the per-source-hash cache
    assert gc.main(argv) == 0
    assert json.loads(out.read_text())["rows"][0]["cached"] is True


def test_interpreter_accepts_dot8_but_the_sm90a_compile_reports_the_error(tmp_path, capsys):
    code = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_compile import _dot_kernel
        from wm_bench.testing import rel_rms, tolerance
        a, b, c = torch.randn(8, 8), torch.randn(8, 8), torch.empty(8, 8)
        _dot_kernel[(1,)](a, b, c, BLOCK=8)
        print("interpreter ok", rel_rms(c, a @ b) < tolerance("fp32"))
        """
    )
    (tmp_path / "k.py").write_text(code)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "k.py")], capture_output=True, text=True, env=env
    )
    assert "interpreter ok True" in proc.stdout, proc.stderr[-2000:]

    rows, _ = gc.run(KERNEL_SPECS, jobs=1, cache_dir=None, progress=False)
    (row,) = rows
    assert row["status"] == "error" and "K >= 16" in row["error"]
    assert row["problems"] and row["problems"][0].startswith("compile error:")
    argv = ["--modules", __name__, "--out", str(tmp_path / "c.json"), "--no-cache"]
    assert gc.main(argv) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "dot8" in err and "K >= 16" in err


def test_a_broken_specs_module_is_a_table_row_not_a_crash(tmp_path, capsys):
    specs, errors = collect(["wm_bench.kernels.no_such_op.specs", "wm_bench.kernels.rope.specs"])
    assert [s.name for s in specs] == ["rope_bf16", "rope_fp32"]
    assert errors[0][0] == "wm_bench.kernels.no_such_op.specs" and "ModuleNotFound" in errors[0][1]
    argv = ["--modules", "wm_bench.kernels.no_such_op.specs", "--out", str(tmp_path / "c.json")]
    assert gc.main(argv) == 1
    captured = capsys.readouterr()
    assert "import error" in captured.out and "no_such_op" in captured.err


def test_ptxas_report_parsing_and_the_failure_rules():
    log = (
        "ptxas info    : Function properties for k\n"
        "    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers, 1024 bytes smem, 400 bytes cmem[0]\n"
    )
    got = gc.parse_ptxas(log)
    assert got == {
        "stack_bytes": 48,
        "spill_stores": 40,
        "spill_loads": 36,
        "registers": 255,
        "smem_static": 1024,
    }
    base = {"status": "ok", "pickable": True, "intended": ["wgmma"], "instructions": {"wgmma": 0}}
    row = base | got | {"smem_bytes": 240 * 1024}
    probs = gc.problems(row)
    assert any("spills 40 B stores" in p for p in probs)
    assert any("227 KB" in p for p in probs)
    assert any("'wgmma'" in p for p in probs)
    assert not any("spill" in p for p in gc.problems(row | {"pickable": False}))
    ptx = "wgmma.mma_async.sync.aligned\ncp.async.bulk.tensor.2d\nld.global.v2.b32 {%r1}\n"
    assert gc.scan_ptx(ptx) == {"wgmma": 1, "tma": 1, "mma": 0, "ld_bytes_max": 8}
    ptx += "@%p1 cp.async.cg.shared.global [ %r30 + 0 ], [ %rd34 + 0 ], 0x10, %r31;\n"
    assert gc.scan_ptx(ptx)["ld_bytes_max"] == 16


def test_ptx_fingerprint_ignores_locations_and_debug_info_but_not_code():
    ptx = '.version 8.4\n.file 1 "a.py"\n.loc 1 10 5\nadd.f32 %f1, %f2, %f3; // x\n'
    moved = '.version 8.4\n.file 1 "b.py"\n.loc 1 99 2\nadd.f32 %f1, %f2, %f3;\n'
    debug = moved + "\t.section\t.debug_abbrev\n{\n.b8 17\n}\n"
    assert gc.ptx_fingerprint(ptx) == gc.ptx_fingerprint(moved) == gc.ptx_fingerprint(debug)
    assert gc.ptx_fingerprint(ptx) != gc.ptx_fingerprint(ptx.replace("add.f32", "sub.f32"))


def test_a_jit_helper_compiles_to_the_fingerprint_of_its_inlined_form():
    """What makes the fingerprint a refactoring check: pulling code into a @triton.jit helper
    leaves the sm_90a PTX as it was, and a real change of the kernel does not."""
    sig = {"X": "*fp32", "Y": "*fp32", "n": "i32"}
    specs = [
        KernelSpec(name=f.__name__, fn=f, signature=sig, cases=({"BLOCK": 128},))
        for f in (_scale_inline, _scale_helper, _scale_other)
    ]
    rows, _ = gc.run(specs, jobs=1, cache_dir=None, progress=False)
    assert [r["status"] for r in rows] == ["ok"] * 3, [r.get("error") for r in rows]
    inline, helper, other = (r["ptx_sha256"] for r in rows)
    assert inline == helper != other


def test_registry_takes_dicts_triton_configs_and_autotuned_functions():
    tuned = triton.autotune(
        configs=[triton.Config({"BLOCK": 64}, num_warps=4, num_stages=2)], key=[]
    )(_dot_kernel)
    spec = as_spec({"fn": tuned, "signature": _DOT_SIG, "intended": ["wgmma"]}, "m")
    assert spec.name == "_dot_kernel" and spec.instructions == ("wgmma",)
    assert spec.configs == (CompileConfig(4, 2, {"BLOCK": 64}),)
    assert spec.constexprs({}, spec.configs[0]) == {"BLOCK": 64}
    assert list(spec.full_signature().values()) == ["*bf16", "*bf16", "*fp32", "constexpr"]
    assert spec.attrs() == {
        (0,): [["tt.divisibility", 16]],
        (1,): [["tt.divisibility", 16]],
        (2,): [["tt.divisibility", 16]],
    }
    dict_cfg = as_spec(
        {
            "fn": _dot_kernel,
            "signature": _DOT_SIG,
            "configs": [{"num_warps": 8, "num_stages": 3, "BLOCK": 128}],
        }
    ).configs[0]
    assert dict_cfg == CompileConfig(8, 3, {"BLOCK": 128})
    with pytest.raises(ValueError, match="'C' has no type"):
        KernelSpec(
            name="x", fn=_dot_kernel, signature={"A": "*bf16", "B": "*bf16"}
        ).full_signature()
    with pytest.raises(ValueError, match="valid: \\['wgmma', 'tma', 'mma'\\]"):
        KernelSpec(name="x", fn=_dot_kernel, signature=_DOT_SIG, instructions=("hgmma",))
    with pytest.raises(ValueError, match="BLOCK"):
        KernelSpec(name="x", fn=_dot_kernel, signature=_DOT_SIG).constexprs({}, CompileConfig())
