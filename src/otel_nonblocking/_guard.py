"""Locks and wake-ups the application's threads may touch, even from a signal handler.

A signal handler runs on the main thread between two bytecodes, possibly while that
thread is inside one of our calls and holds one of our locks. Waiting for that lock in
the handler would wait forever. So the application's side takes a :class:`GuardedLock`
only with a bound, and never when its own thread already holds it; and wakes the worker
through a :class:`Wake`, whose ``set`` takes no lock at all.
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType

from ._deadline import wait_seconds


class GuardedLock:
    """A lock that knows which thread holds it.

    ``with lock:`` waits as long as it takes (for the package's own threads, which no
    signal handler interrupts); :meth:`acquire_within` is for the application's threads.

    >>> lock = GuardedLock()
    >>> with lock:
    ...     lock.acquire_within(1.0)  # the same thread again: refused at once
    False
    """

    __slots__ = ("_lock", "_owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> GuardedLock:
        self._lock.acquire()
        self._owner = threading.get_ident()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> bool:
        """Wait as long as it takes (the package's own threads only)."""
        self.__enter__()
        return True

    def acquire_within(self, seconds: float) -> bool:
        """Take the lock within ``seconds``; False at once if this thread already holds it
        (a signal handler or ``__del__`` interrupted it), False if the time runs out."""
        if self._owner == threading.get_ident():
            return False
        if not self._lock.acquire(timeout=wait_seconds(seconds)):
            return False
        self._owner = threading.get_ident()
        return True

    def release(self) -> None:
        self._owner = None
        self._lock.release()

    def held_here(self) -> bool:
        """True when the calling thread holds the lock."""
        return self._owner == threading.get_ident()


class Wake:
    """A ``threading.Event`` for waking one waiting thread, whose :meth:`set` takes no lock.

    ``Event.set`` takes the event's internal lock: a signal handler that sets an event
    the interrupted code was setting would wait for itself forever. Here ``set`` is a
    flag and, the first time, a put on a ``queue.SimpleQueue``, which is reentrant.
    Only one thread may :meth:`wait`.

    >>> wake = Wake()
    >>> wake.set(); wake.wait(0.0)
    True
    >>> wake.clear(); wake.wait(0.0)
    False
    """

    __slots__ = ("_flag", "_tokens")

    def __init__(self) -> None:
        self._flag = False
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            self._tokens.put(None)

    def clear(self) -> None:
        self._flag = False
        while True:
            try:
                self._tokens.get_nowait()
            except queue.Empty:
                return

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds have passed; True if set."""
        if self._flag:
            return True
        try:
            self._tokens.get(timeout=None if timeout is None else wait_seconds(timeout))
        except queue.Empty:
            return self._flag
        self._tokens.put(None)  # stays set until cleared
        return True
