"""Recovery from an outage is quick, and flush and shutdown results say what happened.

Against real sockets: a fake backend that is down (503, reset, hang, refused) and then
recovers. The breaker's back-off never grows with the outage's history, a flush is a
natural probe, and when nothing can go out a flush or shutdown returns at once saying so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import DeadlineSpanExporter, NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking._session import InterruptibleSession
from otel_nonblocking._setup import TracingHandle
from otel_nonblocking.testing import FakeOTLPBackend, Mode, refused_endpoint
from tests.conftest import end_spans

SLACK = 0.5  # the generous margin timing bounds allow on a shared machine


def _wait_for(condition: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def _pipeline(
    endpoint: str, **options: object
) -> tuple[NonBlockingSpanProcessor, TracerProvider, TracingHandle]:
    exporter = otlp_span_exporter(endpoint, timeout=0.5)
    settings: dict[str, object] = {"max_export_batch_size": 20, "schedule_delay_millis": 50}
    settings.update(options)
    processor = NonBlockingSpanProcessor(exporter, **settings)  # type: ignore[arg-type]
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return processor, provider, TracingHandle(processor, provider, 2.0)


@pytest.fixture
def producing() -> Iterator[Callable[[TracerProvider], None]]:
    """``producing(provider)`` ends a span every 20 ms on a thread until the test ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(provider: TracerProvider) -> None:
        def produce() -> None:
            while not stop.wait(0.02):
                end_spans(provider, 1)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(2)


@pytest.mark.parametrize("down", [Mode.UNAVAILABLE, Mode.HANG])
def test_spans_go_out_again_within_about_a_second_of_recovery(down, producing) -> None:
    # Default breaker settings; an outage long enough for the breaker to have opened
    # and failed its probes several times (before: 5 s, then 10 s, then 20 s ...).
    with FakeOTLPBackend(down, retry_after=None, hang_limit=30) as backend:
        processor, provider, _ = _pipeline(backend.endpoint)
        try:
            producing(provider)
            time.sleep(7.0)
            assert processor.exporter.stats().breaker_transitions >= 2
            assert not any(record.accepted for record in backend.requests)
            backend.mode = Mode.OK
            resumed = _wait_for(lambda: any(r.accepted for r in backend.requests), timeout=15)
            assert resumed is not None
            assert resumed < 1.5, f"{down.value}: first delivery {resumed:.2f}s after recovery"
        finally:
            processor.shutdown(timeout_millis=500)


def test_a_flush_probes_an_open_breaker_and_delivers_at_once(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "30000")  # only a probe helps
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=None) as backend:
        processor, provider, handle = _pipeline(backend.endpoint)
        try:
            end_spans(provider, 10)
            assert _wait_for(lambda: processor.exporter.available_in() > 0, timeout=5)
            backend.mode = Mode.OK  # recovered, but the breaker is open from before
            end_spans(provider, 10)
            result = handle.flush(3.0)
            assert result.ok, result
            assert result.exported == 20
            assert result.seconds < 1.0
            assert len({span.span_id for span in backend.accepted_spans()}) == 20
        finally:
            processor.shutdown(timeout_millis=500)


def test_a_flush_against_an_unreachable_backend_returns_at_once_and_keeps_the_spans() -> None:
    processor, provider, handle = _pipeline(refused_endpoint())
    try:
        end_spans(provider, 10)
        result = handle.flush(3.0)
        assert result.seconds < 1.0 + SLACK
        assert not result.ok
        assert not result.timed_out  # it gave up early, it did not run out of time
        assert result.pending == 10
        assert result.dropped == 0
        # A second flush with the breaker open: its own probe, again at once.
        result = handle.flush(3.0)
        assert result.seconds < 1.0 + SLACK
        assert result.pending == 10
    finally:
        processor.shutdown(timeout_millis=200)


