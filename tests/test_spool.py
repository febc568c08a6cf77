"""The disk spool: what cannot be delivered goes to disk, and the next process delivers it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import ConfigurationError, NonBlockingSpanProcessor, otlp_span_exporter
from otel_nonblocking._spool import (
    HEADER,
    Spool,
    SpoolFullError,
    decode_file,
    encode_file,
)
from otel_nonblocking.testing import FakeOTLPBackend, Mode, refused_endpoint
from tests.conftest import RecordingExporter, end_spans

_REPO = Path(__file__).resolve().parent.parent

# A process that ends spans (optionally from several threads) and exits; its exit hook
# shuts the processor down, spooling what the dead backend did not take. It prints its
# stats, then every span id it ended (hex), as JSON.
_PRODUCER = r"""
import atexit, json, sys, threading
from opentelemetry.sdk.trace import TracerProvider
from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter

args = json.loads(sys.argv[1])
ids = []
lock = threading.Lock()

def report():
    s = processor.stats()
    print(json.dumps({"enqueued": s.enqueued, "exported": s.exported,
                      "dropped": dict(s.dropped), "pending": s.pending,
                      "spooled": s.spooled, "ids": ids}), flush=True)

atexit.register(report)  # registered first, so it runs after the processor's exit hook
exporter = otlp_span_exporter(args["endpoint"], timeout=0.5)
processor = NonBlockingSpanProcessor(
    exporter, spool_dir=args["spool"], schedule_delay_millis=50,
    max_export_batch_size=args.get("batch", 50),
    retry_buffer_size=args.get("retry", 8192),
    shutdown_timeout_millis=args.get("budget", 2000),
)
provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(processor)
tracer = provider.get_tracer("producer")

def work(count):
    for _ in range(count):
        span = tracer.start_span("spooled")
        span.end()
        with lock:
            ids.append(format(span.get_span_context().span_id, "016x"))

