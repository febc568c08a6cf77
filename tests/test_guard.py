"""GuardedLock never waits on its own thread; Wake wakes a waiting thread without a lock."""

from __future__ import annotations

import math
import threading
import time

from otel_nonblocking._guard import GuardedLock, Wake


def test_guarded_lock_refuses_its_own_thread_at_once() -> None:
    lock = GuardedLock()
    with lock:
        started = time.monotonic()
        assert not lock.acquire_within(5.0)
        assert time.monotonic() - started < 0.5
        assert lock.held_here()
    assert not lock.held_here()
    assert lock.acquire_within(0.0)
    lock.release()


def test_guarded_lock_waits_for_another_thread_at_most_its_bound() -> None:
    lock = GuardedLock()
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(5)
    started = time.monotonic()
    assert not lock.acquire_within(0.1)
    assert 0.05 < time.monotonic() - started < 0.1 + 0.5
    release.set()
    assert lock.acquire_within(5.0)
    lock.release()
    thread.join(5)


def test_wake_wakes_a_waiting_thread_and_stays_set_until_cleared() -> None:
    wake = Wake()
    assert not wake.wait(0.01)
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(wake.wait(5)))
    thread.start()
    time.sleep(0.05)
    wake.set()
    thread.join(5)
    assert woke == [True]
    assert wake.is_set()
    assert wake.wait(0)  # still set
    wake.clear()
    assert not wake.is_set()
    assert not wake.wait(0.01)
    wake.set()
    wake.set()  # twice: one wake-up, cleared by one clear
    wake.clear()
    assert not wake.wait(0.01)


def test_every_wait_takes_any_number_of_seconds() -> None:
    # One clamp (_deadline.wait_seconds) for every wait: a NaN made a lock's wait raise
    # ValueError; it now waits not at all, and a huge bound as long as a wait can.
    lock = GuardedLock()
    assert lock.acquire_within(math.nan)
    lock.release()
    assert lock.acquire_within(1e300)
    lock.release()
    wake = Wake()
    assert not wake.wait(math.nan)
    assert not wake.wait(-1.0)
    wake.set()
    assert wake.wait(1e300)
