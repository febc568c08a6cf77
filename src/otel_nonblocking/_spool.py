"""The disk spool: encoded batches (spans, or log records) that could not be delivered,
kept in a bounded directory until the backend takes them: from the process that wrote them
once the backend is back, or from the next process (or a later start).

One directory per signal (:class:`SpoolKind`): span batches in the spool directory itself,
log record batches in its ``logs`` subdirectory, each under its own size cap. The header's
``flags`` say which signal's requests a file holds, and a spool never sends a file of
another signal (it is set aside as corrupt): a span request can never reach ``/v1/logs``.

Only the processor's worker thread calls into a :class:`Spool`; nothing here runs on the
application's threads. Every write is atomic (temporary file, fsync, rename).

File format (one batch per file, named ``<time_ns>-<writer>-<seq>.otlp``)::

    magic   8 bytes   b"OTNBSPL\\x00"
    version u16       2
    flags   u16       the signal: 0 spans, 1 log records
    spans   u32       number of items (spans, log records) in the payload
    length  u64       payload length in bytes
    crc32   u32       zlib.crc32 of the 24 header bytes before it, then of the payload
    payload           ExportTraceServiceRequest (ExportLogsServiceRequest) wire bytes,
                      uncompressed

Version 1 files (whose checksum covered only the payload) are still read; their span
count is taken from the payload itself, never from the unprotected header.

Nothing in the directory is trusted: it must be a real directory (not a symlink) owned by
this user that no one else can write to, else the spool is off. Only regular files are
opened (``O_NOFOLLOW | O_NONBLOCK``: a symlink or a FIFO named like a batch is set aside,
never followed or waited on), and a file larger than the size cap is never read.

Claim protocol: a process delivers (or evicts) a file only while it holds an exclusive
``flock`` on it, taken *before* it renames the file to ``<name>.claimed-<pid>`` and kept
until the file is deleted or renamed back. The kernel drops the lock when the process
dies, so a claim whose lock can be taken is stale and renamed back, whatever its pid or
age says (pids mean nothing across containers sharing a volume). Every rename of a batch
file happens under that lock, so of two processes sharing a spool only one ever sends a
file. A file that fails validation is renamed ``<name>.corrupt`` (kept for inspection,
evicted first when space is needed); files with other names are left alone.
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
from typing import Final

from . import _state
from ._log import AggregatedWarning

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: open() refuses the spool
    fcntl = None  # type: ignore[assignment]

MAGIC = b"OTNBSPL\x00"
VERSION = 2
_OLD_VERSION = 1  # checksum over the payload only: read, span count taken from the payload
HEADER = struct.Struct(">8sHHIQI")  # magic, version, flags, spans, payload length, crc32
_CHECKED = HEADER.size - 4  # the header bytes the version 2 checksum covers (all but itself)
SUFFIX = ".otlp"
CORRUPT_SUFFIX = ".corrupt"

_NAME = re.compile(r"^\d{20}-[0-9a-f]{16}-\d{8}\.otlp$")
_CLAIMED = re.compile(r"^(\d{20}-[0-9a-f]{16}-\d{8}\.otlp)\.claimed-(\d+)$")
_TMP = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+$")
_CORRUPT = re.compile(r"^\d{20}-[0-9a-f]{16}-\d{8}\.otlp\.corrupt$")

#: A temporary file older than this is a crashed writer's leftover.
STALE_TMP_SECONDS = 60.0
# Opening a spool file: never follow a symlink, never wait on a FIFO or a device.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class SpoolKind:
    """Whose batches a spool holds: what its files' ``flags`` say, and where they live."""

    noun: str  # "span", "log record": in warnings
    flags: int  # the header's flags of its files
    subdirectory: str  # under the spool directory ("": the directory itself)


SPANS: Final = SpoolKind("span", 0, "")
LOGS: Final = SpoolKind("log record", 1, "logs")
#: Names of the other signals' subdirectories: never foreign files of the span spool.
_SUBDIRECTORIES: Final = frozenset({LOGS.subdirectory})


class SpoolFullError(Exception):
    """The batch alone is larger than the spool's size cap."""


class UnsafeSpoolDirectoryError(OSError):
    """The spool directory is not one only this user controls; the spool stays off."""


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
    fd: int = -1  # holds the claim's lock until the file is removed or released


@dataclass(frozen=True)
class SpoolStats:
    """Counters of one :class:`Spool` since it was made."""

    directory: str
    written_files: int = 0
    written_spans: int = 0
    evicted_spans: int = 0
    corrupt_files: int = 0
    foreign_files: int = 0


