"""The fake OTLP/HTTP backends behave as advertised, mode by mode, with real clients."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Sequence

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_nonblocking import DeadlineSpanExporter
from otel_nonblocking.testing import (
    FakeOTLPBackend,
    FakeTLSStallListener,
    Mode,
    RequestRecord,
    refused_endpoint,
)

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def backend() -> Iterator[FakeOTLPBackend]:
    with FakeOTLPBackend() as fake:
        yield fake
    assert fake.handler_errors == 0  # no exception was swallowed by a connection handler


def make_spans(*names: str) -> Sequence[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test-backends")
    for name in names:
        tracer.start_span(name).end()
    spans = memory.get_finished_spans()
    provider.shutdown()
    return spans


def encoded_request(*names: str) -> bytes:
    """A serialized ExportTraceServiceRequest carrying spans called ``names``."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return bytes(encode_spans(make_spans(*names)).SerializeToString())


def export(endpoint: str, *names: str, timeout: float = 2.0, **kwargs: object) -> SpanExportResult:
    """Export through the stock exporter, bounded by our deadline.

    The stock exporter's own behaviour differs across SDK releases (1.33 raises on a
    read timeout and retries a 5xx for about a minute); the deadline makes every
    release end in ``timeout`` so these tests are about the backend, not the SDK.
    """
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout, **kwargs)  # type: ignore[arg-type]
    bounded = DeadlineSpanExporter(exporter, timeout_millis=timeout * 1000 + 200)
    try:
        return bounded.export(make_spans(*names))
    finally:
        bounded.shutdown(timeout_millis=500)


def raw_hanging_post(port: int, path: str = "/v1/traces") -> socket.socket:
    """Open a connection and send a complete empty POST; the caller closes the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    return sock


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """True if ``kind`` is anywhere in the exception's args/cause/context chain."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo and len(seen) < 50:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return True
        todo.extend([*item.args, item.__cause__, item.__context__])
        todo.extend(getattr(item, attr, None) for attr in ("reason", "original_error"))
    return False


# -- OK ---------------------------------------------------------------------------------


def test_ok_mode_exporter_succeeds_and_spans_are_decoded(backend: FakeOTLPBackend) -> None:
    assert export(backend.endpoint, "alpha", "beta") is SpanExportResult.SUCCESS

    assert backend.wait_for_spans(2, timeout=2, accepted=True)
    assert sorted(backend.span_names()) == ["alpha", "beta"]
    assert sorted(backend.span_names(accepted=True)) == ["alpha", "beta"]
    assert backend.request_count == 1
    (record,) = backend.requests
    assert record.method == "POST"
    assert record.path == "/v1/traces"
    assert record.mode is Mode.OK
    assert record.status == 200
    assert record.accepted
    assert record.headers["content-type"] == "application/x-protobuf"
    assert isinstance(record.decoded, ExportTraceServiceRequest)
    assert record.received_at > 0


def test_ok_mode_answers_empty_protobuf_response(backend: FakeOTLPBackend) -> None:
    response = requests.post(
        backend.endpoint, data=encoded_request("x"), headers=PROTOBUF, timeout=2
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-protobuf"
    assert response.content == b""  # an empty ExportTraceServiceResponse


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
def test_ok_mode_decodes_compressed_exports(
    backend: FakeOTLPBackend, compression: Compression
) -> None:
    assert export(backend.endpoint, "zipped", compression=compression) is SpanExportResult.SUCCESS

    assert backend.span_names() == ["zipped"]
    assert backend.requests[0].headers["content-encoding"] == compression.value


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw deflate
    ],
)
def test_compressed_bodies_are_decoded(
    backend: FakeOTLPBackend, encoding: str, compress: object
) -> None:
    body = compress(encoded_request("squeezed"))  # type: ignore[operator]
    headers = {**PROTOBUF, "Content-Encoding": encoding}

    assert requests.post(backend.endpoint, data=body, headers=headers, timeout=2).ok
    assert backend.span_names() == ["squeezed"]


def test_undecodable_body_is_recorded_without_spans(backend: FakeOTLPBackend) -> None:
    headers = {**PROTOBUF, "Content-Encoding": "gzip"}

    assert requests.post(backend.endpoint, data=b"not gzip", headers=headers, timeout=2).ok
    (record,) = backend.requests
    assert record.decoded is None
    assert record.body == b"not gzip"
    assert backend.spans() == []


