"""Benchmark: stock OTLP span encoding vs otel_nonblocking's fast encoder, in one run.

Prints µs per span for each span shape (medians over interleaved rounds of 512-span batches)
and, with --request-path, request latency percentiles while an export worker encodes.

    python -m benchmarks.bench_encoder                 # encoder micro-benchmark
    python -m benchmarks.bench_encoder --request-path  # plus request latency under export load
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel_nonblocking import NonBlockingSpanProcessor
from otel_nonblocking._encoder import STOCK_FEATURES, SpanEncoder, stock_encode_spans

BATCH = 512
_PROMPT = (
    "You are a helpful assistant. Answer the user's question about the quarterly report, "
    "citing the sections you used. Réponds en français si la question l'est. "
)


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _provider(exporter: SpanExporter) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench", "deployment.environment": "prod"}),
        span_limits=SpanLimits(max_span_attributes=256, max_event_attributes=256),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _small(tracer: trace.Tracer, i: int) -> None:
    with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", "GET")
        span.set_attribute("http.route", "/users/{id}")
        span.set_attribute("http.response.status_code", 200)


def _issue(tracer: trace.Tracer, i: int) -> None:
    """The issue's reference span: four attributes and one event."""
    with tracer.start_as_current_span("handle") as span:
        span.set_attribute("app.user_id", f"user-{i}")
        span.set_attribute("app.items", i % 50)
        span.set_attribute("app.ratio", i / 7)
        span.set_attribute("app.cached", i % 2 == 0)
        span.add_event("checkpoint", {"step": "validate"})


def _attribute_heavy(tracer: trace.Tracer, i: int) -> None:
    parent = trace.get_current_span().get_span_context()
    with tracer.start_as_current_span(
        "db.query", kind=SpanKind.CLIENT, links=[Link(parent, {"link.kind": "follows"})]
    ) as span:
        for k in range(8):
            span.set_attribute(f"app.str.{k}", f"value-{i}-{k}")
            span.set_attribute(f"app.int.{k}", i * 1000 + k)
            span.set_attribute(f"app.float.{k}", i * 0.5 + k)
        span.set_attribute("app.flag", True)
        span.set_attribute("app.tags", ("alpha", "beta", "gamma"))
        span.set_attribute("app.ids", (i, i + 1, i + 2, i + 3))
        span.set_attribute("db.statement", "SELECT id, name FROM users WHERE id = %s" * 2)
        span.add_event("retry", {"attempt": 1, "reason": "timeout"})
        span.add_event("rows", {"count": 42})
        span.set_status(Status(StatusCode.ERROR, "deadline exceeded"))