threads = [threading.Thread(target=work, args=(args["spans"] // args["threads"],))
           for _ in range(args["threads"])]
for t in threads: t.start()
for t in threads: t.join()
"""

# A process that starts a processor on the spool, idles until the spool holds no batch
# and no claim (or a time limit), shuts down, and prints its stats as JSON.
_DELIVERER = r"""
import json, os, sys, time
from otel_nonblocking import NonBlockingSpanProcessor, otlp_span_exporter

args = json.loads(sys.argv[1])
processor = NonBlockingSpanProcessor(
    otlp_span_exporter(args["endpoint"], timeout=2), spool_dir=args["spool"],
    schedule_delay_millis=50,
)
end = time.monotonic() + args.get("limit", 20)
while time.monotonic() < end:
    names = os.listdir(args["spool"])
    if not any(n.endswith(".otlp") or ".claimed-" in n for n in names):
        break
    time.sleep(0.05)
processor.shutdown(timeout_millis=1000)
print(json.dumps({"recovered": processor.stats().recovered}), flush=True)
"""


def _run(script: str, args: dict[str, Any], timeout: float = 45) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=_REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _start(script: str, args: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=_REPO,
    )


def _finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=45)
    assert process.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _batches(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.otlp"))


def _payload(spans: int, name: str = "s") -> bytes:
    provider = TracerProvider(shutdown_on_exit=False)
    recorder = RecordingExporter()
    processor = NonBlockingSpanProcessor(recorder, schedule_delay_millis=10)
    provider.add_span_processor(processor)
    end_spans(provider, spans, name)
    assert processor.force_flush(2000)
    processor.shutdown(timeout_millis=200)
    from otel_nonblocking._encoder import encode_spans

    return encode_spans(recorder.spans)


def _received_ids(backend: FakeOTLPBackend) -> Counter[str]:
    return Counter(span.span_id.hex() for span in backend.accepted_spans())


def _settled(processor: NonBlockingSpanProcessor) -> bool:
    s = processor.stats()
    return s.enqueued == s.exported + s.dropped_total + s.pending + s.spooled


@pytest.fixture
def backend() -> Iterator[FakeOTLPBackend]:
    server = FakeOTLPBackend(Mode.OK, hang_limit=30).start()
    yield server
    server.stop()


# -- the file format and directory ----------------------------------------------------------


def test_a_spooled_batch_reads_back_byte_for_byte_in_another_spool(tmp_path) -> None:
    payload = _payload(3)
    writer = Spool(str(tmp_path / "spool"), 1 << 20)
    writer.open()
    assert writer.write(payload, 3) == []
    reader = Spool(str(tmp_path / "spool"), 1 << 20)
    reader.open()
    names = reader.backlog()
    assert len(names) == 1
    file = reader.claim(names[0])
    assert file is not None
    assert file.payload == payload
    assert file.spans == 3
    assert len(ExportTraceServiceRequest.FromString(file.payload).resource_spans) == 1
    assert reader.claim(names[0]) is None  # claimed once only
    reader.remove(file)
    assert os.listdir(tmp_path / "spool") == []


def test_a_spool_marks_its_own_files_when_it_claims_them(tmp_path) -> None:
    spool = Spool(str(tmp_path), 1 << 20)
    spool.open()
    spool.write(b"abc", 1)
    other = Spool(str(tmp_path), 1 << 20)
    other.write(b"defg", 2)
    mine, theirs = spool.backlog()  # both, oldest first
    claimed = spool.claim(mine)
    assert claimed is not None
    assert (claimed.payload, claimed.spans, claimed.own) == (b"abc", 1, True)
    spool.remove(claimed)
    foreign = spool.claim(theirs)
    assert foreign is not None
    assert (foreign.payload, foreign.spans, foreign.own) == (b"defg", 2, False)
    spool.release(foreign)
    assert spool.backlog() == [theirs]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_the_directory_is_created_owner_only_and_files_are_private(tmp_path) -> None:
    directory = tmp_path / "a" / "spool"
    spool = Spool(str(directory), 1 << 20)
    spool.open()
    spool.write(b"payload", 1)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (batch,) = _batches(directory)
    assert stat.S_IMODE(batch.stat().st_mode) == 0o600


def test_a_crashed_writers_temporary_file_is_ignored_and_cleaned(tmp_path) -> None:
    dead_pid = _dead_pid()
    leftover = tmp_path / f".tmp-{dead_pid}-0123456789abcdef"
    leftover.write_bytes(encode_file(b"half", 1)[:10])
    spool = Spool(str(tmp_path), 1 << 20)
    spool.open()
    assert not leftover.exists()
    assert spool.backlog() == []


def test_a_claim_left_by_a_dead_process_is_released(tmp_path) -> None:
    writer = Spool(str(tmp_path), 1 << 20)
    writer.open()
    writer.write(b"data", 2)
    (batch,) = _batches(tmp_path)
    batch.rename(f"{batch}.claimed-{_dead_pid()}")
    reader = Spool(str(tmp_path), 1 << 20)
    reader.open()
    assert reader.backlog() == [batch.name]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


@pytest.mark.parametrize(
    "damage",
    ["bad_checksum", "truncated_payload", "truncated_header", "random_bytes", "future_version"],
)
def test_a_corrupt_file_is_set_aside_with_a_warning_and_never_crashes(
    tmp_path, caplog, damage
) -> None:
    writer = Spool(str(tmp_path), 1 << 20)
    writer.open()
    writer.write(b"0123456789" * 10, 4)
    (batch,) = _batches(tmp_path)
    data = bytearray(batch.read_bytes())
    if damage == "bad_checksum":
        data[-1] ^= 0xFF
    elif damage == "truncated_payload":
        del data[-5:]
    elif damage == "truncated_header":
        del data[HEADER.size - 3 :]
    elif damage == "random_bytes":
        data = bytearray(os.urandom(len(data)))
    else:
        data[9] = 99  # version
    batch.write_bytes(bytes(data))
    reader = Spool(str(tmp_path), 1 << 20)
    reader.open()
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        assert reader.claim(batch.name) is None
        reader.warn.maybe_emit(force=True)
    assert "corrupt spool file skipped" in caplog.text
    assert (tmp_path / f"{batch.name}.corrupt").exists()
    assert reader.backlog() == []
    assert reader.stats().corrupt_files == 1


def test_decode_rejects_what_encode_did_not_write() -> None:
    assert decode_file(encode_file(b"xyz", 7)) == (b"xyz", 7)
    for bad in (b"", b"OTNBSPL", b"X" * 100):
        with pytest.raises(ValueError, match=r"."):
            decode_file(bad)


_BATCH_NAME = f"{1:020d}-{'ab' * 8}-{0:08d}.otlp"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_named_like_a_batch_is_set_aside_and_never_blocks_the_worker(
    tmp_path, backend
) -> None:
    fifo = tmp_path / _BATCH_NAME
    os.mkfifo(fifo)
    processor, provider = _pipeline(backend.endpoint, tmp_path, max_export_batch_size=50)
    try:
        assert _wait_for(lambda: not fifo.exists())  # the worker has taken it up
        end_spans(provider, 500)
        assert processor.force_flush(5000)
        assert processor.stats().exported == 500
        assert processor.spool_stats().corrupt_files == 1
        assert (tmp_path / f"{_BATCH_NAME}.corrupt").exists()
    finally:
        processor.shutdown(timeout_millis=500)
        for path in (fifo, tmp_path / f"{_BATCH_NAME}.corrupt"):
            with contextlib.suppress(OSError):  # frees a worker stuck in open() (old code)
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_a_symlink_named_like_a_batch_is_never_followed(tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(encode_file(b"secret", 1))
    spool_dir = tmp_path / "spool"
    spool = Spool(str(spool_dir), 1 << 20)
    spool.open()
    (spool_dir / _BATCH_NAME).symlink_to(elsewhere)
    assert spool.claim(_BATCH_NAME) is None
    assert spool.stats().corrupt_files == 1
    assert elsewhere.read_bytes() == encode_file(b"secret", 1)  # neither read nor moved


def test_a_file_larger_than_the_cap_is_never_read(tmp_path) -> None:
    spool = Spool(str(tmp_path), 1 << 20)
    spool.open()
    big = tmp_path / _BATCH_NAME
    with open(big, "wb") as file:  # sparse: 64 MiB of nothing on disk
        file.write(encode_file(b"x", 1)[: HEADER.size])
        file.truncate(64 << 20)
    tracemalloc.start()
    try:
        assert spool.claim(_BATCH_NAME) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert (tmp_path / f"{_BATCH_NAME}.corrupt").exists()


def test_the_checksum_covers_the_span_count_in_the_header() -> None:
    data = bytearray(encode_file(b"payload", 3))
    spans_at = 8 + 2 + 2  # after magic, version, flags
    data[spans_at : spans_at + 4] = (4_000_000_000).to_bytes(4, "big")
    with pytest.raises(ValueError, match="checksum"):
        decode_file(bytes(data))


def test_an_old_format_file_is_delivered_with_the_span_count_of_its_payload(tmp_path) -> None:
    import zlib

    payload = _payload(3)
    # Version 1: its checksum covered the payload only, so its span count is not trusted.
    header = HEADER.pack(b"OTNBSPL\x00", 1, 0, 4_000_000_000, len(payload), zlib.crc32(payload))
    (tmp_path / _BATCH_NAME).write_bytes(header + payload)
    spool = Spool(str(tmp_path), 1 << 20)
    spool.open()
    file = spool.claim(_BATCH_NAME)
    assert file is not None
    assert (file.payload, file.spans) == (payload, 3)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("unsafe", ["world_writable", "group_writable", "symlink", "other_owner"])
def test_a_directory_others_control_turns_the_spool_off_with_a_warning(
    tmp_path, backend, caplog, monkeypatch, unsafe
) -> None:
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    spool_dir = target
    if unsafe == "world_writable":
        target.chmod(0o777)
    elif unsafe == "group_writable":
        target.chmod(0o770)
    elif unsafe == "symlink":
        spool_dir = tmp_path / "link"
        spool_dir.symlink_to(target)
    else:
        from otel_nonblocking import _spool

        monkeypatch.setattr(_spool.os, "geteuid", lambda: target.stat().st_uid + 1)
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        processor, provider = _pipeline(refused_endpoint(), spool_dir)
        try:
            assert _wait_for(lambda: processor.spool_stats() is None)
            end_spans(provider, 20)
        finally:
            processor.shutdown(timeout_millis=500)
    assert os.listdir(target) == []  # nothing written there
    assert processor.stats().spooled == 0
    warnings = [r.getMessage() for r in caplog.records if "spool off" in r.getMessage()]
    assert len(warnings) == 1
    assert "OTEL_NONBLOCKING_SPOOL_DIR" in warnings[0]
    assert str(tmp_path) not in warnings[0]  # the setting is named, its value never quoted


def test_foreign_files_are_left_alone_with_a_warning(tmp_path, caplog) -> None:
    (tmp_path / "notes.txt").write_text("not a batch")
    (tmp_path / "1.otlp").write_bytes(b"not ours either")
    spool = Spool(str(tmp_path), 1 << 20)
    spool.open()
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        assert spool.backlog() == []
        spool.warn.maybe_emit(force=True)
    assert "foreign file" in caplog.text
    assert (tmp_path / "notes.txt").read_text() == "not a batch"
    assert (tmp_path / "1.otlp").exists()
    assert spool.stats().foreign_files == 2


def test_the_size_cap_evicts_the_oldest_batches_and_counts_their_spans(tmp_path) -> None:
    size = len(encode_file(b"x" * 100, 1))
    spool = Spool(str(tmp_path), 3 * size)
    spool.open()
    for spans in (1, 2, 3):
        assert spool.write(b"x" * 100, spans) == []
    first = _batches(tmp_path)[0].name
    evicted = spool.write(b"x" * 100, 4)
    assert [(e.name, e.spans, e.own) for e in evicted] == [(first, 1, True)]
    assert [decode_file(p.read_bytes())[1] for p in _batches(tmp_path)] == [2, 3, 4]
    other = Spool(str(tmp_path), 3 * size)
    (gone,) = other.write(b"x" * 100, 5)
    assert (gone.spans, gone.own) == (2, False)
    with pytest.raises(SpoolFullError):
        spool.write(b"x" * (3 * size), 1)
    assert spool.stats().evicted_spans == 1


# -- the processor --------------------------------------------------------------------------


def test_spool_dir_needs_an_otlp_exporter(tmp_path, monkeypatch, caplog) -> None:
    with pytest.raises(ConfigurationError, match="spool_dir"):
        NonBlockingSpanProcessor(RecordingExporter(), spool_dir=str(tmp_path))
    monkeypatch.setenv("OTEL_NONBLOCKING_SPOOL_DIR", str(tmp_path / "env"))
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        processor = NonBlockingSpanProcessor(RecordingExporter())
    try:
        assert "SPOOL_DIR ignored" in caplog.text
        assert processor.spool_stats() is None
    finally:
        processor.shutdown(timeout_millis=200)


def test_the_spool_directory_comes_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_NONBLOCKING_SPOOL_DIR", str(tmp_path / "env"))
    processor = NonBlockingSpanProcessor(otlp_span_exporter(refused_endpoint(), timeout=0.5))
    try:
        stats = processor.spool_stats()
        assert stats is not None
        assert stats.directory == str(tmp_path / "env")
    finally:
        processor.shutdown(timeout_millis=500)
    assert (tmp_path / "env").is_dir()


def test_bad_spool_max_bytes_argument_raises(tmp_path) -> None:
    exporter = otlp_span_exporter(refused_endpoint(), timeout=0.5)
    with pytest.raises(ConfigurationError, match="spool_max_bytes"):
        NonBlockingSpanProcessor(exporter, spool_dir=str(tmp_path), spool_max_bytes=0)
    exporter.shutdown(timeout_millis=100)


def _pipeline(
    endpoint: str, spool: Path, **kwargs: Any
) -> tuple[NonBlockingSpanProcessor, TracerProvider]:
    exporter = otlp_span_exporter(endpoint, timeout=0.5)
    exporter._breaker._base_backoff = exporter._breaker._backoff = 0.2
    options: dict[str, Any] = {"max_export_batch_size": 10, "schedule_delay_millis": 30}
    options.update(kwargs)
    processor = NonBlockingSpanProcessor(exporter, spool_dir=str(spool), **options)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return processor, provider


def test_a_dead_backend_at_shutdown_spools_and_the_next_process_delivers_exactly_once(
    tmp_path, backend
) -> None:
    spool = tmp_path / "spool"
    backend.mode = Mode.UNAVAILABLE
    processor, provider = _pipeline(backend.endpoint, spool)
    end_spans(provider, 95)
    started = time.monotonic()
    processor.shutdown(timeout_millis=2000)
    assert time.monotonic() - started < 2.5
    stats = processor.stats()
    assert stats.spooled == 95
    assert stats.exported == 0
    assert stats.dropped_total == 0
    assert stats.pending == 0
    assert _settled(processor)
    assert len(_batches(spool)) == 10  # batches of 10, and the last of 5
    sent = {s.span_id.hex() for r in backend.requests for s in r.spans}

    backend.mode = Mode.OK
    before = len(backend.accepted_spans())
    result = _run(_DELIVERER, {"endpoint": backend.endpoint, "spool": str(spool)})
    assert result["recovered"] == 95
    received = Counter(s.span_id.hex() for s in backend.accepted_spans()[before:])
    assert len(received) == 95
    assert max(received.values()) == 1
    assert sent <= set(received)
    assert _batches(spool) == []


def test_batches_evicted_from_the_retry_buffer_are_spooled_not_dropped(tmp_path, backend) -> None:
    backend.mode = Mode.RESET  # transient, without a Retry-After holding exports back
    # A retry buffer smaller than a batch: every failed batch is evicted at once.
    processor, provider = _pipeline(backend.endpoint, tmp_path, retry_buffer_size=5)
    try:
        end_spans(provider, 30)
        assert processor.force_flush(3000) is False  # on disk, not exported
        stats = processor.stats()
        assert stats.spooled == 30
        assert stats.dropped_total == 0
        assert _settled(processor)
        assert sum(decode_file(p.read_bytes())[1] for p in _batches(tmp_path)) == 30
    finally:
        processor.shutdown(timeout_millis=1000)


def test_a_filling_queue_is_spooled_while_the_backend_is_down(tmp_path, backend) -> None:
    backend.mode = Mode.UNAVAILABLE
    processor, provider = _pipeline(backend.endpoint, tmp_path, max_queue_size=40)
    try:
        for round_ in range(1, 6):
            end_spans(provider, 25)  # above half the queue: the worker spools
            deadline = time.monotonic() + 5
            while processor.stats().queue_depth > 20 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert _settled(processor)
            assert processor.stats().enqueued == 25 * round_
        stats = processor.stats()
        assert stats.dropped_total == 0
        assert stats.spooled >= 60
    finally:
        processor.shutdown(timeout_millis=1000)
    stats = processor.stats()
    assert stats.spooled == 125
    assert _settled(processor)


def test_a_batch_out_of_attempts_is_spooled(tmp_path, backend) -> None:
    backend.mode = Mode.UNAVAILABLE
    processor, provider = _pipeline(backend.endpoint, tmp_path, max_export_attempts=1)
    try:
        end_spans(provider, 10)
        assert processor.force_flush(2000) is False  # on disk, not exported
        stats = processor.stats()
        assert stats.spooled == 10
        assert stats.dropped_total == 0
        assert _settled(processor)
    finally:
        processor.shutdown(timeout_millis=500)


def test_the_spool_is_only_written_on_the_worker_thread(tmp_path, backend, monkeypatch) -> None:
    threads: list[str] = []
    original = Spool.write

    def recording_write(self: Spool, payload: bytes, spans: int) -> Any:
        threads.append(threading.current_thread().name)
        return original(self, payload, spans)

    monkeypatch.setattr(Spool, "write", recording_write)
    monkeypatch.setattr(Spool, "open", _recording(Spool.open, threads))
    backend.mode = Mode.UNAVAILABLE
    processor, provider = _pipeline(backend.endpoint, tmp_path, retry_buffer_size=10)
    end_spans(provider, 50)
    processor.force_flush(300)
    processor.shutdown(timeout_millis=1500)
    assert processor.stats().spooled == 50
    assert threads
    assert set(threads) == {"otel-nonblocking-worker"}


def _recording(method: Any, threads: list[str]) -> Any:
    def wrapper(self: Spool) -> Any:
        threads.append(threading.current_thread().name)
        return method(self)

    return wrapper


def test_shutdown_keeps_its_budget_when_the_disk_is_slow(tmp_path, backend, monkeypatch) -> None:
    original = Spool.write

    def slow_write(self: Spool, payload: bytes, spans: int) -> Any:
        time.sleep(0.4)
        return original(self, payload, spans)

    monkeypatch.setattr(Spool, "write", slow_write)
    backend.mode = Mode.UNAVAILABLE
    processor, provider = _pipeline(backend.endpoint, tmp_path)
    end_spans(provider, 100)
    started = time.monotonic()
    processor.shutdown(timeout_millis=1000)
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 3  # the worker finishes the write it was in
    while processor.stats().pending and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = processor.stats()
    assert 0 < stats.spooled < 100
    assert stats.dropped.get("shutdown", 0) == 100 - stats.spooled
    assert _settled(processor)


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path, backend) -> None:
    backend.mode = Mode.UNAVAILABLE
    # Room for about three batches of ten spans.
    probe = len(encode_file(_payload(10, "span"), 10))
    processor, provider = _pipeline(backend.endpoint, tmp_path, spool_max_bytes=int(probe * 3.5))
    end_spans(provider, 60)
    processor.shutdown(timeout_millis=2000)
    stats = processor.stats()
    assert stats.dropped.get("spool_full", 0) >= 20
    assert stats.spooled == sum(decode_file(p.read_bytes())[1] for p in _batches(tmp_path))
    assert stats.spooled + stats.dropped_total == 60
    assert _settled(processor)


def test_two_processes_sharing_a_spool_deliver_each_batch_once(tmp_path, backend) -> None:
    spool = tmp_path / "spool"
    writer = Spool(str(spool), 1 << 30)
    writer.open()
    for index in range(30):
        writer.write(_payload(5, f"batch-{index}"), 5)
    first = _start(_DELIVERER, {"endpoint": backend.endpoint, "spool": str(spool)})
    second = _start(_DELIVERER, {"endpoint": backend.endpoint, "spool": str(spool)})
    recovered = _finish(first)["recovered"] + _finish(second)["recovered"]
    assert recovered == 150
    received = _received_ids(backend)
    assert len(received) == 150
    assert max(received.values()) == 1


# A process that claims spool files until none is left, tidying the directory (as a
# starting process does) between claims, and prints the names it claimed as JSON.
_CLAIMER = r"""
import json, os, sys
from otel_nonblocking._spool import Spool

args = json.loads(sys.argv[1])
got = []
while True:
    spool = Spool(args["spool"], 1 << 30)
    spool.open()  # releases the claims it takes for stale
    names = spool.backlog()
    if not names and not any(".claimed-" in n for n in os.listdir(args["spool"])):
        break
    for name in names:
        file = spool.claim(name)
        if file is not None:
            got.append(name)
            spool.open()
            spool.remove(file)
print(json.dumps(got), flush=True)
"""

# A process that claims every file in the spool, says so, and holds the claims until
# its standard input closes (a delivery that takes long, or a process that is paused).
_HOLDER = r"""
import json, sys
from otel_nonblocking._spool import Spool

spool = Spool(json.loads(sys.argv[1])["spool"], 1 << 30)
spool.open()
held = [spool.claim(name) for name in spool.backlog()]
print(json.dumps(len([f for f in held if f is not None])), flush=True)
sys.stdin.read()
"""


def _age(directory: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in directory.iterdir():
        os.utime(path, (then, then))


def test_processes_racing_over_a_shared_spool_never_take_one_file_twice(tmp_path) -> None:
    spool = tmp_path / "spool"
    writer = Spool(str(spool), 1 << 30)
    writer.open()
    for _ in range(300):
        writer.write(b"batch", 1)
    _age(spool, 3600)  # written during a long outage: older than any claim's age limit
    claimers = [_start(_CLAIMER, {"spool": str(spool)}) for _ in range(4)]
    claimed: Counter[str] = Counter()
    for process in claimers:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        claimed.update(json.loads(out.strip().splitlines()[-1]))
    assert len(claimed) == 300
    assert max(claimed.values()) == 1, [n for n, c in claimed.items() if c > 1][:5]


def test_a_live_claim_is_never_taken_over_however_old_it_looks(tmp_path) -> None:
    spool = tmp_path / "spool"
    writer = Spool(str(spool), 1 << 30)
    writer.open()
    for _ in range(5):
        writer.write(b"batch", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, json.dumps({"spool": str(spool)})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=_REPO,
    )
    try:
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline()) == 5
        _age(spool, 3600)  # a paused process, or one in another pid namespace
        other = Spool(str(spool), 1 << 30)
        other.open()
        assert other.backlog() == []  # nothing taken over while its claimant lives
    finally:
        holder.communicate(input="", timeout=30)
    other.open()  # the claimant has ended: its claims are stale now
    assert len(other.backlog()) == 5


# Claims a file, forks a child that lives on, gives the file back, and prints whether
# another claimant can take it then (a child holding the claim's lock would stop it).
_FORKER = r"""
import json, os, sys
from otel_nonblocking._spool import Spool

directory = json.loads(sys.argv[1])["spool"]
spool = Spool(directory, 1 << 30)
spool.open()
(name,) = spool.backlog()
held = spool.claim(name)
read, write = os.pipe()
ready_read, ready_write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(write)
    os.write(ready_write, b"x")  # the fork hooks have run
    os.read(read, 1)  # lives until the parent is done
    os._exit(0)
os.close(read)
os.read(ready_read, 1)
spool.release(held)
other = Spool(directory, 1 << 30)
taken = other.claim(name)
os.close(write)
os.waitpid(pid, 0)
print(json.dumps(taken is not None), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_does_not_keep_its_parents_claims(tmp_path) -> None:
    writer = Spool(str(tmp_path), 1 << 20)
    writer.open()
    writer.write(b"batch", 1)
    assert _run(_FORKER, {"spool": str(tmp_path)}) is True


def test_a_restarted_process_delivers_what_a_crashed_one_spooled(tmp_path, backend) -> None:
    spool = tmp_path / "spool"
    result = _run(
        _PRODUCER,
        {"endpoint": refused_endpoint(), "spool": str(spool), "spans": 200, "threads": 1},
    )
    assert result["spooled"] == 200
    assert result["enqueued"] == 200
    assert result["pending"] == 0
    _run(_DELIVERER, {"endpoint": backend.endpoint, "spool": str(spool)})
    assert set(_received_ids(backend)) == set(result["ids"])
    assert max(_received_ids(backend).values()) == 1


@pytest.mark.slow
def test_load_spool_and_restart_loses_nothing_that_fit(tmp_path) -> None:
    spool = tmp_path / "spool"
    with FakeOTLPBackend(Mode.HANG, hang_limit=30) as dead:
        result = _run(
            _PRODUCER,
            {
                "endpoint": dead.endpoint,
                "spool": str(spool),
                "spans": 8000,
                "threads": 8,
                "batch": 256,
                "retry": 1024,
                "budget": 3000,
            },
            timeout=60,
        )
    assert result["enqueued"] == 8000
    assert result["enqueued"] == (
        result["exported"] + sum(result["dropped"].values()) + result["pending"] + result["spooled"]
    )
    assert result["exported"] == 0
    assert result["spooled"] + result["dropped"].get("queue_full", 0) == 8000
    with FakeOTLPBackend(Mode.OK) as alive:
        _run(_DELIVERER, {"endpoint": alive.endpoint, "spool": str(spool), "limit": 40})
        received = _received_ids(alive)
    assert len(received) == result["spooled"]
    assert max(received.values()) == 1
    assert set(received) <= set(result["ids"])


def test_an_export_hanging_at_shutdown_ends_in_time_to_spool_the_rest(tmp_path, backend) -> None:
    backend.mode = Mode.HANG
    exporter = otlp_span_exporter(backend.endpoint, timeout=10)  # far beyond the budget
    processor = NonBlockingSpanProcessor(
        exporter, spool_dir=str(tmp_path), max_export_batch_size=10, schedule_delay_millis=30
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    end_spans(provider, 25)
    assert backend.wait_for_requests(1, timeout=5)  # the first batch is stuck in flight
    started = time.monotonic()
    processor.shutdown(timeout_millis=1000)
    assert time.monotonic() - started < 1.5
    stats = processor.stats()
    assert stats.spooled == 15
    # The stuck batch's request had gone out: the backend may have it, so it is not
    # spooled to be sent again, and not claimed lost either.
    assert dict(stats.dropped) == {"maybe_delivered": 10}
    assert _settled(processor)


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_recovered_spans_are_counted_apart_from_this_processors_own(tmp_path, backend) -> None:
    earlier = Spool(str(tmp_path), 1 << 20)
    earlier.open()
    earlier.write(_payload(4), 4)
    earlier.write(_payload(3), 3)
    processor, provider = _pipeline(backend.endpoint, tmp_path)
    try:
        assert _wait_for(lambda: processor.stats().recovered == 7)
        end_spans(provider, 5)
        assert processor.force_flush(3000)
        stats = processor.stats()
        assert (stats.enqueued, stats.exported, stats.recovered) == (5, 5, 7)
        assert _settled(processor)
        assert _batches(tmp_path) == []
        assert len(backend.accepted_spans()) == 12
    finally:
        processor.shutdown(timeout_millis=500)


def _spooled_in_an_outage(
    backend: FakeOTLPBackend, spool: Path, *, spans: int
) -> NonBlockingSpanProcessor:
    """A processor that ended ``spans`` spans into a queue of 40 while the backend answers
    503 (Retry-After: 1, not the default 30): the worker spools what passes half the queue."""
    backend.mode = Mode.UNAVAILABLE
    backend.retry_after = 1
    processor, provider = _pipeline(backend.endpoint, spool, max_queue_size=40)
    try:
        for _ in range(spans // 25):
            end_spans(provider, 25)
            assert _wait_for(lambda: processor.stats().queue_depth <= 20)
    except BaseException:
        processor.shutdown(timeout_millis=1000)
        raise
    return processor


def test_what_a_processor_spooled_in_an_outage_it_delivers_itself_once_the_backend_is_back(
    tmp_path, backend
) -> None:
    processor = _spooled_in_an_outage(backend, tmp_path, spans=100)
    try:
        assert _wait_for(lambda: processor.stats().spooled >= 40)
        assert _batches(tmp_path)
        backend.mode = Mode.OK  # the backend is back; the process keeps running
        assert _wait_for(lambda: processor.stats().exported == 100, timeout=15)
        stats = processor.stats()
        assert (stats.spooled, stats.dropped_total, stats.recovered) == (0, 0, 0)
        assert _settled(processor)
        assert _batches(tmp_path) == []
        received = _received_ids(backend)
        assert len(received) == 100
        assert set(received.values()) == {1}  # none twice
    finally:
        processor.shutdown(timeout_millis=1000)


def test_an_own_spooled_batch_refused_for_good_is_counted_as_dropped(tmp_path, backend) -> None:
    processor = _spooled_in_an_outage(backend, tmp_path, spans=100)
    try:
        assert _wait_for(lambda: processor.stats().spooled >= 10)
        backend.mode = Mode.ERROR_STATUS
        backend.error_status = 400
        assert _wait_for(lambda: processor.stats().spooled == 0, timeout=15)
        stats = processor.stats()
        assert stats.dropped.get("http_400", 0) >= 10
        assert _settled(processor)
        assert _batches(tmp_path) == []
    finally:
        processor.shutdown(timeout_millis=1000)


def test_a_spooled_batch_whose_send_timed_out_but_got_through_is_not_sent_again(
    tmp_path, backend, monkeypatch
) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    from otel_nonblocking import _otlp_codec

    earlier = Spool(str(tmp_path), 1 << 20)
    earlier.open()
    earlier.write(_payload(3), 3)
    gate = threading.Event()
    sends: list[int] = []

    def slow_then_delivered(exporter: object, data: bytes) -> SpanExportResult:
        sends.append(len(data))
        if len(sends) == 1:
            gate.wait(10)  # past the 0.5 s deadline; then the backend has it after all
        return SpanExportResult.SUCCESS

    monkeypatch.setattr(_otlp_codec, "_send_encoded", slow_then_delivered)
    processor, _provider = _pipeline(backend.endpoint, tmp_path)
    try:
        assert _wait_for(lambda: processor.exporter.stats().outcomes.get("export_timeout", 0) == 1)
        time.sleep(0.3)  # the worker looks at the file in doubt, and waits
        assert len(sends) == 1
        assert list(tmp_path.glob("*.claimed-*"))  # still claimed, not given back
        gate.set()
        assert _wait_for(lambda: processor.stats().recovered == 3)
        assert len(sends) == 1  # delivered once: not sent again
        assert _batches(tmp_path) == []
        assert not list(tmp_path.glob("*.claimed-*"))
    finally:
        gate.set()
        processor.shutdown(timeout_millis=1000)


@pytest.mark.parametrize("answer", ["within_the_budget", "never"])
def test_a_spooled_batch_in_doubt_at_shutdown_is_never_given_back_to_be_sent_again(
    tmp_path, backend, monkeypatch, answer
) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    from otel_nonblocking import _otlp_codec

    earlier = Spool(str(tmp_path), 1 << 20)
    earlier.open()
    earlier.write(_payload(3), 3)
    gate = threading.Event()
    sends: list[int] = []

    def slow_then_delivered(exporter: object, data: bytes) -> SpanExportResult:
        sends.append(len(data))
        gate.wait(10)  # past the 0.5 s deadline; then the backend has it after all
        return SpanExportResult.SUCCESS

    monkeypatch.setattr(_otlp_codec, "_send_encoded", slow_then_delivered)
    processor, _provider = _pipeline(backend.endpoint, tmp_path)
    try:
        assert _wait_for(lambda: processor.exporter.stats().outcomes.get("export_timeout", 0) == 1)
        if answer == "within_the_budget":
            threading.Timer(0.3, gate.set).start()
        processor.shutdown(timeout_millis=1500 if answer == "within_the_budget" else 300)
        if answer == "within_the_budget":
            assert processor.stats().recovered == 3  # learnt before the end: delivered
        else:
            assert processor.stats().recovered == 0  # unknown: the backend may have it
        # Either way the file is gone: a later process would send it a second time.
        assert _batches(tmp_path) == []
        assert not list(tmp_path.glob("*.claimed-*"))
        assert len(sends) == 1
    finally:
        gate.set()


def test_a_spooled_batch_the_backend_refuses_for_good_is_removed_with_a_warning(
    tmp_path, backend, caplog
) -> None:
    backend.mode = Mode.ERROR_STATUS
    backend.error_status = 400
    earlier = Spool(str(tmp_path), 1 << 20)
    earlier.open()
    earlier.write(_payload(2), 2)
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        processor, _provider = _pipeline(backend.endpoint, tmp_path)
        assert _wait_for(lambda: backend.request_count == 1)
        assert _wait_for(lambda: _batches(tmp_path) == [] and not os.listdir(tmp_path))
        processor.shutdown(timeout_millis=500)
    assert processor.stats().recovered == 0
    assert "refused by the backend (http_400)" in caplog.text


def test_a_spooled_batch_is_kept_while_the_backend_is_down(tmp_path, backend) -> None:
    backend.mode = Mode.RESET
    earlier = Spool(str(tmp_path), 1 << 20)
    earlier.open()
    earlier.write(_payload(2), 2)
    processor, _provider = _pipeline(backend.endpoint, tmp_path)
    try:
        assert _wait_for(lambda: backend.request_count >= 1)
    finally:
        processor.shutdown(timeout_millis=500)
    assert processor.stats().recovered == 0
    assert len(_batches(tmp_path)) == 1  # released, not lost
