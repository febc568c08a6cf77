"""InterruptibleSession: cut connections on abort, refuse abandoned attempts, drop idle pools."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from otel_nonblocking._errors import AttemptAbandoned
from otel_nonblocking._session import InterruptibleSession
from otel_nonblocking.testing import FakeOTLPBackend, Mode


class FreezableServer:
    """Answers 200 on keep-alive connections; after ``freeze()`` the connections that
    were open go silent (a flow a NAT forgot while the process was frozen), while new
    connections are answered as before."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._frozen_before = -1
        self._count = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def freeze(self) -> None:
        self._frozen_before = self._count

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._count += 1
            self._conns.append(conn)
            worker = threading.Thread(target=self._serve, args=(conn, self._count), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(0.1)
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(rest) < length:
                    break
                buffer = rest[length:]
                if number <= self._frozen_before:
                    continue  # silent: the request is never answered
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    @property
    def connections(self) -> int:
        return self._count

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._conns:
            conn.close()
        for thread in self._threads:
            thread.join(2)


@pytest.fixture
def freezable() -> Iterator[FreezableServer]:
    server = FreezableServer()
    yield server
    server.stop()


def test_connection_gone_stale_while_idle_does_not_cost_the_next_request(freezable) -> None:
    session = InterruptibleSession(idle_reset_seconds=0.2)
    url = f"http://127.0.0.1:{freezable.port}/v1/traces"
    try:
        session.begin_attempt()
        assert session.post(url, data=b"x", timeout=1).status_code == 200
        freezable.freeze()  # the pooled connection is now dead without a FIN
        time.sleep(0.3)  # idle longer than the reset threshold, like a frozen Lambda
        session.begin_attempt()
        started = time.monotonic()
        assert session.post(url, data=b"x", timeout=2).status_code == 200
        assert time.monotonic() - started < 0.5  # a fresh connection, no read timeout
        assert freezable.connections == 2
    finally:
        session.close()


def test_without_the_idle_reset_a_stale_connection_would_cost_the_timeout(freezable) -> None:
    # The control for the test above: the same staleness, a session that keeps its pool.
    session = InterruptibleSession(idle_reset_seconds=3600)
    url = f"http://127.0.0.1:{freezable.port}/v1/traces"
    try:
        session.begin_attempt()
        assert session.post(url, data=b"x", timeout=1).status_code == 200
        freezable.freeze()
        session.begin_attempt()
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.post(url, data=b"x", timeout=0.3)
    finally:
        session.close()


class BackgroundPost(threading.Thread):
    """One ``session.post`` on a thread of its own; keeps its response or its error."""

    def __init__(self, session: requests.Session, url: str, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self._call = lambda: session.post(url, data=b"x", **kwargs)
        self.response: requests.Response | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.response = self._call()
        except BaseException as error:  # noqa: BLE001 - kept for the test's assertion
            self.error = error


def test_abort_cuts_a_blocked_read_and_refuses_the_abandoned_attempt() -> None:
    backend = FakeOTLPBackend(Mode.HANG, hang_limit=30).start()
    session = InterruptibleSession()
    try:
        session.begin_attempt()
        thread = BackgroundPost(session, backend.endpoint, timeout=20)
        started = time.monotonic()
        thread.start()
        assert backend.wait_for_requests(1, timeout=5)
        assert session.abort() >= 1
        thread.join(5)
        assert not thread.is_alive()
        assert time.monotonic() - started < 2  # far from the 20 s read timeout
        assert thread.error is not None
        with pytest.raises(AttemptAbandoned):
            session.post(backend.endpoint, data=b"x", timeout=1)
        session.begin_attempt()  # the next attempt may connect again
        backend.mode = Mode.OK
        assert session.post(backend.endpoint, data=b"x", timeout=2).status_code == 200
    finally:
        session.close()
        backend.stop()


def test_abort_sparing_sent_requests_lets_a_sent_request_read_its_late_answer() -> None:
    backend = FakeOTLPBackend(Mode.SLOW, delay=0.4).start()
    session = InterruptibleSession()
    try:
        session.begin_attempt()
        thread = BackgroundPost(session, backend.endpoint, timeout=5)
        thread.start()
        assert backend.wait_for_requests(1, timeout=5)  # the request went out
        assert session.abort(spare_sent=True) == 0  # so its connection is spared
        thread.join(5)
        assert thread.response is not None  # it read the answer that came after the abort
        assert thread.response.status_code == 200
        with pytest.raises(AttemptAbandoned):  # but the attempt may send nothing more
            session.post(backend.endpoint, data=b"x", timeout=1)
    finally:
        session.close()
        backend.stop()


def test_a_connection_is_either_spared_because_it_sent_or_cut_and_never_sends() -> None:
    from otel_nonblocking._session import _Tracker

    listener = socket.create_server(("127.0.0.1", 0))
    clients = [socket.create_connection(listener.getsockname(), timeout=2) for _ in range(2)]
    peers = [listener.accept()[0] for _ in clients]
    try:
        tracker = _Tracker()
        sending, idle = (tracker.add(sock) for sock in clients)
        sending.begin_send(tracker)
        assert tracker.abort(spare_sent=True) == 1  # only the one that had not sent
        sending.begin_send(tracker)  # a request under way goes on
        with pytest.raises(AttemptAbandoned):
            idle.begin_send(tracker)  # a cut one never starts to send
        peers[1].settimeout(2)
        assert peers[1].recv(1) == b""  # its peer saw it close
    finally:
        for sock in (*clients, *peers, listener):
            sock.close()


def test_a_kept_alive_connection_that_sent_before_carries_no_request_after_abort(
    monkeypatch,
) -> None:
    backend = FakeOTLPBackend(Mode.OK).start()
    session = InterruptibleSession()
    merge = session.merge_environment_settings

    def abandoned_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The deadline passes after the request's own check, before its first byte.
        session.abort(spare_sent=True)
        return merge(*args, **kwargs)

    try:
        session.begin_attempt()
        assert session.post(backend.endpoint, data=b"x", timeout=2).status_code == 200
        monkeypatch.setattr(session, "merge_environment_settings", abandoned_meanwhile)
        with pytest.raises(AttemptAbandoned):  # a retry on the pooled connection
            session.post(backend.endpoint, data=b"y", timeout=2)
        assert backend.request_count == 1
    finally:
        session.close()
        backend.stop()


def test_a_tls_handshake_behind_a_proxy_connect_is_cut_at_abort() -> None:
    # An HTTPS endpoint through an HTTP proxy (HTTPS_PROXY): the CONNECT line is part of
    # connecting, so the stalled handshake after it is cut, not spared as a sent request.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    tunnelled = threading.Event()
    held: list[socket.socket] = []

    def proxy() -> None:  # answers one CONNECT, then never speaks TLS
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            held.append(conn)
            conn.settimeout(5)
            received = b""
            while b"\r\n\r\n" not in received and len(received) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                received += chunk
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            tunnelled.set()

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    session = InterruptibleSession()
    session.trust_env = False  # only the proxy given here
    proxy_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        session.begin_attempt()
        poster = BackgroundPost(
            session, "https://127.0.0.1:9/v1/traces", timeout=5, proxies={"https": proxy_url}
        )
        started = time.monotonic()
        poster.start()
        assert tunnelled.wait(5)
        time.sleep(0.1)  # the client is in its TLS handshake now
        assert session.abort(spare_sent=True) == 1
        poster.join(5)
        assert not poster.is_alive()
        assert poster.error is not None
        assert time.monotonic() - started < 2  # far from the 5 s socket timeout
    finally:
        session.close()
        thread.join(6)
        for sock in (*held, listener):
            sock.close()


def test_an_abandoned_attempt_may_deliver_only_while_its_request_awaits_an_answer() -> None:
    # A request out with no answer yet may still deliver its batch; one the backend
    # answered 503 (the SDK then asleep before a retry it may no longer send) cannot.
    with FakeOTLPBackend(Mode.HANG, hang_limit=5) as hanging:
        session = InterruptibleSession()
        try:
            session.begin_attempt()
            thread = BackgroundPost(session, hanging.endpoint, timeout=2)
            thread.start()
            assert hanging.wait_for_requests(1, timeout=5)
            session.abort(spare_sent=True)
            assert session.may_deliver()
        finally:
            session.close()
            thread.join(5)
    with FakeOTLPBackend(Mode.UNAVAILABLE) as refusing:
        session = InterruptibleSession()
        try:
            session.begin_attempt()
            assert session.post(refusing.endpoint, data=b"x", timeout=2).status_code == 503
            session.abort(spare_sent=True)
            assert not session.may_deliver()
        finally:
            session.close()
