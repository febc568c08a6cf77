"""Flush deadlines: how long force_flush(2000) and shutdown() take against each fault.

The stock ``BatchSpanProcessor(OTLPSpanExporter(timeout=2))`` and ours side by side, over
real sockets on 127.0.0.1; a watchdog caps every call so the benchmark itself ends.
With ``--langfuse``: ``Langfuse.flush()``/``shutdown()``, stock vs ``bound_langfuse_flush``.

    python -m benchmarks.bench_flush [--quick] [--cap 15] [--spans 1000] [--faults hang,dns]
    python -m benchmarks.bench_flush --langfuse [--quick] [--requests 20] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from benchmarks._common import (
    Call,
    capped_call,
    machine,
    markdown_table,
    quiet_logs,
    say,
    write_json,
)
from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking.testing import FakeOTLPBackend, FakeTLSStallListener, Mode, refused_endpoint

FLUSH_MILLIS = 2000
EXPORTER_TIMEOUT = 2  # seconds, for both exporters
TARGET_SECONDS = 2.1  # ours, every call, every row
STALL_HOST = "collector.stall.test"
DNS_STALL_SECONDS = 10.0
SLOW_SECONDS = 5.0
DRIP_INTERVAL = 0.5

#: (key, description)
FAULTS: tuple[tuple[str, str], ...] = (
    ("ok", "healthy collector"),
    ("hang", "never answers"),
    ("drip", f"drips its 200 answer, a byte every {DRIP_INTERVAL:g} s"),
    ("unavailable", "503 with Retry-After: 30"),
    ("reset", "resets the connection"),
    ("refused", "connection refused"),
    ("slow", f"answers after {SLOW_SECONDS:g} s"),
    ("dns", f"DNS lookup stalls {DNS_STALL_SECONDS:g} s"),
    ("tls", "TLS handshake stalls"),
)


class _Target:
    """An endpoint showing one fault, and what to stop afterwards."""

    def __init__(self, fault: str) -> None:
        self.backend: FakeOTLPBackend | None = None
        self.listener: FakeTLSStallListener | None = None
        if fault == "refused":
            self.endpoint = refused_endpoint()
        elif fault == "tls":
            self.listener = FakeTLSStallListener().start()
            self.endpoint = self.listener.endpoint
        else:
            mode = Mode.OK if fault == "dns" else Mode(fault)
            self.backend = FakeOTLPBackend(
                mode,
                delay=SLOW_SECONDS,
                drip_interval=DRIP_INTERVAL,
                retry_after=30,
                hang_limit=120,
            ).start()
            self.endpoint = self.backend.endpoint
            if fault == "dns":
                self.endpoint = f"http://{STALL_HOST}:{self.backend.port}/v1/traces"

    def delivered(self) -> int | None:
        return None if self.backend is None else len(self.backend.accepted_spans())

    def stop(self) -> None:
        if self.backend is not None:
            self.backend.stop()
        if self.listener is not None:
            self.listener.stop()


@contextmanager
def stalling_dns() -> Iterator[threading.Event]:
    """Make lookups of STALL_HOST take DNS_STALL_SECONDS, then resolve to 127.0.0.1."""
    real = socket.getaddrinfo
    release = threading.Event()

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == STALL_HOST:
            release.wait(DNS_STALL_SECONDS)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield release
    finally:
        socket.getaddrinfo = real
        release.set()


def _processor(pipeline: str, endpoint: str) -> SpanProcessor:
    if pipeline == "stock":
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=EXPORTER_TIMEOUT))
    return NonBlockingSpanProcessor(otlp_span_exporter(endpoint, timeout=EXPORTER_TIMEOUT))


def _measure(fault: str, pipeline: str, *, spans: int, cap: float) -> dict[str, Any]:
    target = _Target(fault)
    try:
        provider = TracerProvider(shutdown_on_exit=False)
        processor = _processor(pipeline, target.endpoint)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("bench_flush")
        for index in range(spans):
            tracer.start_span("bench.flush", attributes={"index": index}).end()
        flush: Call[bool] = capped_call(
            lambda: provider.force_flush(timeout_millis=FLUSH_MILLIS), cap, name="flush"
        )
        # A stock call still running at the cap is abandoned on its daemon thread; the
        # provider has shutdown_on_exit=False, so nothing waits for it at exit either.
        shutdown: Call[None] = capped_call(provider.shutdown, cap, name="shutdown")
        delivered = target.delivered()
    finally:
        target.stop()
    row: dict[str, Any] = {
        "fault": fault,
        "pipeline": pipeline,
        "spans": spans,
        "flush": flush.as_json(),
        "shutdown": shutdown.as_json(),
        "delivered": delivered,
    }
    if isinstance(processor, NonBlockingSpanProcessor):
        stats = processor.stats()
        row["exported"] = stats.exported
        row["dropped"] = dict(stats.dropped)
        row["pending"] = stats.pending
    return row


def run(
    *,
    cap: float = 15.0,
    spans: int = 1000,
    faults: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure both pipelines against every fault; returns the results."""
    say = progress or (lambda _text: None)
    logs = quiet_logs()
    chosen = [key for key, _ in FAULTS if faults is None or key in faults]
    rows = []
    began = time.perf_counter()
    with stalling_dns():
        for number, fault in enumerate(chosen, start=1):
            for pipeline in ("ours", "stock"):
                say(f"[{number}/{len(chosen)}] {fault:<11} {pipeline:<5} ...")
                row = _measure(fault, pipeline, spans=spans, cap=cap)
                rows.append(row)
                say(describe_row(row, cap))
    met = ours_within_target(rows)
    return {
        "benchmark": "flush",
        "machine": machine(),
        "spans": spans,
        "cap_seconds": cap,
        "flush_millis": FLUSH_MILLIS,
        "exporter_timeout_seconds": EXPORTER_TIMEOUT,
        "faults": dict(FAULTS),
        "rows": rows,
        "targets": {"ours_within_2_1_s_in_every_row": met},
        "wall_seconds": round(time.perf_counter() - began, 1),
        "log_records_hidden": logs.count,
    }


