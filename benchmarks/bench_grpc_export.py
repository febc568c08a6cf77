"""One OTLP/gRPC span export against a collector that never answers or says UNAVAILABLE.

The SDK's ``OTLPSpanExporter(timeout=2)`` (gRPC) and ``otlp_span_exporter(protocol="grpc",
timeout=2)`` side by side, against :class:`FakeGrpcBackend` on 127.0.0.1. Needs the grpc
extra. SDK 1.33's exporter sleeps through its back-off (up to 63 s) on the caller's thread.

    python -m benchmarks.bench_grpc_export [--timeout 2] [--modes hang,unavailable]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from benchmarks._common import markdown_table, quiet_logs, say
from otel_nonblocking import otlp_span_exporter
from otel_nonblocking.testing import FakeGrpcBackend, Mode


def _spans() -> Sequence[ReadableSpan]:
    span = TracerProvider().get_tracer("bench").start_span("work")
    span.end()
    return [span]  # type: ignore[list-item]


def _timed(export: object) -> tuple[float, str]:
    started = time.monotonic()
    result = export()  # type: ignore[operator]
    return time.monotonic() - started, result.name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--modes", default="hang,unavailable")
    args = parser.parse_args(argv)
    quiet_logs()
    rows = []
    for mode in args.modes.split(","):
        with FakeGrpcBackend(Mode(mode), hang_limit=300, retry_after=None) as backend:
            stock = OTLPSpanExporter(endpoint=backend.endpoint, insecure=True, timeout=args.timeout)
            ours = otlp_span_exporter(backend.endpoint, protocol="grpc", timeout=args.timeout)
            for name, exporter in (("stock OTLPSpanExporter", stock), ("otlp_span_exporter", ours)):
                spans = _spans()
                seconds, result = _timed(lambda e=exporter, s=spans: e.export(s))
                rows.append([mode, name, f"{seconds:.2f} s", result])
            stock.shutdown()
            ours.shutdown()
    say(markdown_table(["backend", "exporter", "export() took", "result"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
