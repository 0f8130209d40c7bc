"""Malformed command lines and YAML run files: one line naming the bad value, exit 2, nothing
written.

The table `CASES` holds CLI argument lists and YAML run files; each runs in-process through
`wm_bench.cli.main` with `--results-dir <tmp>/results --out-dir <tmp>/out` and must give exit
code 2, exactly one stderr line starting with "error:" that names the bad value, and no file
under the results folder. `python tests/test_faults_inputs.py` prints the tally:
"inputs tried / clear errors / tracebacks / silently accepted".

How valid flags and fields combine is tested in tests/test_faults_config.py; corrupt caches,
model directories and result files in tests/test_faults_artefacts.py.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # this checkout's wm_bench and tasks/, also as a script
    sys.path.insert(0, str(REPO))

from wm_bench.cli import main  # noqa: E402
from wm_bench.config import OptimConfig, RunConfig, TrainConfig, to_dict  # noqa: E402
from wm_bench.data.synthetic import SyntheticDataConfig  # noqa: E402
from wm_bench.presets import preset  # noqa: E402

DELETE = object()  # a YAML edit that removes the key


@dataclass(frozen=True)
class Case:
    """One malformed input.

    argv: the command line; "{yaml}" is the YAML run file, "{tmp}" a scratch folder, "{file}" a
        regular file (so "{file}/sub" can never be created).
    expect: text the error line must contain (the bad value or the field).
    edits: dotted-path changes to the base run config written as "{yaml}" (DELETE removes).
    text: raw YAML text for "{yaml}" instead (syntax errors and the like).
    """

    id: str
    argv: tuple[str, ...]
    expect: str
    edits: dict[str, Any] = field(default_factory=dict)
    text: str | None = None


def _t(id: str, *argv: str, expect: str) -> Case:
    return Case(id, ("train", *argv), expect)


def _y(id: str, expect: str, **edits: Any) -> Case:
    """A YAML case: `edits` keys use "__" for "." (train__batch_size → train.batch_size)."""
    return Case(
        id,
        ("train", "--config", "{yaml}"),
        expect,
        {k.replace("__", "."): v for k, v in edits.items()},
    )


def _raw(id: str, text: str, expect: str) -> Case:
    return Case(id, ("train", "--config", "{yaml}"), expect, text=text)


SMOKE = ("reproduce", "mqar", "--scale", "smoke", "--quiet")
MODEL = "{tmp}/no-model"
MQAR = {
    "name": "mqar",
    "seq_len": 16,
    "num_kv_pairs": 2,
    "vocab_size": 8192,
    "n_train": 64,
    "n_test": 16,
}
LM = {"name": "lm", "corpus": "files:{tmp}/none/*.txt", "vocab_size": 8192, "seq_len": 16}

CASES: list[Case] = [
    # train flags
    _t("lr-nan", "--lr", "nan", expect="'nan'"),
    _t("lr-inf", "--lr", "inf", expect="'inf'"),
    _t("lr-negative", "--lr", "-1", expect="'-1'"),
    _t("lr-zero", "--lr", "0", expect="'0'"),
    _t("lr-text", "--lr", "fast", expect="'fast'"),
    _t("seed-negative", "--seed", "-1", expect="'-1'"),
    _t("seed-float", "--seed", "1.5", expect="'1.5'"),
    _t("steps-zero", "--steps", "0", expect="'0'"),
    _t("steps-negative", "--steps", "-5", expect="'-5'"),
    _t("steps-float", "--steps", "2.5", expect="'2.5'"),
    _t("batch-zero", "--batch-size", "0", expect="'0'"),
    _t("batch-over-dataset", "--batch-size", "1000", expect="batch_size=1000"),
    _t("seq-len-one", "--seq-len", "1", expect="'1'"),
    _t("seq-len-zero", "--seq-len", "0", expect="'0'"),
    _t("seq-len-huge", "--seq-len", "100000000", expect="seq_len=100000000"),
    _t("threads-zero", "--threads", "0", expect="'0'"),
    _t("threads-negative", "--threads", "-2", expect="'-2'"),
    _t("ffn-unknown", "--ffn", "nosuch", expect="'nosuch'"),
    _t("ffn-llama-moe", "--preset", "llama", "--ffn", "moe", expect="'moe'"),
    _t("ffn-mamba2-cdmoe", "--preset", "mamba2", "--ffn", "cdmoe", expect="'cdmoe'"),
    _t("ffn-jamba-cdmoe", "--preset", "jamba", "--ffn", "cdmoe", expect="'cdmoe'"),
    _t("ffn-doge-none", "--preset", "doge", "--ffn", "none", expect="'none'"),
    _t("preset-unknown", "--preset", "gpt5", expect="'gpt5'"),
    _t("size-unknown", "--size", "7b", expect="'7b'"),
    _t("impl-unknown", "--impl", "cuda", expect="'cuda'"),
    _t("checkpoint-every-zero", "--checkpoint-every", "0", expect="'0'"),
    _t(
        "checkpoint-off-but-every",
        "--no-checkpoint",
        "--checkpoint-every",
        "5",
        expect="--checkpoint-every 5",
    ),
    _t("unknown-flag", "--bogus", expect="--bogus"),
    _t("config-missing", "--config", "{tmp}/missing.yaml", expect="missing.yaml"),
    Case("config-and-preset", ("train", "--config", "{yaml}", "--preset", "llama"), "--preset"),
    _t("eval-data-missing", "--eval-data", "{tmp}/nowhere", expect="nowhere"),
    _t("results-dir-unwritable", "--results-dir", "{file}/sub", expect="not writable"),
    _t("out-dir-unwritable", "--out-dir", "{file}/sub", expect="not writable"),
    # YAML run files: types, ranges, shapes, sizes
    _y("yaml-batch-float", "batch_size=8.5", train__batch_size=8.5),
    _y("yaml-batch-text", "batch_size='8'", train__batch_size="8"),
    _y("yaml-batch-over-dataset", "n_train=64", train__batch_size=100),
    _y("yaml-steps-zero", "max_steps=0", train__max_steps=0),
    _y("yaml-steps-bool", "max_steps=True", train__max_steps=True),
    _y("yaml-lr-nan", "lr=nan", optim__lr=float("nan")),
    _y("yaml-lr-inf", "lr=inf", optim__lr=float("inf")),
    _y("yaml-lr-negative", "lr=-0.1", optim__lr=-0.1),
    _y("yaml-lr-zero", "lr=0", optim__lr=0),
    _y("yaml-lr-text", "lr='fast'", optim__lr="fast"),
    _y("yaml-betas-short", "betas=[0.9]", optim__betas=[0.9]),
    _y("yaml-betas-range", "betas=(0.9, 1.5)", optim__betas=[0.9, 1.5]),
    _y("yaml-weight-decay", "weight_decay=-1", optim__weight_decay=-1),
    _y("yaml-warmup-ratio", "warmup_ratio=2", optim__warmup_ratio=2),
    _y("yaml-warmup-steps", "warmup_steps=-3", optim__warmup_steps=-3),
    _y("yaml-seed-negative", "seed=-1", seed=-1),
    _y("yaml-seed-float", "seed=1.5", seed=1.5),
    _y("yaml-heads-indivisible", "d_model=65", model__d_model=65),
    _y("yaml-n-heads", "n_heads=3", model__blocks__A__mixer__n_heads=3),
    _y("yaml-model-vocab-zero", "vocab_size=0", model__vocab_size=0),
    _y("yaml-data-vocab-over-model", "data.vocab_size=256", model__vocab_size=100),
    _y("yaml-n-layers-float", "n_layers=2.0", model__n_layers=2.0),
    _y("yaml-pattern", "'AX'", model__pattern="AX"),
    _y("yaml-blocks-empty", "['A']", model__blocks={}),
    _y("yaml-bool-text", "tie_embeddings='yes'", model__tie_embeddings="yes"),
    _y("yaml-ffn-unknown", "'nosuchffn'", model__blocks__A__ffn__name="nosuchffn"),
    _y("yaml-ffn-width", "d_ff=-5", model__blocks__A__ffn__d_ff=-5),
    _y("yaml-mixer-no-name", "'name'", model__blocks__A__mixer__name=DELETE),
    _y("yaml-data-unknown", "'nosuchdata'", data__name="nosuchdata"),
    _y("yaml-data-n-train-zero", "n_train=0", data__n_train=0),
    _y("yaml-data-seq-len", "seq_len=1", data__seq_len=1),
    _y("yaml-data-seq-len-huge", "seq_len=100000000", data__seq_len=100_000_000),
    _y("yaml-data-vocab-one", "vocab_size=1", data__vocab_size=1),
    _y("yaml-mqar-vocab-over-model", "data.vocab_size=8192", data=MQAR),
    _y("yaml-lm-vocab-over-model", "data.vocab_size=8192", data=LM),
    _y("yaml-precision", "'fp8'", train__precision="fp8"),
    _y("yaml-impl", "'cuda'", train__impl="cuda"),
    _y("yaml-threads-zero", "num_threads=0", train__num_threads=0),
    _y("yaml-checkpoint-every-zero", "checkpoint_every=0", train__checkpoint_every=0),
    _y("yaml-accelerator", "'tpu'", train__accelerator="tpu"),
    _y("yaml-log-every", "log_every=0", train__log_every=0),
    _y("yaml-devices", "devices=0", train__devices=0),
    _y("yaml-progress-text", "progress='no'", train__progress="no"),
    _y("yaml-scale", "'huge'", scale="huge"),
    _y("yaml-experiment-int", "experiment=5", experiment=5),
    _y("yaml-tags-text", "tags='x'", tags="x"),
    _y("yaml-unknown-key", "stepz", stepz=3),
    _y("yaml-unknown-nested", "learning_rate", optim__learning_rate=1e-3),
    _y("yaml-downstream-shots", "shots", downstream={"shots": [-1]}),
    _raw("yaml-syntax", "experiment: t\nmodel: [1, 2\n", "run.yaml:"),
    _raw("yaml-tab", "experiment: t\n\tvariant: v\n", "run.yaml:2"),
    _raw("yaml-empty", "", "NoneType"),
    _raw("yaml-list", "- a\n- b\n", "got list"),
    # reproduce
    Case("reproduce-limit-negative", (*SMOKE, "--limit", "-4"), "'-4'"),
    Case("reproduce-limit-zero", (*SMOKE, "--limit", "0"), "'0'"),
    Case("reproduce-only-unknown-tag", (*SMOKE, "--only", "colour=red"), "colour"),
    Case("reproduce-only-no-equals", (*SMOKE, "--only", "mixer"), "'mixer'"),
    Case("reproduce-only-no-match", (*SMOKE, "--only", "mixer=nosuch"), "mixer=nosuch"),
    Case("reproduce-scale", ("reproduce", "mqar", "--scale", "huge"), "'huge'"),
    Case("reproduce-experiment", ("reproduce", "nosuch"), "'nosuch'"),
    Case("reproduce-threads-zero", (*SMOKE, "--threads", "0"), "'0'"),
    Case("reproduce-checkpoint-every-zero", (*SMOKE, "--checkpoint-every", "0"), "'0'"),
    Case(
        "reproduce-no-checkpoint-but-every",
        (*SMOKE, "--no-checkpoint", "--checkpoint-every", "3"),
        "--checkpoint-every 3",
    ),
    Case(
        "reproduce-speed-impl",
        ("reproduce", "expert_speed", "--scale", "smoke", "--impl", "reference"),
        "--impl reference",
    ),
    Case(
        "reproduce-speed-compile",
        ("reproduce", "expert_speed", "--scale", "smoke", "--compile"),
        "--compile",
    ),
    Case(
        "reproduce-results-unwritable",
        (*SMOKE, "--only", "mixer=qcattn", "--results-dir", "{file}/sub"),
        "not writable",
    ),
    Case(
        "reproduce-out-unwritable",
        (*SMOKE, "--only", "mixer=qcattn", "--out-dir", "{file}/sub"),
        "not writable",
    ),
    Case("reproduce-eval-data-missing", (*SMOKE, "--eval-data", "{tmp}/nowhere"), "nowhere"),
    # eval
    Case("eval-shots-negative", ("eval", MODEL, "--shots", "-1"), "'-1'"),
    Case("eval-shots-text", ("eval", MODEL, "--shots", "0", "x"), "'x'"),
    Case("eval-limit-zero", ("eval", MODEL, "--limit", "0"), "'0'"),
    Case("eval-batch-zero", ("eval", MODEL, "--batch-size", "0"), "'0'"),
    Case("eval-max-length-zero", ("eval", MODEL, "--max-length", "0"), "'0'"),
    Case("eval-seed-negative", ("eval", MODEL, "--seed", "-1"), "'-1'"),
    Case("eval-task-unknown", ("eval", MODEL, "--tasks", "nosuch"), "'nosuch'"),
    Case("eval-source", ("eval", MODEL, "--source", "web"), "'web'"),
    Case("eval-no-model-dir", ("eval", MODEL), "no-model"),
    Case("eval-device", ("eval", MODEL, "--device", "tpu"), "'tpu'"),
    Case("eval-device-absent", ("eval", MODEL, "--device", "cuda:7"), "'cuda:7'"),
    Case("eval-eval-data-missing", ("eval", MODEL, "--eval-data", "{tmp}/nowhere"), "nowhere"),
    Case("eval-output-is-dir", ("eval", MODEL, "--output", "{tmp}"), "is a directory"),
    Case("eval-output-unwritable", ("eval", MODEL, "--output", "{file}/x.json"), "not a folder"),
    # data
    Case("data-vocab-small", ("data", "prepare", "--vocab", "100"), "'100'"),
    Case("data-vocab-text", ("data", "prepare", "--vocab", "big"), "'big'"),
    Case("data-corpus-unknown", ("data", "prepare", "--corpus", "nosuch"), "'nosuch'"),
    Case("data-corpus-part", ("data", "prepare", "--corpus", "debian:nosuch"), "nosuch"),
    Case("data-corpus-hf-empty", ("data", "prepare", "--corpus", "hf:"), "'hf:'"),
    Case("data-tokenizer", ("data", "prepare", "--tokenizer", "sentencepiece"), "sentencepiece"),
    Case(
        "data-files-none", ("data", "prepare", "--corpus", "files:{tmp}/none/*.txt"), "none/*.txt"
    ),
    Case("data-cache-unwritable", ("data", "prepare", "--cache-dir", "{file}/sub"), "not writable"),
    Case("data-action", ("data", "nosuch"), "'nosuch'"),
    # report and the top level
    Case("report-experiment", ("report", "nosuch"), "'nosuch'"),
    Case("report-results-missing", ("report", "mqar", "--results-dir", "{tmp}/none"), "none"),
    Case("report-results-file", ("report", "mqar", "--results-dir", "{file}"), "a-file"),
    Case("command-unknown", ("nosuch-command",), "'nosuch-command'"),
]


# --------------------------------------------------------------------------------------------
# Running one case


def base_config() -> RunConfig:
    """A tiny run that would train in seconds (no case may get that far)."""
    return RunConfig(
        experiment="faults",
        variant="llama-tiny",
        model=preset("llama", "tiny", vocab_size=512),
        data=SyntheticDataConfig(vocab_size=256, seq_len=16, n_train=64, n_valid=16),
        optim=OptimConfig(lr=1e-3),
        train=TrainConfig(max_steps=2, batch_size=8, progress=False),
    )


def _edit(d: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        d = d[p]
    if value is DELETE:
        del d[last]
    else:
        d[last] = value


def _materialise(case: Case, tmp: Path) -> list[str]:
    """The case's argv with its files made and the results/output folders added."""
    file = tmp / "a-file"
    file.write_text("not a folder\n")
    subs = {"{yaml}": str(tmp / "run.yaml"), "{tmp}": str(tmp), "{file}": str(file)}
    if case.text is not None:
        (tmp / "run.yaml").write_text(case.text)
    else:
        d = to_dict(base_config())
        for path, value in case.edits.items():
            if isinstance(value, dict) and path == "data" and "corpus" in value:
                value = {**value, "corpus": value["corpus"].replace("{tmp}", str(tmp))}
            _edit(d, path, value)
        (tmp / "run.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    argv = []
    for a in case.argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    cmd = argv[0] if argv else ""
    if cmd in ("train", "reproduce"):
        extra = ["--results-dir", str(tmp / "results"), "--out-dir", str(tmp / "out")]
        if cmd == "reproduce":
            extra += ["--reports-dir", str(tmp / "reports")]
        argv = [*argv[:1], *extra, *argv[1:]]  # the case's own flags come later and win
    elif cmd == "report":
        (tmp / "results").mkdir(exist_ok=True)
        extra = ["--results-dir", str(tmp / "results"), "--reports-dir", str(tmp / "reports")]
        argv = [*argv[:1], *extra, *argv[1:]]
    elif cmd == "data" and "--cache-dir" not in argv:
        argv += ["--cache-dir", str(tmp / "cache")]
    return argv


@dataclass
class Outcome:
    verdict: str  # "clear", "traceback", "silent" or "unclear"
    rc: int | None
    err: str
    why: str = ""


def run_case(case: Case, tmp: Path) -> Outcome:
    """Run `case` in-process and judge it (see the module docstring)."""
    tmp.mkdir(parents=True, exist_ok=True)
    argv = _materialise(case, tmp)
    out, err = io.StringIO(), io.StringIO()
    escaped: BaseException | None = None
    rc: int | None = None
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # library warnings are not the CLI's output
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # an escaped exception is a traceback for the user
            escaped = e
    text = err.getvalue()
    written = [p for p in (tmp / "results").rglob("*") if p.is_file()]
    lines = text.splitlines()
    if escaped is not None or "Traceback (most recent call last)" in text + out.getvalue():
        return Outcome("traceback", rc, text, repr(escaped))
    if rc == 0 or (not text.strip() and not written):
        return Outcome("silent", rc, text, "accepted")
    problems = []
    if rc != 2:
        problems.append(f"exit code {rc}")
    if len(lines) != 1 or not lines[0].startswith("error:"):
        problems.append(f"{len(lines)} stderr lines")
    if case.expect not in text:
        problems.append(f"does not name {case.expect!r}")
    if written:
        problems.append(f"wrote {[str(p.relative_to(tmp)) for p in written]}")
    return Outcome("unclear" if problems else "clear", rc, text, "; ".join(problems))


def summary(tmp_root: Path) -> dict[str, int]:
    """Run the whole table; print one line per case that is not a clear error and the tally."""
    counts = {"clear": 0, "traceback": 0, "silent": 0, "unclear": 0}
    for i, case in enumerate(CASES):
        o = run_case(case, tmp_root / f"{i:03d}")
        counts[o.verdict] += 1
        if o.verdict != "clear":
            print(f"{o.verdict:<9} {case.id}: {o.why} | {o.err.strip()[:300]}")
    print(
        f"inputs tried {len(CASES)} / clear errors {counts['clear']} / tracebacks "
        f"{counts['traceback']} / silently accepted {counts['silent']}"
        + (f" / unclear {counts['unclear']}" if counts["unclear"] else "")
    )
    return counts


# --------------------------------------------------------------------------------------------
# The table


def test_the_table_has_at_least_60_distinct_inputs() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input_is_one_line_exit_2_and_writes_nothing(case: Case, tmp_path: Path) -> None:
    if case.id == "eval-device-absent" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    o = run_case(case, tmp_path)
    assert o.verdict == "clear", f"{o.verdict}: {o.why}\n{o.err}"


if __name__ == "__main__":  # the tally quoted in reports: python tests/test_faults_inputs.py
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wm_bench_faults_") as d:
        counts = summary(Path(d))
    sys.exit(0 if counts["clear"] == len(CASES) else 1)