def ours_within_target(rows: list[dict[str, Any]]) -> bool:
    """Every flush and shutdown of ours finished within TARGET_SECONDS."""
    return all(
        row[call]["finished"] and row[call]["seconds"] <= TARGET_SECONDS
        for row in rows
        if row["pipeline"] == "ours"
        for call in ("flush", "shutdown")
    )


def describe_row(row: dict[str, Any], cap: float) -> str:
    """The progress line's end for one measured row."""
    return f" flush {describe(row['flush'], cap)}, shutdown {describe(row['shutdown'], cap)}\n"


def describe(call: dict[str, Any], cap: float, *, result: bool = False) -> str:
    """``"2.00 s"``, ``"2.00 s → False"`` with ``result``, or ``"> 15 s"`` at the cap."""
    if not call["finished"]:
        return f"> {cap:g} s"
    if call["error"]:
        return f"{call['seconds']:.2f} s ({call['error']})"
    returned = f" → {call['result']}" if result else ""
    return f"{call['seconds']:.2f} s{returned}"


def _count(delivered: int | None) -> str:
    return "-" if delivered is None else str(delivered)  # None: no backend to count at


def to_markdown(result: dict[str, Any]) -> str:
    """The flush-deadline table as markdown."""
    cap = result["cap_seconds"]
    by_key = {(row["fault"], row["pipeline"]): row for row in result["rows"]}
    table_rows = []
    for fault, description in result["faults"].items():
        if (fault, "ours") not in by_key:
            continue
        ours, stock = by_key[fault, "ours"], by_key[fault, "stock"]
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(ours.get("dropped", {}).items()))
        table_rows.append(
            [
                f"{fault} ({description})",
                describe(stock["flush"], cap, result=True),
                describe(ours["flush"], cap, result=True),
                describe(stock["shutdown"], cap),
                describe(ours["shutdown"], cap),
                f"{_count(stock['delivered'])} / {_count(ours['delivered'])}",
                f"{ours.get('exported', 0)} exported"
                + (f"; dropped: {dropped}" if dropped else ""),
            ]
        )
    table = markdown_table(
        [
            "fault",
            "stock force_flush(2000)",
            "ours force_flush(2000)",
            "stock shutdown()",
            "ours shutdown()",
            "delivered, stock / ours",
            "ours: what happened to the spans",
        ],
        table_rows,
    )
    met = result["targets"]["ours_within_2_1_s_in_every_row"]
    return "\n".join(
        [
            f"{result['spans']:,} spans ended just before each flush; both exporters "
            f"`timeout={result['exporter_timeout_seconds']}`; stock calls capped at "
            f"{cap:g} s ('> {cap:g} s' = still running when the watchdog gave up); "
            "'→' shows what force_flush returned.",
            "",
            table,
            "",
            f"Target: ours within {TARGET_SECONDS} s in every row: "
            f"**{'met' if met else 'NOT met'}**.",
        ]
    )


def _run_langfuse(
    args: argparse.Namespace, cap: float, faults: list[str] | None, command: str
) -> None:
    """The Langfuse rows: stock ``Langfuse.flush()`` vs ``bound_langfuse_flush``."""
    from benchmarks import _langfuse_bench  # needs langfuse, so only imported here

    chosen = [(key, text) for key, text in FAULTS if faults is None or key in faults]
    with stalling_dns():
        result = _langfuse_bench.run(
            faults=chosen,
            cap=cap,
            requests=args.requests or 20,
            target_options={
                "drip_interval": DRIP_INTERVAL,
                "delay": SLOW_SECONDS,
                "stall_host": STALL_HOST,
            },
            progress=say,
        )
    markdown = _langfuse_bench.to_markdown(result, command)
    print(markdown)
    if args.json:
        write_json(args.json, result)
    if args.markdown:
        args.markdown.write_text(markdown, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_flush")
    parser.add_argument(
        "--cap",
        type=float,
        default=None,
        help="seconds to wait for one stock call before reporting '> N s' (default 15)",
    )
    parser.add_argument("--spans", type=int, default=None, help="spans per run (default 1000)")
    parser.add_argument("--faults", help="comma-separated subset of: " + ", ".join(dict(FAULTS)))
    parser.add_argument("--quick", action="store_true", help="cap 5 s")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--langfuse",
        action="store_true",
        help="measure Langfuse.flush()/shutdown(), stock vs bound_langfuse_flush(timeout=2)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="--langfuse: requests (3 observations and a score each) per run (default 20)",
    )
    parser.add_argument("--markdown", type=Path, help="--langfuse: also write the table here")
    args = parser.parse_args(argv)
    cap = args.cap or (5.0 if args.quick else 15.0)
    faults = args.faults.split(",") if args.faults else None

    if args.langfuse:
        given = sys.argv[1:] if argv is None else list(argv)
        _run_langfuse(args, cap, faults, " ".join(["python -m benchmarks.bench_flush", *given]))
        # Stock calls still running at the cap hold daemon threads (and Langfuse its
        # consumer threads); the results are written, so leave without waiting for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    result = run(cap=cap, spans=args.spans or 1000, faults=faults, progress=say)
    print(to_markdown(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
