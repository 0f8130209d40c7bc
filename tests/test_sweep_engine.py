"""The sweep worker loop on every storage: workers split a grid exactly, a killed worker's trial
is failed and redone, failed / pruned / finished runs are what the study says. Fake runs (a
sleep and a line in a log), worker processes started like `--workers` starts them (spawn);
PostgreSQL is a real server started here (skipped, saying why, when its binaries are absent)."""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from wm_bench.sweeps.engine import KEY, STATUS, FinitePlan, Point, PrunedRun, SampledPlan, Worker
from wm_bench.sweeps.storage import Backend, parse_storage

N_POINTS = 6


# --------------------------------------------------------------------------------------------
# Fake runs and worker processes


def _points(n: int = N_POINTS) -> list[Point]:
    return [Point(f"p{i}", {"x": i}, {"key": f"p{i}", "x": i}, f"x={i}") for i in range(n)]


def _dists(n: int = N_POINTS) -> dict:
    from optuna.distributions import IntDistribution

    return {"x": IntDistribution(0, n - 1)}


def _fake_run(log: str, sleep: float, fail: tuple[str, ...] = (), prune: tuple[str, ...] = ()):
    def run(cfg: dict, callbacks: list) -> dict:
        t0 = time.time()
        time.sleep(sleep)
        with open(log, "a") as fh:  # one short append per line: atomic on Linux
            fh.write(
                json.dumps({"pid": os.getpid(), "key": cfg["key"], "t0": t0, "t1": time.time()})
                + "\n"
            )
        if cfg["key"] in prune:
            raise PrunedRun(10, 0.5)
        status = "failed" if cfg["key"] in fail else "ok"
        return {
            "run_id": cfg["key"],
            "status": status,
            "metrics": {"m": float(cfg["x"])},
            "error": "boom" if status == "failed" else None,
        }

    return run


def _worker(
    url: str, session: str, run_fn, *, beat: tuple[int, int] = (1, 5), poll_s: float = 0.1, **kw
) -> tuple[Worker, Backend]:
    """A quiet Worker maximising metric "m" on storage `url` (heartbeat interval and grace
    period `beat`), and its backend."""
    backend = Backend(parse_storage(url), heartbeat_interval=beat[0], grace_period=beat[1])
    worker = Worker(
        backend,
        session=session,
        direction="maximize",
        metric="m",
        run_fn=run_fn,
        log=lambda s: None,
        poll_s=poll_s,
        **kw,
    )
    return worker, backend


def _serve(url: str, beat: tuple[int, int], session: str, run_fn, poll_s: float, plan) -> None:
    """One worker process works `plan`, then closes its storage."""
    worker, backend = _worker(url, session, run_fn, beat=beat, poll_s=poll_s)
    try:
        worker.work([plan])
    finally:
        backend.close()


def _work(
    url: str,
    study: str,
    log: str,
    sleep: float,
    session: str,
    beat: tuple[int, int],
    fail: tuple[str, ...] = (),
) -> None:
    """One worker process: the finite plan of N_POINTS points on storage `url`."""
    plan = FinitePlan(study, _points(), _dists())
    _serve(url, beat, session, _fake_run(log, sleep, fail), 0.2, plan)


def _spawn(target, *args) -> multiprocessing.Process:
    p = multiprocessing.get_context("spawn").Process(target=target, args=args)
    p.start()
    return p


def _runs(log: str) -> list[dict]:
    return (
        [json.loads(line) for line in Path(log).read_text().splitlines()]
        if Path(log).exists()
        else []
    )


def _trials(url: str, study: str) -> list:
    import optuna

    backend = Backend(parse_storage(url))
    try:
        return optuna.load_study(study_name=study, storage=backend.storage).get_trials()
    finally:
        backend.close()


def _assert_split_exactly(url: str, tmp_path: Path) -> None:
    study, log = f"split-{uuid.uuid4().hex[:6]}", str(tmp_path / "runs.log")
    session = uuid.uuid4().hex[:8]
    procs = [_spawn(_work, url, study, log, 0.4, session, (1, 30)) for _ in range(2)]
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = _runs(log)
    assert sorted(r["key"] for r in runs) == sorted(p.key for p in _points())  # each point once
    assert len({r["pid"] for r in runs}) == 2  # both workers took a share
    trials = _trials(url, study)
    assert sorted(t.user_attrs[KEY] for t in trials) == sorted(p.key for p in _points())
    assert {t.state.name for t in trials} == {"COMPLETE"}


# --------------------------------------------------------------------------------------------
# Splitting a grid


