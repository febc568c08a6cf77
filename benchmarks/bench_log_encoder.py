"""Benchmark: the SDK's stock OTLP log encoder on one 512-record batch (is a fast one needed?).

Prints the median time to encode and serialize 512 log records, next to 512 spans with the
same attributes through the stock span encoder and the package's fast span encoder.

    python -m benchmarks.bench_log_encoder [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_nonblocking._compat_sdk import LogExporterBase, LogExportResult
from otel_nonblocking._encoder import SpanEncoder

BATCH = 512


class _Collect(LogExporterBase):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: list[Any] = []

    def export(self, batch: Sequence[Any]) -> Any:
        self.records.extend(batch)
        return LogExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _attributes(i: int) -> dict[str, Any]:
    return {"http.route": "/api/items", "http.status_code": 200, "user.id": f"u{i}"}


def log_records() -> list[Any]:
    """512 records as the SDK hands them to an exporter (needs an SDK whose logger takes
    the API's LogRecord: 1.35 or later)."""
    collect = _Collect()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(collect))
    logger = provider.get_logger("bench", "1.0")
    for i in range(BATCH):
        logger.emit(LogRecord(body=f"request {i} handled in 12 ms", attributes=_attributes(i)))
    provider.shutdown()
    return collect.records


def spans() -> Sequence[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench", "1.0")
    for i in range(BATCH):
        tracer.start_span("GET /api/items", attributes=_attributes(i)).end()
    provider.shutdown()
    return memory.get_finished_spans()


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    records, batch = log_records(), spans()
    encoder = SpanEncoder()
    logs = median_ms(lambda: encode_logs(records).SerializeToString(), runs)
    size = len(encode_logs(records).SerializeToString())
    stock = median_ms(lambda: encode_spans(batch).SerializeToString(), runs)
    fast = median_ms(lambda: encoder.encode(batch), runs)
    print(
        f"stock log encoder: {BATCH} records in {logs:.1f} ms "
        f"({logs * 1000 / BATCH:.1f} us/record, {size} bytes)"
    )
    print(f"{BATCH} spans, same attributes: stock {stock:.1f} ms, fast {fast:.1f} ms")


if __name__ == "__main__":
    main()
