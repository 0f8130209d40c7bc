"""Signals during a run: SIGTERM / SIGINT stop at a step boundary, save, and exit 128 + signal.

The command line installs `install_handlers()` once. Outside the training loop a signal raises
`RunInterrupted` at once (nothing half-done is recorded). Inside it (`deferred()`), the handler
only notes the signal; the checkpoint callback then saves at the end of the current optimiser
step and raises `RunInterrupted` there, so the saved state is a whole step. A second signal
while one is pending raises at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class RunInterrupted(BaseException):
    """A signal stopped the command; `exit_code` is 128 + the signal number.

    A BaseException (like KeyboardInterrupt), so that `except Exception` blocks that record a
    failed run let it through: an interrupted run is neither ok nor failed.
    """

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = int(signum)
        super().__init__(
            message
            or f"{signal_name(self.signum)} outside a training step: nothing recorded; rerun the "
            "same command to continue (finished runs are skipped)"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    pending: int | None = None  # a signal noted inside the training loop, not yet acted on
    deferring: bool = False


_state = _State()


def _handler(signum: int, frame: object) -> None:
    if _state.deferring and _state.pending is None:
        _state.pending = signum  # acted on at the next step boundary
        return
    raise RunInterrupted(signum)


def install_handlers() -> None:
    """Route SIGTERM and SIGINT through `_handler` (the CLI calls this once at start)."""
    for s in HANDLED:
        signal.signal(s, _handler)


def handlers_installed() -> bool:
    return signal.getsignal(signal.SIGTERM) is _handler


def pending() -> int | None:
    """The signal noted during the training loop, if any."""
    return _state.pending


@contextmanager
def deferred() -> Iterator[None]:
    """Inside this block a first signal is only noted (see module docstring).

    Lightning registers its own SIGTERM handler when `fit` starts; the caller re-installs ours
    after that (`reinstall()` from a callback's `on_train_start`).
    """
    previous = None
    if threading.current_thread() is threading.main_thread() and not handlers_installed():
        previous = {s: signal.getsignal(s) for s in HANDLED}  # a library caller: ours for now
        install_handlers()
    _state.deferring, _state.pending = True, None
    try:
        yield
    finally:
        _state.deferring, _state.pending = False, None
        for s, h in (previous or {}).items():
            signal.signal(s, h)


def reinstall() -> None:
    """Put our handler back for both signals inside `deferred()` (after Lightning's)."""
    if _state.deferring and threading.current_thread() is threading.main_thread():
        for s in HANDLED:
            signal.signal(s, _handler)
