"""Fixtures every test folder shares: where kernels run, a tiny run, the CLI, report checks.

    def test_kernel(triton_device): ...   # CUDA, or the CPU under TRITON_INTERPRET=1; else skipped
    def test_timing(cuda_device): ...     # CUDA only
    def test_bench(interpreter): ...      # only under TRITON_INTERPRET=1
    def test_static(no_kernel_device): ...  # only where neither CUDA nor the interpreter is
    def test_cpu_path(no_cuda): ...       # only without CUDA
    def test_run(tiny_run): cfg = tiny_run(experiment="x", steps=4)
    def test_cli(train_command): argv, env = train_command(cfg, tmp_path)  # for a subprocess
    def test_main(cli_dirs): main(["train", *cli_dirs])  # reproduce_dirs adds --reports-dir
    def test_report(report_imports_none): report_imports_none(["mqar"], results, tmp_path)

Comparisons use `wm_bench.testing.assert_close` (one error metric, named tolerances).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from wm_bench.kernels._impl import interpreting
from wm_bench.testing import triton_device as _where_triton_runs

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Where kernels run


@pytest.fixture
def triton_device() -> torch.device:
    """The device a Triton kernel runs on here; the test is skipped where none can."""
    device = _where_triton_runs()
    if device is None:
        pytest.skip("needs CUDA, or TRITON_INTERPRET=1 on the CPU (make test-interpret)")
    return device


@pytest.fixture
def cuda_device() -> torch.device:
    """The CUDA device; the test is skipped without one."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


@pytest.fixture
def interpreter() -> None:
    """Skips the test unless Triton runs in its CPU interpreter (TRITON_INTERPRET=1)."""
    if not interpreting():
        pytest.skip("needs TRITON_INTERPRET=1 (make test-interpret)")


@pytest.fixture
def no_kernel_device() -> None:
    """Skips the test where CUDA or the Triton interpreter is there: the plain-CPU path only."""
    if torch.cuda.is_available() or interpreting():
        pytest.skip("the path without CUDA or the Triton interpreter")


@pytest.fixture
def no_cuda() -> None:
    """Skips the test on a machine with CUDA: the no-CUDA path only."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")


# --------------------------------------------------------------------------------------------
# A tiny training run and the train command


@pytest.fixture
def restore_torch_threads():
    """Runs set torch's thread count (1 here: the same reduction order in parent and child);
    put the caller's back afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _tiny_run(
    data: str = "synthetic",
    *,
    experiment: str,
    steps: int,
    lr: float = 3e-3,
    n_eval: int = 32,
    warmup_steps: int = 5,
    **train: Any,
):
    """Llama-tiny over a 64-token vocabulary, 32-token rows, batch 16, one CPU thread, seed 1.

    Args:
        data: "synthetic" (128 training rows) or "mqar" (200 rows, 4 key-value pairs).
        experiment, steps, lr, warmup_steps: as RunConfig / TrainConfig / OptimConfig say.
        n_eval: rows of the evaluation split.
        train: further TrainConfig fields (eval_every, checkpoint, accelerator, ...).
    """
    from wm_bench.config import OptimConfig, RunConfig, TrainConfig
    from wm_bench.data.mqar import MqarDataConfig
    from wm_bench.data.synthetic import SyntheticDataConfig
    from wm_bench.presets import preset

    if data == "mqar":
        d = MqarDataConfig(seq_len=32, num_kv_pairs=4, vocab_size=64, n_train=200, n_test=n_eval)
    elif data == "synthetic":
        d = SyntheticDataConfig(vocab_size=64, seq_len=32, n_train=128, n_valid=n_eval)
    else:
        raise ValueError(f"tiny_run: data={data!r}; valid: 'synthetic', 'mqar'")
    return RunConfig(
        experiment=experiment,
        variant=f"llama-{data}",
        model=preset("llama", "tiny", vocab_size=64),
        data=d,
        optim=OptimConfig(lr=lr, warmup_steps=warmup_steps),
        train=TrainConfig(max_steps=steps, batch_size=16, progress=False, num_threads=1, **train),
        seed=1,
    )


@pytest.fixture
def tiny_run() -> Callable[..., Any]:
    """The factory of a RunConfig that trains in seconds on one CPU thread (see `_tiny_run`)."""
    return _tiny_run


def _train_command(
    cfg, folder: Path, *flags: str, results: Path | None = None, out: Path | None = None
) -> tuple[list[str], dict[str, str]]:
    """`python -m wm_bench.cli train --config <folder>/run.yaml --quiet ...`, and its environment.

    Writes `cfg` to `folder/run.yaml`; results go to `results` (default folder/r) and outputs to
    `out` (default folder/o); `flags` come last. The environment runs one thread and finds this
    checkout's `wm_bench` and `tasks`.
    """
    from wm_bench.config import to_dict

    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    argv = [
        sys.executable,
        "-m",
        "wm_bench.cli",
        "train",
        "--config",
        str(path),
        "--quiet",
        "--results-dir",
        str(results or folder / "r"),
        "--out-dir",
        str(out or folder / "o"),
        *flags,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return argv, env


@pytest.fixture
def train_command() -> Callable[..., tuple[list[str], dict[str, str]]]:
    """The train command line for a RunConfig, for a subprocess (see `_train_command`)."""
    return _train_command


# --------------------------------------------------------------------------------------------
# Reports


def _report_imports_none(
    experiments: Sequence[str],
    results: Path,
    reports: Path,
    modules: Sequence[str] = ("torch", "lightning"),
) -> None:
    """Build each report of `experiments` in a fresh interpreter; fail if it imported any of
    `modules` (reports are pure functions of the result files: no torch)."""
    code = (
        "import sys; from wm_bench.report import build_report; "
        f"[build_report(e, {str(results)!r}, {str(reports)!r}) for e in {list(experiments)!r}]; "
        f"bad = sorted(m for m in {tuple(modules)!r} if m in sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.fixture
def report_imports_none() -> Callable[..., None]:
    """The check that building reports imports none of some modules (see
    `_report_imports_none`)."""
    return _report_imports_none


@pytest.fixture
def cli_dirs(tmp_path: Path) -> list[str]:
    """`--results-dir <tmp>/r --out-dir <tmp>/o`: where a train or reproduce command in a test
    writes."""
    return ["--results-dir", str(tmp_path / "r"), "--out-dir", str(tmp_path / "o")]


@pytest.fixture
def reproduce_dirs(tmp_path: Path) -> list[str]:
    """`--results-dir <tmp>/res --out-dir <tmp>/out --reports-dir <tmp>/rep`: where a reproduce
    or sweep command in a test writes."""
    res, out, rep = (str(tmp_path / name) for name in ("res", "out", "rep"))
    return ["--results-dir", res, "--out-dir", out, "--reports-dir", rep]
