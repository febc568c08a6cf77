"""A FakeOTLPBackend in its own process, for load tests.

In the test's own process, a backend's handler threads compete for the GIL with the
threads producing spans, so it may read a request long after the client sent it (and
after the client gave up). In its own process it answers like a real collector.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    from otel_nonblocking.testing import FakeOTLPBackend, Mode

    backend = FakeOTLPBackend(Mode.OK, **options).start()
    conn.send(backend.port)
    try:
        while True:
            command, argument = conn.recv()
            if command == "mode":
                backend.mode = Mode(argument)
                conn.send(None)
            elif command == "accepted_span_ids":
                conn.send([span.span_id for span in backend.accepted_spans()])
            elif command == "stop":
                conn.send(None)
                return
    finally:
        backend.stop()


class ProcessBackend:
    """Start with ``with ProcessBackend() as backend:``; ``backend.endpoint``, ``.set_mode``."""

    def __init__(self, **options: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, options), daemon=True)
        self._process.start()
        if not self._conn.poll(30):
            self._process.kill()
            raise RuntimeError("the backend process did not start")
        self.port: int = self._conn.recv()
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"

    def _call(self, command: str, argument: object = None) -> Any:
        self._conn.send((command, argument))
        if not self._conn.poll(30):
            raise TimeoutError(f"the backend process did not answer {command}")
        return self._conn.recv()

    def set_mode(self, mode: str) -> None:
        self._call("mode", mode)

    def accepted_span_ids(self) -> list[bytes]:
        ids: list[bytes] = self._call("accepted_span_ids")
        return ids

    def stop(self) -> None:
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
