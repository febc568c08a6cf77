"""A fake Langfuse API on 127.0.0.1 (OTLP traces, scores, media) that succeeds, hangs, drips...

A :class:`FakeOTLPBackend` answering every path the Langfuse SDK posts to; imports no ``langfuse``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any, ClassVar

from otel_nonblocking.testing._backend import (
    _TEXT,
    FakeOTLPBackend,
    Mode,
    RequestRecord,
    _decode_export_request,
    _Handler,
)

__all__ = ["FakeLangfuse", "LangfuseRequest"]

_OTLP_PATH = "/api/public/otel/v1/traces"
_INGESTION_PATH = "/api/public/ingestion"  # scores, Langfuse 3.x/4.x
_SCORES_PATH = "/api/public/scores"  # scores, Langfuse 5.x
_MEDIA_PATH = "/api/public/media"
_JSON = "application/json"
_POLL_INTERVAL = 0.02

# (status, body, content type) of the answer a healthy Langfuse gives.
_Answer = tuple[int, bytes, str]


@dataclass(frozen=True)
class LangfuseRequest(RequestRecord):
    """One request received by a :class:`FakeLangfuse` (a snapshot); see :class:`RequestRecord`.

    ``accepted`` means a complete 2xx answer (Langfuse answers scores with 202 or 207).
    ``repr()`` leaves out headers and body, so printing a record never leaks credentials.

    Example::

        request = fake.requests_to(FakeLangfuse.OTLP_PATH)[-1]
        assert request.span_names() == ["my-span"]
    """

    @classmethod
    def _of(cls, record: RequestRecord) -> LangfuseRequest:
        return cls(**{f.name: getattr(record, f.name) for f in fields(record)})

    @property
    def accepted(self) -> bool:
        """True when the fake finished writing a 2xx answer (the request was delivered)."""
        return self.completed and self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not JSON)."""
        return json.loads(self.body)

    def span_names(self) -> list[str]:
        """Names of the spans of an OTLP trace export (empty for other paths)."""
        return [span.name for span in self.spans]

    def score_names(self) -> list[str]:
        """Names of the scores this request creates (5.x scores or 3.x/4.x ingestion batch)."""
        return [str(score.get("name")) for score in self._scores()]

    def score_ids(self) -> list[str]:
        """Ids of the scores this request creates; a retried score keeps its id."""
        return [str(score.get("id")) for score in self._scores()]

    def _scores(self) -> list[dict[str, Any]]:
        if self.path not in (_SCORES_PATH, _INGESTION_PATH):
            return []
        try:
            data = self.json()
        except ValueError:
            return []
        if self.path == _SCORES_PATH and isinstance(data, list):  # 5.x: the score bodies
            return [item for item in data if isinstance(item, dict)]
        if self.path == _INGESTION_PATH and isinstance(data, dict):  # {"batch": [{type, body}]}
            return [
                event["body"]
                for event in data.get("batch", [])
                if isinstance(event, dict)
                and event.get("type") == "score-create"
                and isinstance(event.get("body"), dict)
            ]
        return []


def _ok_answer(path: str, body: bytes) -> _Answer:
    """What a healthy Langfuse answers on ``path``."""
    if path == _OTLP_PATH:
        return HTTPStatus.OK, b"", "application/x-protobuf"
    if path == _INGESTION_PATH:
        try:
            batch = json.loads(body).get("batch", [])
        except (ValueError, AttributeError):
            batch = []
        ids = [{"id": e.get("id"), "status": 201} for e in batch if isinstance(e, dict)]
        return HTTPStatus.MULTI_STATUS, json.dumps({"successes": ids, "errors": []}).encode(), _JSON
    if path == _SCORES_PATH:
        return HTTPStatus.ACCEPTED, b'{"message": "Accepted"}', _JSON
    if path == _MEDIA_PATH:
        # "Already uploaded": no upload URL, so the SDK skips the upload itself.
        media_id = ""
        with contextlib.suppress(ValueError, AttributeError):
            media_id = str(json.loads(body).get("mediaId", ""))
        return HTTPStatus.OK, json.dumps({"mediaId": media_id}).encode(), _JSON
    return HTTPStatus.NOT_FOUND, b"not found", _TEXT


