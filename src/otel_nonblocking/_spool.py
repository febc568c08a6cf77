"""The disk spool: encoded span batches that could not be delivered, kept in a bounded
directory until the backend takes them: from the process that wrote them once the backend
is back, or from the next process (or a later start).

Only the processor's worker thread calls into a :class:`Spool`; nothing here runs on the
application's threads. Every write is atomic (temporary file, fsync, rename).

File format (one batch per file, named ``<time_ns>-<writer>-<seq>.otlp``)::

    magic   8 bytes   b"OTNBSPL\\x00"
    version u16       1
    flags   u16       0
    spans   u32       number of spans in the payload
    length  u64       payload length in bytes
    crc32   u32       zlib.crc32 of the payload
    payload           ExportTraceServiceRequest wire bytes, uncompressed

Claim protocol: a process delivers (or evicts) a file only after renaming it to
``<name>.claimed-<pid>``; the rename is atomic, so of two processes sharing a spool only
one gets each file. A claim whose process is gone, or older than ten minutes, is stale and
renamed back. A file that fails validation is renamed ``<name>.corrupt`` (kept for
inspection, evicted first when space is needed); files with other names are left alone.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import stat
import struct
import threading
import time
import zlib
from dataclasses import dataclass

from ._log import AggregatedWarning

MAGIC = b"OTNBSPL\x00"
VERSION = 1
HEADER = struct.Struct(">8sHHIQI")  # magic, version, flags, spans, payload length, crc32
SUFFIX = ".otlp"
CORRUPT_SUFFIX = ".corrupt"

_NAME = re.compile(r"^\d{20}-[0-9a-f]{16}-\d{8}\.otlp$")
_CLAIMED = re.compile(r"^(\d{20}-[0-9a-f]{16}-\d{8}\.otlp)\.claimed-(\d+)$")
_TMP = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+$")
_CORRUPT = re.compile(r"^\d{20}-[0-9a-f]{16}-\d{8}\.otlp\.corrupt$")

#: A claim older than this is released even if its process seems alive (pid reuse,
#: another container sharing the volume); a delivery never holds a claim this long.
STALE_CLAIM_SECONDS = 600.0
#: A temporary file older than this is a crashed writer's leftover.
STALE_TMP_SECONDS = 60.0


class SpoolFullError(Exception):
    """The batch alone is larger than the spool's size cap."""


@dataclass(frozen=True)
class Evicted:
    """A file removed to make room: its span count and whether this spool wrote it."""

    name: str
    spans: int
    own: bool


@dataclass(frozen=True)
class SpoolFile:
    """A claimed, validated file: deliver ``payload``, then :meth:`Spool.remove` or
    :meth:`Spool.release` it."""

    name: str
    claimed_path: str
    payload: bytes
    spans: int
    own: bool = False  # written by this spool (its spans are in this processor's accounting)


@dataclass(frozen=True)
class SpoolStats:
    """Counters of one :class:`Spool` since it was made."""

    directory: str
    written_files: int = 0
    written_spans: int = 0
    evicted_spans: int = 0
    corrupt_files: int = 0
    foreign_files: int = 0


def encode_file(payload: bytes, spans: int) -> bytes:
    """The bytes of a spool file holding ``payload`` (``spans`` spans)."""
    header = HEADER.pack(MAGIC, VERSION, 0, spans, len(payload), zlib.crc32(payload))
    return header + payload


def decode_file(data: bytes) -> tuple[bytes, int]:
    """``(payload, spans)`` of a spool file's bytes; raises ValueError if it is not valid."""
    if len(data) < HEADER.size:
        raise ValueError("truncated header")
    magic, version, _flags, spans, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a spool file")
    if version != VERSION:
        raise ValueError(f"unknown version {version}")
    payload = data[HEADER.size :]
    if len(payload) != length:
        raise ValueError("truncated payload")
    if zlib.crc32(payload) != crc:
        raise ValueError("checksum mismatch")
    return payload, spans


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # pragma: no cover - only the age tells there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


