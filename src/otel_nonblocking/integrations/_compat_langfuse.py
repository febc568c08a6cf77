"""Every read of Langfuse internals, in one place, found by feature detection.

Every attribute the integration needs from the Langfuse SDK (score queue, consumers,
wake-up, the client's resource manager, the exporter inside the span processor) is looked
up here, with ``getattr`` fallbacks rather than version checks; OpenTelemetry SDK internals
go through :mod:`.._compat_sdk`. :func:`probe` reports what the installed release has, and
a test fails naming what a new release moved.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from queue import Empty, Queue
from typing import Any

from .. import _compat_sdk

try:
    _client_module: Any = importlib.import_module("langfuse._client.client")
    _rm_module: Any = importlib.import_module("langfuse._client.resource_manager")
    _processor_module: Any = importlib.import_module("langfuse._client.span_processor")
except ImportError as error:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "otel_nonblocking.integrations.langfuse needs the Langfuse Python SDK (3.x to 5.x): "
        "pip install 'otel-nonblocking[langfuse]'"
    ) from error

try:  # 4.18 and later wrap the OTLP exporter to extract media and mask spans
    _transforming_module: Any = importlib.import_module("langfuse._client.span_exporter")
    _TRANSFORMING: Any = getattr(_transforming_module, "LangfuseTransformingSpanExporter", None)
except ImportError:
    _TRANSFORMING = None

#: The classes patched, and the one whose instances are Langfuse's span processors.
LANGFUSE_CLIENT: Any = _client_module.Langfuse
RESOURCE_MANAGER: Any = _rm_module.LangfuseResourceManager
SPAN_PROCESSOR: Any = _processor_module.LangfuseSpanProcessor

DEFAULT_BASE_URL = "https://cloud.langfuse.com"


def _host_variables() -> tuple[str, ...]:
    """The variables the installed client reads its host from, in its order.

    Clients with a ``base_url`` argument read ``LANGFUSE_BASE_URL`` first, then
    ``LANGFUSE_HOST``; older ones only ``LANGFUSE_HOST``.
    """
    try:
        takes_base_url = "base_url" in inspect.signature(LANGFUSE_CLIENT.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature always readable today
        takes_base_url = True
    return ("LANGFUSE_BASE_URL", "LANGFUSE_HOST") if takes_base_url else ("LANGFUSE_HOST",)


#: Where the installed Langfuse reads its host (spans and scores go there), first wins.
HOST_VARIABLES: tuple[str, ...] = _host_variables()
OTLP_TRACES_PATH = "api/public/otel/v1/traces"
INGESTION_VERSION_HEADER = "x-langfuse-ingestion-version"


def sdk_version() -> str:
    """The installed SDK's version, as its own exporter sends it in ``x-langfuse-sdk-version``."""
    for module_name in ("langfuse._version", "langfuse.version"):  # 4.x/5.x, then 3.x
        try:
            module: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        found = getattr(module, "__version__", None)
        if isinstance(found, str):
            return found
    try:
        return version("langfuse")
    except PackageNotFoundError:  # pragma: no cover - imported, so it is installed
        return "unknown"


def _string_constants(code: Any) -> Iterator[str]:
    for const in getattr(code, "co_consts", ()):
        if isinstance(const, str):
            yield const
        elif isinstance(const, tuple):
            yield from (item for item in const if isinstance(item, str))
        elif hasattr(const, "co_consts"):
            yield from _string_constants(const)


def sdk_sends_ingestion_version() -> bool:
    """True when the installed span processor adds ``x-langfuse-ingestion-version: 4``.

    5.x does; 3.x and 4.x do not. Read from the constants of the processor's
    constructor, so the answer follows the installed code rather than a version list.
    """
    init = getattr(SPAN_PROCESSOR, "__init__", None)
    return INGESTION_VERSION_HEADER in set(_string_constants(getattr(init, "__code__", None)))


#: 4.18+: ``_resolve_compression(arg)``, the SDK's own choice of compression; else None.
COMPRESSION_RESOLVER: Any = getattr(_processor_module, "_resolve_compression", None)


def max_request_size() -> int | None:
    """``LANGFUSE_OTEL_MAX_BATCH_SIZE_BYTES`` as the installed SDK reads it (4.18+)."""
    resolve = getattr(_processor_module, "_resolve_max_batch_size_bytes", None)
    if resolve is None:
        return None
    value = resolve()
    return value if isinstance(value, int) else None


