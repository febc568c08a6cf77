"""bound_langfuse_flush(): one deadline over spans, scores and media, reversible, on every release.

Every test runs against the fake Langfuse API on 127.0.0.1 with the installed SDK
(CI runs this directory on Langfuse 4.0.6, 4.2.0, the newest 4.x and the newest 5.x).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

from opentelemetry import trace

from otel_nonblocking import ConfigurationError, DeadlineSpanExporter, _state
from otel_nonblocking.integrations import _compat_langfuse as sdk
from otel_nonblocking.integrations.langfuse import (
    LangfuseFlushResult,
    bound_langfuse_flush,
    current_binding,
    unbind_langfuse_flush,
)
from otel_nonblocking.testing import FakeLangfuse, Mode, reset
from tests.integrations.conftest import PUBLIC_KEY, request_handler, teardown_langfuse

BUDGET = 0.5  # seconds: every bounded flush and shutdown here must end within it
SLACK = 0.5  # the generous margin timing bounds allow on a shared machine
PROCESSORS = ["langfuse", "nonblocking"]
PATCHED = [
    (sdk.LANGFUSE_CLIENT, "flush"),
    (sdk.LANGFUSE_CLIENT, "shutdown"),
    (sdk.RESOURCE_MANAGER, "flush"),
    (sdk.RESOURCE_MANAGER, "shutdown"),
    (sdk.RESOURCE_MANAGER, "_initialize_instance"),
]


def _slot_exporter(client) -> object:
    (processor,) = sdk.span_processors(client._resources)
    slot = sdk.exporter_slot(processor)
    assert slot is not None
    return slot.get()


def _timed(call) -> tuple[object, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


class _Atexit:
    """Records atexit registrations with the module's equality semantics."""

    def __init__(self) -> None:
        self.callbacks: list[object] = []

    def register(self, func, *args, **kwargs):
        self.callbacks.append(func)
        return func

    def unregister(self, func) -> None:
        self.callbacks = [c for c in self.callbacks if c != func]


# -- binding ---------------------------------------------------------------------------------


def test_bind_is_idempotent_and_unbind_restores_the_stock_methods() -> None:
    stock = {(cls, name): cls.__dict__[name] for cls, name in PATCHED}
    binding = bound_langfuse_flush(timeout=BUDGET)
    assert bound_langfuse_flush(timeout=BUDGET) is binding
    assert current_binding() is binding
    for cls, name in PATCHED:
        patched = cls.__dict__[name]
        assert patched is not stock[(cls, name)]
        assert patched.__wrapped__ is stock[(cls, name)]  # wrapped once, stock reachable
    binding.unbind()
    binding.unbind()
    assert current_binding() is None
    assert not unbind_langfuse_flush()
    for cls, name in PATCHED:
        assert cls.__dict__[name] is stock[(cls, name)]


def test_testing_reset_unbinds_langfuse() -> None:
    stock = {(cls, name): cls.__dict__[name] for cls, name in PATCHED}
    binding = bound_langfuse_flush(timeout=BUDGET)
    reset()
    assert current_binding() is None
    assert binding not in _state.flushables()
    for cls, name in PATCHED:
        assert cls.__dict__[name] is stock[(cls, name)]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": 86_401}, "timeout must be at most a day"),  # the one seconds check
        ({"exit_timeout": -1}, "exit_timeout"),
        ({"exit_timeout": 1e9}, "exit_timeout must be at most a day"),
        ({"processor": "batch"}, "processor"),
    ],
)
def test_bind_rejects_bad_arguments_naming_them(kwargs, named) -> None:
    with pytest.raises(ConfigurationError, match=named):
        bound_langfuse_flush(**kwargs)
    assert current_binding() is None


@pytest.mark.parametrize("order", ["bind-first", "client-first"])
def test_bind_before_or_after_the_client_puts_a_deadline_exporter_in_its_processor(
    order, make_client
) -> None:
    if order == "bind-first":
        binding = bound_langfuse_flush(timeout=BUDGET)
        client = make_client()
    else:
        client = make_client()
        stock_exporter = _slot_exporter(client)
        assert not isinstance(stock_exporter, DeadlineSpanExporter)
        binding = bound_langfuse_flush(timeout=BUDGET)
    exporter = _slot_exporter(client)
    assert isinstance(exporter, DeadlineSpanExporter)
    assert exporter.timeout_seconds == BUDGET
    (status,) = binding.clients()
    assert (status.public_key, status.exporter, status.processor) == (
        PUBLIC_KEY,
        "rebuilt",
        "langfuse",
    )


