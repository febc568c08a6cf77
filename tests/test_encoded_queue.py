"""Waiting spans are kept encoded: the pipeline lets go of the span objects at once.

Where the package owns the encoding (its OTLP/HTTP and OTLP/gRPC span exporters), the
worker's stage turns queued spans into encoded items (``bytes``, not tracked by the
garbage collector) on every turn, also while the backend hangs or holds exports back;
requests are assembled from the items without decoding them. Any other exporter still
gets span objects.
"""

from __future__ import annotations

import gc
import os
import random
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_nonblocking import ExportOutcome, NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking._encoder import SpanEncoder, stock_encode_spans
from otel_nonblocking._ledger import Ledger
from otel_nonblocking._log import AggregatedWarning
from otel_nonblocking._otlp_codec import OTLPCodec
from otel_nonblocking.testing import FakeGrpcBackend, FakeOTLPBackend, Mode
from tests.conftest import RecordingExporter, wait_for_child

if TYPE_CHECKING:
    from otel_nonblocking._stage import NoStage

# (The stage's own modules are imported in the tests that use them, so that the tests of
# behaviour run, and fail, against the code before the stage.)

BAD_NAME = "bad \ud800 name"  # a lone surrogate: no encoder can write it


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class _Watch(SpanProcessor):
    """Keeps a weak reference to every span the provider hands its processors."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref[ReadableSpan]] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.refs.append(weakref.ref(span))


def _processor(endpoint: str, **options: Any) -> tuple[NonBlockingSpanProcessor, TracerProvider]:
    settings: dict[str, Any] = {"max_export_batch_size": 20, "schedule_delay_millis": 50}
    settings.update(options)
    exporter = otlp_span_exporter(endpoint, timeout=0.5)
    processor = NonBlockingSpanProcessor(exporter, **settings)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(_Watch())
    provider.add_span_processor(processor)
    return processor, provider


def _end(
    provider: TracerProvider, count: int, name: str = "span"
) -> list[weakref.ref[ReadableSpan]]:
    """End ``count`` spans; weak references to the objects the processors were handed."""
    watch = provider._active_span_processor._span_processors[0]
    assert isinstance(watch, _Watch)
    tracer = provider.get_tracer("encoded-queue")
    for index in range(count):
        tracer.start_span(name, attributes={"index": index}).end()
    refs, watch.refs = watch.refs, []
    assert len(refs) == count
    return refs


def _held_items(processor: NonBlockingSpanProcessor) -> list[Any]:
    """Every item the pipeline holds: staged, in flight, to retry, in doubt."""
    ledger = processor._pipeline.ledger
    with ledger.lock:
        batches = [*ledger.retry, *(batch for batch, _ in ledger.doubtful)]
        if ledger.in_flight is not None:
            batches.append(ledger.in_flight)
        staged = list(ledger.staged._items)  # type: ignore[attr-defined]
    return staged + [item for batch in batches for item in batch.items]


def _all_let_go(refs: list[weakref.ref[ReadableSpan]]) -> bool:
    gc.collect()
    return all(ref() is None for ref in refs)


def _invariant(processor: NonBlockingSpanProcessor) -> None:
    stats = processor.stats()
    assert stats.enqueued == stats.exported + stats.dropped_total + stats.pending + stats.spooled


@pytest.fixture
def hanging() -> Iterator[FakeOTLPBackend]:
    with FakeOTLPBackend(Mode.HANG, hang_limit=10) as backend:
        yield backend


# -- the worker lets go of the span objects --


def test_queued_spans_are_let_go_while_the_backend_hangs(hanging: FakeOTLPBackend) -> None:
    processor, provider = _processor(hanging.endpoint, export_timeout_millis=5000)
    try:
        refs = _end(provider, 100)
        assert _wait_for(lambda: _all_let_go(refs)), "the pipeline still holds span objects"
        stats = processor.stats()
        assert stats.pending == 100  # nothing lost
        assert stats.exported == 0  # nothing sent yet: they were let go while waiting
        items = _held_items(processor)
        assert len(items) == 100
        assert all(type(item) is bytes and not gc.is_tracked(item) for item in items)
        _invariant(processor)
    finally:
        processor.shutdown(timeout_millis=200)


def test_spans_are_encoded_while_a_retry_after_holds_exports_back() -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=30) as backend:
        processor, provider = _processor(backend.endpoint)
        try:
            _end(provider, 20)  # one batch: 503, Retry-After 30 s holds the worker
            assert backend.wait_for_spans(20, timeout=5)
            assert _wait_for(lambda: processor.stats().retrying == 20)
            refs = _end(provider, 60)  # three batches' worth, during the hold
            assert _wait_for(lambda: _all_let_go(refs)), "spans kept as objects during a hold"
            assert processor.stats().pending == 80
            _invariant(processor)
        finally:
            processor.shutdown(timeout_millis=200)


def test_a_trickle_of_spans_is_encoded_during_a_hold_too() -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=30) as backend:
        processor, provider = _processor(backend.endpoint)
        try:
            _end(provider, 20)  # one batch: 503, Retry-After 30 s holds the worker
            assert _wait_for(lambda: processor.stats().retrying == 20)
            refs = _end(provider, 3)  # fewer than a batch: no batch-ready wake-up
            assert _wait_for(lambda: _all_let_go(refs), timeout=3), "kept for the whole hold"
            assert processor.stats().pending == 23
        finally:
            processor.shutdown(timeout_millis=200)


def test_an_exporter_that_is_not_ours_still_gets_span_objects() -> None:
    exporter = RecordingExporter()
    processor = NonBlockingSpanProcessor(exporter, schedule_delay_millis=50)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(_Watch())
    provider.add_span_processor(processor)
    try:
        _end(provider, 5)
        assert processor.force_flush(5000)
        assert not _stage_of(processor).active
        exported = exporter.spans
        assert len(exported) == 5
        assert all(isinstance(span, ReadableSpan) for span in exported)
    finally:
        processor.shutdown(timeout_millis=1000)


def test_the_stock_encoder_keeps_span_objects_and_delivers_them() -> None:
    with FakeOTLPBackend(Mode.OK) as backend:
        exporter = otlp_span_exporter(backend.endpoint, timeout=2, encoder="stock")
        processor = NonBlockingSpanProcessor(exporter, schedule_delay_millis=50)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        try:
            provider.get_tracer("stock").start_span("kept-as-object").end()
            assert processor.force_flush(5000)
            assert not _stage_of(processor).active
            assert backend.span_names(accepted=True) == ["kept-as-object"]
        finally:
            processor.shutdown(timeout_millis=1000)


# -- requests assembled from items --


def _spans_of_two_resources() -> list[ReadableSpan]:
    spans: list[ReadableSpan] = []
    for service in ("checkout", "payments"):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        for scope in ("http", "db", "cache"):
            tracer = provider.get_tracer(scope, "1.2", schema_url=f"https://x.test/{scope}")
            for index in range(4):
                with tracer.start_as_current_span(f"{scope}-{index}", attributes={"i": index}):
                    pass
        spans += memory.get_finished_spans()
    random.Random(15).shuffle(spans)  # resources and scopes interleaved
    return spans


def _decoded(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


@pytest.mark.parametrize("max_groups", [1024, 2, 0])  # the table, partly or wholly inline
def test_assembled_requests_decode_equal_to_the_stock_encoders(max_groups: int) -> None:
    from otel_nonblocking._assemble import SpanPieces

    spans = _spans_of_two_resources()
    pieces = SpanPieces(SpanEncoder(), max_groups=max_groups)
    items = [pieces.item(span) for span in spans]
    assert _decoded(pieces.assemble(items)) == _decoded(stock_encode_spans(spans))
    half = len(items) // 2  # as after a 413: each half on its own
    assert _decoded(pieces.assemble(items[:half])) == _decoded(stock_encode_spans(spans[:half]))
    assert _decoded(pieces.assemble(items[half:])) == _decoded(stock_encode_spans(spans[half:]))


def test_items_decode_equal_when_the_stock_encoder_writes_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    from otel_nonblocking import _encoder
    from otel_nonblocking._assemble import SpanPieces

    off = dataclasses.replace(_encoder.STOCK_FEATURES, fast_path=False)
    monkeypatch.setattr(_encoder, "STOCK_FEATURES", off)  # the probe could not tell
    spans = _spans_of_two_resources()
    encoder = SpanEncoder()
    pieces = SpanPieces(encoder)
    items = [pieces.item(span) for span in spans]
    assert _decoded(pieces.assemble(items)) == _decoded(stock_encode_spans(spans))
    assert encoder.stats().fallback_spans == len(spans)


def test_groups_numbered_past_one_byte_assemble_equal_too() -> None:
    from otel_nonblocking._assemble import SpanPieces

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "many-scopes"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for scope in range(300):  # group numbers up to 300: two-byte varints
        provider.get_tracer(f"scope-{scope}").start_span(f"span-{scope}").end()
    spans = list(memory.get_finished_spans())
    random.Random(300).shuffle(spans)
    pieces = SpanPieces(SpanEncoder())
    items = [pieces.item(span) for span in spans]
    assert pieces.groups == 300
    assert _decoded(pieces.assemble(items)) == _decoded(stock_encode_spans(spans))


def test_an_assembled_batch_over_the_size_limit_is_split_and_a_span_too_large_alone_rejected() -> (
    None
):
    from otel_nonblocking._assemble import SpanPieces

    spans = _spans_of_two_resources()
    pieces = SpanPieces(SpanEncoder())
    items = [pieces.item(span) for span in spans]
    limit = len(pieces.assemble(items[:5])) + 1
    codec = OTLPCodec(stock_encode_spans, lambda data: None, limit, True, pieces)  # type: ignore[arg-type,return-value]
    assert codec.encode_batch(items, single=True).split  # the worker is to halve it
    encoded = codec.encode_batch(items)
    assert sum(request.spans for request in encoded.requests) == len(items)
    assert all(len(request.data) <= limit for request in encoded.requests)
    received = [span for r in encoded.requests for span in _decoded(r.data).resource_spans]
    assert sum(len(s.spans) for rs in received for s in rs.scope_spans) == len(items)
    tiny = OTLPCodec(stock_encode_spans, lambda data: None, 10, True, pieces)  # type: ignore[arg-type,return-value]
    assert dict(tiny.encode_batch(items[:3]).rejected) == {"too_large": 3}


# -- numbering: a span the encoder rejects is dropped at once, and flushes stay exact --


def test_the_staged_items_keep_batches_consecutive_across_gaps() -> None:
    from otel_nonblocking._retry import Staged

    staged = Staged()
    for number in (0, 1, 2, 4, 5):  # 3 was dropped on its way
        staged.add(number, b"x")
    first = staged.take(10)
    assert (first.start, len(first)) == (0, 3)
    assert staged.first() == 4
    second = staged.take(10)
    assert (second.start, len(second)) == (4, 2)
    assert not staged
    assert staged.size_bytes == 0


def test_a_backlog_of_staged_items_is_packed_and_comes_back_whole_and_in_order() -> None:
    from otel_nonblocking._retry import PACK_AFTER, Staged

    staged = Staged(41, packs=True)
    added = []
    for number in range(5 * PACK_AFTER):
        if number % 777 == 5:
            continue  # dropped on its way: a gap
        item = b"\x01\x12" + f"span {number} of a service, attributes alike".encode()
        staged.add(number, item)
        added.append((number, item))
    unpacked = sum(len(item) + 41 for _, item in added)
    assert staged.size_bytes < unpacked / 2  # the backlog is compressed
    assert len(staged) == len(added)
    taken = []
    while staged:
        batch = staged.take(300)
        assert all(type(item) is bytes for item in batch.items)
        taken += [(batch.start + i, item) for i, item in enumerate(batch.items)]
    assert taken == added  # every item, in order, each with its own number
    assert staged.size_bytes == 0
    for number, item in added:
        staged.add(number, item)
    cleared = staged.clear()  # at shutdown: counted by number, not unpacked
    assert sum(len(batch) for batch in cleared) == len(added)
    assert [batch.start for batch in cleared][:2] == [0, 6]  # runs: 0-4, then after 5
    assert not staged
    assert staged.size_bytes == 0


def test_a_flush_over_a_gap_is_not_done_before_the_staged_items_are_settled() -> None:
    ledger = Ledger(100, AggregatedWarning("test"))
    ledger.staged.add(0, b"x")  # type: ignore[attr-defined]
    ledger.taken = 2  # item 1 was rejected by the encoder
    request = ledger.add_flush(2, _deadline())
    assert not request.done.is_set()  # item 0 is staged: not settled
    ledger.count_exported(ledger.staged.take(5))  # type: ignore[attr-defined]
    ledger.resolve_flushes()
    assert request.done.is_set()


def test_staged_items_are_pending_and_queued_and_counted_once_in_enqueued() -> None:
    ledger = Ledger(100, AggregatedWarning("test"))
    for number in range(3):
        ledger.staged.add(number, b"item")  # type: ignore[attr-defined]
    ledger.taken = 3
    stats = ledger.snapshot(queued=2, full=1, closed=0)  # two span objects not staged yet
    assert stats.enqueued == 6  # 3 staged + 2 queued + 1 turned away
    assert stats.queue_depth == 5
    assert stats.pending == 5
    assert stats.enqueued == stats.exported + stats.dropped_total + stats.pending


def _deadline() -> Any:
    from otel_nonblocking._deadline import Deadline

    return Deadline.after(5.0, time.monotonic)


def test_a_bad_span_costs_one_span_and_is_dropped_before_any_export(
    hanging: FakeOTLPBackend,
) -> None:
    processor, provider = _processor(hanging.endpoint, export_timeout_millis=5000)
    try:
        _end(provider, 3)
        _end(provider, 1, BAD_NAME)
        _end(provider, 3)
        # The backend never answers: the drop can only have happened at encode time.
        assert _wait_for(lambda: processor.stats().dropped.get("unencodable") == 1)
        assert processor.stats().pending == 6
        _invariant(processor)
    finally:
        processor.shutdown(timeout_millis=200)


def test_a_span_the_stage_drops_is_no_finished_export() -> None:
    # otel.sdk.exporter.span.exported counts spans whose export is over; a span the stage
    # rejects never reaches the exporter, so it is dropped but not among ``finished``.
    with FakeOTLPBackend(Mode.OK) as backend:
        processor, provider = _processor(backend.endpoint)
        try:
            _end(provider, 3)
            _end(provider, 1, BAD_NAME)
            assert processor.force_flush(5000) is False  # one span was lost
            stats = processor.stats()
            assert stats.dropped.get("unencodable") == 1
            assert dict(stats.finished) == {"success": 3}
        finally:
            processor.shutdown(timeout_millis=1000)


def test_flushes_are_exact_with_spans_the_encoder_rejected() -> None:
    with FakeOTLPBackend(Mode.OK) as backend:
        processor, provider = _processor(backend.endpoint, schedule_delay_millis=10_000)
        try:
            _end(provider, 2)
            _end(provider, 1, BAD_NAME)
            _end(provider, 2)
            started = time.monotonic()
            assert processor.force_flush(5000) is False  # one of its spans was dropped
            assert time.monotonic() - started < 2.5  # the gap did not make it wait
            assert backend.wait_for_spans(4, timeout=5)
            _end(provider, 3)  # after the drop: a later flush is ok
            assert processor.force_flush(5000) is True
            _end(provider, 1, BAD_NAME)  # the last span queued is the bad one
            started = time.monotonic()
            assert processor.force_flush(5000) is False
            assert time.monotonic() - started < 2.5
            stats = processor.stats()
            assert stats.exported == 7
            assert stats.dropped.get("unencodable") == 2
            _invariant(processor)
        finally:
            processor.shutdown(timeout_millis=1000)


def test_staged_items_over_the_memory_budget_are_dropped_as_queue_full(
    hanging: FakeOTLPBackend,
) -> None:
    budget = 8 * 1024  # about 38 encoded spans (and a door of two span objects)
    processor, provider = _processor(
        hanging.endpoint, export_timeout_millis=5000, max_queue_bytes=budget
    )
    ledger = processor._pipeline.ledger
    try:
        deadline = time.monotonic() + 8
        # Slowly enough that spans reach the stage (the door counts its own drops apart).
        while not ledger.dropped.get("queue_full") and time.monotonic() < deadline:
            _end(provider, 1)
            time.sleep(0.02)
        assert ledger.dropped.get("queue_full", 0) > 0  # turned away by the stage
        staged = ledger.staged  # type: ignore[attr-defined]
        assert staged.size_bytes < budget + 300  # over the budget by one span at most
        _invariant(processor)
    finally:
        processor.shutdown(timeout_millis=200)


# -- every guarantee stays on the encoded form --


def test_an_outage_then_recovery_delivers_everything_once() -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=1) as backend:
        processor, provider = _processor(backend.endpoint)
        try:
            assert _stage_of(processor).active
            for _ in range(10):
                _end(provider, 20)
                time.sleep(0.02)
            backend.mode = Mode.OK
            assert processor.force_flush(10_000)
            ids = [span.span_id for span in backend.accepted_spans()]
            assert len(ids) == 200  # all of them
            assert len(set(ids)) == 200  # no duplicates
            stats = processor.stats()
            assert stats.exported == 200
            assert stats.dropped_total == 0
        finally:
            processor.shutdown(timeout_millis=1000)


def test_a_packed_backlog_is_delivered_whole_once_the_backend_is_back() -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=1) as backend:
        processor, provider = _processor(backend.endpoint, max_export_batch_size=512)
        try:
            _end(provider, 512)  # one batch: 503; it is retried first, the rest waits
            assert _wait_for(lambda: processor.stats().retrying == 512)
            for _ in range(6):
                _end(provider, 500)
            staged = processor._pipeline.ledger.staged  # type: ignore[attr-defined]
            assert _wait_for(lambda: len(staged) == 3000)
            assert staged.size_bytes < 3000 * 120  # packed: not 216 bytes a span
            backend.mode = Mode.OK
            assert processor.force_flush(15_000)
            ids = [span.span_id for span in backend.accepted_spans()]
            assert len(ids) == 3512
            assert len(set(ids)) == 3512
            assert processor.stats().exported == 3512
        finally:
            processor.shutdown(timeout_millis=1000)


def test_encoded_items_go_to_the_spool_and_come_back_whole(tmp_path: Path) -> None:
    with FakeOTLPBackend(Mode.UNAVAILABLE, retry_after=1) as backend:
        processor, provider = _processor(backend.endpoint, spool_dir=str(tmp_path))
        _end(provider, 30)
        _end(provider, 1, BAD_NAME)
        assert _wait_for(lambda: _stage_of(processor).active)
        processor.shutdown(timeout_millis=1000)  # what is left goes to disk
        stats = processor.stats()
        assert stats.spooled + stats.dropped.get("unencodable", 0) == 31
        backend.mode = Mode.OK
        later, _ = _processor(backend.endpoint, spool_dir=str(tmp_path))
        try:
            assert _wait_for(lambda: later.stats().recovered == stats.spooled, timeout=10)
        finally:
            later.shutdown(timeout_millis=1000)
        names = [span.name for span in backend.accepted_spans()]
        assert len(names) == stats.spooled == 30
        assert set(names) == {"span"}


def _stage_of(processor: NonBlockingSpanProcessor) -> NoStage:
    return processor._pipeline.worker.stage  # type: ignore[attr-defined,no-any-return]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_an_empty_stage_and_keeps_its_spans_encoded(
    hanging: FakeOTLPBackend,
) -> None:
    processor, provider = _processor(hanging.endpoint, export_timeout_millis=5000)
    try:
        _end(provider, 40)
        assert _wait_for(lambda: len(_held_items(processor)) == 40)
        pid = os.fork()
        if pid == 0:  # the child: a fresh pipeline, without the parent's 40 spans
            code = 1
            try:
                refs = _end(provider, 30)
                if not _wait_for(lambda: _all_let_go(refs)):
                    code = 2
                elif processor.stats().pending != 30:
                    code = 3
                elif not all(type(item) is bytes for item in _held_items(processor)):
                    code = 4
                else:
                    code = 0
            finally:
                os._exit(code)
        assert wait_for_child(pid, timeout=20) == 0
        assert processor.stats().pending == 40  # the parent's, untouched
    finally:
        processor.shutdown(timeout_millis=200)


# -- OTLP/gRPC: our gRPC exporter encodes too, so its waiting spans are kept encoded --


def _grpc_processor(
    endpoint: str, **options: Any
) -> tuple[NonBlockingSpanProcessor, TracerProvider]:
    settings: dict[str, Any] = {"max_export_batch_size": 20, "schedule_delay_millis": 50}
    settings.update(options)
    exporter = otlp_span_exporter(endpoint, protocol="grpc", timeout=0.5)
    processor = NonBlockingSpanProcessor(exporter, **settings)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(_Watch())
    provider.add_span_processor(processor)
    return processor, provider


def _grpc_span_ids(backend: FakeGrpcBackend) -> list[bytes]:
    return [
        span.span_id
        for request in backend.requests
        if request.accepted
        for resource in request.decoded.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


def test_grpc_queued_spans_are_let_go_while_the_backend_hangs() -> None:
    with FakeGrpcBackend(Mode.HANG, hang_limit=10) as backend:
        processor, provider = _grpc_processor(backend.endpoint, export_timeout_millis=5000)
        try:
            refs = _end(provider, 100)
            assert _wait_for(lambda: _all_let_go(refs)), "the pipeline still holds span objects"
            stats = processor.stats()
            assert stats.pending == 100  # nothing lost
            assert stats.exported == 0  # nothing delivered: they were let go while waiting
            items = _held_items(processor)
            assert len(items) == 100
            assert all(type(item) is bytes and not gc.is_tracked(item) for item in items)
            _invariant(processor)
        finally:
            processor.shutdown(timeout_millis=200)


def test_grpc_requests_assembled_from_items_decode_equal_to_the_stock_encoders() -> None:
    spans = _spans_of_two_resources()
    with FakeGrpcBackend() as backend:
        exporter = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=2)
        codec = exporter.codec  # the items are the stage's: numbered in this codec's table
        assert codec is not None
        assert codec.exports
        assert codec.pieces is not None
        items = [codec.pieces.item(span) for span in spans]
        report = exporter.export_report(items)
        assert report.outcome is ExportOutcome.SUCCESS, report
        [request] = backend.requests
        assert request.accepted
        assert request.decoded == _decoded(stock_encode_spans(spans))
        exporter.shutdown()


def test_grpc_an_outage_then_recovery_delivers_each_span_once() -> None:
    with FakeGrpcBackend(Mode.UNAVAILABLE, retry_after=1) as backend:
        processor, provider = _grpc_processor(backend.endpoint)
        try:
            assert _stage_of(processor).active
            for _ in range(10):
                _end(provider, 20)
                time.sleep(0.02)
            assert _wait_for(lambda: backend.call_count > 0)
            backend.mode = Mode.OK
            assert processor.force_flush(10_000)
            ids = _grpc_span_ids(backend)
            assert len(ids) == 200  # all of them
            assert len(set(ids)) == 200  # each once
            stats = processor.stats()
            assert (stats.exported, stats.dropped_total) == (200, 0), stats
        finally:
            processor.shutdown(timeout_millis=1000)


def test_grpc_encoded_items_go_to_the_spool_and_come_back_whole(tmp_path: Path) -> None:
    with FakeGrpcBackend(Mode.UNAVAILABLE, retry_after=1) as backend:
        processor, provider = _grpc_processor(backend.endpoint, spool_dir=str(tmp_path))
        _end(provider, 30)
        assert _wait_for(lambda: _stage_of(processor).active)
        processor.shutdown(timeout_millis=1000)  # what is left goes to disk
        stats = processor.stats()
        assert stats.spooled > 0
        assert stats.spooled + stats.exported == 30, stats
        backend.mode = Mode.OK
        later, _ = _grpc_processor(backend.endpoint, spool_dir=str(tmp_path))
        try:
            assert _wait_for(lambda: later.stats().recovered == stats.spooled, timeout=10)
        finally:
            later.shutdown(timeout_millis=1000)
        ids = _grpc_span_ids(backend)
        assert len(ids) == len(set(ids)) == stats.spooled  # each spooled span once
