"""Fake OTLP/HTTP backends on 127.0.0.1 that succeed, hang, drip, reset, refuse or stall.

One :class:`FakeOTLPBackend` serves traces, logs and metrics (``/v1/traces``, ``/v1/logs``,
``/v1/metrics``), each answered by the same fault mode.

Used by the test suite and the shipped demo command to reproduce slow and broken collectors.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import socketserver
import struct
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from google.protobuf.message import (  # type: ignore[import-untyped,unused-ignore]
    DecodeError,
    Message,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = [
    "FakeOTLPBackend",
    "FakeTLSStallListener",
    "Mode",
    "RequestRecord",
    "refused_endpoint",
]

_HOST = "127.0.0.1"
_DEFAULT_PATH = "/v1/traces"
_TRACES, _LOGS, _METRICS = "traces", "logs", "metrics"
# The request message of each signal's export.
_REQUEST_TYPES: dict[str, type[Message]] = {
    _TRACES: ExportTraceServiceRequest,
    _LOGS: ExportLogsServiceRequest,
    _METRICS: ExportMetricsServiceRequest,
}
_PROTOBUF = "application/x-protobuf"
_TEXT = "text/plain; charset=utf-8"
# Body of a successful export: an empty ExportTraceServiceResponse (zero bytes on the wire).
_OK_BODY = bytes(ExportTraceServiceResponse().SerializeToString())
_MAX_CHUNK_LINE = 1024
_MAX_TRAILER_LINES = 64
_POLL_INTERVAL = 0.05


class Mode(str, enum.Enum):
    """How a :class:`FakeOTLPBackend` answers POSTs to its trace, log and metric paths.

    Example::

        backend = FakeOTLPBackend(Mode.HANG)
        backend.mode = "ok"  # plain strings are accepted too
    """

    OK = "ok"
    """200 with an empty ``ExportTraceServiceResponse`` (``application/x-protobuf``)."""
    HANG = "hang"
    """Read the request, never answer; hold the socket until stopped or switched away."""
    DRIP = "drip"
    """A valid 200 sent one byte at a time, ``drip_interval`` seconds apart."""
    UNAVAILABLE = "unavailable"
    """503 with ``Retry-After: <retry_after>`` (omitted when ``retry_after`` is None)."""
    RESET = "reset"
    """Read the request, then close with ``SO_LINGER`` 0 so the client sees a reset."""
    SLOW = "slow"
    """200 after ``delay`` seconds."""
    ERROR_STATUS = "error_status"
    """``error_status`` (default 500) with ``error_body``."""


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request received by a :class:`FakeOTLPBackend` (a snapshot).

    ``headers`` has lower-cased names. ``body`` is the raw body as received (still
    compressed if the client compressed it); ``signal`` is ``"traces"``, ``"logs"`` or
    ``"metrics"`` by the path it was sent to (None for another path); ``decoded`` is the
    parsed ``ExportTraceServiceRequest`` (``ExportLogsServiceRequest``,
    ``ExportMetricsServiceRequest``) or None when the body was not a decodable protobuf
    export (or the request did not target a signal's path). ``mode`` is the mode that
    handled it (None for 404/405/400/413 answers). ``status`` is the status code the
    backend chose (None when it never answers: HANG, RESET, aborted). ``completed`` is
    True from just before the last byte of the response is written (so a client holding
    the answer always finds it counted) unless that write fails. ``repr()`` leaves out
    headers and body, so printing a record never leaks credentials.

    Example::

        record = backend.requests[0]
        assert record.headers["content-type"] == "application/x-protobuf"
        assert record.accepted  # answered with a complete 200
    """

    method: str
    path: str
    # Kept out of repr(): headers may carry credentials and bodies can be large.
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    decoded: Message | None = field(repr=False)
    received_at: float
    received_monotonic: float
    mode: Mode | None
    status: int | None
    completed: bool
    signal: str | None = None

    @property
    def spans(self) -> list[Span]:
        """The decoded spans of this request (empty when undecodable or not traces)."""
        return _spans_of(self.decoded)

    @property
    def log_records(self) -> list[LogRecord]:
        """The decoded log records of this request (empty when undecodable or not logs)."""
        return _log_records_of(self.decoded)

    @property
    def metrics(self) -> list[Metric]:
        """The decoded metrics of this request (empty when undecodable or not metrics)."""
        return _metrics_of(self.decoded)

    @property
    def accepted(self) -> bool:
        """True when the backend finished writing a 200 answer (the batch was delivered)."""
        return self.status == HTTPStatus.OK and self.completed