def resource_managers() -> list[Any]:
    """Every live resource manager (one per public key), a snapshot."""
    instances: Any = getattr(RESOURCE_MANAGER, "_instances", {})
    return list(dict(instances).values())


def span_processors(rm: Any) -> list[Any]:
    """The Langfuse span processors of ``rm``'s project on its tracer provider."""
    processors = _compat_sdk.provider_span_processors(getattr(rm, "tracer_provider", None))
    key = getattr(rm, "public_key", None)
    return [
        p
        for p in processors
        if isinstance(p, SPAN_PROCESSOR) and getattr(p, "public_key", None) == key
    ]


def score_queue(rm: Any) -> Queue[Any] | None:
    for name in ("_score_queue", "_score_ingestion_queue"):  # 5.x, then 3.x/4.x
        found = getattr(rm, name, None)
        if isinstance(found, Queue):
            return found
    return None


def score_consumers(rm: Any) -> list[Any]:
    for name in ("_score_consumers", "_ingestion_consumers"):  # 5.x, then 3.x/4.x
        found = getattr(rm, name, None)
        if isinstance(found, list):
            return list(found)
    return []


def media_queue(rm: Any) -> Queue[Any] | None:
    found = getattr(rm, "_media_upload_queue", None)
    return found if isinstance(found, Queue) else None


def media_consumers(rm: Any) -> list[Any]:
    found = getattr(rm, "_media_upload_consumers", None)
    return list(found) if isinstance(found, list) else []


def alive(threads: list[Any]) -> list[Any]:
    return [t for t in threads if callable(getattr(t, "is_alive", None)) and t.is_alive()]


def prompt_cache_tasks(rm: Any) -> Any | None:
    """The prompt cache's refresh task manager, which registers its own exit hook.

    On 3.x/4.x its exit hook waits up to a second for an idle thread to notice it
    should stop, and longer while a prompt refresh talks to an unanswering backend.
    """
    manager = getattr(getattr(rm, "prompt_cache", None), "_task_manager", None)
    return manager if callable(getattr(manager, "shutdown", None)) else None


def _drop_score(*args: Any, **kwargs: Any) -> None:
    return None


def drop_scores(rm: Any) -> bool:
    """Make ``rm`` drop new scores instead of queueing them; False if it has no score hook.

    For a project without keys, where every send would be refused (and a flush would wait
    for it). The instance attribute shadows the class's ``add_score_task`` (3.x to 5.x),
    and :func:`keep_scores` removes it.
    """
    if not callable(getattr(type(rm), "add_score_task", None)):
        return False
    rm.add_score_task = _drop_score
    return True


def keep_scores(rm: Any) -> None:
    """Undo :func:`drop_scores`."""
    if vars(rm).get("add_score_task") is _drop_score:
        del rm.add_score_task


class WakeableQueue(Queue[Any]):
    """A Langfuse queue whose waiting ``get(timeout=...)`` can be told to give up now.

    3.x/4.x score consumers collect a batch with ``get(timeout=the interval left)`` and
    send it only when the interval is over (1 s by default), so a flush that joins the
    queue waits out the interval even on a healthy backend; media consumers notice a
    shutdown only when their ``get(timeout=1)`` returns. While bound, those queues'
    class is swapped for this subclass (same state; only ``_qsize`` and
    ``_get``, which ``Queue.get`` calls, are overridden, so a ``get`` that started
    before the swap is woken too). :func:`wake_queue` sets a wake mark and notifies:
    a waiting ``get`` then sees one item, and taking it raises ``Empty``, exactly what
    its timeout would have raised, and the consumer sends its batch or stops. One wake
    ends one ``get``; a mark nobody took ends the next ``get`` at once.
    """

    def _qsize(self) -> int:
        return len(self.queue) or int(self.__dict__.get("_otel_nonblocking_wake", False))

    def _get(self) -> Any:
        if not self.queue and self.__dict__.get("_otel_nonblocking_wake", False):
            self._otel_nonblocking_wake = False
            raise Empty
        return super()._get()


def prompt_queue(rm: Any) -> Queue[Any] | None:
    """The prompt cache's refresh queue (its consumers wait on it with ``get(timeout=1)``)."""
    found = getattr(prompt_cache_tasks(rm), "_queue", None)
    return found if isinstance(found, Queue) else None


def prompt_consumers(rm: Any) -> list[Any]:
    found = getattr(prompt_cache_tasks(rm), "_consumers", None)
    return list(found) if isinstance(found, list) else []


