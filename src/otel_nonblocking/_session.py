"""A ``requests.Session`` whose in-flight connections can be cut from another thread.

The deadline exporter calls :meth:`InterruptibleSession.abort` when it gives up on an
attempt: sockets in use are shut down (a blocked read or TLS handshake returns at once)
and the abandoned attempt cannot open new connections until the next one begins. A
resolver call (``getaddrinfo``) or a blocking TCP ``connect`` cannot be interrupted;
they end by themselves at the socket timeout, and their connection is then refused.

At the deadline itself, a connection that has begun to send its request is spared (see
:meth:`InterruptibleSession.abort`): the backend may already hold the whole batch, and
only its answer can say whether it took it.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import math
import socket
import threading
import time
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

from . import _compat_sdk
from ._errors import AttemptAbandoned
from ._state import after_fork_in_child

#: A pooled connection idle this long is not trusted: a process frozen between
#: invocations (AWS Lambda) or a NAT that forgot the flow leaves connections that look
#: open but are dead, and a request on one would wait out the whole deadline.
IDLE_RESET_SECONDS = 15.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or HTTP-date), or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class _Tracker:
    """The live connections of one session and whether the current attempt is aborted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: weakref.WeakValueDictionary[int, _Handle] = weakref.WeakValueDictionary()
        self._next = 0
        self.aborted = False
        #: A request of the current attempt has begun to go out (the session's ``reached``).
        self.sent = False

    def check(self) -> None:
        if self.aborted:
            raise AttemptAbandoned("export attempt abandoned at its deadline")

    def add(self, sock: socket.socket) -> _Handle:
        handle = _Handle(sock)
        with self._lock:
            self._next += 1
            self._handles[self._next] = handle
        return handle

    def abort(self, *, spare_sent: bool = False) -> int:
        """Refuse new connections and shut down tracked sockets; return how many.

        With ``spare_sent``, a socket that has begun to send its current request is left
        alone. Once bytes are handed to the kernel, a shutdown no longer keeps them from
        the backend (it sends what is buffered, then FIN), so the backend may take the
        batch and answer 200 to a client that already hung up; the batch would then be
        sent twice. Left alone, the attempt reads the answer, or ends at its own socket
        timeout.
        """
        self.aborted = True
        with self._lock:
            handles = list(self._handles.values())
        cut = 0
        for handle in handles:
            cut += handle.cut(spare_sent=spare_sent)
        return cut

    def may_deliver(self) -> bool:
        """False only when the attempt is known to have failed: an answer said so (a 503,
        say, the SDK now asleep before a retry it may no longer send) and no request of it
        is out with its answer still due or a 2xx body still coming. Without such an
        answer, nothing is known, and the attempt may still deliver its batch."""
        with self._lock:
            handles = list(self._handles.values())
        if any(handle.may_deliver() for handle in handles):
            return True
        return not any(handle.failed() for handle in handles)

    def reset(self) -> None:
        self.aborted = False
        self.sent = False