class _LangfuseHandler(_Handler):
    """The OTLP fake's handler, with the mode applied to every path and Langfuse's answers."""

    server_version = "otel-nonblocking-fake-langfuse"
    _ok: _Answer = (HTTPStatus.NOT_FOUND, b"not found", _TEXT)  # set per request

    def _route(self, path: str, headers: dict[str, str], body: bytes) -> None:
        backend = self._backend
        decoded = None
        if path == _OTLP_PATH:
            decoded = _decode_export_request(body, headers, backend.max_body_bytes)
        self._ok = _ok_answer(path, body)
        mode, release = backend._mode_and_release()
        entry = backend._record(self.command, path, headers, body, decoded, mode)
        self._handle_mode(entry, mode, release)

    def _success(self) -> _Answer:
        """Langfuse's answer for this request's path (what OK, SLOW and DRIP send)."""
        return self._ok


class FakeLangfuse(FakeOTLPBackend):
    """A fake Langfuse API on ``base_url`` (``http://127.0.0.1:<port>``); needs no ``langfuse``.

    Answers the OTLP trace path (``OTLP_PATH``), the score endpoints of Langfuse 3.x/4.x
    (``INGESTION_PATH``, 207) and 5.x (``SCORES_PATH``, 202) and the media endpoint
    (``MEDIA_PATH``, "already uploaded"); other paths get 404. ``mode`` (a :class:`Mode`)
    applies to every path, so spans and scores meet the same outage. Options are those of
    :class:`FakeOTLPBackend` except ``path``. ``requests`` holds :class:`LangfuseRequest`
    records; ``spans_delivered``/``scores_delivered`` count what was answered with success
    in full. ``stop()`` cuts every connection and returns within its timeout.

    Example::

        with FakeLangfuse(Mode.HANG, hang_limit=30) as fake:
            client = Langfuse(public_key="pk-lf-x", secret_key="sk-lf-x", base_url=fake.base_url)
            ...  # client.flush() now meets a Langfuse that never answers
    """

    OTLP_PATH: ClassVar[str] = _OTLP_PATH
    INGESTION_PATH: ClassVar[str] = _INGESTION_PATH
    SCORES_PATH: ClassVar[str] = _SCORES_PATH
    MEDIA_PATH: ClassVar[str] = _MEDIA_PATH
    _handler_class = _LangfuseHandler

    def __init__(self, mode: Mode | str = Mode.OK, **options: Any) -> None:
        """Configure (but do not start) the fake; ``options`` as for :class:`FakeOTLPBackend`."""
        super().__init__(mode, path=_OTLP_PATH, **options)

    def start(self) -> FakeLangfuse:
        """Bind 127.0.0.1:0 and serve in a daemon thread; returns self. Start only once."""
        super().start()
        return self

    def __enter__(self) -> FakeLangfuse:
        super().__enter__()
        return self

    def _records(self) -> list[LangfuseRequest]:
        return [LangfuseRequest._of(record) for record in super().requests]

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the recorded requests, oldest first; each is a :class:`LangfuseRequest`."""
        return list(self._records())

    def requests_to(self, path: str) -> list[LangfuseRequest]:
        """The recorded requests to ``path`` (e.g. ``FakeLangfuse.OTLP_PATH``), oldest first."""
        return [record for record in self._records() if record.path == path]

    def score_names(self, *, accepted: bool = False) -> list[str]:
        """Names of the scores received (only those answered with success when ``accepted``)."""
        return [
            name
            for record in self._records()
            if record.accepted or not accepted
            for name in record.score_names()
        ]

    @property
    def spans_delivered(self) -> int:
        """Distinct spans answered with success in full (a retried span counts once)."""
        return len({span.span_id for r in self._records() if r.accepted for span in r.spans})

    @property
    def scores_delivered(self) -> int:
        """Distinct scores answered with success in full (a retried score counts once)."""
        return len({i for r in self._records() if r.accepted for i in r.score_ids()})

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it is true (True) or ``timeout`` s passed (False).

        Example::

            assert fake.wait_until(lambda: "my-span" in fake.span_names(), timeout=2)
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, _POLL_INTERVAL))
        return True

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "not started"
        return f"<FakeLangfuse {self.mode.value} {where}>"