def _queues_to_wake(rm: Any) -> list[Queue[Any]]:
    """The queues whose consumers a flush or shutdown may have to wake.

    Only queues whose consumers wait with ``get(timeout=...)`` (a woken ``get`` raises
    ``Empty``, which an untimed ``get`` never does): the score queue where its consumers
    have no ``wake()`` (3.x/4.x), and the media queue (every release: its consumers wait
    up to 1 s before they notice a shutdown, which a process exit would otherwise pay).
    The prompt-refresh queue is woken with a no-op task instead
    (:func:`wake_prompt_consumers`): 4.18+ waits on it without a timeout.
    """
    queues = []
    scores = score_queue(rm)
    wakes_itself = any(callable(getattr(c, "wake", None)) for c in score_consumers(rm))
    if scores is not None and not wakes_itself:
        queues.append(scores)
    media = media_queue(rm)
    if media is not None:
        queues.append(media)
    return queues


def _no_task() -> None:
    """A prompt-refresh task that does nothing: wakes a consumer so it sees it was paused."""


def wake_prompt_consumers(rm: Any, count: int) -> None:
    """Hand ``count`` no-op tasks to the prompt-refresh consumers (paused ones then stop).

    4.0.x consumers wait up to 1 s in ``get(timeout=1)``, 4.18+ without a timeout until
    their shutdown sentinel; a no-op task ends either wait at once, and it is run and
    marked done like any refresh.
    """
    queue = prompt_queue(rm)
    if queue is None:
        return
    for _ in range(count):
        queue.put_nowait(_no_task)


def make_wakeable(rm: Any) -> None:
    """Swap ``rm``'s queues for :class:`WakeableQueue` where they are plain ``Queue`` objects."""
    for queue in _queues_to_wake(rm):
        if type(queue) is Queue:
            queue.__class__ = WakeableQueue


def restore_queue(rm: Any) -> None:
    """Undo :func:`make_wakeable` (a ``get`` already waiting finishes as it started)."""
    for queue in (score_queue(rm), media_queue(rm)):
        if type(queue) is WakeableQueue:
            setattr(queue, "__class__", Queue)  # noqa: B010 - a plain Queue again


def wake_queue(queue: Queue[Any] | None) -> None:
    """End the ``get`` a consumer is waiting in on a :class:`WakeableQueue` (no-op otherwise)."""
    if type(queue) is not WakeableQueue:
        return
    with queue.not_empty:
        queue._otel_nonblocking_wake = True
        queue.not_empty.notify_all()


def wake_score_consumers(rm: Any) -> None:
    """Make score consumers send what they hold now instead of at the end of their interval.

    5.x consumers have ``wake()``; on 3.x/4.x a :class:`WakeableQueue` is woken.
    """
    for consumer in alive(score_consumers(rm)):
        wake = getattr(consumer, "wake", None)
        if callable(wake):
            wake()
    wake_queue(score_queue(rm))


@dataclass(frozen=True)
class ExporterSlot:
    """The attribute that holds the exporter Langfuse's processor exports through.

    On OTel 1.35+ it is ``processor._batch_processor._exporter``; on older SDKs
    ``processor.span_exporter``; on Langfuse 4.18+ the exporter there is a transforming
    wrapper and the slot is its inner ``_exporter`` (so media extraction and masking stay).
    """

    holder: Any
    attr: str

    def get(self) -> Any:
        return getattr(self.holder, self.attr)

    def set(self, exporter: Any) -> None:
        setattr(self.holder, self.attr, exporter)


#: OTel 1.35+: the shared ``BatchProcessor`` inside a ``BatchSpanProcessor``.
batch_processor = _compat_sdk.batch_processor


def outer_exporter_slot(processor: Any) -> ExporterSlot | None:
    slot = _compat_sdk.batch_exporter_slot(processor)
    return None if slot is None else ExporterSlot(*slot)


def exporter_slot(processor: Any) -> ExporterSlot | None:
    """Where to put a deadline exporter so that Langfuse's processor exports through it."""
    slot = outer_exporter_slot(processor)
    if slot is None:
        return None
    outer = slot.get()
    if _TRANSFORMING is not None and isinstance(outer, _TRANSFORMING):
        return ExporterSlot(outer, "_exporter")
    return slot


def queued_spans(processor: Any) -> int:
    """Spans waiting in a ``BatchSpanProcessor``'s queue (0 if it cannot be read)."""
    queue = _compat_sdk.batch_queue(processor)
    try:
        return len(queue) if queue is not None else 0
    except TypeError:
        return 0


