"""Every export, flush and shutdown keeps its budget against every fault, over real sockets.

The exporter under test is the real ``OTLPSpanExporter`` (whichever SDK release is
installed; CI runs this file on the newest and on 1.33.1) behind our deadline.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from otel_nonblocking import (
    DeadlineSpanExporter,
    ExportOutcome,
    NonBlockingSpanProcessor,
    otlp_span_exporter,
)
from otel_nonblocking._session import InterruptibleSession
from otel_nonblocking.testing import FakeOTLPBackend, FakeTLSStallListener, Mode, refused_endpoint
from tests.conftest import end_spans

BUDGET = 1.0  # seconds: every export, flush and shutdown here must end within it
SLACK = 0.5  # the generous margin the timing bounds allow on a shared machine

FAULTS = ["ok", "hang", "drip", "unavailable", "reset", "refused", "slow"]


@pytest.fixture
def endpoint_for() -> Iterator[Callable[[str], str]]:
    backends: list[FakeOTLPBackend] = []

    def make(fault: str) -> str:
        if fault == "refused":
            return refused_endpoint()
        backend = FakeOTLPBackend(
            Mode(fault), delay=5.0, drip_interval=0.2, retry_after=30, hang_limit=30
        )
        backend.start()
        backends.append(backend)
        return backend.endpoint

    yield make
    for backend in backends:
        backend.stop()


def _export_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "otel-nonblocking-export")


def _spans(count: int = 3) -> list[ReadableSpan]:
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("faults")
    spans = []
    for _ in range(count):
        span = tracer.start_span("fault-span")
        span.end()
        spans.append(span)
    return spans


@pytest.mark.parametrize("fault", FAULTS)
def test_export_returns_within_its_deadline(fault, endpoint_for) -> None:
    exporter = otlp_span_exporter(endpoint_for(fault), timeout=BUDGET)
    started = time.monotonic()
    outcome = exporter.export_outcome(_spans())
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET + SLACK, f"{fault}: export took {elapsed:.2f}s"
    expected = ExportOutcome.SUCCESS if fault == "ok" else None
    if expected:
        assert outcome is expected
    else:
        assert outcome in (ExportOutcome.TIMEOUT, ExportOutcome.FAILED)
    exporter.shutdown(timeout_millis=500)


@pytest.mark.parametrize("fault", FAULTS)
def test_repeated_exports_never_pile_up_threads(fault, endpoint_for) -> None:
    before = _export_threads()
    exporter = otlp_span_exporter(endpoint_for(fault), timeout=0.3)
    for _ in range(8):
        started = time.monotonic()
        exporter.export_outcome(_spans(1))
        assert time.monotonic() - started < 0.3 + SLACK
        assert _export_threads() - before <= 1
    exporter.shutdown(timeout_millis=500)


@pytest.mark.parametrize("fault", FAULTS)
def test_force_flush_and_shutdown_keep_their_budget(fault, endpoint_for) -> None:
    exporter = otlp_span_exporter(endpoint_for(fault), timeout=BUDGET)
    processor = NonBlockingSpanProcessor(exporter, max_export_batch_size=50)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    end_spans(provider, 200)
    started = time.monotonic()
    flushed = processor.force_flush(int(BUDGET * 1000))
    assert time.monotonic() - started < BUDGET + SLACK
    assert flushed is (fault in ("ok",)) or (fault == "slow" and not flushed)
    end_spans(provider, 100)
    started = time.monotonic()
    processor.shutdown(timeout_millis=BUDGET * 1000)
    assert time.monotonic() - started < BUDGET + SLACK
    stats = processor.stats()
    assert stats.enqueued == stats.exported + stats.dropped_total + stats.pending
    if fault == "ok":
        assert stats.exported == 300


@pytest.mark.parametrize("fault", FAULTS)
def test_a_report_says_whether_the_backend_could_judge_the_batch(fault, endpoint_for) -> None:
    # Only a request that never got out (refused: nothing listens) leaves the backend
    # nothing to judge; one that hung, trickled, was reset or answered reached it.
    exporter = otlp_span_exporter(endpoint_for(fault), timeout=0.5)
    try:
        report = exporter.export_report(_spans())
        assert report.reached is (fault != "refused"), report
    finally:
        exporter.shutdown(timeout_millis=500)


def test_an_export_cut_in_its_tls_handshake_reached_nothing() -> None:
    # Connected, but the handshake stalls until the deadline: no byte of the request
    # went out, so nothing about the batch can have caused the failure.
    listener = FakeTLSStallListener().start()
    try:
        exporter = otlp_span_exporter(listener.endpoint, timeout=0.5)
        report = exporter.export_report(_spans(1))
        assert report.outcome is ExportOutcome.TIMEOUT
        assert not report.reached
        exporter.shutdown(timeout_millis=500)
    finally:
        listener.stop()


def test_an_export_whose_host_does_not_resolve_reached_nothing(monkeypatch) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def failing_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "collector.gone.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", failing_getaddrinfo)
    exporter = otlp_span_exporter("http://collector.gone.test:4318/v1/traces", timeout=0.5)
    try:
        report = exporter.export_report(_spans(1))
        assert report.outcome is not ExportOutcome.SUCCESS
        assert report.transient  # sent again later, and ...
        assert not report.reached  # ... not charged an attempt for it
    finally:
        exporter.shutdown(timeout_millis=500)


def test_an_export_the_open_breaker_kept_back_reached_nothing(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_FAILURES", "1")
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "30000")
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=None) as backend:
        exporter = otlp_span_exporter(backend.endpoint, timeout=0.5)
        assert exporter.export_report(_spans()).reached  # a 503: the breaker opens
        report = exporter.export_report(_spans())
        assert report.outcome is ExportOutcome.CIRCUIT_OPEN
        assert not report.reached
        exporter.shutdown(timeout_millis=500)


def test_ok_backend_receives_the_spans(endpoint_for) -> None:
    backend = FakeOTLPBackend(Mode.OK).start()
    try:
        exporter = otlp_span_exporter(backend.endpoint, timeout=BUDGET)
        assert exporter.export_outcome(_spans(4)) is ExportOutcome.SUCCESS
        assert backend.span_names() == ["fault-span"] * 4
    finally:
        backend.stop()


def test_breaker_opens_on_a_dead_backend_and_closes_after_recovery() -> None:
    backend = FakeOTLPBackend(Mode.HANG, hang_limit=30).start()
    try:
        exporter = otlp_span_exporter(backend.endpoint, timeout=0.3)
        exporter._breaker._base_backoff = exporter._breaker._backoff = 0.3
        # An export that finds the last abandoned attempt still reading (its socket
        # timeout is 0.1 s past its deadline, later on a loaded machine) fails fast as
        # BUSY and does not count against the backend; the third timeout opens it.
        outcomes: list[ExportOutcome] = []
        while exporter.stats().breaker_state != "open" and len(outcomes) < 8:
            outcomes.append(exporter.export_outcome(_spans(1)))
        assert set(outcomes) <= {ExportOutcome.TIMEOUT, ExportOutcome.BUSY}
        assert outcomes.count(ExportOutcome.TIMEOUT) == 3
        assert exporter.stats().breaker_state == "open"
        started = time.monotonic()
        assert exporter.export_outcome(_spans(1)) is ExportOutcome.CIRCUIT_OPEN
        assert time.monotonic() - started < 0.05  # a dead backend costs milliseconds
        backend.mode = Mode.OK
        time.sleep(0.35)
        assert exporter.export_outcome(_spans(2)) is ExportOutcome.SUCCESS
        assert exporter.stats().breaker_state == "closed"
        assert exporter.export_outcome(_spans(2)) is ExportOutcome.SUCCESS
        assert backend.wait_for_spans(4, timeout=2, accepted=True)
    finally:
        backend.stop()


def test_a_request_that_went_out_is_not_cut_at_the_deadline_but_ends_at_its_socket_timeout() -> (
    None
):
    # Its bytes may already be with the backend; only the answer can tell what became
    # of them, so the connection is left to read it until its own socket timeout.
    backend = FakeOTLPBackend(Mode.HANG, hang_limit=30).start()
    try:
        exporter = otlp_span_exporter(backend.endpoint, timeout=0.3)
        started = time.monotonic()
        assert exporter.export_outcome(_spans(1)) is ExportOutcome.TIMEOUT
        assert time.monotonic() - started < 0.3 + SLACK
        deadline = time.monotonic() + 3
        while exporter.stats().attempt_outstanding and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = exporter.stats()
        assert not stats.attempt_outstanding  # well before the 30 s hang would end
        assert stats.interrupted_connections == 0
        assert backend.request_count == 1  # and the abandoned attempt sent nothing more
    finally:
        backend.stop()


def test_an_answer_that_arrives_after_the_deadline_delivers_the_batch_once() -> None:
    # The backend takes the batch and answers 200 0.2 s after the client's deadline.
    # Cutting the connection at the deadline would not stop that (the request had gone
    # out), and sending the batch again would then duplicate every span.
    backend = FakeOTLPBackend(Mode.SLOW, delay=0.7).start()
    inner = OTLPSpanExporter(endpoint=backend.endpoint, timeout=5, session=InterruptibleSession())
    exporter = DeadlineSpanExporter(inner, timeout_millis=500)
    processor = NonBlockingSpanProcessor(
        exporter, max_export_batch_size=5, schedule_delay_millis=20
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        end_spans(provider, 5)
        deadline = time.monotonic() + 5
        while not exporter.stats().outcomes.get("export_timeout") and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.mode = Mode.OK
        assert processor.force_flush(3000)
        deadline = time.monotonic() + 3  # until the backend has answered every request
        while any(r.status is None for r in backend.requests) and time.monotonic() < deadline:
            time.sleep(0.01)
        accepted = [span.span_id for span in backend.accepted_spans()]
        assert len(accepted) == len(set(accepted)) == 5  # each span once
        assert processor.stats().exported == 5
        assert exporter.stats().outcomes["export_timeout"] == 1
        assert exporter.stats().outcomes["late_success"] == 1
    finally:
        processor.shutdown(timeout_millis=1000)
        backend.stop()


def test_an_overdue_abandoned_attempt_is_cut_before_the_next_export_waits_on_it() -> None:
    # A spared request still trickling in a whole deadline later (or after the process
    # was frozen, as between AWS Lambda invocations) must not cost the next, short
    # export its budget: it is cut first, not waited on.
    backend = FakeOTLPBackend(Mode.DRIP, drip_interval=0.2).start()
    try:
        exporter = otlp_span_exporter(backend.endpoint, timeout=0.3)
        assert exporter.export_outcome(_spans(1)) is ExportOutcome.TIMEOUT
        backend.mode = Mode.OK  # the first answer keeps trickling on its connection
        time.sleep(0.35)  # now it is a whole deadline past its own
        assert exporter.stats().attempt_outstanding
        assert exporter.export_outcome(_spans(1), timeout=0.15) is ExportOutcome.SUCCESS
        assert exporter.stats().interrupted_connections == 1
    finally:
        backend.stop()


def test_dns_stall_costs_no_more_than_the_deadline(monkeypatch) -> None:
    backend = FakeOTLPBackend(Mode.OK).start()
    real_getaddrinfo = socket.getaddrinfo
    release = threading.Event()

    def stalling_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "collector.stall.test":
            release.wait(3)  # a resolver that hangs (bounded so the test ends)
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stalling_getaddrinfo)
    try:
        url = f"http://collector.stall.test:{backend.port}/v1/traces"
        exporter = otlp_span_exporter(url, timeout=0.5)
        started = time.monotonic()
        assert exporter.export_outcome(_spans(1)) is ExportOutcome.TIMEOUT
        assert time.monotonic() - started < 0.5 + SLACK
        # The resolver cannot be interrupted; when it returns, the abandoned attempt
        # must not go on to send the batch late.
        release.set()
        deadline = time.monotonic() + 3
        while exporter.stats().attempt_outstanding and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.request_count == 0
    finally:
        release.set()
        backend.stop()


def test_tls_handshake_stall_costs_no_more_than_the_deadline() -> None:
    listener = FakeTLSStallListener().start()
    try:
        exporter = otlp_span_exporter(listener.endpoint, timeout=0.5)
        started = time.monotonic()
        assert exporter.export_outcome(_spans(1)) is ExportOutcome.TIMEOUT
        assert time.monotonic() - started < 0.5 + SLACK
        deadline = time.monotonic() + 2
        while exporter.stats().attempt_outstanding and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not exporter.stats().attempt_outstanding  # the handshake was cut
        assert exporter.stats().interrupted_connections == 1
    finally:
        listener.stop()


def _credentialed(endpoint: str, password: str) -> str:
    return endpoint.replace("http://", f"http://user:{password}@", 1)


@pytest.mark.parametrize("fault", ["hang", "unavailable", "refused", "reset"])
def test_no_secret_appears_in_logs_or_reprs(fault, endpoint_for, caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, the SDK's, requests', urllib3's
    secret = "Basic c3VwZXItc2VjcmV0LXZhbHVl"  # noqa: S105 - the value the test hunts for
    exporter = otlp_span_exporter(
        _credentialed(endpoint_for(fault), "url-pw-9Xq"),
        headers={"Authorization": secret, "x-api-key": "k-123456"},
        timeout=0.3,
    )
    processor = NonBlockingSpanProcessor(exporter, max_export_batch_size=1)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    end_spans(provider, 5)
    processor.force_flush(1000)
    processor.shutdown(timeout_millis=500)
    texts = [r.getMessage() for r in caplog.records]
    texts += [repr(exporter), repr(exporter.stats()), repr(processor.stats())]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    texts += list(capfd.readouterr())
    assert caplog.records, "the failing backend should have produced some log lines"
    for text in texts:
        assert "c3VwZXItc2VjcmV0LXZhbHVl" not in text
        assert "k-123456" not in text
        assert "url-pw-9Xq" not in text


SPAN_CONTENT = "attr-value-7QmZ2v"  # a distinctive attribute value no log line may show


@pytest.mark.parametrize("encoder", ["fast", "stock"])
@pytest.mark.parametrize("fault", ["hang", "unavailable", "reset", "bad_span"])
def test_span_contents_never_reach_a_log_line_and_no_line_is_per_span(
    fault, encoder, endpoint_for, caplog, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = endpoint_for("ok" if fault == "bad_span" else fault)
    exporter = otlp_span_exporter(endpoint, timeout=0.3, encoder=encoder)
    processor = NonBlockingSpanProcessor(exporter, max_export_batch_size=1)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("contents")
    spans = 20
    for index in range(spans):
        # A lone surrogate in the name makes a span no encoder can write.
        name = f"bad \ud800 {SPAN_CONTENT}" if fault == "bad_span" else f"op-{SPAN_CONTENT}"
        attributes = {"user.note": f"{SPAN_CONTENT}-{index}", "blob": [SPAN_CONTENT] * 3}
        span = tracer.start_span(name, attributes=attributes)
        span.add_event(f"event-{SPAN_CONTENT}", {"detail": SPAN_CONTENT})
        span.end()
    processor.force_flush(2000)
    processor.shutdown(timeout_millis=500)
    ours = [r for r in caplog.records if r.name == "otel_nonblocking"]
    texts = [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    texts += list(capfd.readouterr())
    for text in texts:
        assert SPAN_CONTENT not in text
    # Aggregated: twenty failing one-span batches make a few lines (each kind of trouble
    # at once, then a summary at shutdown), never one a span.
    assert len(ours) <= 6, [r.getMessage() for r in ours]
    if fault == "bad_span" and encoder == "fast":  # the stock encoder fails whole batches
        assert processor.stats().dropped.get("unencodable") == spans


def _late_answer_pipeline(
    backend: FakeOTLPBackend, **options: object
) -> tuple[DeadlineSpanExporter, NonBlockingSpanProcessor, TracerProvider]:
    # A 0.5 s deadline with a 5 s socket timeout; the breaker opens on the first timeout.
    inner = OTLPSpanExporter(endpoint=backend.endpoint, timeout=5, session=InterruptibleSession())
    exporter = DeadlineSpanExporter(inner, timeout_millis=500, failure_threshold=1)
    processor = NonBlockingSpanProcessor(
        exporter, max_export_batch_size=100, schedule_delay_millis=20, **options
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return exporter, processor, provider


def _wait_for_timeout(exporter: DeadlineSpanExporter) -> None:
    deadline = time.monotonic() + 5
    while not exporter.stats().outcomes.get("export_timeout") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exporter.stats().breaker_state == "open"


@pytest.mark.parametrize("spool", [False, True], ids=["no_spool", "spool"])
def test_a_late_answer_with_the_breaker_open_at_shutdown_is_exported_not_dropped_or_spooled(
    tmp_path, spool
) -> None:
    # The backend takes the batch and answers 200 0.7 s after the deadline, before the
    # socket timeout; the breaker is open when shutdown begins. The budget is long enough
    # to learn the answer: the batch is exported, neither dropped nor spooled (a later
    # process would send it again).
    backend = FakeOTLPBackend(Mode.SLOW, delay=1.2).start()
    options = {"spool_dir": str(tmp_path)} if spool else {}
    exporter, processor, provider = _late_answer_pipeline(backend, **options)
    try:
        end_spans(provider, 100)
        _wait_for_timeout(exporter)
        started = time.monotonic()
        processor.shutdown(timeout_millis=2000)
        assert time.monotonic() - started < 2.0 + SLACK
        stats = processor.stats()
        assert (stats.exported, stats.dropped_total, stats.spooled, stats.pending) == (
            100,
            0,
            0,
            0,
        ), stats
        assert list(tmp_path.glob("*.otlp")) == []
        assert exporter.stats().outcomes["late_success"] == 1
        assert len(backend.accepted_spans()) == 100
    finally:
        backend.stop()


@pytest.mark.parametrize("spool", [False, True], ids=["no_spool", "spool"])
def test_a_batch_whose_answer_is_still_out_when_shutdown_ends_is_counted_maybe_delivered(
    tmp_path, spool
) -> None:
    # The request went out and the backend holds it without answering; the shutdown budget
    # ends first. The backend may have the batch: it is neither claimed dropped nor spooled
    # (which would send it again), but counted as maybe_delivered.
    backend = FakeOTLPBackend(Mode.HANG, hang_limit=30).start()
    options = {"spool_dir": str(tmp_path)} if spool else {}
    exporter, processor, provider = _late_answer_pipeline(backend, **options)
    try:
        end_spans(provider, 100)
        _wait_for_timeout(exporter)
        started = time.monotonic()
        processor.shutdown(timeout_millis=300)
        assert time.monotonic() - started < 0.3 + SLACK
        stats = processor.stats()
        assert dict(stats.dropped) == {"maybe_delivered": 100}, stats
        assert (stats.exported, stats.spooled, stats.pending) == (0, 0, 0)
        assert stats.enqueued == stats.exported + stats.dropped_total + stats.pending
        assert list(tmp_path.glob("*.otlp")) == []
        assert backend.request_count == 1
    finally:
        backend.stop()


@pytest.mark.parametrize("spool", [False, True], ids=["no_spool", "spool"])
def test_a_batch_out_of_attempts_whose_late_answer_delivers_it_is_exported(tmp_path, spool) -> None:
    # Its only attempt timed out, then the backend answered 200: counting it as dropped
    # (export_timeout) would claim a loss the backend never saw, and spooling it would
    # send it again. (The answer comes 0.3 s after the deadline: within a whole deadline,
    # past which an abandoned attempt is cut.)
    backend = FakeOTLPBackend(Mode.SLOW, delay=0.8).start()
    options: dict[str, object] = {"max_export_attempts": 1}
    if spool:
        options["spool_dir"] = str(tmp_path)
    exporter, processor, provider = _late_answer_pipeline(backend, **options)
    try:
        end_spans(provider, 5)
        _wait_for_timeout(exporter)
        assert processor.force_flush(3000)  # waits for the answer, then it is exported
        stats = processor.stats()
        assert (stats.exported, stats.dropped_total, stats.spooled, stats.pending) == (5, 0, 0, 0)
        assert list(tmp_path.glob("*.otlp")) == []
        accepted = [span.span_id for span in backend.accepted_spans()]
        assert len(accepted) == len(set(accepted)) == 5
    finally:
        processor.shutdown(timeout_millis=500)
        backend.stop()


@pytest.mark.parametrize("spool", [False, True], ids=["no_spool", "spool"])
def test_a_batch_pushed_out_of_the_retry_buffer_while_its_answer_is_out_is_not_lost_or_resent(
    tmp_path, spool
) -> None:
    # The retry buffer is smaller than the batch, so the timed-out batch is pushed out at
    # once (retry_buffer_full, or to the spool); its late 200 then delivers it.
    backend = FakeOTLPBackend(Mode.SLOW, delay=0.8).start()
    options: dict[str, object] = {"retry_buffer_size": 5}
    if spool:
        options["spool_dir"] = str(tmp_path)
    exporter, processor, provider = _late_answer_pipeline(backend, **options)
    try:
        end_spans(provider, 10)
        _wait_for_timeout(exporter)
        assert processor.force_flush(3000)  # waits for the answer, then it is exported
        stats = processor.stats()
        assert (stats.exported, stats.dropped_total, stats.spooled, stats.pending) == (10, 0, 0, 0)
        assert list(tmp_path.glob("*.otlp")) == []
        accepted = [span.span_id for span in backend.accepted_spans()]
        assert len(accepted) == len(set(accepted)) == 10
    finally:
        processor.shutdown(timeout_millis=500)
        backend.stop()
