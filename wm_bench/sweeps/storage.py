"""Sweep storage by URL (SQLite, Optuna's journal file, PostgreSQL), its claim lock, heartbeats.

URL forms (docs/sweeps.md):
- `sqlite:///outputs/optuna/sweeps.db` (relative) or `sqlite:////abs/sweeps.db` (SQLAlchemy's
  form): one file, workers on this machine; the default.
- `journal:PATH` (also `journal:///abs/path`): Optuna's JournalFileBackend, an append-only log;
  workers on this machine or on a file system that honours its lock.
- `postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DB` (`postgresql://` means the same driver):
  workers on many machines; needs `pip install 'wm_bench[postgres]'`.

The claim lock serialises "which point next" between workers: an fcntl lock on `<file>.claim`
beside a SQLite or journal file (released by the kernel when a worker dies), a PostgreSQL
advisory lock on a connection of its own (released by the server when the connection drops).
Heartbeats: Optuna's own for RDB storages (`heartbeat_interval`, `grace_period`,
`fail_stale_trials`); the journal has none, so a beat is a trial system attribute holding the
time, and a RUNNING trial whose last beat is older than the grace period is failed here.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_INTERVAL = 10  # seconds between two beats of a running trial
GRACE_PERIOD = 60  # seconds without a beat after which a RUNNING trial is failed as stale
HEARTBEAT_ATTR = "wm_bench:heartbeat"  # journal storage: the time of the trial's last beat
FORMS = (
    "sqlite:///RELATIVE.db or sqlite:////ABSOLUTE.db",
    "journal:PATH",
    "postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DB",
)


@dataclass(frozen=True)
class StorageURL:
    """A parsed storage URL: `kind` sqlite | journal | postgresql, the URL Optuna gets, the file."""

    kind: str
    url: str
    path: Path | None = None

    def shown(self) -> str:
        """The URL without its password, a file as given (for logs and reports)."""
        if self.kind == "postgresql":
            from sqlalchemy.engine import make_url

            return make_url(self.url).render_as_string(hide_password=True)
        return self.url


def parse_storage(text: str | Path) -> StorageURL:
    """A storage URL (a Path means a journal file); ValueError naming the valid forms."""
    if isinstance(text, Path):
        return StorageURL("journal", f"journal:{text}", text)
    raw = str(text).strip()
    scheme, _, rest = raw.partition(":")
    bad = f"--storage {raw!r}"
    if scheme == "sqlite":
        name = rest[3:] if rest.startswith("///") else ""
        if name in ("", ":memory:"):
            raise ValueError(
                f"{bad}: a SQLite storage needs a file that every worker opens, "
                "e.g. sqlite:///outputs/optuna/sweeps.db (relative) or "
                "sqlite:////abs/path/sweeps.db"
            )
        return StorageURL("sqlite", f"sqlite:///{name}", Path(name))
    if scheme == "journal":
        name = rest[2:] if rest.startswith("//") else rest
        if not name:
            raise ValueError(f"{bad}: give the journal file, e.g. journal:outputs/optuna/x.journal")
        return StorageURL("journal", f"journal:{name}", Path(name))
    if scheme.split("+")[0] in ("postgresql", "postgres"):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url("postgresql+psycopg" + raw[len(scheme) :])
        except ArgumentError as e:
            raise ValueError(f"{bad}: not a valid URL ({e}); form: {FORMS[2]}") from None
        if scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(
                f"{bad}: driver {scheme.split('+', 1)[1]!r} is not supported; use "
                f"postgresql+psycopg:// (psycopg 3)"
            )
        if not url.database:
            raise ValueError(f"{bad}: name the database, e.g. postgresql+psycopg://user@host/db")
        return StorageURL("postgresql", url.render_as_string(hide_password=False))
    raise ValueError(f"{bad}: unknown storage; valid forms: {', '.join(FORMS)}")


def check_storage(spec: StorageURL) -> None:
    """What can be checked before anything runs: the file's folder is writable, the driver is
    installed. (A server that cannot be reached is reported when the storage is opened.)"""
    if spec.path is not None:
        from wm_bench.preflight import check_writable

        check_writable(
            spec.path.parent if str(spec.path.parent) else Path("."),
            f"folder of the {spec.kind} storage",
        )
    elif spec.kind == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ValueError(
                "--storage postgresql needs the psycopg driver: pip install 'wm_bench[postgres]'"
            ) from None


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a study name."""
    return int.from_bytes(
        hashlib.sha256(f"wm_bench:{name}".encode()).digest()[:8], "big", signed=True
    )