class _Entry:
    """Mutable bookkeeping behind a :class:`RequestRecord`; guarded by the backend lock."""

    __slots__ = ("completed", "fields", "item_count", "status")

    def __init__(self, fields: dict[str, Any], item_count: int) -> None:
        self.fields = fields
        self.item_count = item_count  # spans, log records or metrics, by its signal
        self.status: int | None = None
        self.completed = False

    def snapshot(self) -> RequestRecord:
        return RequestRecord(**self.fields, status=self.status, completed=self.completed)


def _spans_of(decoded: Message | None) -> list[Span]:
    if not isinstance(decoded, ExportTraceServiceRequest):
        return []
    out: list[Span] = []
    for resource_spans in decoded.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            out.extend(scope_spans.spans)
    return out


def _log_records_of(decoded: Message | None) -> list[LogRecord]:
    if not isinstance(decoded, ExportLogsServiceRequest):
        return []
    out: list[LogRecord] = []
    for resource_logs in decoded.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            out.extend(scope_logs.log_records)
    return out


def _metrics_of(decoded: Message | None) -> list[Metric]:
    if not isinstance(decoded, ExportMetricsServiceRequest):
        return []
    out: list[Metric] = []
    for resource_metrics in decoded.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            out.extend(scope_metrics.metrics)
    return out


def _items_of(decoded: Message | None) -> int:
    return len(_spans_of(decoded)) + len(_log_records_of(decoded)) + len(_metrics_of(decoded))


def _body_text(record: LogRecord) -> str:
    """A log record's body as text: its string, or the text of a scalar of another kind."""
    kind = record.body.WhichOneof("value")
    if kind is None:
        return ""
    value = getattr(record.body, kind)
    return value if isinstance(value, str) else str(value)


def _decompress(body: bytes, content_encoding: str, limit: int) -> bytes | None:
    """Undo ``Content-Encoding`` (gzip/deflate/identity); None if unsupported or too big."""
    data = body
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # the last coding applied is listed last
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            candidates = [16 + zlib.MAX_WBITS]
        elif coding == "deflate":
            # RFC 9110 says zlib-wrapped, but some clients send raw deflate.
            candidates = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
        else:
            return None
        for wbits in candidates:
            decompressor = zlib.decompressobj(wbits)
            try:
                out = decompressor.decompress(data, limit + 1)
            except zlib.error:
                continue
            if len(out) > limit or not decompressor.eof:
                return None
            data = out
            break
        else:
            return None
    return data


