"""Recovery: seconds from a backend's recovery to the first request it accepts from us.

A fake backend on 127.0.0.1 is down (503 without Retry-After, reset, or hang) for
``--outage`` seconds while a producer ends a span every 10 ms through
``NonBlockingSpanProcessor(otlp_span_exporter(timeout=2))`` with default settings; then
it answers 200 again, and the script reports how long the pipeline took to use it.

    python -m benchmarks.bench_recovery [--quick] [--outage 12] [--runs 2]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Sequence

MODES = ("unavailable", "reset", "hang")


def resume_seconds(mode: str, outage: float) -> float | None:
    """One run: seconds from recovery to the first accepted request (None: not in 30 s)."""
    from opentelemetry.sdk.trace import TracerProvider

    from benchmarks._common import quiet_logs
    from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter
    from otel_nonblocking.testing import FakeOTLPBackend, Mode

    quiet_logs()
    with FakeOTLPBackend(Mode(mode), retry_after=None, hang_limit=60) as backend:
        processor = NonBlockingSpanProcessor(otlp_span_exporter(backend.endpoint, timeout=2))
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("bench_recovery")
        stop = threading.Event()

        def produce() -> None:
            while not stop.wait(0.01):
                tracer.start_span("recovery-span").end()

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            time.sleep(outage)
            recovered = time.monotonic()
            backend.mode = Mode.OK
            while time.monotonic() - recovered < 30:
                # A request sent after the recovery (a hung one it releases may be
                # answered 200 too, but says nothing about how soon we came back).
                if any(r.accepted and r.received_monotonic >= recovered for r in backend.requests):
                    return time.monotonic() - recovered
                time.sleep(0.01)
            return None
        finally:
            stop.set()
            producer.join(2)
            processor.shutdown(timeout_millis=500)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_recovery")
    parser.add_argument("--quick", action="store_true", help="8 s outages, one run each")
    parser.add_argument("--outage", type=float, default=None, help="seconds down (12)")
    parser.add_argument("--runs", type=int, default=None, help="runs per mode (2)")
    args = parser.parse_args(argv)
    outage = args.outage or (8.0 if args.quick else 12.0)
    runs = args.runs or (1 if args.quick else 2)
    print(f"outage {outage:g} s, {runs} run(s) per mode; seconds from recovery to delivery")
    for mode in MODES:
        got = [resume_seconds(mode, outage) for _ in range(runs)]
        done = [g for g in got if g is not None]
        cells = ", ".join("> 30" if g is None else f"{g:.2f}" for g in got)
        median = f"{statistics.median(done):.2f}" if done else "-"
        print(f"  {mode:<12} median {median:>6} s   runs: {cells}")


if __name__ == "__main__":
    main()
