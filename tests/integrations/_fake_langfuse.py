"""A loopback fake of the Langfuse endpoints the Python SDK posts to, for the integration tests.

One server on 127.0.0.1 answers the OTLP trace path, the score endpoints of 4.x
(``/api/public/ingestion``) and 5.x (``/api/public/scores``) and the media endpoint, and
can answer normally, never answer (HANG) or answer one byte at a time (DRIP).
"""

from __future__ import annotations

import contextlib
import enum
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

OTLP_PATH = "/api/public/otel/v1/traces"
INGESTION_PATH = "/api/public/ingestion"  # scores, Langfuse 3.x/4.x
SCORES_PATH = "/api/public/scores"  # scores, Langfuse 5.x
MEDIA_PATH = "/api/public/media"
_HOST = "127.0.0.1"
_MAX_BODY = 16 * 1024 * 1024


class Mode(str, enum.Enum):
    OK = "ok"  # answer at once
    HANG = "hang"  # read the request, never answer (until stopped, or hang_limit)
    DRIP = "drip"  # a valid answer, one byte every drip_interval seconds


@dataclass(frozen=True)
class Request:
    """One request as received; ``repr`` leaves out headers (they carry credentials)."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)

    def span_names(self) -> list[str]:
        if self.path != OTLP_PATH:
            return []
        payload = self.body
        if self.headers.get("content-encoding", "").lower() == "gzip":
            payload = gzip.decompress(payload)
        message = ExportTraceServiceRequest()
        message.ParseFromString(payload)
        return [
            span.name
            for resource_spans in message.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def score_names(self) -> list[str]:
        if self.path == SCORES_PATH:  # 5.x: a JSON list of score bodies
            return [item["name"] for item in self.json()]
        if self.path == INGESTION_PATH:  # 4.x: {"batch": [{"type": "score-create", "body"}]}
            return [
                event["body"]["name"]
                for event in self.json()["batch"]
                if event.get("type") == "score-create"
            ]
        return []


def _answer_for(path: str, body: bytes) -> tuple[int, str, bytes]:
    if path == OTLP_PATH:
        return 200, "application/x-protobuf", b""
    if path == INGESTION_PATH:
        try:
            batch = json.loads(body).get("batch", [])
        except (ValueError, AttributeError):
            batch = []
        ids = [{"id": e.get("id"), "status": 201} for e in batch if isinstance(e, dict)]
        return 207, "application/json", json.dumps({"successes": ids, "errors": []}).encode()
    if path == SCORES_PATH:
        return 202, "application/json", b'{"message": "Accepted"}'
    if path == MEDIA_PATH:
        # "Already uploaded": no upload URL, so the SDK skips the PUT.
        media_id = ""
        with contextlib.suppress(ValueError, AttributeError):
            media_id = str(json.loads(body).get("mediaId", ""))
        return 200, "application/json", json.dumps({"mediaId": media_id}).encode()
    return 404, "text/plain", b"not found"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: FakeLangfuse) -> None:
        self.fake = fake
        super().__init__((_HOST, 0), _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup of the host name.
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = _HOST, int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.fake._track(cast(socket.socket, request)):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.fake._untrack(cast(socket.socket, request))
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections cut by stop() are expected; never print request data."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the access log would print paths and could print headers."""

    def _dispatch(self) -> None:
        fake = cast(_Server, self.server).fake
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        mode = fake._record(Request(self.command, path, headers, body))
        if mode is Mode.HANG:
            self.close_connection = True
            fake._stopping.wait(fake.hang_limit)
            return
        status, content_type, payload = _answer_for(path, body)
        response = (
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1") + payload
        try:
            if mode is Mode.DRIP:
                for index in range(len(response)):
                    if index and fake._stopping.wait(fake.drip_interval):
                        self.close_connection = True
                        return
                    self.wfile.write(response[index : index + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(response)
                self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_POST = do_GET = do_PUT = do_PATCH = _dispatch  # noqa: N815 - http.server's names


class FakeLangfuse:
    """The Langfuse API on ``base_url`` (``http://127.0.0.1:<port>``), OK/HANG/DRIP.

    ``stop()`` returns within about two seconds whatever the clients are doing.
    """

    def __init__(
        self, mode: Mode | str = Mode.OK, *, drip_interval: float = 0.5, hang_limit: float = 60.0
    ) -> None:
        self.mode = Mode(mode)
        self.drip_interval = drip_interval
        self.hang_limit = hang_limit
        self._lock = threading.Condition()
        self._requests: list[Request] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeLangfuse:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        server.shutdown()
        thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            while self._connections and time.monotonic() < deadline:
                self._lock.wait(0.05)
            leftovers = list(self._connections)
            self._connections.clear()
        for conn in leftovers:
            conn.close()

    def __enter__(self) -> FakeLangfuse:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://{_HOST}:{self._server.server_port}"

    def _track(self, conn: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._connections.add(conn)
            return True

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
            self._lock.notify_all()

    def _record(self, request: Request) -> Mode:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()
            return self.mode

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def span_names(self) -> list[str]:
        return [name for r in self.requests_to(OTLP_PATH) for name in r.span_names()]

    def score_names(self) -> list[str]:
        return [name for r in self.requests for name in r.score_names()]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True