def test_a_flush_during_a_hanging_outage_returns_at_once_once_the_breaker_is_open() -> None:
    with FakeOTLPBackend(Mode.HANG, hang_limit=30) as backend:
        processor, provider, handle = _pipeline(backend.endpoint)
        try:
            end_spans(provider, 10)
            assert _wait_for(lambda: processor.exporter.available_in() > 0, timeout=10)
            # The breaker is open and its last probe still hangs: no probe can go out,
            # so each invocation's flush costs little instead of its whole budget.
            for _ in range(3):
                end_spans(provider, 5)
                result = handle.flush(3.0)
                assert result.seconds < 1.0 + SLACK, result
                assert not result.ok
                assert not result.timed_out
                assert result.dropped == 0
        finally:
            processor.shutdown(timeout_millis=200)


def test_shutdown_with_the_breaker_open_and_no_spool_returns_early_saying_why() -> None:
    processor, provider, handle = _pipeline(refused_endpoint())
    end_spans(provider, 50)
    assert _wait_for(lambda: processor.exporter.available_in() > 0, timeout=5)
    result = handle.shutdown(3.0)
    assert result.seconds < 1.0 + SLACK
    assert result.dropped == 50
    assert dict(result.dropped_reasons) == {"backend_unavailable": 50}
    assert not result.timed_out
    assert not result.ok
    assert processor.stats().dropped == {"backend_unavailable": 50}


def test_shutdown_that_runs_out_of_budget_says_it_timed_out(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_FAILURES", "100")  # keep it closed
    with FakeOTLPBackend(Mode.HANG, hang_limit=30) as backend:
        _, provider, handle = _pipeline(backend.endpoint)
        end_spans(provider, 50)
        result = handle.shutdown(1.0)
        assert result.seconds < 1.0 + SLACK
        assert result.timed_out  # before: False whenever nothing was pending any more
        assert not result.ok
        # Dropped for want of time (a batch whose export ran into the deadline may still
        # count as pending when shutdown returns).
        assert result.dropped + result.pending == 50
        assert result.dropped > 0
        # Out of time; a batch whose request was still out at the end is maybe_delivered.
        assert set(result.dropped_reasons) <= {"shutdown", "maybe_delivered"}


@pytest.mark.parametrize("down", [Mode.UNAVAILABLE, Mode.RESET, Mode.HANG])
def test_retries_exhausted_through_an_outage_are_dropped_as_backend_unavailable(
    down, monkeypatch
) -> None:
    # Each attempt reached the backend (it answered 503, or reset or held the connection
    # after the request went out): the backend could judge the batch, so each is charged,
    # and a batch it keeps failing (a poison batch, for all the client can tell) ends.
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "50")
    with FakeOTLPBackend(down, retry_after=None, hang_limit=30) as backend:
        processor, provider, _ = _pipeline(backend.endpoint, max_export_attempts=2)
        try:
            end_spans(provider, 10)
            settled = _wait_for(lambda: processor.stats().dropped_total == 10, timeout=10)
            assert settled is not None, processor.stats()
            assert processor.stats().dropped == {"backend_unavailable": 10}  # not export_failed
        finally:
            processor.shutdown(timeout_millis=200)


@pytest.mark.parametrize("down", [Mode.UNAVAILABLE, Mode.HANG])
def test_an_outage_of_any_length_costs_no_span_once_the_breaker_is_open(down, monkeypatch) -> None:
    # The breaker opens at the first failure; from then on each export is its probe, and a
    # probe that fails says the backend is down, not that its batch is bad: however many
    # probes fail (far more than max_export_attempts), no span is dropped, and all are
    # delivered once the backend is back (before: dropped as backend_unavailable after 2).
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_FAILURES", "1")
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "50")
    with FakeOTLPBackend(down, retry_after=None, hang_limit=30) as backend:
        processor, provider, handle = _pipeline(backend.endpoint, max_export_attempts=2)
        try:
            end_spans(provider, 30)
            failed = _wait_for(
                lambda: _failed_exports(processor) >= 6 or processor.stats().dropped_total > 0,
                timeout=20,
            )
            assert failed is not None, processor.stats()
            assert processor.stats().dropped_total == 0, processor.stats()
            backend.mode = Mode.OK
            assert handle.flush(10.0).ok, processor.stats()
            assert sorted(backend.span_names(accepted=True)) == ["span"] * 30
            assert processor.stats().dropped_total == 0
        finally:
            processor.shutdown(timeout_millis=500)