def _decode_export_request(
    body: bytes,
    headers: Mapping[str, str],
    limit: int,
    message_type: type[Message] = ExportTraceServiceRequest,
) -> Message | None:
    """``body`` parsed as ``message_type`` (the signal's export request), or None."""
    if "json" in headers.get("content-type", "").lower():
        return None
    payload = _decompress(body, headers.get("content-encoding", ""), limit)
    if payload is None:
        return None
    message = message_type()
    try:
        message.ParseFromString(payload)
    except DecodeError:
        return None
    return message


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _build_response(
    status: int,
    body: bytes,
    content_type: str | None,
    *,
    close: bool,
    extra_headers: tuple[tuple[str, str], ...] = (),
    head: bool = False,
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    lines.extend(f"{name}: {value}" for name, value in extra_headers)
    if close:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head else head_bytes + body


def _endpoint_url(scheme: str, port: int, path: str) -> str:
    return f"{scheme}://{_HOST}:{port}{path}"


def _check_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    return path


def _sibling_path(traces: str, signal: str, given: str | None) -> str | None:
    """``given``, else ``traces`` with its last segment ``traces`` replaced by ``signal``."""
    if given is not None:
        return _check_path(given)
    head, sep, last = traces.rpartition("/")
    return f"{head}/{signal}" if sep and last == _TRACES else None


def refused_endpoint(path: str = _DEFAULT_PATH) -> str:
    """Return an ``http://127.0.0.1:<port><path>`` URL where nothing listens.

    The port is found by binding an ephemeral port and closing it again, so a
    connection attempt gets ``ECONNREFUSED`` (unless another process grabs the
    port in between, which is unlikely but possible).

    Example::

        with pytest.raises(requests.ConnectionError):
            requests.post(refused_endpoint(), data=b"", timeout=1)
    """
    _check_path(path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port = int(probe.getsockname()[1])
    return _endpoint_url("http", port, path)


class _Server(ThreadingHTTPServer):
    """Threading HTTP server that tracks live connections so stop() can cut them."""

    daemon_threads = True
    block_on_close = False  # stop() joins with its own bounded deadline
    request_queue_size = 128
    timeout = _POLL_INTERVAL  # handle_request() poll interval

    def __init__(self, backend: FakeOTLPBackend) -> None:
        self.backend = backend
        super().__init__((_HOST, backend._bind_port), backend._handler_class)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), a reverse DNS lookup that
        # can take seconds in sandboxes; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = _HOST
        self.server_port = int(self.socket.getsockname()[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        conn = cast(socket.socket, request)
        if not self.backend._register_connection(conn):
            self.shutdown_request(conn)
            return
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(conn, client_address),
            name=f"fake-otlp-{self.server_port}-conn",
            daemon=True,
        )
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        conn = cast(socket.socket, request)
        reset = self.backend._unregister_connection(conn)
        if reset:
            # SO_LINGER 0 is already set; closing now sends RST instead of FIN.
            self.close_request(conn)
            return
        super().shutdown_request(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Never print tracebacks (they could include request data); just count.
        self.backend._note_handler_error()


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time (HTTP/1.1 keep-alive) and answers per the backend mode."""

    protocol_version = "HTTP/1.1"
    server_version = "otel-nonblocking-fake-otlp"

    @property
    def _backend(self) -> FakeOTLPBackend:
        return cast(_Server, self.server).backend

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self._backend.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (headers must never be printed)."""

    def _send(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True

    def _read_body(self, limit: int) -> tuple[bytes | None, int | None]:
        """Return (body, None) or (None, error_status)."""
        transfer_encoding = self.headers.get("Transfer-Encoding", "").strip().lower()
        if transfer_encoding:
            if transfer_encoding != "chunked":
                return None, HTTPStatus.NOT_IMPLEMENTED
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b"", None
        try:
            length = int(raw_length.strip())
        except ValueError:
            return None, HTTPStatus.BAD_REQUEST
        if length < 0:
            return None, HTTPStatus.BAD_REQUEST
        if length > limit:
            return None, HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        body = self.rfile.read(length)
        if len(body) != length:
            return None, HTTPStatus.BAD_REQUEST
        return body, None

    def _read_chunked(self, limit: int) -> tuple[bytes | None, int | None]:
        parts: list[bytes] = []
        total = 0
        while True:  # bounded: every iteration consumes >= 1 byte of a body capped at `limit`
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None, HTTPStatus.BAD_REQUEST
            if size < 0:
                return None, HTTPStatus.BAD_REQUEST
            if size == 0:
                break
            total += size
            if total > limit:
                return None, HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n"):
                return None, HTTPStatus.BAD_REQUEST
            parts.append(chunk)
        for _ in range(_MAX_TRAILER_LINES):
            if self.rfile.readline(_MAX_CHUNK_LINE) in (b"\r\n", b"\n", b""):
                return b"".join(parts), None
        return None, HTTPStatus.BAD_REQUEST

    def _dispatch(self) -> None:
        backend = self._backend
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        path = urlsplit(self.path).path
        body, error = self._read_body(backend.max_body_bytes)
        if body is None:
            # The body was not (fully) read, so the connection cannot be reused.
            self.close_connection = True
            status = error if error is not None else HTTPStatus.BAD_REQUEST
            entry = backend._record(self.command, path, headers, b"", None, None)
            self._answer(entry, status, _reason(status).encode(), _TEXT)
            return
        self._route(path, headers, body)

    def _route(self, path: str, headers: dict[str, str], body: bytes) -> None:
        """Answer a request whose body was read in full (a subclass serves other paths)."""
        backend = self._backend
        signal = backend._signal_of(path)
        if signal is None:
            entry = backend._record(self.command, path, headers, body, None, None)
            self._answer(entry, HTTPStatus.NOT_FOUND, b"not found", _TEXT)
            return
        if self.command != "POST":
            entry = backend._record(self.command, path, headers, body, None, None)
            extra = (("Allow", "POST"),)
            self._answer(entry, HTTPStatus.METHOD_NOT_ALLOWED, b"use POST", _TEXT, extra)
            return
        message_type = _REQUEST_TYPES[signal]
        decoded = _decode_export_request(body, headers, backend.max_body_bytes, message_type)
        mode, release = backend._mode_and_release()
        poison = backend.poison_name
        if poison is not None and any(span.name == poison for span in _spans_of(decoded)):
            mode = Mode.UNAVAILABLE
        entry = backend._record(self.command, path, headers, body, decoded, mode, signal=signal)
        self._handle_mode(entry, mode, release)

    # http.server dispatches on do_<METHOD>; every method goes through _dispatch.
    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch  # noqa: N815

    def _answer(
        self,
        entry: _Entry,
        status: int,
        body: bytes,
        content_type: str | None,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._backend._set_status(entry, status)
        response = _build_response(
            status,
            body,
            content_type,
            close=self.close_connection,
            extra_headers=extra_headers,
            head=self.command == "HEAD",
        )
        # Counted as delivered *before* the last byte leaves: the client may return the
        # moment it reads the answer, and a test asking right then must see the batch.
        self._backend._set_completed(entry)
        if not self._send(response):
            self._backend._set_completed(entry, completed=False)

    def _success(self) -> tuple[int, bytes, str | None]:
        """The answer OK, SLOW and DRIP give (status, body, content type)."""
        return HTTPStatus.OK, _OK_BODY, _PROTOBUF

    def _handle_mode(self, entry: _Entry, mode: Mode, release: threading.Event) -> None:
        backend = self._backend
        if mode is Mode.OK:
            self._answer(entry, *self._success())
        elif mode is Mode.SLOW:
            if backend._stopping.wait(backend.delay):
                self.close_connection = True
                return
            self._answer(entry, *self._success())
        elif mode is Mode.UNAVAILABLE:
            retry_after = backend.retry_after
            extra = () if retry_after is None else (("Retry-After", str(retry_after)),)
            self._answer(entry, HTTPStatus.SERVICE_UNAVAILABLE, b"unavailable", _TEXT, extra)
        elif mode is Mode.ERROR_STATUS:
            self._answer(entry, backend.error_status, backend.error_body, _TEXT)
        elif mode is Mode.HANG:
            self.close_connection = True
            release.wait(backend.hang_limit)
        elif mode is Mode.RESET:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                backend._mark_reset(self.connection)
        else:  # Mode.DRIP
            self._drip(entry)

    def _drip(self, entry: _Entry) -> None:
        backend = self._backend
        status, body, content_type = self._success()
        backend._set_status(entry, status)
        response = _build_response(status, body, content_type, close=self.close_connection)
        for index in range(len(response)):
            if index and backend._stopping.wait(backend.drip_interval):
                self.close_connection = True
                return
            last = index == len(response) - 1
            if last:  # see _answer: counted before the client can have it
                backend._set_completed(entry)
            if not self._send(response[index : index + 1]):
                if last:
                    backend._set_completed(entry, completed=False)
                return


class FakeOTLPBackend:
    """A fake OTLP/HTTP collector on ``127.0.0.1:<ephemeral port>``: traces, logs, metrics.

    Answers POSTs to ``path`` (traces), ``logs_path`` and ``metrics_path`` according to
    ``mode`` (see :class:`Mode`), which may be changed between requests; other paths get
    404. Every request is recorded (thread-safely) with its headers, raw body and decoded
    spans, log records or metrics. Keep-alive and
    concurrent connections are supported; ``stop()`` returns within its timeout even
    with hanging or dripping connections open.

    Example::

        with FakeOTLPBackend() as backend:
            exporter = OTLPSpanExporter(endpoint=backend.endpoint, timeout=2)
            ...  # export spans
            assert backend.wait_for_spans(1, timeout=5)
            backend.mode = Mode.HANG  # the next export hangs until stop() or a switch

        # logs and metrics: backend.logs_endpoint, backend.metrics_endpoint
        assert backend.wait_for_log_records(1, timeout=5)
        assert "hello" in backend.log_bodies()
        assert "requests" in backend.metric_names()
    """

    # The request handler; a subclass serving another API (FakeLangfuse) sets its own.
    _handler_class: type[BaseHTTPRequestHandler] = _Handler

    def __init__(
        self,
        mode: Mode | str = Mode.OK,
        *,
        path: str = _DEFAULT_PATH,
        logs_path: str | None = None,
        metrics_path: str | None = None,
        delay: float = 1.0,
        drip_interval: float = 0.5,
        retry_after: int | str | None = 30,
        error_status: int = 500,
        error_body: bytes = b"fake backend error",
        hang_limit: float = 300.0,
        idle_timeout: float = 60.0,
        max_body_bytes: int = 64 * 1024 * 1024,
        max_records: int = 100_000,
        port: int = 0,
        poison_name: str | None = None,
    ) -> None:
        """Configure (but do not start) the backend.

        Args:
            mode: initial :class:`Mode` (or its string value).
            path: the trace path; Langfuse uses ``/api/public/otel/v1/traces``.
            logs_path / metrics_path: the log and metric paths; None: ``path`` with its
                last segment ``traces`` replaced by ``logs`` / ``metrics`` (where it ends
                in ``/traces``; else that signal is not served).
            delay: seconds SLOW waits before answering.
            drip_interval: seconds between the bytes of a DRIP response.
            retry_after: ``Retry-After`` value for UNAVAILABLE; None omits the header.
            error_status / error_body: the ERROR_STATUS answer.
            hang_limit: upper bound on how long one HANG connection is held.
            idle_timeout: socket timeout for reading requests on a connection.
            max_body_bytes: larger request bodies (or decompressed payloads) are refused.
            max_records: older request records are dropped beyond this many.
            port: the port to bind on 127.0.0.1; 0 (the default) picks a free one. Give
                a stopped backend's ``port`` to a new one to restart "the" collector.
            poison_name: a trace request holding a span of this name is answered 503
                (UNAVAILABLE, whatever the mode): a batch the backend keeps failing on its
                own account, while it accepts every other.
        """
        self._bind_port = port
        self._lock = threading.Condition()
        self._mode = Mode(mode)
        self.path = _check_path(path)
        self.logs_path = _sibling_path(self.path, _LOGS, logs_path)
        self.metrics_path = _sibling_path(self.path, _METRICS, metrics_path)
        self.delay = delay
        self.drip_interval = drip_interval
        self.retry_after = retry_after
        self.error_status = error_status
        self.error_body = error_body
        self.hang_limit = hang_limit
        self.idle_timeout = idle_timeout
        self.max_body_bytes = max_body_bytes
        self.poison_name = poison_name
        self._entries: deque[_Entry] = deque(maxlen=max_records)
        self._request_count = 0
        self._connection_count = 0
        # Items (spans, log records, metrics) received and accepted, by signal.
        self._received: Counter[str] = Counter()
        self._accepted: Counter[str] = Counter()
        self._handler_errors = 0
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._reset_pending: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeOTLPBackend:
        """Bind 127.0.0.1 (on ``port``; 0: a free one) and serve in a daemon thread;
        returns self. Start only once."""
        with self._lock:
            if self._server is not None or self._stopped:
                raise RuntimeError("FakeOTLPBackend can only be started once")
            server = _Server(self)
            self._server = server
            self._thread = threading.Thread(
                target=self._serve,
                args=(server,),
                name=f"fake-otlp-{server.server_port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def _serve(self, server: _Server) -> None:
        while not self._stopping.is_set():
            try:
                server.handle_request()  # returns after at most _POLL_INTERVAL when idle
            except (OSError, ValueError):  # listening socket closed under us
                return

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving and cut every open connection; returns within about ``timeout`` s.

        Idempotent. HANG/SLOW/DRIP handlers are released, idle keep-alive connections
        are shut down, and the listening socket is closed.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            server, thread = self._server, self._thread
            self._stopping.set()
            self._release.set()
        if server is None or thread is None:
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            while self._connections:  # bounded by the deadline
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(min(remaining, _POLL_INTERVAL))
            leftovers = list(self._connections)
            self._connections.clear()
            self._reset_pending.clear()
        for conn in leftovers:  # handler threads stuck past the deadline
            conn.close()

    def __enter__(self) -> FakeOTLPBackend:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound ephemeral port (raises RuntimeError before start())."""
        if self._server is None:
            raise RuntimeError("FakeOTLPBackend is not started")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no path)."""
        return _endpoint_url("http", self.port, "")

    @property
    def endpoint(self) -> str:
        """Full trace URL, e.g. ``http://127.0.0.1:<port>/v1/traces``."""
        return _endpoint_url("http", self.port, self.path)

    @property
    def logs_endpoint(self) -> str:
        """Full log URL, e.g. ``http://127.0.0.1:<port>/v1/logs``."""
        if self.logs_path is None:
            raise RuntimeError("this FakeOTLPBackend serves no logs path")
        return _endpoint_url("http", self.port, self.logs_path)

    @property
    def metrics_endpoint(self) -> str:
        """Full metric URL, e.g. ``http://127.0.0.1:<port>/v1/metrics``."""
        if self.metrics_path is None:
            raise RuntimeError("this FakeOTLPBackend serves no metrics path")
        return _endpoint_url("http", self.port, self.metrics_path)

    def _signal_of(self, path: str) -> str | None:
        """The signal served at ``path`` (``traces``, ``logs``, ``metrics``), or None."""
        for signal, served in ((_TRACES, self.path), (_LOGS, self.logs_path)):
            if path == served:
                return signal
        return _METRICS if path == self.metrics_path else None

    # -- mode ------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The current :class:`Mode`; setting it affects the next request.

        Switching away from HANG closes the held connections (without an answer).
        """
        with self._lock:
            return self._mode

    @mode.setter
    def mode(self, value: Mode | str) -> None:
        new = Mode(value)
        with self._lock:
            if self._mode is Mode.HANG and new is not Mode.HANG:
                self._release.set()
                self._release = threading.Event()
            self._mode = new

    def _mode_and_release(self) -> tuple[Mode, threading.Event]:
        with self._lock:
            return self._mode, self._release

    # -- recording -------------------------------------------------------------

    def _record(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        decoded: Message | None,
        mode: Mode | None,
        *,
        signal: str | None = None,
    ) -> _Entry:
        fields: dict[str, Any] = {
            "method": method,
            "path": path,
            "headers": MappingProxyType(headers),
            "body": body,
            "decoded": decoded,
            "received_at": time.time(),
            "received_monotonic": time.monotonic(),
            "mode": mode,
            "signal": signal if signal is not None or decoded is None else _TRACES,
        }
        entry = _Entry(fields, _items_of(decoded))
        with self._lock:
            self._entries.append(entry)
            self._request_count += 1
            if fields["signal"] is not None:
                self._received[fields["signal"]] += entry.item_count
            self._lock.notify_all()
        return entry

    def _set_status(self, entry: _Entry, status: int) -> None:
        with self._lock:
            entry.status = int(status)

    def _set_completed(self, entry: _Entry, *, completed: bool = True) -> None:
        """Mark ``entry``'s answer as fully sent, or take that back when the write failed."""
        with self._lock:
            if entry.completed == completed:
                return
            entry.completed = completed
            signal = entry.fields["signal"]
            if entry.status == HTTPStatus.OK and entry.fields["mode"] is not None and signal:
                self._accepted[signal] += entry.item_count if completed else -entry.item_count
            self._lock.notify_all()

    @property
    def _span_total(self) -> int:
        """Spans received (read under the lock by ProcessBackend)."""
        return self._received[_TRACES]

    @property
    def _accepted_span_total(self) -> int:
        """Spans whose request got a complete 200."""
        return self._accepted[_TRACES]

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the recorded requests, oldest first."""
        with self._lock:
            return [entry.snapshot() for entry in self._entries]

    @property
    def request_count(self) -> int:
        """Number of requests received (any path) since start or the last clear()."""
        with self._lock:
            return self._request_count

    @property
    def connection_count(self) -> int:
        """Number of TCP connections accepted since start (keep-alive reuses one)."""
        with self._lock:
            return self._connection_count

    @property
    def handler_errors(self) -> int:
        """Number of unexpected exceptions swallowed by connection handlers."""
        with self._lock:
            return self._handler_errors

    def spans(self) -> list[Span]:
        """All decoded spans received on the trace path, whatever the answer was."""
        return [span for record in self.requests for span in record.spans]

    def accepted_spans(self) -> list[Span]:
        """Decoded spans whose request got a complete 200 answer (i.e. delivered)."""
        return [span for record in self.requests if record.accepted for span in record.spans]

    def span_names(self, *, accepted: bool = False) -> list[str]:
        """Names of :meth:`spans` (or of :meth:`accepted_spans` when ``accepted``)."""
        spans = self.accepted_spans() if accepted else self.spans()
        return [span.name for span in spans]

    def wait_for_spans(self, count: int, timeout: float = 5.0, *, accepted: bool = False) -> bool:
        """Block until at least ``count`` spans were received (or accepted); False on timeout.

        Example::

            assert backend.wait_for_spans(3, timeout=2)
        """
        return self._wait_for_items(_TRACES, count, timeout, accepted=accepted)

    def _wait_for_items(self, signal: str, count: int, timeout: float, *, accepted: bool) -> bool:
        totals = self._accepted if accepted else self._received
        return self._wait_until(lambda: totals[signal] >= count, timeout)

    def log_records(self, *, accepted: bool = False) -> list[LogRecord]:
        """All decoded log records received on the log path (or only those accepted)."""
        return [r for q in self.requests if q.accepted or not accepted for r in q.log_records]

    def log_bodies(self, *, accepted: bool = False) -> list[str]:
        """The bodies of :meth:`log_records` as text (a non-string scalar as its ``str``)."""
        return [_body_text(record) for record in self.log_records(accepted=accepted)]

    def metrics(self, *, accepted: bool = False) -> list[Metric]:
        """All decoded metrics received on the metric path (or only those accepted)."""
        return [m for q in self.requests if q.accepted or not accepted for m in q.metrics]

    def metric_names(self, *, accepted: bool = False) -> list[str]:
        """Names of :meth:`metrics`, one per metric in each request (repeats included)."""
        return [metric.name for metric in self.metrics(accepted=accepted)]

    def wait_for_log_records(
        self, count: int, timeout: float = 5.0, *, accepted: bool = False
    ) -> bool:
        """Block until at least ``count`` log records were received (or accepted)."""
        return self._wait_for_items(_LOGS, count, timeout, accepted=accepted)

    def wait_for_metrics(self, count: int, timeout: float = 5.0, *, accepted: bool = False) -> bool:
        """Block until at least ``count`` metrics were received (or accepted)."""
        return self._wait_for_items(_METRICS, count, timeout, accepted=accepted)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` requests were received; False on timeout."""
        return self._wait_until(lambda: self._request_count >= count, timeout)

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` TCP connections were accepted; False on timeout."""
        return self._wait_until(lambda: self._connection_count >= count, timeout)

    def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(predicate, timeout)

    def clear(self) -> None:
        """Forget recorded requests and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._request_count = 0
            self._received.clear()
            self._accepted.clear()

    # -- connection tracking (called from server threads) ------------------------

    def _register_connection(self, conn: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._connections.add(conn)
            self._connection_count += 1
            self._lock.notify_all()
            return True

    def _unregister_connection(self, conn: socket.socket) -> bool:
        """Forget ``conn``; True if it must be closed with a reset."""
        with self._lock:
            self._connections.discard(conn)
            reset = conn in self._reset_pending
            self._reset_pending.discard(conn)
            self._lock.notify_all()
            return reset

    def _mark_reset(self, conn: socket.socket) -> None:
        with self._lock:
            self._reset_pending.add(conn)

    def _note_handler_error(self) -> None:
        with self._lock:
            self._handler_errors += 1

    def __repr__(self) -> str:
        where = self.endpoint if self._server is not None else "not started"
        return f"<FakeOTLPBackend {self.mode.value} {where}>"


class FakeTLSStallListener:
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte.

    A TLS client's ClientHello never gets a ServerHello, so ``https://`` exports stall
    in the handshake. ``endpoint`` is ``https://127.0.0.1:<port>/v1/traces``.

    Example::

        with FakeTLSStallListener() as stall:
            with pytest.raises(requests.Timeout):
                requests.post(stall.endpoint, data=b"", timeout=0.5)
    """

    def __init__(self, *, path: str = _DEFAULT_PATH, max_connections: int = 1024) -> None:
        """``max_connections`` caps held sockets; extra connections are closed at once."""
        self.path = _check_path(path)
        self.max_connections = max_connections
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._held: list[socket.socket] = []
        self._connection_count = 0
        self._stopped = False

    def start(self) -> FakeTLSStallListener:
        """Bind 127.0.0.1:0 and accept in a daemon thread; returns self. Start only once."""
        with self._lock:
            if self._listener is not None or self._stopped:
                raise RuntimeError("FakeTLSStallListener can only be started once")
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.bind((_HOST, 0))
                listener.listen(128)
                listener.settimeout(_POLL_INTERVAL)
            except OSError:
                listener.close()
                raise
            self._listener = listener
            self._port = int(listener.getsockname()[1])
            self._thread = threading.Thread(
                target=self._accept_loop,
                args=(listener,),
                name=f"fake-tls-stall-{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # listener closed by stop()
                return
            with self._lock:
                self._connection_count += 1
                keep = not self._stopping.is_set() and len(self._held) < self.max_connections
                if keep:
                    self._held.append(conn)
                self._lock.notify_all()
            if not keep:
                conn.close()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the listener and every held connection; returns within about ``timeout`` s."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping.set()
            listener, thread = self._listener, self._thread
        if thread is not None:
            thread.join(timeout)
        if listener is not None:
            listener.close()
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            conn.close()

    def __enter__(self) -> FakeTLSStallListener:
        if self._listener is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound ephemeral port (raises RuntimeError before start())."""
        if self._port is None:
            raise RuntimeError("FakeTLSStallListener is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>`` (no path)."""
        return _endpoint_url("https", self.port, "")

    @property
    def endpoint(self) -> str:
        """Full URL, e.g. ``https://127.0.0.1:<port>/v1/traces``."""
        return _endpoint_url("https", self.port, self.path)

    @property
    def connection_count(self) -> int:
        """Number of TCP connections accepted so far."""
        with self._lock:
            return self._connection_count

    def wait_for_connections(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` connections were accepted; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._connection_count >= count, timeout)

    def __repr__(self) -> str:
        where = self.endpoint if self._listener is not None else "not started"
        return f"<FakeTLSStallListener {where}>"
