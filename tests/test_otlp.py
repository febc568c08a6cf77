"""otlp_span_exporter(): the fast encoder is wired in and sends what the stock one sends."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import ConfigurationError, ExportOutcome, otlp_span_exporter
from otel_nonblocking.testing import FakeOTLPBackend


def _spans() -> list:  # type: ignore[type-arg]
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc", "deployment": "test"}),
        shutdown_on_exit=False,
    )
    tracer = provider.get_tracer("encoder-test", "1.2.3")
    spans = []
    with tracer.start_as_current_span("parent", attributes={"a": 1, "b": [1.5, 2.5]}) as parent:
        parent.add_event("evt", {"k": "v", "ok": True})
        child = tracer.start_span("child", attributes={"text": "héllo" * 50})
        child.end()
        spans.append(child)
    spans.append(parent)
    return spans


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_fast_and_stock_encoders_deliver_the_same_request(compression) -> None:
    spans = _spans()
    with FakeOTLPBackend() as backend:
        for encoder in ("fast", "stock"):
            exporter = otlp_span_exporter(
                backend.endpoint, timeout=2, compression=compression, encoder=encoder
            )
            assert exporter.export_outcome(spans) is ExportOutcome.SUCCESS
            exporter.shutdown(timeout_millis=500)
        fast, stock = backend.requests
    assert fast.decoded is not None
    assert fast.decoded == stock.decoded
    assert [s.name for s in fast.spans] == ["child", "parent"]


def test_the_fast_encoder_is_the_default_and_really_used(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_NONBLOCKING_ENCODER", raising=False)
    with FakeOTLPBackend() as backend:
        exporter = otlp_span_exporter(backend.endpoint, timeout=2)
        assert exporter.export_outcome(_spans()) is ExportOutcome.SUCCESS
        encoder = exporter.inner._nb_encoder  # type: ignore[attr-defined]
        assert encoder.stats().spans == 2
        exporter.shutdown(timeout_millis=500)


def test_env_selects_the_stock_encoder(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_NONBLOCKING_ENCODER", "stock")
    exporter = otlp_span_exporter("http://127.0.0.1:9/v1/traces", timeout=1)
    assert not hasattr(exporter.inner, "_nb_encoder")
    exporter.shutdown(timeout_millis=100)


def test_bad_encoder_argument_raises() -> None:
    with pytest.raises(ConfigurationError, match="encoder"):
        otlp_span_exporter("http://127.0.0.1:9/v1/traces", encoder="turbo")


@pytest.mark.parametrize("value", [-1, 1.5, True, "64"])
def test_bad_max_request_bytes_argument_raises(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_request_bytes"):
        otlp_span_exporter("http://127.0.0.1:9/v1/traces", max_request_bytes=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("encoder", ["fast", "stock"])
def test_max_request_bytes_is_the_codecs_limit(encoder: str) -> None:
    exporter = otlp_span_exporter(
        "http://127.0.0.1:9/v1/traces", timeout=1, encoder=encoder, max_request_bytes=4096
    )
    assert exporter.codec is not None
    assert exporter.codec.max_request_bytes == 4096
    assert exporter.codec.exports is True
    exporter.shutdown(timeout_millis=100)