class Spool:
    """A bounded directory of encoded span batches; see the module docstring for the format.

    ``writer`` identifies the files this instance writes (a random token by default); its
    own files are marked as such when claimed, because their spans are already counted
    by the processor that spooled them.

    >>> spool = Spool("/var/tmp/otel-spool", max_bytes=256 * 1024 * 1024)  # doctest: +SKIP
    >>> spool.open()  # doctest: +SKIP
    """

    def __init__(self, directory: str, max_bytes: int, *, writer: str | None = None) -> None:
        self.directory = os.path.abspath(directory)
        self.max_bytes = max_bytes
        self.writer = writer if writer is not None else secrets.token_hex(8)
        self._seq = itertools.count()
        self._own: dict[str, int] = {}  # name -> spans, of files this spool wrote
        self._lock = threading.Lock()
        self._written_files = 0
        self._written_spans = 0
        self._evicted_spans = 0
        self._corrupt = 0
        self._foreign: set[str] = set()
        self.warn = AggregatedWarning("span spool")

    # -- setup --

    def open(self) -> None:
        """Create the directory (owner-only) and tidy leftovers; raises OSError."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        mode = stat.S_IMODE(os.stat(self.directory).st_mode)
        if mode & 0o077:
            self.warn.add(f"spool directory is accessible to others (mode {mode:o})")
        self._tidy()

    def _tidy(self) -> None:
        """Remove crashed writers' temporary files; release stale claims."""
        now = time.time()
        for entry in self._scan():
            name = entry.name
            tmp = _TMP.match(name)
            claimed = _CLAIMED.match(name)
            try:
                age = now - entry.stat().st_mtime
                if tmp is not None:
                    pid = int(tmp.group(1))
                    dead = pid != os.getpid() and not _pid_alive(pid)
                    if dead or age > STALE_TMP_SECONDS:
                        os.unlink(entry.path)
                elif claimed is not None and (
                    age > STALE_CLAIM_SECONDS or not _pid_alive(int(claimed.group(2)))
                ):
                    os.rename(entry.path, os.path.join(self.directory, claimed.group(1)))
            except OSError:
                continue  # another process got there first

    def _scan(self) -> list[os.DirEntry[str]]:
        with os.scandir(self.directory) as entries:
            return list(entries)

    # -- writing --

    def write(self, payload: bytes, spans: int) -> list[Evicted]:
        """Store one batch atomically; returns the files evicted to make room.

        Raises :class:`SpoolFullError` if the batch alone exceeds the cap, OSError if the
        disk refuses.
        """
        data = encode_file(payload, spans)
        if len(data) > self.max_bytes:
            raise SpoolFullError
        evicted = self._make_room(len(data))
        name = f"{time.time_ns():020d}-{self.writer}-{next(self._seq) % 10**8:08d}{SUFFIX}"
        tmp = os.path.join(self.directory, f".tmp-{os.getpid()}-{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(self.directory, name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._sync_directory()
        with self._lock:
            self._own[name] = spans
            self._written_files += 1
            self._written_spans += spans
        return evicted

    def _sync_directory(self) -> None:
        if os.name != "posix":  # pragma: no cover
            return
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _make_room(self, needed: int) -> list[Evicted]:
        """Evict corrupt files, then the oldest batches, until ``needed`` more bytes fit."""
        total = 0
        corrupt: list[tuple[str, str]] = []
        batches: list[tuple[str, str]] = []
        for entry in self._scan():
            name = entry.name
            try:
                size = entry.stat().st_size
            except OSError:
                continue
            if _NAME.match(name):
                batches.append((name, entry.path))
            elif _CORRUPT.match(name):
                corrupt.append((name, entry.path))
            elif not _CLAIMED.match(name):
                continue  # temporary or foreign files: not ours to count or remove
            total += size
        evicted: list[Evicted] = []
        for name, path in sorted(corrupt) + sorted(batches):
            if total + needed <= self.max_bytes:
                break
            claimed = f"{path}.claimed-{os.getpid()}"
            try:
                os.rename(path, claimed)
            except OSError:
                continue  # claimed by another process meanwhile
            try:
                size = os.stat(claimed).st_size
                spans = 0 if name.endswith(CORRUPT_SUFFIX) else self._span_count(name, claimed)
                os.unlink(claimed)
            except OSError:
                continue
            total -= size
            with self._lock:
                own = self._own.pop(name, None) is not None
                self._evicted_spans += spans
            if spans:
                evicted.append(Evicted(name, spans, own))
        return evicted

    def _span_count(self, name: str, path: str) -> int:
        with self._lock:
            known = self._own.get(name)
        if known is not None:
            return known
        try:
            with open(path, "rb") as file:
                head = file.read(HEADER.size)
            magic, version, _flags, spans, _length, _crc = HEADER.unpack(head)
        except (OSError, struct.error):
            return 0
        return int(spans) if magic == MAGIC and version == VERSION else 0

    # -- reading --

    def backlog(self) -> list[str]:
        """Names of deliverable files (this writer's and others'), oldest first."""
        names = []
        for entry in self._scan():
            name = entry.name
            if _NAME.match(name):
                names.append(name)
            elif not (
                _CLAIMED.match(name)
                or _TMP.match(name)
                or _CORRUPT.match(name)
                or name in self._foreign
            ):
                self._foreign.add(name)
                self.warn.add("foreign file in the spool directory skipped")
        return sorted(names)

    def claim(self, name: str) -> SpoolFile | None:
        """Take ``name`` for delivery; None if another process has it or it is corrupt."""
        path = os.path.join(self.directory, name)
        claimed = f"{path}.claimed-{os.getpid()}"
        try:
            os.rename(path, claimed)
        except OSError:
            return None
        try:
            os.utime(claimed)  # the claim's age starts now (rename keeps the mtime)
            with open(claimed, "rb") as file:
                data = file.read()
            payload, spans = decode_file(data)
        except (OSError, ValueError) as error:
            self._set_aside(claimed, path, type(error).__name__)
            return None
        return SpoolFile(name, claimed, payload, spans, own=name in self._own)

    def _set_aside(self, claimed: str, path: str, why: str) -> None:
        with self._lock:
            self._corrupt += 1
        self.warn.add(f"corrupt spool file skipped ({why})")
        with contextlib.suppress(OSError):
            os.rename(claimed, path + CORRUPT_SUFFIX)

    def release(self, file: SpoolFile) -> None:
        """Give a claimed file back, undelivered (the next attempt sends it)."""
        try:
            os.rename(file.claimed_path, os.path.join(self.directory, file.name))
        except OSError:
            self.warn.add("could not release a claimed spool file")

    def remove(self, file: SpoolFile) -> None:
        """Delete a claimed file (delivered, or refused for good by the backend)."""
        self._own.pop(file.name, None)
        try:
            os.unlink(file.claimed_path)
        except OSError:
            self.warn.add("could not remove a delivered spool file")

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(
                directory=self.directory,
                written_files=self._written_files,
                written_spans=self._written_spans,
                evicted_spans=self._evicted_spans,
                corrupt_files=self._corrupt,
                foreign_files=len(self._foreign),
            )
