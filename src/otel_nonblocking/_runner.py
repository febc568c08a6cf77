"""One background thread that runs export attempts, so a hang cannot take the caller.

The caller waits for an attempt with a timeout and may walk away; the thread finishes
the abandoned attempt on its own. While it does, :meth:`AttemptRunner.try_submit`
refuses new work: at most one abandoned attempt is ever outstanding, and threads never
pile up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ._state import after_fork_in_child
from ._suppress import start_thread

R = TypeVar("R")


class Attempt(Generic[R]):
    """The result slot of one submitted call."""

    __slots__ = ("_fn", "done", "error", "result")

    def __init__(self, fn: Callable[[], R]) -> None:
        self._fn: Callable[[], R] | None = fn
        self.done = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        fn = self._fn
        if fn is None:
            return
        try:
            self.result = fn()
        except BaseException as error:  # noqa: BLE001 - reported to the waiting caller
            self.error = error
        finally:
            self._fn = None  # drop the batch as soon as the call ends


class AttemptRunner:
    """Runs one call at a time on a daemon thread it starts on first use.

    >>> runner = AttemptRunner("demo")
    >>> attempt = runner.try_submit(lambda: 42)
    >>> attempt is not None and attempt.done.wait(1.0) and attempt.result
    42
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._init_state()
        after_fork_in_child(self._init_state)

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._job: Attempt[object] | None = None
        self._busy = False
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def busy(self) -> bool:
        """True while a call (possibly an abandoned one) is still running."""
        return self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the current call to end; True if idle."""
        return self._idle.wait(timeout)

    def try_submit(self, fn: Callable[[], R]) -> Attempt[R] | None:
        """Start ``fn`` on the runner thread, or return ``None`` if it is still busy."""
        attempt: Attempt[R] = Attempt(fn)
        with self._lock:
            if self._busy or self._closed:
                return None
            self._busy = True
            self._idle.clear()
            self._job = attempt  # type: ignore[assignment]
            if self._thread is None or not self._thread.is_alive():
                # Exports, spool deliveries and flushes all run here, never traced.
                self._thread = start_thread(self._loop, f"otel-nonblocking-{self._name}")
            self._wake.notify()
        return attempt

    def close(self, last: Callable[[], R] | None = None) -> Attempt[R] | None:
        """Let the thread exit once its current call, if any, returns.

        ``last``, if given, runs on the runner's thread as its final call, after any call
        still running (an abandoned one, say); returns its Attempt, or None when the
        thread is not running (no thread is ever started here) or is closed already.
        """
        attempt: Attempt[R] | None = None
        with self._lock:
            if (
                last is not None
                and not self._closed
                and self._job is None
                and self._thread is not None
                and self._thread.is_alive()
            ):
                attempt = Attempt(last)
                self._job = attempt  # type: ignore[assignment]
            self._closed = True
            self._wake.notify()
        return attempt

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._job is None:
                    if self._closed:
                        return
                    self._wake.wait()
                job, self._job = self._job, None
            job.run()
            with self._lock:
                self._busy = False  # before done is set, so the waiter can submit again
                self._idle.set()
            job.done.set()