def _checksum(header: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(header[:_CHECKED]))


def encode_file(payload: bytes, spans: int, kind: SpoolKind = SPANS) -> bytes:
    """The bytes of a spool file holding ``payload`` (``spans`` items of ``kind``)."""
    header = HEADER.pack(MAGIC, VERSION, kind.flags, spans, len(payload), 0)
    crc = _checksum(header, payload)
    return HEADER.pack(MAGIC, VERSION, kind.flags, spans, len(payload), crc) + payload


def decode_file(data: bytes, kind: SpoolKind = SPANS) -> tuple[bytes, int]:
    """``(payload, items)`` of a spool file's bytes; raises ValueError if it is not a
    valid file of ``kind`` (one of another signal included)."""
    if len(data) < HEADER.size:
        raise ValueError("truncated header")
    magic, version, flags, spans, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not a spool file")
    if version not in (VERSION, _OLD_VERSION):
        raise ValueError(f"unknown version {version}")
    payload = data[HEADER.size :]
    if len(payload) != length:
        raise ValueError("truncated payload")
    if version == _OLD_VERSION:  # only ever written for spans
        if kind is not SPANS:
            raise ValueError("another signal's file")
        if zlib.crc32(payload) != crc:
            raise ValueError("checksum mismatch")
        return payload, _count_spans(payload)
    if _checksum(data, payload) != crc:
        raise ValueError("checksum mismatch")
    if flags != kind.flags:  # checked once the checksum says the header is what was written
        raise ValueError("another signal's file")
    return payload, spans


