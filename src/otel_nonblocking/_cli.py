"""The ``otel-nonblocking`` console command: ``demo`` and ``version``.

``otel-nonblocking demo`` compares the stock SDK pipeline with ours against local fake
collectors in well under a minute; see :mod:`otel_nonblocking._demo`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from ._config import seconds_from_text
from ._demo import explanation, format_table, package_versions, run_demo
from ._errors import ConfigurationError

_PROG = "otel-nonblocking"
# Everything the demo runs logs through these; the demo hides them unless --verbose.
_NOISY_LOGGERS = ("opentelemetry", "otel_nonblocking", "urllib3")


class _CountingHandler(logging.Handler):
    """Swallows records and counts them (the demo shows the count, not the messages)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _seconds(text: str) -> float:
    """A number of seconds, as every seconds argument is checked (``_config.seconds``)."""
    try:
        return seconds_from_text("value", text)
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="OpenTelemetry tracing that never blocks the code it observes.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="compare the stock SDK pipeline with ours against local fake collectors",
        description=(
            "Start fake OTLP collectors on 127.0.0.1 (healthy, never answering, dripping), "
            "send a small instrumented workload through the stock BatchSpanProcessor + "
            "OTLPSpanExporter and through NonBlockingSpanProcessor + otlp_span_exporter, "
            "and print request latency (p50/p99) and the time force_flush() and shutdown() "
            "take for each. Needs no network and nothing but this package; about 20 s "
            "(--quick: about 10 s). OTEL_* environment variables are ignored, so the "
            "figures compare like with like. Progress goes to stderr, results to stdout."
        ),
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help="a faster pass: 1 s exporter timeout and flush budget, 2 s watchdog cap",
    )
    demo.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of a table"
    )
    demo.add_argument(
        "--requests",
        type=_positive_int,
        default=None,
        metavar="N",
        help="requests per pipeline and backend (default: 500, --quick: 400)",
    )
    demo.add_argument(
        "--cap",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how long to wait for one flush or shutdown call before reporting it as "
        "'> SECONDS' and moving on (default: 5, --quick: 2)",
    )
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="let the exporters' log messages through (hidden and counted by default)",
    )
    commands.add_parser(
        "version",
        help="print the versions of this package, the OpenTelemetry SDK and Python",
        description="Print the versions of this package, the OpenTelemetry SDK and Python.",
    )
    return parser


def _version() -> int:
    versions = package_versions()
    print(
        f"{_PROG} {versions['otel-nonblocking']} "
        f"(opentelemetry-sdk {versions['opentelemetry-sdk']}, "
        f"opentelemetry-exporter-otlp-proto-http "
        f"{versions['opentelemetry-exporter-otlp-proto-http']}, "
        f"Python {versions['python']})"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    # This process belongs to the command: the demo's pipelines are configured by their
    # arguments alone (OTEL_SDK_DISABLED, a sampler or OTEL_BSP_* would skew the figures).
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[name]
    counter = _CountingHandler()
    if not args.verbose:
        # This process belongs to the command, so the handler stays until it exits:
        # abandoned stock exports may still log while the interpreter shuts down.
        for name in _NOISY_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(counter)
            logger.propagate = False
    budget, requests, cap = (1.0, 400, 2.0) if args.quick else (2.0, 500, 5.0)
    result = run_demo(
        requests=args.requests or requests,
        budget=budget,
        cap=args.cap or cap,
        progress=sys.stderr,
    )
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0
    versions = result.versions
    print()
    print(
        f"otel-nonblocking {versions['otel-nonblocking']}, "
        f"opentelemetry-sdk {versions['opentelemetry-sdk']}, Python {versions['python']}"
    )
    print()
    print(format_table(result))
    print()
    print(explanation(result))
    if counter.count:
        print(
            f"\n({counter.count} log message(s) from the exporters were hidden; "
            "--verbose shows them.)"
        )
    print(f"\nDone in {result.wall_seconds:.1f} s.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-nonblocking`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "version":
        return _version()
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