def test_chunked_request_body_is_decoded(backend: FakeOTLPBackend) -> None:
    payload = encoded_request("chunky")
    chunks = iter([payload[:5], payload[5:]])  # a generator body makes requests send chunks

    response = requests.post(backend.endpoint, data=chunks, headers=PROTOBUF, timeout=2)

    assert response.ok
    assert backend.requests[0].headers["transfer-encoding"] == "chunked"
    assert backend.span_names() == ["chunky"]


def test_keep_alive_connection_is_reused(backend: FakeOTLPBackend) -> None:
    with requests.Session() as session:
        for _ in range(3):
            response = session.post(backend.endpoint, data=encoded_request("k"), timeout=2)
            assert response.status_code == 200

    assert backend.request_count == 3
    assert backend.connection_count == 1


def test_concurrent_connections_are_served_in_parallel() -> None:
    with FakeOTLPBackend(Mode.SLOW, delay=0.4) as fake:
        statuses: list[int] = []

        def post() -> None:
            statuses.append(requests.post(fake.endpoint, data=b"", timeout=3).status_code)

        threads = [threading.Thread(target=post) for _ in range(4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        elapsed = time.monotonic() - started

    assert statuses == [200] * 4
    assert elapsed < 1.2  # four 0.4 s answers overlapped instead of queueing (1.6 s)


def test_headers_are_recorded_lowercased_but_not_in_repr(backend: FakeOTLPBackend) -> None:
    credential = "Bearer not-a-real-credential"
    requests.post(backend.endpoint, data=b"", headers={"Authorization": credential}, timeout=2)

    (record,) = backend.requests
    assert record.headers["authorization"] == credential
    assert credential not in repr(record)
    assert isinstance(record, RequestRecord)


# -- paths and methods ------------------------------------------------------------------


def test_other_paths_get_404_and_yield_no_spans(backend: FakeOTLPBackend) -> None:
    response = requests.post(
        f"{backend.base_url}/v1/profiles", data=encoded_request("x"), headers=PROTOBUF, timeout=2
    )

    assert response.status_code == 404
    assert backend.request_count == 1
    assert backend.requests[0].decoded is None
    assert backend.spans() == []


def test_custom_path_serves_langfuse_style_endpoint() -> None:
    path = "/api/public/otel/v1/traces"
    with FakeOTLPBackend(path=path) as fake:
        assert fake.endpoint == f"http://127.0.0.1:{fake.port}{path}"
        assert export(fake.endpoint, "lf") is SpanExportResult.SUCCESS
        wrong = requests.post(f"{fake.base_url}/v1/traces", data=b"", timeout=2)

    assert wrong.status_code == 404
    assert fake.span_names() == ["lf"]


def test_non_post_methods_get_405(backend: FakeOTLPBackend) -> None:
    response = requests.get(backend.endpoint, timeout=2)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


# -- failure modes ----------------------------------------------------------------------


def test_hang_mode_never_answers(backend: FakeOTLPBackend) -> None:
    backend.mode = Mode.HANG

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(backend.endpoint, data=encoded_request("held"), timeout=0.5)

    (record,) = backend.requests
    assert record.mode is Mode.HANG
    assert record.status is None
    assert backend.span_names() == ["held"]  # received...
    assert backend.accepted_spans() == []  # ...but never delivered


def test_hang_mode_makes_exporter_fail_at_its_timeout(backend: FakeOTLPBackend) -> None:
    backend.mode = Mode.HANG
    started = time.monotonic()

    assert export(backend.endpoint, "h", timeout=0.5) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 2.0


def test_drip_mode_delivers_response_one_byte_at_a_time() -> None:
    with FakeOTLPBackend(Mode.DRIP, drip_interval=0.02) as fake:
        started = time.monotonic()
        # The read timeout (0.5 s) applies per socket read, so each byte resets it.
        response = requests.post(fake.endpoint, data=encoded_request("d"), timeout=(1, 0.5))
        elapsed = time.monotonic() - started
        assert fake.wait_for_spans(1, timeout=1, accepted=True)

    assert response.status_code == 200
    assert elapsed > 1.0  # ~75 response bytes x 0.02 s, far beyond the 0.5 s "timeout"


def test_unavailable_mode_answers_503_with_retry_after(backend: FakeOTLPBackend) -> None:
    backend.mode = Mode.UNAVAILABLE

    response = requests.post(backend.endpoint, data=encoded_request("u"), timeout=2)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert backend.span_names() == ["u"]
    assert backend.accepted_spans() == []


def test_unavailable_mode_retry_after_is_configurable() -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=7) as fake:
        seven = requests.post(fake.endpoint, data=b"", timeout=2)
        fake.retry_after = None
        absent = requests.post(fake.endpoint, data=b"", timeout=2)

    assert seven.headers["Retry-After"] == "7"
    assert "Retry-After" not in absent.headers


def test_unavailable_mode_makes_exporter_fail(backend: FakeOTLPBackend) -> None:
    backend.mode = Mode.UNAVAILABLE

    assert export(backend.endpoint, "u", timeout=1) is SpanExportResult.FAILURE


def test_reset_mode_resets_the_connection(backend: FakeOTLPBackend) -> None:
    backend.mode = Mode.RESET

    with pytest.raises(requests.exceptions.ConnectionError) as excinfo:
        requests.post(backend.endpoint, data=encoded_request("r"), timeout=2)

    assert caused_by(excinfo.value, ConnectionResetError)
    assert backend.span_names() == ["r"]
    assert backend.requests[0].status is None


def test_refused_endpoint_refuses_connections() -> None:
    endpoint = refused_endpoint()

    assert endpoint.startswith("http://127.0.0.1:")
    assert endpoint.endswith("/v1/traces")
    with pytest.raises(requests.exceptions.ConnectionError) as excinfo:
        requests.post(endpoint, data=b"", timeout=2)
    assert caused_by(excinfo.value, ConnectionRefusedError)
    assert export(endpoint, "nowhere", timeout=0.5) is SpanExportResult.FAILURE


def test_slow_mode_answers_after_the_delay() -> None:
    with FakeOTLPBackend(Mode.SLOW, delay=0.3) as fake:
        started = time.monotonic()
        response = requests.post(fake.endpoint, data=encoded_request("s"), timeout=2)
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.3
    assert fake.span_names(accepted=True) == ["s"]


@pytest.mark.parametrize("mode", [Mode.OK, Mode.SLOW])
def test_a_client_holding_the_200_already_finds_its_spans_accepted(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server thread is held up right after each write, as a busy machine may do:
    # the client has the whole answer before the server thread runs again.
    from otel_nonblocking.testing import _backend

    real_send = _backend._Handler._send

    def send_then_stall(handler: _backend._Handler, data: bytes) -> bool:
        sent = real_send(handler, data)
        time.sleep(0.3)
        return sent

    with FakeOTLPBackend(mode, delay=0.05) as fake:
        monkeypatch.setattr(_backend._Handler, "_send", send_then_stall)
        response = requests.post(fake.endpoint, data=encoded_request("held"), timeout=30)
        assert response.status_code == 200
        assert fake.span_names(accepted=True) == ["held"]
        assert fake.requests[0].accepted


@pytest.mark.parametrize("status", [400, 401, 500])
def test_error_status_mode_answers_the_configured_status(status: int) -> None:
    with FakeOTLPBackend(Mode.ERROR_STATUS, error_status=status, error_body=b"nope") as fake:
        response = requests.post(fake.endpoint, data=b"", timeout=2)
        result = export(fake.endpoint, "e", timeout=1)

    assert response.status_code == status
    assert response.content == b"nope"
    assert result is SpanExportResult.FAILURE
    assert fake.accepted_spans() == []


# -- runtime control --------------------------------------------------------------------


def test_mode_switch_applies_to_the_next_request_on_a_kept_alive_connection(
    backend: FakeOTLPBackend,
) -> None:
    statuses = []
    with requests.Session() as session:
        for mode in (Mode.OK, Mode.UNAVAILABLE, "error_status", Mode.OK):
            backend.mode = mode
            statuses.append(session.post(backend.endpoint, data=b"", timeout=2).status_code)

    assert statuses == [200, 503, 500, 200]
    assert [r.mode for r in backend.requests] == [
        Mode.OK,
        Mode.UNAVAILABLE,
        Mode.ERROR_STATUS,
        Mode.OK,
    ]


def test_switching_away_from_hang_closes_held_connections(backend: FakeOTLPBackend) -> None:
    backend.mode = Mode.HANG
    with raw_hanging_post(backend.port) as sock:
        assert backend.wait_for_requests(1, timeout=2)
        started = time.monotonic()
        backend.mode = Mode.OK

        assert sock.recv(1024) == b""  # closed without an answer
        assert time.monotonic() - started < 1.0

    assert requests.post(backend.endpoint, data=b"", timeout=2).status_code == 200


def test_stop_is_bounded_with_open_hang_and_drip_connections() -> None:
    fake = FakeOTLPBackend(Mode.HANG, drip_interval=0.5).start()
    socks = [raw_hanging_post(fake.port) for _ in range(3)]
    try:
        assert fake.wait_for_requests(3, timeout=2)
        fake.mode = Mode.DRIP
        socks.append(raw_hanging_post(fake.port))
        assert fake.wait_for_requests(4, timeout=2)
        fake.mode = Mode.HANG
        socks.append(raw_hanging_post(fake.port))
        assert fake.wait_for_requests(5, timeout=2)
        idle = socket.create_connection(("127.0.0.1", fake.port), timeout=2)  # sends nothing
        socks.append(idle)
        assert fake.wait_for_connections(6, timeout=2)  # accepted, not just queued

        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 3.0

        for sock in socks:
            sock.settimeout(2)
            leftover = sock.recv(4096)
            assert b"200" not in leftover  # the drip never completed
    finally:
        for sock in socks:
            sock.close()
        fake.stop()  # idempotent


def test_stop_interrupts_slow_answers() -> None:
    fake = FakeOTLPBackend(Mode.SLOW, delay=30).start()
    with raw_hanging_post(fake.port):
        assert fake.wait_for_requests(1, timeout=2)
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 3.0


def test_wait_for_spans_returns_false_on_timeout(backend: FakeOTLPBackend) -> None:
    assert backend.wait_for_spans(1, timeout=0.1) is False
    assert backend.wait_for_requests(1, timeout=0.1) is False


def test_clear_forgets_recorded_requests(backend: FakeOTLPBackend) -> None:
    export(backend.endpoint, "gone")
    backend.clear()

    assert backend.request_count == 0
    assert backend.spans() == []
    assert backend.wait_for_spans(1, timeout=0.05) is False


def test_backend_binds_loopback_only_and_starts_once() -> None:
    fake = FakeOTLPBackend()
    with pytest.raises(RuntimeError):
        _ = fake.endpoint
    with fake:
        assert fake.base_url == f"http://127.0.0.1:{fake.port}"
        assert fake.endpoint == f"{fake.base_url}/v1/traces"
        with pytest.raises(RuntimeError):
            fake.start()
    with pytest.raises(RuntimeError):
        fake.start()


def test_mode_accepts_strings_and_rejects_unknown_values(backend: FakeOTLPBackend) -> None:
    backend.mode = "drip"
    assert backend.mode is Mode.DRIP
    with pytest.raises(ValueError, match="bogus"):
        backend.mode = "bogus"
    with pytest.raises(ValueError, match="must start with"):
        FakeOTLPBackend(path="v1/traces")


# -- TLS stall --------------------------------------------------------------------------


def test_tls_stall_listener_stalls_the_https_handshake() -> None:
    with FakeTLSStallListener() as stall:
        assert stall.endpoint == f"https://127.0.0.1:{stall.port}/v1/traces"
        started = time.monotonic()
        with pytest.raises(requests.exceptions.Timeout):
            requests.post(stall.endpoint, data=b"", timeout=0.5)
        assert time.monotonic() - started < 2.0
        assert stall.wait_for_connections(1, timeout=1)


def test_tls_stall_listener_stop_is_bounded_with_open_connections() -> None:
    stall = FakeTLSStallListener().start()
    socks = [socket.create_connection(("127.0.0.1", stall.port), timeout=2) for _ in range(3)]
    try:
        assert stall.wait_for_connections(3, timeout=2)
        started = time.monotonic()
        stall.stop()
        assert time.monotonic() - started < 3.0
        for sock in socks:
            assert sock.recv(16) == b""  # closed, never a byte sent
    finally:
        for sock in socks:
            sock.close()


# -- logs and metrics --------------------------------------------------------------------


def encoded_logs(*bodies: str | int) -> bytes:
    """A serialized ExportLogsServiceRequest carrying log records with ``bodies``."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    records = [
        LogRecord(body=AnyValue(string_value=b) if isinstance(b, str) else AnyValue(int_value=b))
        for b in bodies
    ]
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
    )
    return bytes(request.SerializeToString())


def encoded_metrics(*names: str) -> bytes:
    """A serialized ExportMetricsServiceRequest carrying metrics called ``names``."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, ResourceMetrics, ScopeMetrics

    metrics = [Metric(name=name) for name in names]
    request = ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=metrics)])]
    )
    return bytes(request.SerializeToString())