def default_endpoint(base_url: str) -> str:
    """The trace endpoint Langfuse's own exporter uses for ``base_url`` (no slash cleanup)."""
    path = os.environ.get("LANGFUSE_OTEL_TRACES_EXPORT_PATH")
    return f"{base_url}/{path}" if path else f"{base_url}/{OTLP_TRACES_PATH}"


# --- the client, the resource manager's state and the media manager ------------------------


def client_resources(client: Any) -> Any | None:
    """The resource manager behind a ``Langfuse`` client (3.x to 5.x: ``_resources``)."""
    return getattr(client, "_resources", None)


def has_shutdown_flag(rm: Any) -> bool:
    """4.18+: the resource manager keeps a ``_shutdown`` flag (new scores are then dropped,
    and a fork restarts nothing); older releases have none."""
    return isinstance(getattr(rm, "_shutdown", None), bool)


def is_shut_down(rm: Any) -> bool:
    return getattr(rm, "_shutdown", False) is True


def mark_shut_down(rm: Any) -> None:
    """Set the 4.18+ shut-down flag, where the release has one."""
    if has_shutdown_flag(rm):
        rm._shutdown = True


def media_shutdown_signal(rm: Any) -> Any | None:
    """4.18+: ``signal_shutdown(count=...)`` of the media manager, which wakes its consumers
    at once; None on releases without it."""
    signal = getattr(getattr(rm, "_media_manager", None), "signal_shutdown", None)
    return signal if callable(signal) else None


# --- the probe ---------------------------------------------------------------------------

#: The first release of the CI matrix with each internal that older releases lack.
SINCE: dict[str, str] = {
    "resource manager shut-down flag": "4.18",
    "media manager signal_shutdown": "4.18",
    "compression resolver": "4.18",
    "max batch size resolver": "4.18",
    "transforming exporter": "4.18",
}


def probe(base_url: str) -> list[_compat_sdk.ProbeResult]:
    """Look for every Langfuse internal above on a real client of the installed release.

    Builds a client for ``base_url`` (a loopback fake in tests: nothing need be sent) and
    shuts it down; for tests and diagnostics only. An internal listed in :data:`SINCE`
    is required only from that release on.
    """
    client = LANGFUSE_CLIENT(
        public_key="pk-probe",
        secret_key="sk-probe",  # noqa: S106 - a made-up key for the probe's own client
        base_url=base_url,
    )
    try:
        rm = client_resources(client)
        processors = span_processors(rm)
        processor = processors[0] if processors else None
        slot = exporter_slot(processor) if processor is not None else None
        found: dict[str, bool] = {
            "client resources": isinstance(rm, RESOURCE_MANAGER),
            "resource managers": rm in resource_managers(),
            "span processors": processor is not None,
            "exporter slot": slot is not None and callable(getattr(slot.get(), "export", None)),
            "queued spans": processor is not None
            and _compat_sdk.batch_queue(processor) is not None,
            "score queue": score_queue(rm) is not None,
            "score consumers": bool(score_consumers(rm)),
            "media queue": media_queue(rm) is not None,
            "media consumers": bool(media_consumers(rm)),
            "prompt cache tasks": prompt_cache_tasks(rm) is not None,
            "prompt queue": prompt_queue(rm) is not None,
            "prompt consumers": bool(prompt_consumers(rm)),
            "score hook": callable(getattr(type(rm), "add_score_task", None)),
            "sdk version": sdk_version() != "unknown",
            "resource manager shut-down flag": has_shutdown_flag(rm),
            "media manager signal_shutdown": media_shutdown_signal(rm) is not None,
            "compression resolver": COMPRESSION_RESOLVER is not None,
            "max batch size resolver": callable(
                getattr(_processor_module, "_resolve_max_batch_size_bytes", None)
            ),
            "transforming exporter": _TRANSFORMING is not None,
        }
    finally:
        client.shutdown()
    release = _release(sdk_version())
    return [
        _compat_sdk.ProbeResult(
            name,
            name if ok else None,
            required=name not in SINCE or release >= _release(SINCE[name]),
            lacking=f"Langfuse before {SINCE[name]}" if name in SINCE else "",
        )
        for name, ok in found.items()
    ]


def _release(text: str) -> tuple[int, ...]:
    """``"4.18.0"`` as ``(4, 18, 0)``; the leading numbers only (``"5.0.0b1"``: ``(5, 0, 0)``)."""
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if match is None:
        return ()
    return tuple(int(group) for group in match.groups() if group is not None)