class _Handle:
    """A duplicate of a connection's socket, kept so that the connection can be cut.

    It is a ``dup`` of the file descriptor: ``shutdown`` on it ends the TCP connection
    even while a TLS wrapper owns the original, and closing it never touches another
    file that later reuses the original number.
    """

    def __init__(self, sock: socket.socket) -> None:
        #: True once the connection has begun to send its current request.
        self.sent = False
        #: The status of the answer to its current request, once its status line is in.
        self.status: int | None = None
        # Orders "begin to send" against "cut": a connection is either spared because it
        # has sent, or cut before its first byte and then never sends.
        self._lock = threading.Lock()
        self._dup: socket.socket | None = sock.dup()
        self._finalizer = weakref.finalize(self, _Handle._close_dup, self._dup)

    @staticmethod
    def _close_dup(dup: socket.socket) -> None:
        with contextlib.suppress(OSError):
            dup.close()

    def begin_request(self, tracker: _Tracker) -> None:
        """A new request on this (kept-alive) connection: nothing of it is sent yet.

        Raises if the attempt was abandoned: a spared connection may finish reading its
        answer, never carry another request.
        """
        with self._lock:
            tracker.check()
            self.sent = False
            self.status = None

    def may_deliver(self) -> bool:
        """Its current request went out and no answer has said it failed."""
        status = self.status
        return self.sent and (status is None or 200 <= status < 300)

    def failed(self) -> bool:
        """The answer to its current request said it failed."""
        status = self.status
        return status is not None and not 200 <= status < 300

    def begin_send(self, tracker: _Tracker) -> None:
        """Mark the connection as sending; raise if its attempt was abandoned first."""
        if self.sent:
            return
        with self._lock:
            tracker.check()
            self.sent = tracker.sent = True

    def cut(self, *, spare_sent: bool = False) -> int:
        with self._lock:
            dup = self._dup
            if dup is None or (spare_sent and self.sent):
                return 0
            try:
                dup.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):  # closed meanwhile by its connection (fd -1)
                return 0
            return 1

    def close(self) -> None:
        self._dup = None
        self._finalizer()


def _tracking_connection(base: type[HTTPConnection], tracker: _Tracker) -> type[HTTPConnection]:
    class TrackedConnection(base):  # type: ignore[valid-type,misc]
        _nb_handle: _Handle | None = None
        _nb_connecting = False

        def _new_conn(self) -> socket.socket:
            tracker.check()
            sock: socket.socket = super()._new_conn()
            if tracker.aborted:  # the attempt was abandoned while this one resolved/connected
                sock.close()
                tracker.check()
            self._nb_handle = tracker.add(sock)
            return sock

        def connect(self) -> None:
            self._nb_connecting = True
            try:
                super().connect()
            finally:
                self._nb_connecting = False

        def putrequest(self, *args: Any, **kwargs: Any) -> None:
            # Every request starts here (urllib3 1.26 and 2.x), before any byte of it.
            handle = self._nb_handle
            if handle is not None:
                handle.begin_request(tracker)
            super().putrequest(*args, **kwargs)

        def send(self, data: Any) -> None:
            # http.client (and urllib3 over it) sends the request line, headers and
            # body through here, connecting first if need be: connect (and TLS) happen
            # before the mark, so a stalled handshake is still cut at the deadline, and
            # an attempt abandoned before its first byte sends nothing.
            if self.sock is None:
                self.connect()
            handle = self._nb_handle
            if handle is not None:
                if self._nb_connecting:  # a proxy's CONNECT: still connecting, not sending
                    tracker.check()
                else:
                    handle.begin_send(tracker)
            super().send(data)

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            response = super().getresponse(*args, **kwargs)
            handle = self._nb_handle
            if handle is not None:
                status = getattr(response, "status", None)
                handle.status = status if isinstance(status, int) else None
            return response

        def close(self) -> None:
            try:
                super().close()
            finally:
                handle, self._nb_handle = self._nb_handle, None
                if handle is not None:
                    handle.close()

    TrackedConnection.__name__ = f"Tracked{base.__name__}"
    TrackedConnection.__qualname__ = TrackedConnection.__name__
    return TrackedConnection


class _TrackingAdapter(HTTPAdapter):
    def __init__(self, tracker: _Tracker, **kwargs: Any) -> None:
        self._tracker = tracker
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        tracker = self._tracker
        http_pool = type(
            "TrackedHTTPConnectionPool",
            (HTTPConnectionPool,),
            {"ConnectionCls": _tracking_connection(HTTPConnection, tracker)},
        )
        https_pool = type(
            "TrackedHTTPSConnectionPool",
            (HTTPSConnectionPool,),
            {"ConnectionCls": _tracking_connection(HTTPSConnection, tracker)},
        )
        self._pool_classes = {"http": http_pool, "https": https_pool}
        self.poolmanager.pool_classes_by_scheme = dict(self._pool_classes)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # Through an HTTP(S) proxy (HTTPS_PROXY, proxies=) connections come from a
        # ProxyManager, which must use the tracked classes too or they cannot be cut.
        # A SOCKS proxy brings connection classes of its own, which stay untracked.
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:
            manager.pool_classes_by_scheme = dict(self._pool_classes)
        return manager


