"""CircuitBreaker: a short, jittered back-off that an outage's history never lengthens."""

from __future__ import annotations

import random

from otel_nonblocking._breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail_probes(breaker: CircuitBreaker, clock: FakeClock, probes: int) -> None:
    for _ in range(probes):
        clock.now += breaker.retry_in()
        assert breaker.allow()
        breaker.record_failure()


def test_a_long_outage_does_not_lengthen_the_wait_for_the_next_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, backoff_seconds=1.0, clock=clock)
    breaker.record_failure()
    _fail_probes(breaker, clock, 60)  # about a minute of failed probes
    # A backend that recovers now is probed within one back-off, not 40 or 60 s later.
    assert 0.0 < breaker.retry_in() <= 1.0


def test_the_backoff_is_jittered_between_half_and_all_of_it() -> None:
    clock = FakeClock()
    draws = iter([0.0, 1.0, 0.5])
    breaker = CircuitBreaker(
        failure_threshold=1, backoff_seconds=2.0, clock=clock, jitter=lambda: next(draws)
    )
    breaker.record_failure()
    assert breaker.retry_in() == 1.0
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.retry_in() == 2.0
    clock.now += 2.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.retry_in() == 1.5


def test_waits_differ_from_one_opening_to_the_next() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, backoff_seconds=1.0, clock=clock)
    waits = set()
    for _ in range(20):
        breaker.record_failure()
        waits.add(breaker.retry_in())
        clock.now += 1.0
        assert breaker.allow()
    assert len(waits) > 1
    assert all(0.5 <= wait <= 1.0 for wait in waits)


def test_a_flush_probe_passes_an_open_breaker_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, backoff_seconds=1.0, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    assert breaker.allow(probe=True)  # the flush's export is the half-open probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(probe=True)  # only one probe at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_the_jitter_leaves_the_applications_seeded_random_sequence_alone() -> None:
    random.seed(1234)
    expected = [random.random() for _ in range(3)]
    random.seed(1234)
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, backoff_seconds=1.0, clock=clock)
    for _ in range(5):  # five openings, five jitter draws
        breaker.record_failure()
        clock.now += 1.0
        assert breaker.allow()
    assert [random.random() for _ in range(3)] == expected