def test_a_batch_the_backend_fails_alone_still_ends_while_the_breaker_probes(
    monkeypatch,
) -> None:
    # The backend accepts everything but one batch: its failures open the breaker, and the
    # next probe carries other spans. Those get through, the breaker closes, and the bad
    # batch, charged only for exports sent with the breaker closed, ends after its
    # attempts; nothing else is held up behind it.
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_FAILURES", "1")
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "50")
    with FakeOTLPBackend(Mode.OK, retry_after=None, poison_name="poison") as backend:
        processor, provider, _ = _pipeline(backend.endpoint, max_export_attempts=2)
        try:
            end_spans(provider, 4)
            end_spans(provider, 1, "poison")  # one batch of five, with the bad span
            processor.force_flush(2000)
            end_spans(provider, 40)
            settled = _wait_for(
                lambda: (
                    processor.stats().dropped_total == 5
                    and backend.span_names(accepted=True).count("span") == 40
                ),
                timeout=20,
            )
            assert settled is not None, processor.stats()
            assert processor.stats().dropped == {"backend_unavailable": 5}
        finally:
            processor.shutdown(timeout_millis=500)


def _failed_exports(processor: NonBlockingSpanProcessor) -> int:
    """Exports that went out (not kept back by the open breaker) and failed."""
    outcomes = processor.exporter.stats().outcomes
    return outcomes.get("export_failed", 0) + outcomes.get("export_timeout", 0)


def test_a_collector_restart_costs_no_span_however_many_probes_it_refuses(monkeypatch) -> None:
    # The collector crashes and comes back on its port. Meanwhile every export (the breaker's
    # probe, every ~50 ms here) is refused: nothing reached it, so nothing it could have
    # held against the batch. Far more refusals than max_export_attempts, and still every
    # span is delivered once after the restart (before: dropped as backend_unavailable
    # after 2 refused probes, as after 6 in a 6 s MLflow restart with the defaults).
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_BACKOFF", "50")
    first = FakeOTLPBackend(Mode.OK).start()
    second: FakeOTLPBackend | None = None
    processor, provider, handle = _pipeline(first.endpoint, max_export_attempts=2)
    try:
        end_spans(provider, 10)
        assert handle.flush(3.0).ok
        first.stop()  # crashed: its connections are cut, its port refuses
        end_spans(provider, 30)
        refused = _wait_for(
            lambda: _failed_exports(processor) >= 10 or processor.stats().dropped_total > 0,
            timeout=10,
        )
        assert refused is not None, processor.exporter.stats()
        assert dict(processor.stats().dropped) == {}
        second = FakeOTLPBackend(Mode.OK, port=first.port).start()  # back on its port
        assert _wait_for(lambda: processor.stats().pending == 0, timeout=10) is not None
        stats = processor.stats()
        assert (stats.exported, dict(stats.dropped)) == (40, {}), stats
        delivered = [span.span_id for span in second.accepted_spans()]
        assert len(delivered) == len(set(delivered)) == 30  # each span once
    finally:
        processor.shutdown(timeout_millis=500)
        first.stop()
        if second is not None:
            second.stop()


def test_a_rejected_batch_keeps_its_status_as_the_reason() -> None:
    with FakeOTLPBackend(Mode.ERROR_STATUS, error_status=401) as backend:
        processor, provider, handle = _pipeline(backend.endpoint)
        try:
            end_spans(provider, 10)
            result = handle.flush(3.0)
            assert not result.ok
            assert dict(result.dropped_reasons) == {"http_401": 10}
        finally:
            processor.shutdown(timeout_millis=200)