def test_unbind_puts_back_langfuse_exporter_and_processor(make_client) -> None:
    client = make_client()
    (processor,) = sdk.span_processors(client._resources)
    stock_exporter = _slot_exporter(client)
    stock_batch = getattr(processor, "_batch_processor", None)
    binding = bound_langfuse_flush(timeout=BUDGET, processor="nonblocking")
    assert _slot_exporter(client) is not stock_exporter
    binding.unbind()
    assert _slot_exporter(client) is stock_exporter
    assert getattr(processor, "_batch_processor", None) is stock_batch
    assert binding.flush(client).ok  # an unbound handle still flushes within its budget...
    assert _slot_exporter(client) is stock_exporter  # ...without patching anything again


def _bounded_exit_hooks() -> list[object]:
    return [h for h in _state.exit_hooks() if type(h).__name__ == "_ExitHook"]


def test_exit_hook_is_swapped_for_a_bounded_one_and_restored(monkeypatch, make_client) -> None:
    fake_atexit = _Atexit()
    monkeypatch.setattr(atexit, "register", fake_atexit.register)
    monkeypatch.setattr(atexit, "unregister", fake_atexit.unregister)
    client = make_client()
    rm = client._resources
    assert rm.shutdown in fake_atexit.callbacks  # Langfuse's own hook
    binding = bound_langfuse_flush(timeout=BUDGET)
    assert rm.shutdown not in fake_atexit.callbacks
    # The bounded hook joins the package's one exit hook (one deadline for everything).
    hooks = _bounded_exit_hooks()
    assert len(hooks) == 1
    binding.unbind()
    assert _bounded_exit_hooks() == []
    assert rm.shutdown in fake_atexit.callbacks  # the stock hook is back


def test_exit_hook_of_a_client_created_after_binding_is_bounded(monkeypatch, make_client) -> None:
    fake_atexit = _Atexit()
    monkeypatch.setattr(atexit, "register", fake_atexit.register)
    monkeypatch.setattr(atexit, "unregister", fake_atexit.unregister)
    binding = bound_langfuse_flush(timeout=BUDGET)
    rm = make_client()._resources
    assert rm.shutdown not in fake_atexit.callbacks
    assert len(_bounded_exit_hooks()) == 1
    binding.unbind()
    assert _bounded_exit_hooks() == []


# -- a healthy backend ---------------------------------------------------------------------


@pytest.mark.parametrize("processor", PROCESSORS)
def test_spans_and_scores_arrive_with_the_auth_header(processor, fake, make_client) -> None:
    binding = bound_langfuse_flush(timeout=5.0, processor=processor)
    client = make_client()
    (langfuse_processor,) = sdk.span_processors(client._resources)
    # OTel SDKs without a BatchProcessor inside BatchSpanProcessor keep Langfuse's queue.
    replaceable = hasattr(langfuse_processor, "_batch_processor")
    expected = processor if replaceable else "langfuse"
    assert [c.processor for c in binding.clients()] == [expected]
    request_handler(client, "healthy")
    result = client.flush()
    assert isinstance(result, LangfuseFlushResult)
    assert result.ok, result
    assert sorted(fake.span_names()) == ["healthy", "healthy-step-0", "healthy-step-1"]
    assert fake.score_names() == ["quality"]
    for request in fake.requests:
        assert request.headers["authorization"].startswith("Basic ")
        assert request.headers["x-langfuse-public-key"] == PUBLIC_KEY


def test_processor_replacement_exports_exactly_what_langfuse_own_processor_exports(
    fake, make_client
) -> None:
    """Two projects on one provider, plus spans from other libraries: same routing as stock."""

    def scenario() -> dict[str, list[str]]:
        start = len(fake.requests)
        client_a = make_client(public_key="pk-a")
        client_b = make_client(public_key="pk-b")
        with client_a.start_as_current_observation(name="a-span"):
            pass
        with client_b.start_as_current_observation(name="b-span"):
            pass
        tracer = trace.get_tracer_provider()
        with tracer.get_tracer("some.other.lib").start_as_current_span("other-lib-span"):
            pass
        with tracer.get_tracer("openinference.x").start_as_current_span("llm-lib-span"):
            pass
        client_a.flush()
        client_b.flush()
        by_key: dict[str, list[str]] = {}
        for request in fake.requests[start:]:
            if request.path == FakeLangfuse.OTLP_PATH:
                key = request.headers["x-langfuse-public-key"]
                by_key.setdefault(key, []).extend(request.span_names())
        return {key: sorted(names) for key, names in by_key.items()}

    stock = scenario()
    teardown_langfuse()
    bound_langfuse_flush(timeout=5.0, processor="nonblocking")
    ours = scenario()
    assert "a-span" in stock["pk-a"]
    assert "b-span" in stock["pk-b"]
    assert "a-span" not in stock["pk-b"]
    assert ours == stock


# -- a backend that never answers, or drips ------------------------------------------------


