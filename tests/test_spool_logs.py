"""The disk spool for log records: outage -> records on disk (the ``logs`` subdirectory)
-> a later processor, or process, delivers them to /v1/logs, each once; accounting exact.
A span spool file is never sent as log records, nor a log file as spans."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider

from otel_nonblocking import (
    ConfigurationError,
    NonBlockingLogRecordProcessor,
    NonBlockingSpanProcessor,
    otlp_log_exporter,
    otlp_span_exporter,
)
from otel_nonblocking._spool import LOGS, SPANS, Spool, decode_file, encode_file
from otel_nonblocking.testing import FakeOTLPBackend, Mode
from tests.test_log_processor import BlockedExporter, _emit

_REPO = Path(__file__).resolve().parent.parent

# A process that starts a log record processor on the spool, waits until the spool's logs
# directory holds no batch and no claim (or a time limit), shuts down, prints its stats.
_DELIVERER = r"""
import json, os, sys, time
from otel_nonblocking import NonBlockingLogRecordProcessor, otlp_log_exporter

args = json.loads(sys.argv[1])
processor = NonBlockingLogRecordProcessor(
    otlp_log_exporter(args["endpoint"], timeout=2), spool_dir=args["spool"],
    schedule_delay_millis=50,
)
logs = os.path.join(args["spool"], "logs")
end = time.monotonic() + 20
while time.monotonic() < end:
    if not any(n.endswith(".otlp") or ".claimed-" in n for n in os.listdir(logs)):
        break
    time.sleep(0.05)