def test_a_probe_of_the_open_breaker_carries_a_small_batch(monkeypatch) -> None:
    # One failed full batch opens the breaker; with a long schedule delay nothing but full
    # batches goes out before the flush, however slowly a loaded machine ends the spans.
    monkeypatch.setenv("OTEL_NONBLOCKING_BREAKER_FAILURES", "1")
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=None) as backend:
        processor, provider, handle = _pipeline(
            backend.endpoint, max_export_batch_size=200, schedule_delay_millis=30_000
        )
        try:
            end_spans(provider, 400)
            assert _wait_for(lambda: processor.exporter.available_in() > 0, timeout=5)
            sent_closed = backend.request_count  # sent before the breaker opened
            backend.mode = Mode.OK
            result = handle.flush(5.0)
            assert result.ok, result
            sizes = [len(record.spans) for record in backend.requests]
            assert sent_closed >= 1
            assert sizes[:sent_closed] == [200] * sent_closed
            assert sizes[sent_closed] <= 64  # the probe: small, however large the batch
            assert sum(sizes[sent_closed:]) == 400  # then everything, once
            assert processor.stats().exported == 400
        finally:
            processor.shutdown(timeout_millis=200)


def test_a_flush_does_not_report_a_drop_decided_before_it_began() -> None:
    # One attempt per batch. It outlasts its 1 s deadline against a hanging backend (the
    # socket allows 5 s): given up on, the batch waits only to learn whether that attempt
    # got through. The backend recovers while the next flush waits and drops the held
    # connection: the attempt failed, a loss decided before that flush began.
    with FakeOTLPBackend(Mode.HANG, hang_limit=30) as backend:
        inner = OTLPSpanExporter(
            endpoint=backend.endpoint, timeout=5, session=InterruptibleSession()
        )
        processor = NonBlockingSpanProcessor(
            DeadlineSpanExporter(inner, timeout_millis=1000),
            max_export_attempts=1,
            schedule_delay_millis=50,
        )
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        handle = TracingHandle(processor, provider, 2.0)
        try:
            end_spans(provider, 3)
            first = handle.flush(1.2)
            assert (first.ok, first.pending) == (False, 3), first  # its answer is still out
            end_spans(provider, 2)
            recover = threading.Timer(0.3, lambda: setattr(backend, "mode", Mode.OK))
            recover.start()
            try:
                second = handle.flush(3.0)
            finally:
                recover.cancel()
                backend.mode = Mode.OK
            assert second.ok, second
            assert (second.exported, second.dropped, second.pending) == (2, 0, 0)
            # Still counted where it happened: among the processor's dropped spans.
            assert dict(processor.stats().dropped) == {"backend_unavailable": 3}
        finally:
            processor.shutdown(timeout_millis=200)


def test_a_flush_waits_for_the_answer_of_an_attempt_still_out_and_then_probes() -> None:
    # The breaker opened (30 s back-off) on an attempt that outlasted its 1 s deadline and
    # still waits for its answer (the socket allows 5 s). A flush cannot probe before that
    # attempt ends, but it ends well within the flush's budget (the backend recovers and
    # drops the held connection): the flush waits for it, then probes and delivers,
    # instead of returning at once as if the 30 s back-off stood in its way.
    with FakeOTLPBackend(Mode.HANG, hang_limit=30) as backend:
        inner = OTLPSpanExporter(
            endpoint=backend.endpoint, timeout=5, session=InterruptibleSession()
        )
        exporter = DeadlineSpanExporter(
            inner, timeout_millis=1000, failure_threshold=1, breaker_backoff_millis=30_000
        )
        processor = NonBlockingSpanProcessor(exporter, schedule_delay_millis=50)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        handle = TracingHandle(processor, provider, 2.0)
        try:
            end_spans(provider, 3)
            assert _wait_for(lambda: exporter.stats().breaker_state == "open", timeout=5)
            assert exporter.busy  # its answer is still out
            recover = threading.Timer(0.3, lambda: setattr(backend, "mode", Mode.OK))
            recover.start()
            try:
                result = handle.flush(3.0)
            finally:
                recover.cancel()
                backend.mode = Mode.OK
            assert result.ok, result
            assert result.exported == 3
            assert result.seconds < 3.0 + SLACK
        finally:
            processor.shutdown(timeout_millis=200)