@pytest.mark.parametrize("processor", PROCESSORS)
@pytest.mark.parametrize("mode", [Mode.HANG, Mode.DRIP])
def test_flush_returns_within_budget_and_reports_what_is_pending(
    mode, processor, fake, make_client
) -> None:
    fake.mode = mode
    bound_langfuse_flush(timeout=BUDGET, processor=processor)
    client = make_client()
    request_handler(client, "faulty")
    result, elapsed = _timed(client.flush)
    assert elapsed < BUDGET + SLACK, f"{mode.value}/{processor}: flush took {elapsed:.2f}s"
    assert isinstance(result, LangfuseFlushResult)
    assert result.timed_out
    assert result.pending > 0
    assert result.seconds <= elapsed


@pytest.mark.parametrize("processor", PROCESSORS)
@pytest.mark.parametrize("mode", [Mode.HANG, Mode.DRIP])
def test_shutdown_returns_within_budget(mode, processor, fake, make_client) -> None:
    fake.mode = mode
    bound_langfuse_flush(timeout=BUDGET, processor=processor)
    client = make_client()
    request_handler(client, "faulty")
    _, elapsed = _timed(client.shutdown)
    assert elapsed < BUDGET + SLACK, f"{mode.value}/{processor}: shutdown took {elapsed:.2f}s"
    _, again = _timed(client.shutdown)
    assert again < BUDGET + SLACK


def test_stock_flush_overruns_the_budget_and_the_bound_one_does_not(fake, make_client) -> None:
    """The fault is real: unpatched, the same flush is still running at twice the budget."""
    fake.mode = Mode.HANG
    client = make_client(timeout=1)
    request_handler(client, "stock")
    stock = threading.Thread(target=client.flush, name="stock-flush", daemon=True)
    stock.start()
    stock.join(2 * BUDGET)
    assert stock.is_alive(), "the stock flush returned within twice the budget"
    fake.mode = Mode.OK  # let it finish in the background
    teardown_langfuse()

    fake.mode = Mode.HANG
    bound_langfuse_flush(timeout=BUDGET)
    client = make_client(timeout=1)
    request_handler(client, "bound")
    _, elapsed = _timed(client.flush)
    assert elapsed < BUDGET + SLACK


def test_flush_after_shutdown_twice_returns(fake, make_client) -> None:
    """Langfuse 4.18 hangs forever here (sentinels left in the queues by the second call)."""
    bound_langfuse_flush(timeout=BUDGET)
    client = make_client()
    request_handler(client)
    client.shutdown()
    client.shutdown()
    result, elapsed = _timed(client.flush)
    assert elapsed < BUDGET + SLACK
    assert result.scores_pending == 0
    assert result.media_pending == 0


def test_score_after_shutdown_is_reported_at_once_instead_of_hanging(
    fake, make_client, caplog
) -> None:
    """Langfuse 4.x hangs forever here (a score enqueued with no consumer left); 5.x drops it."""
    bound_langfuse_flush(timeout=BUDGET)
    client = make_client()
    client.shutdown()
    for consumer in sdk.score_consumers(client._resources):
        consumer.join(5)  # stopping takes up to flush_interval (1 s) on 4.x
        assert not consumer.is_alive()
    with caplog.at_level(logging.WARNING, logger="langfuse"):
        client.create_score(name="late", value=1.0, trace_id="0" * 32)
    # 5.x says it dropped the score; 4.x enqueues it for a consumer that is gone. (The
    # queue may also hold a shutdown sentinel nobody took, which is not a score.)
    dropped = any("Score dropped" in record.getMessage() for record in caplog.records)
    result, elapsed = _timed(client.flush)
    assert elapsed < 0.5, f"flush waited {elapsed:.2f}s for a queue nobody drains"
    assert result.scores_pending == (0 if dropped else 1)
    assert not result.timed_out  # not waited for: no thread will ever send it


def test_media_uploads_pending_are_reported(fake, make_client) -> None:
    from langfuse.media import LangfuseMedia

    fake.mode = Mode.HANG
    bound_langfuse_flush(timeout=BUDGET)
    client = make_client()
    media = LangfuseMedia(content_bytes=b"\x89PNG\r\n\x1a\n" + bytes(64), content_type="image/png")
    with client.start_as_current_observation(name="with-media", input={"image": media}):
        pass
    result, elapsed = _timed(client.flush)
    assert elapsed < BUDGET + SLACK
    assert result.media_pending >= 1
    assert result.timed_out


def test_binding_flush_covers_every_project_under_one_deadline(fake, make_client) -> None:
    fake.mode = Mode.HANG
    binding = bound_langfuse_flush(timeout=BUDGET)
    for key in ("pk-a", "pk-b", "pk-c"):
        request_handler(make_client(public_key=key), key)
    result, elapsed = _timed(binding.flush)
    assert elapsed < BUDGET + SLACK
    assert result.timed_out
    assert result.scores_pending >= 3