processor.shutdown(timeout_millis=1000)
s = processor.stats()
print(json.dumps({"recovered": s.recovered, "enqueued": s.enqueued}), flush=True)
"""


@pytest.fixture
def backend() -> Iterator[FakeOTLPBackend]:
    server = FakeOTLPBackend(Mode.OK, hang_limit=30).start()
    yield server
    server.stop()


@pytest.fixture
def logs() -> Iterator[LoggerProvider]:
    provider = LoggerProvider(shutdown_on_exit=False)
    yield provider
    provider.shutdown()


def _processor(endpoint: str, spool: Path, **kwargs: Any) -> NonBlockingLogRecordProcessor:
    exporter = otlp_log_exporter(endpoint, timeout=0.5)
    options: dict[str, Any] = {"max_export_batch_size": 10, "schedule_delay_millis": 30}
    options.update(kwargs)
    return NonBlockingLogRecordProcessor(exporter, spool_dir=str(spool), **options)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.otlp"))


def _settled(processor: NonBlockingLogRecordProcessor) -> bool:
    s = processor.stats()
    return s.enqueued == s.exported + s.dropped_total + s.pending + s.spooled


def test_an_outage_at_shutdown_spools_log_records_and_a_new_processor_delivers_each_once(
    tmp_path: Path, backend: FakeOTLPBackend, logs: LoggerProvider
) -> None:
    spool = tmp_path / "spool"
    backend.mode = Mode.UNAVAILABLE
    processor = _processor(backend.endpoint.replace("/v1/traces", "/v1/logs"), spool)
    logs.add_log_record_processor(processor)
    _emit(logs, 45)
    started = time.monotonic()
    processor.shutdown(timeout_millis=2000)
    assert time.monotonic() - started < 2.5
    stats = processor.stats()
    assert (stats.enqueued, stats.spooled, stats.exported) == (45, 45, 0)
    assert stats.dropped_total == 0
    assert stats.pending == 0
    assert _settled(processor)
    files = _files(spool / "logs")
    assert len(files) == 5  # batches of 10, and the last of 5
    assert sum(decode_file(f.read_bytes(), LOGS)[1] for f in files) == 45
    assert _files(spool) == []  # nothing among the span batches

    backend.mode = Mode.OK
    deliverer = _processor(backend.logs_endpoint, spool)
    try:
        deadline = time.monotonic() + 10
        while deliverer.stats().recovered < 45 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deliverer.stats().recovered == 45
        assert deliverer.stats().enqueued == 0  # others' records: not this one's accounting
    finally:
        deliverer.shutdown(timeout_millis=1000)
    received = Counter(backend.log_bodies(accepted=True))
    assert received == Counter(f"record {i}" for i in range(45))
    assert {r.path for r in backend.requests if r.accepted} == {"/v1/logs"}
    assert _files(spool / "logs") == []


def test_a_new_process_delivers_the_log_records_a_dead_backend_left_on_disk(
    tmp_path: Path, backend: FakeOTLPBackend, logs: LoggerProvider
) -> None:
    spool = tmp_path / "spool"
    backend.mode = Mode.RESET
    processor = _processor(backend.logs_endpoint, spool, retry_buffer_size=5)
    logs.add_log_record_processor(processor)
    _emit(logs, 30)
    assert processor.force_flush(3000) is False  # evicted from the retry buffer: to disk
    stats = processor.stats()
    assert (stats.spooled, stats.dropped_total) == (30, 0)
    assert _settled(processor)
    processor.shutdown(timeout_millis=1000)

    backend.mode = Mode.OK
    done = subprocess.run(
        [sys.executable, "-c", _DELIVERER,
         json.dumps({"endpoint": backend.logs_endpoint, "spool": str(spool)})],
        capture_output=True, text=True, timeout=45, cwd=_REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"recovered": 30, "enqueued": 0}
    assert Counter(backend.log_bodies(accepted=True)) == Counter(f"record {i}" for i in range(30))
    assert _files(spool / "logs") == []


def test_a_span_file_in_the_logs_directory_is_never_sent_to_v1_logs(
    tmp_path: Path, backend: FakeOTLPBackend, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    misplaced = Spool(str(spool / "logs"), 1 << 20)  # a span spool pointed at logs/
    misplaced.open()
    misplaced.write(b"\x0a\x00", 3)
    processor = _processor(backend.logs_endpoint, spool)
    try:
        with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
            deadline = time.monotonic() + 5
            while not list((spool / "logs").glob("*.corrupt")) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        processor.shutdown(timeout_millis=1000)
    assert len(list((spool / "logs").glob("*.corrupt"))) == 1  # set aside, kept to look at
    assert backend.requests == []
    assert processor.stats().recovered == 0


def test_the_span_spool_leaves_the_logs_subdirectory_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_spool = Spool(str(tmp_path), 1 << 20, kind=LOGS)
    log_spool.open()
    log_spool.write(b"\x0a\x00", 2)
    span_spool = Spool(str(tmp_path), 1 << 20)
    span_spool.open()
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        assert span_spool.backlog() == []
        span_spool.warn.maybe_emit(force=True)
    assert "foreign" not in caplog.text
    assert span_spool.stats().foreign_files == 0
    assert [p.name for p in tmp_path.iterdir()] == ["logs"]
    assert len(log_spool.backlog()) == 1


def test_a_file_says_its_signal_and_is_refused_by_the_other() -> None:
    logs_file = encode_file(b"records", 4, LOGS)
    assert decode_file(logs_file, LOGS) == (b"records", 4)
    with pytest.raises(ValueError, match="another signal"):
        decode_file(logs_file, SPANS)
    with pytest.raises(ValueError, match="another signal"):
        decode_file(encode_file(b"spans", 4), LOGS)


def test_spool_dir_needs_an_otlp_http_log_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigurationError, match="spool_dir needs an OTLP/HTTP exporter"):
        NonBlockingLogRecordProcessor(BlockedExporter(), spool_dir=str(tmp_path))
    monkeypatch.setenv("OTEL_NONBLOCKING_SPOOL_DIR", str(tmp_path / "env"))
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        processor = NonBlockingLogRecordProcessor(BlockedExporter())
    try:
        assert "SPOOL_DIR ignored" in caplog.text
        assert processor.spool_stats() is None
    finally:
        processor.shutdown(timeout_millis=200)


def test_the_log_spool_directory_comes_from_the_environment_under_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: FakeOTLPBackend
) -> None:
    monkeypatch.setenv("OTEL_NONBLOCKING_SPOOL_DIR", str(tmp_path / "env"))
    processor = NonBlockingLogRecordProcessor(otlp_log_exporter(backend.logs_endpoint))
    spans = NonBlockingSpanProcessor(otlp_span_exporter(backend.endpoint))
    try:
        log_stats, span_stats = processor.spool_stats(), spans.spool_stats()
        assert log_stats is not None
        assert span_stats is not None
        assert log_stats.directory == str(tmp_path / "env" / "logs")
        assert span_stats.directory == str(tmp_path / "env")
    finally:
        processor.shutdown(timeout_millis=500)
        spans.shutdown(timeout_millis=500)
    assert (tmp_path / "env" / "logs").is_dir()
    assert (tmp_path / "env" / "logs").stat().st_mode & 0o077 == 0


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_records_spooled_in_an_outage_are_delivered_by_the_same_processor_once_back(
    tmp_path: Path, backend: FakeOTLPBackend, logs: LoggerProvider
) -> None:
    backend.mode = Mode.UNAVAILABLE
    backend.retry_after = 1  # 503 with Retry-After: 1 holds exports back; the queue fills
    processor = _processor(backend.logs_endpoint, tmp_path, max_queue_size=40)
    logs.add_log_record_processor(processor)
    try:
        for start in range(0, 100, 25):
            _emit(logs, 25, name=f"tests.logs.{start}")
            assert _wait_for(lambda: processor.stats().queue_depth <= 20)
        assert _wait_for(lambda: processor.stats().spooled >= 40)
        assert _files(tmp_path / "logs")
        backend.mode = Mode.OK
        assert _wait_for(lambda: processor.stats().exported == 100, timeout=15)
        stats = processor.stats()
        assert (stats.spooled, stats.dropped_total, stats.recovered) == (0, 0, 0)
        assert _settled(processor)
        assert _files(tmp_path / "logs") == []
        received = Counter(backend.log_bodies(accepted=True))
        assert sum(received.values()) == 100  # 4 x "record 0".."record 24", none twice
        assert received == Counter(f"record {i}" for _ in range(4) for i in range(25))
    finally:
        processor.shutdown(timeout_millis=1000)


class _Answer:
    def __init__(self, ok: bool) -> None:
        self.ok = self.success = ok


class _ClientShaped:
    """A log exporter of the newer SDKs' shape: ``_client.export(data)`` -> ``.success``."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self._client = self

    def export(self, data: bytes) -> _Answer:
        self.sent.append(data)
        return _Answer(True)


