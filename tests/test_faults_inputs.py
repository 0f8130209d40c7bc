"""Malformed input and corrupt artefacts: one line naming the bad value, exit 2, nothing written.

The table `CASES` holds CLI argument lists and YAML run files; each runs in-process through
`wm_bench.cli.main` with `--results-dir <tmp>/results --out-dir <tmp>/out` and must give exit
code 2, exactly one stderr line starting with "error:" that names the bad value, and no file
under the results folder. `python tests/test_faults_inputs.py` prints the tally:
"inputs tried / clear errors / tracebacks / silently accepted".
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import random
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `tasks` is imported from the repository root
    sys.path.insert(0, str(REPO))

from wm_bench.cli import _runtime, _train_config, build_parser, main  # noqa: E402
from wm_bench.config import (  # noqa: E402
    OptimConfig,
    RunConfig,
    TrainConfig,
    config_hash,
    load_run_yaml,
    to_dict,
)
from wm_bench.data.synthetic import SyntheticDataConfig  # noqa: E402
from wm_bench.presets import PRESET_FFNS, preset  # noqa: E402

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
    return Case(id, ("train", "--config", "{yaml}"), expect, {k.replace("__", "."): v
                                                            for k, v in edits.items()})  # fmt: skip


def _raw(id: str, text: str, expect: str) -> Case:
    return Case(id, ("train", "--config", "{yaml}"), expect, text=text)


SMOKE = ("reproduce", "mqar", "--scale", "smoke", "--quiet")
MODEL = "{tmp}/no-model"
MQAR = {"name": "mqar", "seq_len": 16, "num_kv_pairs": 2, "vocab_size": 8192, "n_train": 64,
        "n_test": 16}  # fmt: skip
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


# --------------------------------------------------------------------------------------------
# Validation details the table does not show


def test_check_run_is_cheap_repeatable_and_creates_only_the_folder(tmp_path: Path) -> None:
    from wm_bench.preflight import check_run

    results = tmp_path / "new" / "results"
    check_run(base_config(), results, out_dir=tmp_path / "out")
    check_run(base_config(), results)
    assert results.is_dir() and list(results.iterdir()) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_yaml_runtime_fields_survive_when_no_flag_is_given(tmp_path: Path) -> None:
    cfg = base_config()
    train = dataclasses.replace(
        cfg.train, impl="reference", num_threads=1, compile=True, save_model=True,
        progress=False, checkpoint=True, checkpoint_every=7,
    )  # fmt: skip
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(to_dict(dataclasses.replace(cfg, train=train))))

    def built(*flags: str) -> RunConfig:
        args = build_parser().parse_args(["train", "--config", str(p), *flags])
        return _runtime(_train_config(args), args)

    assert built().train == train
    got = built("--impl", "auto", "--threads", "2", "--no-compile", "--no-save-model",
                "--no-checkpoint", "--steps", "5", "--lr", "0.01", "--seed", "3").train  # fmt: skip
    assert (got.impl, got.num_threads, got.compile, got.save_model, got.checkpoint) == (
        "auto", 2, False, False, False,
    )  # fmt: skip
    assert got.max_steps == 5 and got.checkpoint_every == 7
    again = built("--checkpoint-every", "3")
    assert again.train.checkpoint and again.train.checkpoint_every == 3


def test_reproduce_checkpoints_unless_told_not_to() -> None:
    def runtime(*flags: str) -> TrainConfig:
        args = build_parser().parse_args(["reproduce", "mqar", *flags])
        return _runtime(base_config(), args, checkpoint_default=True).train

    assert runtime().checkpoint and runtime().checkpoint_every is None
    assert runtime("--checkpoint-every", "4").checkpoint_every == 4
    assert not runtime("--no-checkpoint").checkpoint


def test_train_flags_set_a_preset_run_and_the_label_says_what_is_built() -> None:
    args = build_parser().parse_args(["train", "--preset", "llama", "--ffn", "cdmoe",
                                      "--checkpoint-every", "2"])  # fmt: skip
    cfg = _runtime(_train_config(args), args)
    assert cfg.variant == "llama-tiny-cdmoe" and cfg.model.blocks["A"].ffn.name == "cdmoe"
    assert cfg.train.checkpoint and cfg.train.checkpoint_every == 2
    assert cfg.train.max_steps == 50 and cfg.optim.lr == 1e-3 and cfg.seed == 0


@pytest.mark.parametrize("name", sorted(PRESET_FFNS))
def test_every_preset_builds_exactly_the_ffn_asked_for(name: str) -> None:
    for ffn in PRESET_FFNS[name]:
        cfg = preset(name, "tiny", ffn=ffn)
        blocks = [cfg.blocks[letter] for letter in cfg.layer_letters()]  # what is built
        built = {b.ffn.name if b.ffn is not None else "none" for b in blocks}
        # Jamba's MoE variant has MoE every other layer, the MLP between
        assert built == ({"moe", "mlp"} if ffn == "moe" else {ffn}), (name, ffn, built)
    with pytest.raises(ValueError, match=f"valid for {name}"):
        preset(name, "tiny", ffn="nosuch")


def test_yaml_float_written_without_a_dot_is_read_as_a_number(tmp_path: Path) -> None:
    d = to_dict(base_config())
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(d).replace("lr: 0.001", "lr: 1e-3"))
    assert load_run_yaml(str(p)).optim.lr == 1e-3


def test_committed_result_configs_still_load_with_their_hashes() -> None:
    from wm_bench.config import run_from_dict
    from wm_bench.results import iter_results

    n = 0
    for rec in iter_results(REPO / "results"):
        if "model" in rec["config"]:
            assert config_hash(run_from_dict(rec["config"])) == rec["config_hash"], rec["run_id"]
            n += 1
    assert n > 0


# --------------------------------------------------------------------------------------------
# Corrupt artefacts


def _one_error_line(capsys: pytest.CaptureFixture, *names: str) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in names:
        assert n in err, (n, err)
    return err


WORDS = ["the", "a", "cat", "dog", "sees", "finds", "river", "house", "garden", "quiet", "old",
         "small", "writes", "visits"]  # fmt: skip


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("texts")
    rng = random.Random(0)
    for i in range(12):
        (folder / f"doc{i:02d}.txt").write_text(" ".join(_sentence(rng) for _ in range(40)))
    return f"files:{folder}/*.txt"


def _prepare(corpus: str, cache: Path):
    from wm_bench.data.lm import prepare

    return prepare(corpus, vocab_size=300, cache_dir=cache, progress=False)


def test_a_corrupt_cached_tokenizer_is_retrained_and_says_so(corpus, tmp_path, capsys) -> None:
    first = _prepare(corpus, tmp_path)
    path = first.tokenizer.path
    capsys.readouterr()
    for damage in (b"\x00garbage{", path.read_bytes() + b" "):  # unparsable; checksum differs
        path.write_bytes(damage)
        again = _prepare(corpus, tmp_path)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "retraining" in err, err
        assert again.tokenizer.encode("the old cat") == first.tokenizer.encode("the old cat")
    _prepare(corpus, tmp_path)
    assert capsys.readouterr().err == ""  # intact now: nothing said, nothing redone


def test_a_corrupt_token_shard_is_rebuilt_and_says_so(corpus, tmp_path, capsys) -> None:
    import numpy as np

    first = _prepare(corpus, tmp_path)
    want = np.array(first.shards.tokens("valid"))
    capsys.readouterr()
    shard = first.shards.path("valid")
    data = bytearray(shard.read_bytes())
    data[:8] = b"\xff" * 8  # same size, ids ≥ the vocabulary: only the checksum can tell
    shard.write_bytes(bytes(data))
    again = _prepare(corpus, tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256" in err and "rebuilding" in err, err
    assert np.array_equal(np.array(again.shards.tokens("valid")), want)


def test_a_corrupt_debian_text_cache_is_reparsed_and_says_so(tmp_path, monkeypatch, capsys):
    from wm_bench.data import debian
    from wm_bench.data.corpus import Document

    raw = tmp_path / "corpus" / "debian" / "raw" / "austen"
    raw.mkdir(parents=True)
    (raw / "versions.json").write_text(json.dumps({"packages": {"r-cran-janeaustenr": "1"}}))
    docs = [Document(f"Chapter {i}. It is a truth.", f"austen/{i}", "austen") for i in range(5)]
    parsed = []
    monkeypatch.setattr(debian, "parse_part", lambda part, r: parsed.append(part) or docs)
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    cache = tmp_path / "corpus" / "debian" / "austen.jsonl"
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    assert parsed == ["austen"] and capsys.readouterr().err == ""
    cache.write_text(cache.read_text().replace("truth", "lie"))  # still parses: checksum tells
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    err = capsys.readouterr().err
    assert parsed == ["austen"] * 2 and err.count("\n") == 1 and "sha256" in err, err
    meta = cache.with_suffix(".json")
    record = json.loads(meta.read_text())
    del record["sha256"]  # a cache from before checksums, and garbage in it
    meta.write_text(json.dumps(record))
    cache.write_text("{not json\n")
    assert debian.debian_documents(("austen",), tmp_path, progress=False)[0] == docs
    assert parsed == ["austen"] * 3 and "does not parse" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wm_bench.data.lm import LMDataConfig
    from wm_bench.data.tokenizer import EOS, Tokenizer, train_bpe
    from wm_bench.eval.checkpoint import save_pretrained
    from wm_bench.model import build_model

    rng = random.Random(0)
    backend = train_bpe([_sentence(rng) for _ in range(300)], 300)
    tok = Tokenizer(backend, name="bpe300-test", eos_id=backend.token_to_id(EOS))
    cfg = RunConfig(experiment="arch", variant="x",
                    model=preset("llama", "tiny", vocab_size=tok.vocab_size),
                    data=LMDataConfig(corpus="debian", vocab_size=300, seq_len=32))  # fmt: skip
    return save_pretrained(tmp_path_factory.mktemp("m") / "model", build_model(cfg.model), cfg, tok)


def _damaged_copy(src: Path, dst: Path, name: str, data: bytes | None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if data is None:  # truncated to half
        whole = (dst / name).read_bytes()
        data = whole[: len(whole) // 2]
    (dst / name).write_bytes(data)
    return dst


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("model.safetensors", None),
        ("model.safetensors", b"garbage, not a safetensors file"),
        ("model.safetensors", b"PK\x03\x04 not a zip either"),
        ("config.json", b"{not json"),
        ("config.json", b'{"format": 1}'),
        ("config.json", b"[1, 2]"),
        ("tokenizer.json", b"{broken"),
    ],
    ids=[
        "weights-truncated",
        "weights-garbage",
        "weights-bad-zip",
        "config-garbage",
        "config-no-run",
        "config-list",
        "tokenizer-garbage",
    ],
)
def test_a_corrupt_model_directory_is_one_line_naming_the_file(
    model_dir: Path, tmp_path: Path, capsys, name: str, data: bytes | None
) -> None:
    d = _damaged_copy(model_dir, tmp_path / "m", name, data)
    assert main(["eval", str(d), "--tasks", "arc_easy", "--device", "cpu", "--quiet"]) == 2
    _one_error_line(capsys, str(d / name), "--save-model")


def test_weights_of_another_model_are_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    d = _damaged_copy(model_dir, tmp_path / "m", "model.safetensors", b"")
    save_file({"embed.weight": torch.zeros(3, 3)}, str(d / "model.safetensors"))
    assert main(["eval", str(d), "--tasks", "arc_easy", "--device", "cpu", "--quiet"]) == 2
    _one_error_line(capsys, "model.safetensors", "does not match")


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"run_id": "x", "status": "ok"}', "[]"],
    ids=["garbage", "partial", "list"],
)
def test_a_corrupt_result_file_is_one_line_naming_it(tmp_path: Path, capsys, text: str) -> None:
    bad = tmp_path / "results" / "mqar" / "smoke" / "bad__0123.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    argv = ["report", "mqar", "--results-dir", str(tmp_path / "results"), "--reports-dir",
            str(tmp_path / "reports")]  # fmt: skip
    assert main(argv) == 2
    _one_error_line(capsys, str(bad), "--force")


def test_a_corrupt_result_of_the_same_config_stops_train_before_it_starts(tmp_path, capsys):
    from wm_bench.results import result_path, run_id

    cfg = base_config()
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(to_dict(cfg)))
    bad = result_path(tmp_path / "results", cfg.experiment, cfg.scale,
                      run_id(cfg.variant, config_hash(cfg)))  # fmt: skip
    bad.parent.mkdir(parents=True)
    bad.write_text("{truncated")
    argv = ["train", "--config", str(p), "--results-dir", str(tmp_path / "results"), "--out-dir",
            str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    _one_error_line(capsys, str(bad), "--force")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.ckpt"))


if __name__ == "__main__":  # the tally quoted in reports: python tests/test_faults_inputs.py
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wm_bench_faults_") as d:
        counts = summary(Path(d))
    sys.exit(0 if counts["clear"] == len(CASES) else 1)