def test_logs_and_metrics_are_served_and_decoded_apart_from_spans(
    backend: FakeOTLPBackend,
) -> None:
    assert backend.logs_endpoint == f"{backend.base_url}/v1/logs"
    assert backend.metrics_endpoint == f"{backend.base_url}/v1/metrics"
    logs = requests.post(
        backend.logs_endpoint, data=encoded_logs("hello", 7), headers=PROTOBUF, timeout=2
    )
    metrics = requests.post(
        backend.metrics_endpoint, data=encoded_metrics("requests", "latency"), timeout=2
    )
    gzipped = requests.post(
        backend.metrics_endpoint,
        data=gzip.compress(encoded_metrics("zipped")),
        headers={**PROTOBUF, "Content-Encoding": "gzip"},
        timeout=2,
    )

    assert logs.status_code == metrics.status_code == gzipped.status_code == 200
    assert backend.log_bodies() == ["hello", "7"]
    assert backend.log_bodies(accepted=True) == ["hello", "7"]
    assert backend.metric_names() == ["requests", "latency", "zipped"]
    assert backend.wait_for_log_records(2, timeout=1, accepted=True)
    assert backend.wait_for_metrics(3, timeout=1, accepted=True)
    assert not backend.wait_for_log_records(3, timeout=0.05)
    assert backend.spans() == []  # nothing of either counts as a span
    assert not backend.wait_for_spans(1, timeout=0.05)
    assert [r.signal for r in backend.requests] == ["logs", "metrics", "metrics"]
    assert backend.requests[0].spans == []
    assert backend.requests[0].metrics == []
    backend.clear()
    assert backend.log_bodies() == []
    assert not backend.wait_for_log_records(1, timeout=0.05)