class _PostShaped:
    """SDK 1.33's shape: ``_export(data)``, one POST whose response says ``ok``."""

    def __init__(self, ok: bool) -> None:
        self.sent: list[bytes] = []
        self.answer_ok = ok

    def _export(self, data: bytes) -> _Answer:
        self.sent.append(data)
        return _Answer(self.answer_ok)


class _TimedPostShaped(_PostShaped):
    """A shape whose ``_export`` takes the time left too."""

    def _export(self, data: bytes, timeout: float | None = None) -> _Answer:  # type: ignore[override]
        self.timeouts = [*getattr(self, "timeouts", []), timeout]
        return super()._export(data)


def test_the_log_body_sender_knows_each_sdk_shape() -> None:
    from otel_nonblocking._compat_sdk import log_body_sender

    client = _ClientShaped()
    send = log_body_sender(client)
    assert send is not None
    assert send(b"body", 1.0) is True
    assert client.sent == [b"body"]
    for ok in (True, False):
        post = _PostShaped(ok)
        send = log_body_sender(post)
        assert send is not None
        assert send(b"body", None) is ok
        assert post.sent == [b"body"]
    timed = _TimedPostShaped(True)
    send = log_body_sender(timed)
    assert send is not None
    assert send(b"body", 0.7) is True
    assert timed.timeouts == [0.7]
    assert log_body_sender(object()) is None
