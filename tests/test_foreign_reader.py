"""A metric reader the package did not build: its flush and shutdown under the one budget."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_nonblocking._deadline import Deadline
from otel_nonblocking._foreign_reader import ForeignReader
from tests.conftest import wait_for_child

BUDGET_MARGIN = 0.5


class _Reader(InMemoryMetricReader):
    """Its force_flush and shutdown block while ``hang`` is set, or raise, as asked."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = False
        self.raise_ = False
        self.release = threading.Event()
        self.flushes = 0
        self.shutdowns = 0

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self.flushes += 1
        if self.raise_:
            raise RuntimeError("reader bug")
        if self.hang:
            self.release.wait()
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.shutdowns += 1
        if self.hang:
            self.release.wait()


def test_flush_and_shutdown_call_the_reader_and_report_it() -> None:
    reader = _Reader()
    part = ForeignReader(reader)
    assert part.flush_within(Deadline.after(1)).complete
    assert reader.flushes == 1
    assert part.shutdown_within(Deadline.after(1)).complete
    assert part.shutdown_within(Deadline.after(1)).complete  # once only
    assert reader.shutdowns == 1
    assert part.stats().shut_down
    assert part.flush_within(Deadline.after(1)).complete  # after shutdown: nothing to do
    assert reader.flushes == 1


def test_a_reader_that_raises_is_incomplete_and_never_raises_here() -> None:
    reader = _Reader()
    reader.raise_ = True
    assert not ForeignReader(reader).flush_within(Deadline.after(1)).complete


def test_a_hanging_reader_costs_its_budget_and_no_second_thread() -> None:
    reader = _Reader()
    reader.hang = True
    part = ForeignReader(reader)
    try:
        started = time.monotonic()
        assert not part.flush_within(Deadline.after(0.2)).complete
        assert time.monotonic() - started < 0.2 + BUDGET_MARGIN
        assert not part.flush_within(Deadline.after(0.2)).complete  # fails fast meanwhile
        assert not part.shutdown_within(Deadline.after(0.2)).complete
        assert reader.flushes == 1  # the hung call still runs; no second one was started
        assert reader.shutdowns == 0
    finally:
        reader.release.set()


def test_a_forked_child_is_not_held_back_by_the_parents_hung_call() -> None:
    reader = _Reader()
    reader.hang = True
    part = ForeignReader(reader)
    try:
        assert not part.flush_within(Deadline.after(0.1)).complete
        reader.hang = False
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread does not exist here
            ok = part.flush_within(Deadline.after(2)).complete
            os._exit(0 if ok else 1)
        assert wait_for_child(pid) == 0
    finally:
        reader.release.set()
