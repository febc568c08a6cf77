"""A fake OTLP/gRPC collector on 127.0.0.1 (traces, logs, metrics) that answers, hangs,
stalls, says UNAVAILABLE with retry info, or resets the connection.

Needs the ``grpc`` extra (``pip install 'otel-nonblocking[grpc]'``).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.duration_pb2 import Duration  # type: ignore[import-untyped,unused-ignore]
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ._backend import Mode

__all__ = ["FakeGrpcBackend", "GrpcRequest"]

_HOST = "127.0.0.1"
_POLL = 0.05
#: The modes a gRPC backend serves (DRIP and ERROR_STATUS are HTTP's).
SUPPORTED_MODES = frozenset({Mode.OK, Mode.HANG, Mode.SLOW, Mode.UNAVAILABLE, Mode.RESET})
_SERVICES: dict[str, tuple[str, type[Any]]] = {
    "opentelemetry.proto.collector.trace.v1.TraceService": ("traces", ExportTraceServiceRequest),
    "opentelemetry.proto.collector.logs.v1.LogsService": ("logs", ExportLogsServiceRequest),
    "opentelemetry.proto.collector.metrics.v1.MetricsService": (
        "metrics",
        ExportMetricsServiceRequest,
    ),
}


@dataclass(frozen=True)
class GrpcRequest:
    """One Export RPC received: its signal (traces, logs, metrics), metadata with
    lower-cased keys (left out of repr), decoded request, the mode that handled it,
    whether it was answered OK, and the seconds its deadline left on arrival."""

    signal: str
    metadata: dict[str, str] = field(repr=False)
    decoded: Any = field(repr=False)
    mode: Mode
    accepted: bool
    #: Seconds the call's deadline left when it arrived (None: the client set none).
    deadline_seconds: float | None = None


class FakeGrpcBackend:
    """A fake OTLP/gRPC collector on ``127.0.0.1:<ephemeral port>`` (all three services).

    ``port`` (0: an ephemeral one) lets a second backend come back on the port of one that
    stopped, as a restarted collector does. ``max_receive_bytes`` is the server's largest
    accepted message (gRPC's default, and a collector's: 4 MiB); a larger request is
    refused with ``RESOURCE_EXHAUSTED`` before the service sees it.
    ``answer_before_deadline``: SLOW answers when the call's deadline leaves this many
    seconds (not after ``delay``), just past a client deadline set earlier than the RPC's.

    Modes (``mode`` may change between calls): OK answers; HANG never answers (until the
    client gives up, the mode changes or ``stop()``); SLOW answers after ``delay`` s;
    UNAVAILABLE fails with ``UNAVAILABLE`` and a ``RetryInfo`` of ``retry_after`` s (None:
    none); RESET resets the TCP connection as soon as the client sends on it. Every
    thread and connection ends by ``stop()``.

    Example::

        with FakeGrpcBackend() as backend:
            exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=2)
            ...
            assert backend.wait_for(lambda: backend.span_names(accepted=True) == ["work"])
    """

    def __init__(
        self,
        mode: Mode | str = Mode.OK,
        *,
        delay: float = 1.0,
        retry_after: float | None = 30.0,
        hang_limit: float = 60.0,
        max_workers: int = 8,
        port: int = 0,
        max_receive_bytes: int | None = None,
        answer_before_deadline: float | None = None,
    ) -> None:
        self._mode = _supported(mode)
        self.delay = delay
        self.retry_after = retry_after
        self.hang_limit = hang_limit
        self._max_workers = max_workers
        self._port = port
        self._max_receive_bytes = max_receive_bytes
        self.answer_before_deadline = answer_before_deadline
        self._lock = threading.Lock()
        self._records: list[GrpcRequest] = []
        self._calls = 0
        self._resets = 0
        self._connections = 0
        self._stopping = threading.Event()
        self._release = threading.Event()
        self._server: Any = None
        self._front: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._inner_port = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeGrpcBackend:
        """Serve on 127.0.0.1 (a TCP front that can reset connections, in front of a gRPC
        server on another loopback port); returns self."""
        if self._server is not None:
            raise RuntimeError("FakeGrpcBackend can only be started once")
        options = []
        if self._max_receive_bytes is not None:
            options.append(("grpc.max_receive_message_length", self._max_receive_bytes))
        server = grpc.server(ThreadPoolExecutor(max_workers=self._max_workers), options=options)
        for service in _SERVICES:
            handler = grpc.unary_unary_rpc_method_handler(self._handle(service))
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Export": handler}),)
            )
        self._inner_port = server.add_insecure_port(f"{_HOST}:0")
        server.start()
        self._server = server
        front = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        front.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        front.bind((_HOST, self._port))
        front.listen(64)
        front.settimeout(_POLL)
        self._front = front
        self._port = int(front.getsockname()[1])
        self._spawn(self._accept_loop)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving: pending calls are cancelled, connections closed. Idempotent."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._release.set()
        if self._server is not None:
            self._server.stop(grace=0).wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._front is not None:
            self._front.close()

    def __enter__(self) -> FakeGrpcBackend:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what it serves --------------------------------------------------------

    @property
    def port(self) -> int:
        if self._front is None:
            raise RuntimeError("FakeGrpcBackend is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: the scheme makes the exporter's channel insecure."""
        return f"http://{_HOST}:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, value: Mode | str) -> None:
        self._mode = _supported(value)
        self._release.set()  # a HANG or SLOW call in progress ends now
        self._release = threading.Event()

    # -- what it received ------------------------------------------------------

    @property
    def requests(self) -> list[GrpcRequest]:
        with self._lock:
            return list(self._records)

    @property
    def call_count(self) -> int:
        """Export RPCs that reached the server (a reset one never does)."""
        with self._lock:
            return self._calls

    @property
    def reset_count(self) -> int:
        with self._lock:
            return self._resets

    @property
    def connection_count(self) -> int:
        with self._lock:
            return self._connections

    def _decoded(self, signal: str, accepted: bool) -> list[Any]:
        return [
            r.decoded for r in self.requests if r.signal == signal and (r.accepted or not accepted)
        ]

    def span_names(self, *, accepted: bool = False) -> list[str]:
        """Names of the spans received (or, with ``accepted``, answered OK), in order."""
        return [
            span.name
            for request in self._decoded("traces", accepted)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def log_bodies(self, *, accepted: bool = False) -> list[str]:
        """String bodies of the log records received (or answered OK), in order."""
        return [
            record.body.string_value
            for request in self._decoded("logs", accepted)
            for resource in request.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]

    def metric_names(self, *, accepted: bool = False) -> list[str]:
        """Names of the metrics received (or answered OK), one per metric in each call."""
        return [
            metric.name
            for request in self._decoded("metrics", accepted)
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def __repr__(self) -> str:
        return f"FakeGrpcBackend(mode={self._mode.value!r}, calls={self.call_count})"

    # -- the gRPC side ---------------------------------------------------------

    def _handle(self, service: str) -> Callable[[bytes, Any], bytes]:
        signal, request_class = _SERVICES[service]

        def export(body: bytes, context: Any) -> bytes:
            mode, release = self._mode, self._release
            left = context.time_remaining()
            with self._lock:
                self._calls += 1
            metadata = {key.lower(): str(value) for key, value in context.invocation_metadata()}
            decoded = request_class.FromString(body)
            if mode is Mode.HANG:
                self._hold(context, release, self.hang_limit)
            elif mode is Mode.SLOW:
                early = self.answer_before_deadline
                if early is not None and left is not None:
                    self._hold(context, release, left - early)
                else:
                    self._hold(context, release, self.delay)
            accepted = mode in (Mode.OK, Mode.SLOW) and context.is_active()
            with self._lock:
                self._records.append(GrpcRequest(signal, metadata, decoded, mode, accepted, left))
            if mode is Mode.UNAVAILABLE:
                if self.retry_after is not None:
                    whole = int(self.retry_after)
                    delay = Duration(seconds=whole, nanos=int((self.retry_after - whole) * 1e9))
                    info = RetryInfo(retry_delay=delay).SerializeToString()
                    context.set_trailing_metadata((("google.rpc.retryinfo-bin", info),))
                context.abort(grpc.StatusCode.UNAVAILABLE, "fake backend unavailable")
            if mode is Mode.HANG:
                context.abort(grpc.StatusCode.UNAVAILABLE, "fake backend released a hang")
            return b""  # an empty Export*ServiceResponse

        return export

    def _hold(self, context: Any, release: threading.Event, seconds: float) -> None:
        """Wait ``seconds``, until released or stopped, or until the client gives up."""
        deadline = time.monotonic() + seconds
        while context.is_active() and not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or release.wait(min(remaining, _POLL)):
                return

    # -- the TCP front (forwards bytes; resets connections in RESET mode) ------

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="fake-grpc")
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        front = self._front
        assert front is not None
        while not self._stopping.is_set():
            try:
                client, _ = front.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((_HOST, self._inner_port), timeout=2.0)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += 1
                self._sockets.update((client, upstream))
            self._spawn(self._pump, client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                sock.settimeout(2.0)  # a send to a peer that stopped reading ends
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    for key, _ in selector.select(_POLL):
                        ready: socket.socket = key.fileobj  # type: ignore[assignment]
                        if ready is client and self._mode is Mode.RESET:
                            self._reset(client)
                            return
                        data = ready.recv(65536)
                        if not data:
                            return
                        peers[ready].sendall(data)
            except OSError:
                return
            finally:
                for sock in peers:
                    with contextlib.suppress(OSError):
                        sock.close()
                with self._lock:
                    self._sockets.difference_update(peers)

    def _reset(self, client: socket.socket) -> None:
        with self._lock:
            self._resets += 1
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _supported(mode: Mode | str) -> Mode:
    value = Mode(mode)
    if value not in SUPPORTED_MODES:
        names = ", ".join(sorted(m.value for m in SUPPORTED_MODES))
        raise ValueError(f"FakeGrpcBackend serves {names}; not {value.value}")
    return value