def test_two_workers_split_a_grid_exactly_on_sqlite(tmp_path: Path) -> None:
    _assert_split_exactly(f"sqlite:///{tmp_path / 'sweeps.db'}", tmp_path)


def test_two_workers_split_a_grid_exactly_on_a_journal_file(tmp_path: Path) -> None:
    _assert_split_exactly(f"journal:{tmp_path / 'sweeps.journal'}", tmp_path)


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return Path(dirs[-1]) if dirs and (Path(dirs[-1]) / "initdb").exists() else None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a free local port in a temporary folder, as a non-root user."""
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'wm_bench[postgres]'")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    data = Path(tempfile.mkdtemp(prefix="wm_bench_pg_"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = pwd.getpwnam("nobody")
        os.chown(data, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "nobody", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd: str) -> None:
        subprocess.run(
            [*prefix, *cmd], check=True, capture_output=True, text=True, timeout=120, cwd=data
        )

    run(
        str(bindir / "initdb"),
        "-D",
        str(data / "db"),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data / "db"),
        "-o",
        opts,
        "-l",
        str(data / "log"),
        "-w",
        "-t",
        "60",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_split_a_grid_exactly_on_postgresql(postgres: str, tmp_path: Path) -> None:
    _assert_split_exactly(postgres, tmp_path)


def test_postgresql_worker_killed_mid_run_is_failed_and_redone(
    postgres: str, tmp_path: Path
) -> None:
    _assert_killed_worker_redone(postgres, tmp_path)


# --------------------------------------------------------------------------------------------
# Heartbeats: a killed worker's trial is failed and its point redone


def _assert_killed_worker_redone(url: str, tmp_path: Path) -> None:
    study, log = f"kill-{uuid.uuid4().hex[:6]}", str(tmp_path / "runs.log")
    victim = _spawn(_work, url, study, log, 60.0, "a", (1, 3))  # its first run never ends
    deadline = time.time() + 60
    while time.time() < deadline and not any(
        t.state.name == "RUNNING" for t in _safe_trials(url, study)
    ):
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    t0 = time.time()
    _work(url, study, log, 0.0, "b", (1, 3))  # a second worker, here: waits out the grace
    assert time.time() - t0 >= 2.0  # it had to wait for the stale trial's grace period
    runs = _runs(log)
    assert sorted(r["key"] for r in runs) == sorted(p.key for p in _points())
    trials = _trials(url, study)
    stale = [t for t in trials if t.state.name == "FAIL"]
    assert len(stale) == 1 and STATUS not in stale[0].user_attrs  # failed by heartbeat
    redone = [t for t in trials if t.user_attrs[KEY] == stale[0].user_attrs[KEY]]
    assert sorted(t.state.name for t in redone) == ["COMPLETE", "FAIL"]


def _safe_trials(url: str, study: str) -> list:
    try:
        return _trials(url, study)
    except KeyError:  # the study does not exist yet
        return []


def test_sqlite_worker_killed_mid_run_is_failed_and_redone(tmp_path: Path) -> None:
    _assert_killed_worker_redone(f"sqlite:///{tmp_path / 's.db'}", tmp_path)


def test_journal_worker_killed_mid_run_is_failed_and_redone(tmp_path: Path) -> None:
    _assert_killed_worker_redone(f"journal:{tmp_path / 's.journal'}", tmp_path)


# --------------------------------------------------------------------------------------------
# What the study records (one process)


def test_failed_runs_are_fail_tried_once_per_session_and_pruned_runs_are_pruned(tmp_path) -> None:
    url, log = f"sqlite:///{tmp_path / 's.db'}", str(tmp_path / "runs.log")
    fake, finals = _fake_run(log, 0.0, fail=("p1",), prune=("p2",)), {}

    def run(cfg: dict, callbacks: list) -> dict:  # ok results are final, as in results/
        rec = fake(cfg, callbacks)
        if rec["status"] == "ok":
            finals[cfg["key"]] = rec
        return rec

    def plan() -> FinitePlan:
        return FinitePlan("st", _points(), _dists(), done=lambda p: finals.get(p.key))

    w, b = _worker(url, "one", run)
    w.work([plan()])
    w.work([plan()])  # the same session again: nothing reruns
    b.close()
    assert len(_runs(log)) == N_POINTS
    states = {
        t.user_attrs[KEY]: (t.state.name, t.user_attrs.get(STATUS)) for t in _trials(url, "st")
    }
    assert states["p1"] == ("FAIL", "failed") and states["p2"] == ("PRUNED", "pruned")
    assert states["p0"] == ("COMPLETE", "ok")
    w, b = _worker(url, "two", run)  # the next command retries the failed run, not the pruned
    w.work([plan()])
    b.close()
    assert [r["key"] for r in _runs(log)[N_POINTS:]] == ["p1"]


def test_points_with_a_finished_result_are_recorded_without_running(tmp_path: Path) -> None:
    url, log = f"sqlite:///{tmp_path / 's.db'}", str(tmp_path / "runs.log")
    done = {"p0": {"run_id": "p0", "status": "ok", "metrics": {"m": 7.0}}}
    w, b = _worker(url, "s", _fake_run(log, 0.0))
    recs = w.work([FinitePlan("st", _points(), _dists(), done=lambda p: done.get(p.key))])
    b.close()
    assert sorted(r["key"] for r in _runs(log)) == [f"p{i}" for i in range(1, N_POINTS)]
    assert recs[0]["run_id"] == "p0" and recs[0]["skipped"]
    (t0,) = [t for t in _trials(url, "st") if t.user_attrs[KEY] == "p0"]
    assert t0.state.name == "COMPLETE" and t0.value == 7.0 and t0.user_attrs["recorded"]


def _work_sampled(url: str, study: str, log: str, session: str) -> None:
    import optuna

    plan = SampledPlan(
        study,
        {"x": optuna.distributions.IntDistribution(0, 1000)},
        lambda p: Point(f"p{p['x']}", p, {"key": f"p{p['x']}", "x": p["x"]}),
        budget=8,
        sampler=lambda seed: optuna.samplers.RandomSampler(seed),
    )
    _serve(url, (1, 30), session, _fake_run(log, 0.2), 0.1, plan)


def test_sampled_sweep_keeps_its_budget_across_two_workers(tmp_path: Path) -> None:
    url, log = f"sqlite:///{tmp_path / 's.db'}", str(tmp_path / "runs.log")
    procs = [_spawn(_work_sampled, url, "tpe", log, "s") for _ in range(2)]
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    trials = _trials(url, "tpe")
    assert len(trials) == 8 and {t.state.name for t in trials} == {"COMPLETE"}
    assert len({r["pid"] for r in _runs(log)}) == 2
    assert len({t.params["x"] for t in trials}) > 1  # the workers drew different points


def test_storage_urls_parse_or_name_the_valid_forms() -> None:
    assert parse_storage("sqlite:///outputs/a.db").path == Path("outputs/a.db")
    assert parse_storage("sqlite:////abs/a.db").path == Path("/abs/a.db")
    assert parse_storage("journal:out/x.journal").path == Path("out/x.journal")
    assert parse_storage("journal:///abs/x.journal").path == Path("/abs/x.journal")
    pg = parse_storage("postgresql://u:secret@db.example:5433/sweeps")
    assert pg.url.startswith("postgresql+psycopg://u:secret@") and "secret" not in pg.shown()
    for bad, words in (
        ("sqlite://", "file"),
        ("sqlite:///:memory:", "file"),
        ("redis://x", "valid forms"),
        ("postgresql://u@h", "database"),
        ("postgresql+psycopg2://u@h/d", "psycopg"),
        ("journal:", "journal"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_storage(bad)


def test_points_finished_on_another_machine_are_done_here_a_deleted_result_here_reruns(
    tmp_path: Path,
) -> None:
    url, log = f"sqlite:///{tmp_path / 's.db'}", str(tmp_path / "runs.log")
    w, b = _worker(url, "a", _fake_run(log, 0.0))
    w.worker = "elsewhere:1"  # its result files are on that machine
    w.work([FinitePlan("st", _points(), _dists())])
    b.close()
    lines: list[str] = []
    w, b = _worker(url, "b", _fake_run(log, 0.0))
    w.log = lines.append
    w.work([FinitePlan("st", _points(), _dists(), done=lambda p: None)])
    b.close()
    assert len(_runs(log)) == N_POINTS  # nothing ran again here
    assert sum("done on elsewhere:1" in line for line in lines) == N_POINTS
    w, b = _worker(url, "c", _fake_run(log, 0.0))  # this machine's trials, no result file here:
    w.work([FinitePlan("st2", _points(3), _dists(), done=lambda p: None)])  # (results deleted)
    w2, b2 = _worker(url, "d", _fake_run(log, 0.0))
    w2.work([FinitePlan("st2", _points(3), _dists(), done=lambda p: None)])
    b.close()
    b2.close()
    assert len(_runs(log)) == N_POINTS + 3 + 3  # reruns: this machine's record is its files
