"""The flushables registry: what module-level flush()/shutdown() cover besides processors.

No threads, no Langfuse: fake flushables that record the deadline they were given.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import otel_nonblocking
from otel_nonblocking import _state
from otel_nonblocking._deadline import Deadline
from otel_nonblocking._state import FlushCounts


class _Fake:
    def __init__(self, counts: FlushCounts, *, raises: bool = False) -> None:
        self.counts = counts
        self.raises = raises
        self.calls: list[tuple[str, float]] = []

    def flush_within(self, deadline: Deadline) -> FlushCounts:
        return self._call("flush", deadline)

    def shutdown_within(self, deadline: Deadline) -> FlushCounts:
        return self._call("shutdown", deadline)

    def _call(self, what: str, deadline: Deadline) -> FlushCounts:
        self.calls.append((what, deadline.remaining()))
        if self.raises:
            raise RuntimeError("integration bug")
        return self.counts


@pytest.fixture
def register() -> Iterator[list[_Fake]]:
    added: list[_Fake] = []
    yield added
    for fake in added:
        _state.unregister_flushable(fake)


def _add(register: list[_Fake], fake: _Fake) -> _Fake:
    _state.register_flushable(fake)
    _state.register_flushable(fake)  # registering twice keeps one entry
    register.append(fake)
    return fake


def test_flush_adds_the_counts_of_every_flushable_under_one_deadline(register) -> None:
    first = _add(register, _Fake(FlushCounts(exported=2, dropped=1)))
    second = _add(register, _Fake(FlushCounts(exported=3, pending=1, other_pending=2)))

    result = otel_nonblocking.flush(0.5)

    assert first.calls[0][0] == "flush"
    assert len(first.calls) == len(second.calls) == 1
    assert all(0 < left <= 0.5 for _, left in first.calls + second.calls)
    assert (result.exported, result.dropped, result.pending) == (5, 1, 3)
    assert not result.timed_out  # every flushable completed
    assert not result.ok  # but something is still pending


def test_an_incomplete_or_raising_flushable_makes_the_result_timed_out(register) -> None:
    _add(register, _Fake(FlushCounts(pending=1, complete=False)))
    broken = _add(register, _Fake(FlushCounts(), raises=True))

    result = otel_nonblocking.flush(0.2)

    assert broken.calls  # it ran, and raising did not stop the flush
    assert result.timed_out
    assert result.pending == 1


def test_shutdown_calls_shutdown_within_and_unregister_forgets(register) -> None:
    fake = _add(register, _Fake(FlushCounts(exported=1)))
    assert otel_nonblocking.shutdown(0.2).exported == 1
    assert fake.calls[-1][0] == "shutdown"

    _state.unregister_flushable(fake)
    otel_nonblocking.flush(0.2)
    assert len(fake.calls) == 1
