"""A FakeOTLPBackend in a process of its own, for load tests and benchmarks.

In the producer's own process, a fake backend's handler threads compete for the GIL
with the threads ending spans, so it may read a request long after the client sent it
(and after the client gave up). In its own process it answers like a real collector.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    from ._backend import FakeOTLPBackend, Mode

    backend = FakeOTLPBackend(Mode.OK, **options).start()
    conn.send(backend.port)
    recovery: dict[str, float] = {}

    def watch(base: int, began: float) -> None:
        if backend.wait_for_spans(base + 1, 120, accepted=True):
            recovery["seconds"] = time.monotonic() - began

    try:
        while True:
            command, argument = conn.recv()
            if command == "mode":
                backend.mode = Mode(argument)
                reply: object = None
            elif command == "accepted_span_ids":
                reply = [span.span_id for span in backend.accepted_spans()]
            elif command == "accepted":
                reply = backend._accepted_span_total
            elif command == "received":
                reply = backend._span_total
            elif command == "request_count":
                reply = backend.request_count
            elif command == "wait_accepted":
                count, timeout = argument
                backend.wait_for_spans(count, timeout, accepted=True)
                reply = backend._accepted_span_total
            elif command == "watch_recovery":
                base = backend._accepted_span_total
                threading.Thread(target=watch, args=(base, time.monotonic()), daemon=True).start()
                reply = None
            elif command == "recovered_after":
                reply = recovery.get("seconds")
            elif command == "stop":
                conn.send(None)
                return
            else:
                reply = None
            conn.send(reply)
    finally:
        backend.stop()


class ProcessBackend:
    """A :class:`FakeOTLPBackend` (its keyword options) in a spawned process.

    >>> with ProcessBackend(hang_limit=30) as backend:  # doctest: +SKIP
    ...     backend.set_mode("hang")
    ...     backend.accepted()
    0
    """

    def __init__(self, mode: str = "ok", **options: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, options), daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(30):
            self._process.kill()
            raise RuntimeError("the backend process did not start")
        self.port: int = self._conn.recv()
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"
        if mode != "ok":
            self.set_mode(mode)

    def _call(self, command: str, argument: object = None, wait: float = 30.0) -> Any:
        self._conn.send((command, argument))
        if not self._conn.poll(wait):
            raise TimeoutError(f"the backend process did not answer {command}")
        return self._conn.recv()

    def set_mode(self, mode: str) -> None:
        """Switch the backend's ``Mode`` ("ok", "hang", ...) for the next requests."""
        self._call("mode", mode)

    def accepted_span_ids(self) -> list[bytes]:
        """The span ids of every span answered with a complete 200, repeats included."""
        ids: list[bytes] = self._call("accepted_span_ids")
        return ids

    def accepted(self) -> int:
        """Spans the backend accepted (answered with a complete 200) so far."""
        count: int = self._call("accepted")
        return count

    def received(self) -> int:
        """Spans the backend received, whatever it answered."""
        count: int = self._call("received")
        return count

    def request_count(self) -> int:
        count: int = self._call("request_count")
        return count

    def wait_accepted(self, count: int, timeout: float) -> int:
        """Wait up to ``timeout`` s until ``count`` spans were accepted; the count then."""
        done: int = self._call("wait_accepted", (count, timeout), wait=timeout + 30)
        return done

    def watch_recovery(self) -> None:
        """From now on, time how long until the next span is accepted."""
        self._call("watch_recovery")

    def recovered_after(self) -> float | None:
        """Seconds from :meth:`watch_recovery` to the next accepted span, if any yet."""
        seconds: float | None = self._call("recovered_after")
        return seconds

    def stop(self) -> None:
        """Stop the backend and its process (bounded)."""
        try:
            if self._process.is_alive():
                self._call("stop")
        finally:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._conn.close()

    def __enter__(self) -> ProcessBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