class InterruptibleSession(requests.Session):
    """A session whose connections :meth:`abort` can cut from another thread.

    >>> session = InterruptibleSession()
    >>> session.begin_attempt()   # before each export attempt
    >>> session.abort()           # from the thread that gave up waiting
    0
    """

    def __init__(self, *, idle_reset_seconds: float = IDLE_RESET_SECONDS) -> None:
        super().__init__()
        self._idle_reset = idle_reset_seconds
        self._fresh_pools()
        after_fork_in_child(self._fresh_pools)

    #: What the last attempt saw: the final HTTP status, its Retry-After in seconds,
    #: whether a request failed without any response, and the last body's size.
    last_status: int | None = None
    last_retry_after: float | None = None
    last_connection_error = False
    last_request_bytes: int | None = None

    def _fresh_pools(self) -> None:
        # New tracker and pools: in a forked child the parent's are not ours to use.
        self._tracker = _Tracker()
        self._last_used = time.monotonic()
        for prefix in ("http://", "https://"):
            self.mount(prefix, _TrackingAdapter(self._tracker))

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        # An abandoned attempt that comes back from a back-off sleep stops here, even
        # when it would reuse a pooled connection and never open a new one.
        self._tracker.check()
        data = kwargs.get("data")
        if isinstance(data, (bytes, bytearray)):
            self.last_request_bytes = len(data)
        try:
            response = super().request(*args, **kwargs)
        except requests.RequestException:
            self.last_connection_error = True
            raise
        self.last_status = response.status_code
        self.last_retry_after = parse_retry_after(response.headers.get("retry-after"))
        return response

    def begin_attempt(self) -> None:
        """Allow connections again: a new attempt starts. Drops long-idle connections."""
        self._tracker.reset()
        self.last_status = None
        self.last_retry_after = None
        self.last_connection_error = False
        now = time.monotonic()
        if now - self._last_used > self._idle_reset:
            for adapter in self.adapters.values():
                adapter.close()
        self._last_used = now

    def abort(self, *, spare_sent: bool = False) -> int:
        """Cut the connections of this session; return how many sockets were shut down.

        ``spare_sent`` leaves alone a connection that has begun to send its request (see
        :meth:`_Tracker.abort`); the attempt still may not start another request.
        """
        return self._tracker.abort(spare_sent=spare_sent)

    def may_deliver(self) -> bool:
        """After :meth:`abort`: whether the abandoned attempt may still deliver its batch
        (see :meth:`_Tracker.may_deliver`)."""
        return self._tracker.may_deliver()

    @property
    def aborted(self) -> bool:
        return self._tracker.aborted

    @property
    def reached(self) -> bool:
        """Whether the current attempt reached the backend: a request of it began to go
        out, or an answer came. False when every request failed before its first byte
        (refused, DNS failure, connect timeout, TLS handshake, a connection reset before
        sending): nothing the backend could judge, whatever the batch held."""
        return self._tracker.sent or self.last_status is not None


def find_session(exporter: object) -> InterruptibleSession | None:
    """The interruptible session inside an OTLP/HTTP exporter, if it has one.

    An SDK OTLP/HTTP exporter whose session is not where the supported releases keep it
    (a newer release moved it) is reported once: its abandoned exports cannot be cut.
    """
    session: InterruptibleSession | None = _compat_sdk.exporter_session(
        exporter, InterruptibleSession
    )
    if (
        session is None
        and _compat_sdk.is_otlp_http_exporter(exporter)
        and not _compat_sdk.has_session(exporter)  # a plain one is the user's choice
    ):
        _compat_sdk.warn_session_missing(exporter)
    return session
