"""Helpers shared by the benchmarks: machine description, statistics, quiet logs, output.

Benchmarks are not tests: they print figures and write them to ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otel_nonblocking._demo import Call, capped_call, package_versions, percentile

__all__ = [
    "RESULTS_DIR",
    "Call",
    "CountingHandler",
    "capped_call",
    "machine",
    "markdown_table",
    "percentile",
    "quiet_logs",
    "write_json",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The SDK, urllib3 and this package log export failures through these loggers.
_NOISY_LOGGERS = ("opentelemetry", "otel_nonblocking", "urllib3")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, CPU model, OS, Python and package versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "implementation": platform.python_implementation(),
        "versions": package_versions(),
    }


class CountingHandler(logging.Handler):
    """Swallows log records (export failures are expected here) and counts them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def quiet_logs() -> CountingHandler:
    """Route the exporters' logs to a counter for the rest of the process."""
    handler = CountingHandler()
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    return handler


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def say(text: str) -> None:
    """Progress for a person watching: to stderr, at once (stdout carries the results)."""
    sys.stderr.write(text)
    sys.stderr.flush()