class Backend:
    """An open Optuna storage with its claim lock and heartbeats.

    Args:
        spec: the parsed URL (`parse_storage`).
        heartbeat_interval: seconds between beats of a running trial.
        grace_period: seconds without a beat before a RUNNING trial is failed as stale (a
            killed or frozen worker); it must exceed the longest pause between two beats.
    """

    def __init__(
        self,
        spec: StorageURL,
        *,
        heartbeat_interval: int = HEARTBEAT_INTERVAL,
        grace_period: int = GRACE_PERIOD,
    ) -> None:
        if not (1 <= heartbeat_interval < grace_period):
            raise ValueError(
                f"heartbeat interval {heartbeat_interval} s and grace period "
                f"{grace_period} s: need 1 ≤ interval < grace"
            )
        self.spec = spec
        self.interval, self.grace = int(heartbeat_interval), int(grace_period)
        self._engine: Any = None  # PostgreSQL: the advisory-lock engine
        if spec.path is not None:
            spec.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock("wm_bench:open"):  # no two workers create a fresh schema at once
            self.storage = self._open()

    def _open(self) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.spec.kind == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(self.spec.path)))
        kwargs: dict[str, Any] = (
            {"connect_args": {"timeout": 120}}
            if self.spec.kind == "sqlite"
            else {"pool_pre_ping": True}
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    self.spec.url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=self.interval,
                    grace_period=self.grace,
                )
        except Exception as e:
            if isinstance(e, ValueError):
                raise
            raise ValueError(
                f"--storage {self.spec.shown()}: cannot open it "
                f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"
            ) from None

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the claim lock of study `name` (all studies of a file share the file's lock)."""
        if self.spec.path is not None:
            import fcntl

            with open(f"{self.spec.path}.claim", "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            return
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        if self._engine is None:
            self._engine = create_engine(self.spec.url, poolclass=NullPool)
        key = _lock_key(name)
        try:
            conn = self._engine.connect()
        except Exception as e:
            raise ValueError(
                f"--storage {self.spec.shown()}: cannot connect "
                f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"
            ) from None
        with conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    # ---- heartbeats -------------------------------------------------------------------------

    def trial_id(self, study: Any, number: int) -> int:
        sid = self.storage.get_study_id_from_name(study.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(sid, number)

    def beat(self, trial_id: int) -> None:
        """Record that the trial's worker is alive."""
        if self.spec.kind == "journal":
            self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        else:
            self.storage.record_heartbeat(trial_id)

    @contextlib.contextmanager
    def heartbeat(self, trial_id: int) -> Iterator[None]:
        """Beat now and every `interval` seconds (a daemon thread) until the block ends."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval):
                with contextlib.suppress(Exception):  # failed as stale meanwhile, or a hiccup
                    self.beat(trial_id)

        self.beat(trial_id)
        thread = threading.Thread(target=loop, name=f"heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_stale(self, study: Any) -> None:
        """Fail the RUNNING trials of `study` whose worker stopped beating (call under the lock)."""
        import optuna
        from optuna.trial import TrialState

        if self.spec.kind != "journal":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            return
        now = time.time()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            last = t.system_attrs.get(HEARTBEAT_ATTR)
            if last is None and t.datetime_start is not None:
                last = t.datetime_start.timestamp()
            if last is not None and now - float(last) > self.grace:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    self.storage.set_trial_state_values(
                        self.trial_id(study, t.number), TrialState.FAIL
                    )

    def close(self) -> None:
        if self.spec.kind != "journal":
            self.storage.engine.dispose()
        if self._engine is not None:
            self._engine.dispose()