def _llm(tracer: trace.Tracer, i: int) -> None:
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
        span.set_attribute("gen_ai.system", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute("gen_ai.request.temperature", 0.2)
        span.set_attribute("gen_ai.usage.input_tokens", 1800 + i)
        span.set_attribute("gen_ai.usage.output_tokens", 400 + i)
        span.set_attribute("gen_ai.prompt", _PROMPT * 40 + str(i))  # about 6 KB
        span.set_attribute("gen_ai.completion", "The report shows growth. " * 60 + str(i))
        span.set_attribute("langfuse.observation.metadata", '{"user": "u-1", "tags": ["a"]}')
        span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": _PROMPT * 10})


SHAPES: dict[str, Callable[[trace.Tracer, int], None]] = {
    "small": _small,
    "issue (4 attrs + 1 event)": _issue,
    "attribute-heavy": _attribute_heavy,
    "llm (long strings)": _llm,
}


def make_batch(shape: Callable[[trace.Tracer, int], None], n: int = BATCH) -> list[ReadableSpan]:
    """``n`` real SDK spans of one shape, as the export worker receives them."""
    collect = _Collect()
    provider = _provider(collect)
    tracer = provider.get_tracer(
        "bench.encoder", "1.0", schema_url="https://opentelemetry.io/schemas/1.21.0"
    )
    with tracer.start_as_current_span("root"):
        for i in range(n - 1):
            shape(tracer, i)
    provider.shutdown()
    return collect.spans[:n]


def _check_equal(batch: list[ReadableSpan], encoder: SpanEncoder) -> None:
    ours = ExportTraceServiceRequest.FromString(encoder.encode(batch))
    stock = ExportTraceServiceRequest.FromString(stock_encode_spans(batch))
    if ours != stock:
        raise SystemExit("encoders disagree: the benchmark would compare different outputs")


def _time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_encoders(rounds: int) -> list[tuple[str, float, float]]:
    """(shape, stock µs/span, ours µs/span), medians of interleaved rounds."""
    results = []
    for name, shape in SHAPES.items():
        batch = make_batch(shape)
        encoder = SpanEncoder()
        _check_equal(batch, encoder)
        stock_times: list[float] = []
        our_times: list[float] = []
        gc.collect()
        runs = [
            (stock_times, functools.partial(stock_encode_spans, batch)),
            (our_times, functools.partial(encoder.encode, batch)),
        ]
        for _ in range(rounds):
            runs.reverse()  # interleaved, each one first in every other round
            for times, encode in runs:
                times.append(_time_once(encode))
        if encoder.stats().fallback_spans:
            raise SystemExit(f"{name}: the fast path fell back to the stock encoder")
        per_span = 1e6 / len(batch)
        results.append(
            (
                name,
                statistics.median(stock_times) * per_span,
                statistics.median(our_times) * per_span,
            )
        )
    return results


class _EncodeOnly(SpanExporter):
    """An exporter whose whole cost is encoding (the network is free)."""

    def __init__(self, encode: Callable[[Sequence[ReadableSpan]], bytes]) -> None:
        self._encode = encode
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(self._encode(spans))
        return SpanExportResult.SUCCESS


def _request_latencies(
    encode: Callable[[Sequence[ReadableSpan]], bytes], requests: int, rate: float
) -> tuple[list[float], int]:
    """Latencies of ``requests`` requests started ``rate`` times a second, each ending 8
    spans, while the export worker encodes; and the number of spans dropped."""
    exporter = _EncodeOnly(encode)
    processor = NonBlockingSpanProcessor(
        exporter, max_queue_size=16384, max_export_batch_size=BATCH, schedule_delay_millis=50
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bench.request")
    latencies = []
    interval = 1.0 / rate
    next_start = time.perf_counter()
    try:
        for i in range(requests):
            pause = next_start - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # idle between requests: the worker runs then, or not
            # Measured from when the request was due: waiting for the GIL to come back
            # from sleep() is part of its latency (no coordinated omission).
            start = next_start
            next_start += interval
            with tracer.start_as_current_span("request", kind=SpanKind.SERVER):
                for _ in range(7):
                    _issue(tracer, i)
            sum(range(2000))  # the handler's own work
            latencies.append(time.perf_counter() - start)
        processor.force_flush(10_000)
    finally:
        provider.shutdown()
    return latencies, processor.stats().dropped_total


def bench_request_path(
    requests: int, rate: float, chunks: int = 4
) -> list[tuple[str, list[float], int]]:
    """Per encoder: sorted request latencies (s) and spans dropped, from interleaved chunks."""
    encoder = SpanEncoder()
    runs: list[tuple[str, Callable[[Sequence[ReadableSpan]], bytes]]] = [
        ("stock", stock_encode_spans),
        ("ours", encoder.encode),
    ]
    results: dict[str, tuple[list[float], int]] = {name: ([], 0) for name, _ in runs}
    for _, encode in runs:
        _request_latencies(encode, 200, rate)  # warm up
    for chunk in range(chunks):
        for name, encode in runs if chunk % 2 == 0 else runs[::-1]:
            gc.collect()
            latencies, dropped = _request_latencies(encode, requests // chunks, rate)
            results[name][0].extend(latencies)
            results[name] = (results[name][0], results[name][1] + dropped)
    return [(name, sorted(lat), dropped) for name, (lat, dropped) in results.items()]


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per shape")
    parser.add_argument(
        "--request-path", action="store_true", help="also run the request benchmark"
    )
    parser.add_argument("--requests", type=int, default=4000, help="requests per encoder")
    parser.add_argument("--rate", type=float, default=500, help="requests started per second")
    args = parser.parse_args(argv)
    import opentelemetry.sdk.version as sdk_version
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation

    print(
        f"python {sys.version.split()[0]}, opentelemetry-sdk {sdk_version.__version__}, "
        f"protobuf {protobuf_version} ({api_implementation.Type()}), batch {BATCH} spans, "
        f"fast path {'on' if STOCK_FEATURES.fast_path else 'OFF'}"
    )
    print(f"{'shape':<28}{'stock µs/span':>15}{'ours µs/span':>14}{'speedup':>9}")
    worst = float("inf")
    for name, stock, ours in bench_encoders(args.rounds):
        worst = min(worst, stock / ours)
        print(f"{name:<28}{stock:>15.2f}{ours:>14.2f}{stock / ours:>8.1f}x")
    print(f"slowest shape speedup: {worst:.1f}x")
    if args.request_path:
        logging.getLogger("otel_nonblocking").setLevel(logging.ERROR)  # drops are counted here
        print(
            f"\nrequest path: {args.requests} requests at {args.rate:.0f}/s, 8 spans each, "
            "through NonBlockingSpanProcessor, an exporter that only encodes"
        )
        header = ("encoder", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "> 1 ms", "dropped")
        print(f"{header[0]:<10}" + "".join(f"{h:>10}" for h in header[1:]))
        for name, latencies, dropped in bench_request_path(args.requests, args.rate):
            slow = sum(1 for latency in latencies if latency > 1e-3) / len(latencies)
            cells = [_percentile(latencies, q) * 1e3 for q in (0.5, 0.9, 0.99, 0.999)]
            print(
                f"{name:<10}"
                + "".join(f"{cell:>10.3f}" for cell in cells)
                + f"{slow:>9.1%}{dropped:>10}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