def _count_spans(payload: bytes) -> int:
    """Spans in an ExportTraceServiceRequest body (for files whose header is unprotected)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(payload)
    except Exception as error:  # protobuf's DecodeError, or whatever its C parser raises
        raise ValueError("undecodable payload") from error
    return sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)


def _read_regular(fd: int, limit: int) -> bytes:
    """The bytes of the open file ``fd``: only a regular file, only up to ``limit`` bytes
    (checked before anything is read); raises ValueError otherwise."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size > limit:
        raise ValueError("larger than the spool's size cap")
    chunks = []
    left = info.st_size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _lock(path: str) -> int | None:
    """An fd of the regular file ``path`` holding its exclusive lock, or None (gone, not a
    regular file, or locked by a live claimant)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Still the file of that name (not removed, or renamed away, before we locked it)?
        now, held = os.lstat(path), os.fstat(fd)
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            raise OSError("renamed meanwhile")
    except OSError:
        os.close(fd)
        return None
    return fd


def check_directory(directory: str) -> None:
    """Raise :class:`UnsafeSpoolDirectoryError` unless ``directory`` is a real directory
    owned by this user that neither group nor others may write to."""
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeSpoolDirectoryError("is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSpoolDirectoryError("is not a directory")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise UnsafeSpoolDirectoryError("is owned by another user")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise UnsafeSpoolDirectoryError(f"is writable by other users (mode {mode:o})")


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
    """A bounded directory of encoded batches of one signal (``kind``: spans by default,
    in ``directory`` itself; log records in its ``logs`` subdirectory); see the module
    docstring for the format.

    ``writer`` identifies the files this instance writes (a random token by default); its
    own files are marked as such when claimed, because their items are already counted
    by the processor that spooled them.

    >>> spool = Spool("/var/tmp/otel-spool", max_bytes=256 * 1024 * 1024)  # doctest: +SKIP
    >>> spool.open()  # doctest: +SKIP
    """

    def __init__(
        self,
        directory: str,
        max_bytes: int,
        *,
        writer: str | None = None,
        kind: SpoolKind = SPANS,
    ) -> None:
        self.kind = kind
        self.base_directory = os.path.abspath(directory)
        self.directory = os.path.join(self.base_directory, kind.subdirectory)
        if not kind.subdirectory:
            self.directory = self.base_directory
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
        self.warn = AggregatedWarning(f"{kind.noun} spool")

    # -- setup --

    def open(self) -> None:
        """Create the directory (owner-only), check that no one else controls it, and tidy
        leftovers; raises OSError (:class:`UnsafeSpoolDirectoryError` for an unsafe one)."""
        if fcntl is None:  # pragma: no cover
            raise UnsafeSpoolDirectoryError("needs POSIX file locks")
        if self.directory != self.base_directory:  # a signal's subdirectory: both checked
            if not os.path.lexists(self.base_directory):
                os.makedirs(self.base_directory, mode=0o700, exist_ok=True)
            check_directory(self.base_directory)
        if not os.path.lexists(self.directory):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        check_directory(self.directory)
        mode = stat.S_IMODE(os.lstat(self.directory).st_mode)
        if mode & 0o077:
            self.warn.add(f"spool directory is readable by others (mode {mode:o})")
        self._tidy()

    def _tidy(self) -> None:
        """Remove crashed writers' temporary files; release claims no live process holds."""
        now = time.time()
        for entry in self._scan():
            name = entry.name
            tmp = _TMP.match(name)
            claimed = _CLAIMED.match(name)
            try:
                if tmp is not None:
                    age = now - entry.stat(follow_symlinks=False).st_mtime
                    pid = int(tmp.group(1))
                    dead = pid != os.getpid() and not _pid_alive(pid)
                    if dead or age > STALE_TMP_SECONDS:
                        os.unlink(entry.path)
                elif claimed is not None:
                    fd = _lock(entry.path)
                    if fd is None:
                        continue  # a live process holds it (or it is not a regular file)
                    try:
                        os.rename(entry.path, os.path.join(self.directory, claimed.group(1)))
                    finally:
                        os.close(fd)
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
        data = encode_file(payload, spans, self.kind)
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
                size = entry.stat(follow_symlinks=False).st_size
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
        for _name, path in sorted(corrupt):
            if total + needed <= self.max_bytes:
                return evicted
            try:
                size = os.lstat(path).st_size
                os.unlink(path)
            except OSError:
                continue
            total -= size
        for name, path in sorted(batches):
            if total + needed <= self.max_bytes:
                break
            fd = _lock(path)
            if fd is None:
                continue  # claimed by another process meanwhile, or not a regular file
            try:
                size = os.fstat(fd).st_size
                spans = self._span_count(name, fd)
                os.unlink(path)
            except OSError:
                continue
            finally:
                os.close(fd)
            total -= size
            with self._lock:
                own = self._own.pop(name, None) is not None
                self._evicted_spans += spans
            if spans:
                evicted.append(Evicted(name, spans, own))
        return evicted

    def _span_count(self, name: str, fd: int) -> int:
        with self._lock:
            known = self._own.get(name)
        if known is not None:
            return known
        try:
            return decode_file(_read_regular(fd, self.max_bytes), self.kind)[1]
        except (OSError, ValueError):
            return 0

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
                or (name in _SUBDIRECTORIES and entry.is_dir(follow_symlinks=False))
            ):
                self._foreign.add(name)
                self.warn.add("foreign file in the spool directory skipped")
        return sorted(names)

    def claim(self, name: str) -> SpoolFile | None:
        """Take ``name`` for delivery; None if another process has it or it is corrupt.

        The file's lock is taken before it is renamed and held until :meth:`remove` or
        :meth:`release`, so no other process can send it meanwhile.
        """
        path = os.path.join(self.directory, name)
        claimed = f"{path}.claimed-{os.getpid()}"
        try:
            info = os.lstat(path)
        except OSError:
            return None  # another process has it
        if not stat.S_ISREG(info.st_mode):  # a symlink, a FIFO, a device: never opened
            self._set_aside(path, path, "not a regular file")
            return None
        fd = _lock(path)
        if fd is None:
            return None
        _state.spool_claim_fds.add(fd)
        try:
            os.rename(path, claimed)
        except OSError:
            self._unhold(fd)
            return None
        try:
            data = _read_regular(fd, self.max_bytes)
            payload, spans = decode_file(data, self.kind)
        except (OSError, ValueError) as error:
            why = str(error) if isinstance(error, ValueError) else type(error).__name__
            self._set_aside(claimed, path, why)
            self._unhold(fd)
            return None
        return SpoolFile(name, claimed, payload, spans, own=name in self._own, fd=fd)

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
        finally:
            self._unhold(file.fd)

    def remove(self, file: SpoolFile) -> None:
        """Delete a claimed file (delivered, or refused for good by the backend)."""
        self._own.pop(file.name, None)
        try:
            os.unlink(file.claimed_path)
        except OSError:
            self.warn.add("could not remove a delivered spool file")
        finally:
            self._unhold(file.fd)  # only now: the file is gone before its lock is

    def _unhold(self, fd: int) -> None:
        _state.spool_claim_fds.discard(fd)
        _close(fd)

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


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
