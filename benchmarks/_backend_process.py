"""A fake OTLP backend in a process of its own, so it never competes for the app's GIL.

Start with ``with BackendProcess() as backend:``; it answers like a real collector on
127.0.0.1 and reports how many spans it accepted (``accepted()``, ``wait_accepted()``).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    from otel_nonblocking.testing import FakeOTLPBackend, Mode

    # Keep few request records: the counters are all the benchmarks read.
    backend = FakeOTLPBackend(Mode.OK, max_records=64, **options).start()
    conn.send(backend.port)
    try:
        while True:
            command, argument = conn.recv()
            if command == "mode":
                backend.mode = Mode(argument)
                conn.send(None)
            elif command == "accepted":
                conn.send(backend._accepted_span_total)
            elif command == "wait_accepted":
                count, timeout = argument
                backend.wait_for_spans(count, timeout, accepted=True)
                conn.send(backend._accepted_span_total)
            elif command == "received":
                conn.send(backend._span_total)
            elif command == "stop":
                conn.send(None)
                return
    finally:
        backend.stop()


class BackendProcess:
    """A ``FakeOTLPBackend`` (``mode``, ``hang_limit`` ... as keywords) in a spawned process."""

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

    def accepted(self) -> int:
        """Spans the backend accepted (answered with a complete 200) so far."""
        count: int = self._call("accepted")
        return count

    def received(self) -> int:
        """Spans the backend received, whatever it answered."""
        count: int = self._call("received")
        return count

    def wait_accepted(self, count: int, timeout: float) -> int:
        """Wait up to ``timeout`` s until ``count`` spans were accepted; the count then."""
        done: int = self._call("wait_accepted", (count, timeout), wait=timeout + 30)
        return done

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

    def __enter__(self) -> BackendProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