def test_a_trace_request_sent_to_the_logs_path_decodes_as_no_log_record(
    backend: FakeOTLPBackend,
) -> None:
    requests.post(backend.logs_endpoint, data=b"\xff\xff not protobuf", timeout=2)

    (record,) = backend.requests
    assert record.signal == "logs"
    assert record.decoded is None
    assert backend.log_records() == []


@pytest.mark.parametrize("signal", ["logs", "metrics"])
def test_every_fault_mode_applies_to_logs_and_metrics(signal: str) -> None:
    body = encoded_logs("x") if signal == "logs" else encoded_metrics("x")
    with FakeOTLPBackend(retry_after=3, drip_interval=0.01, delay=0.2) as fake:
        url = fake.logs_endpoint if signal == "logs" else fake.metrics_endpoint
        fake.mode = Mode.HANG
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(url, data=body, timeout=(1, 0.3))
        fake.mode = Mode.UNAVAILABLE
        unavailable = requests.post(url, data=body, timeout=2)
        fake.mode = Mode.RESET
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(url, data=body, timeout=2)
        fake.mode = Mode.ERROR_STATUS
        error = requests.post(url, data=body, timeout=2)
        fake.mode = Mode.SLOW
        started = time.monotonic()
        slow = requests.post(url, data=body, timeout=2)
        slow_seconds = time.monotonic() - started
        fake.mode = Mode.DRIP
        drip = requests.post(url, data=body, timeout=2)
        received = fake.log_bodies() if signal == "logs" else fake.metric_names()
        accepted = (
            fake.log_bodies(accepted=True) if signal == "logs" else fake.metric_names(accepted=True)
        )
        modes = [r.mode for r in fake.requests]

    assert (unavailable.status_code, unavailable.headers["Retry-After"]) == (503, "3")
    assert error.status_code == 500
    assert slow.status_code == 200
    assert slow_seconds >= 0.2
    assert drip.status_code == 200
    assert modes == [
        Mode.HANG,
        Mode.UNAVAILABLE,
        Mode.RESET,
        Mode.ERROR_STATUS,
        Mode.SLOW,
        Mode.DRIP,
    ]
    assert received == ["x"] * 6  # every request was read and decoded ...
    assert accepted == ["x", "x"]  # ... and only SLOW's and DRIP's 200s delivered


def test_logs_and_metrics_paths_follow_a_custom_trace_path() -> None:
    langfuse_like = FakeOTLPBackend(path="/api/public/otel/v1/traces")
    assert langfuse_like.logs_path == "/api/public/otel/v1/logs"
    assert langfuse_like.metrics_path == "/api/public/otel/v1/metrics"
    explicit = FakeOTLPBackend(path="/t", logs_path="/l", metrics_path="/m")
    assert (explicit.logs_path, explicit.metrics_path) == ("/l", "/m")
    with FakeOTLPBackend(path="/collect") as only_traces:
        assert only_traces.logs_path is None
        with pytest.raises(RuntimeError):
            _ = only_traces.logs_endpoint
        response = requests.post(f"{only_traces.base_url}/logs", data=encoded_logs("x"), timeout=2)
    assert response.status_code == 404
