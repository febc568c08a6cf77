"""otlp_span_exporter(): the fast encoder is wired in and sends what the stock one sends."""

from __future__ import annotations

import logging

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


# -- endpoints and headers: checked before the SDK sees them, never quoted -------------------

PASSWORD = "pw-Zq8xK2"  # noqa: S105 - the value the tests hunt for in every message
API_KEY = "key-Hh41Lm"
_CREDENTIALED = f"http://user:{PASSWORD}@"


def _everything_logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    """Every log line of every logger (caplog is at DEBUG for all), and stdout/stderr."""
    out, err = capfd.readouterr()
    lines = [r.getMessage() for r in caplog.records]
    lines += [repr(r.args) for r in caplog.records]
    lines += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    return "\n".join([*lines, out, err])


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:4318/v1/traces",  # no scheme
        f"user:{PASSWORD}@127.0.0.1:4318/v1/traces",
        f"unix://user:{PASSWORD}@/tmp/collector.sock",
        f"ftp://user:{PASSWORD}@127.0.0.1/v1/traces",
        f"{_CREDENTIALED}127.0.0.1:99999/v1/traces",  # bad port
        f"{_CREDENTIALED}127.0.0.1:0/v1/traces",
        f"{_CREDENTIALED}127.0.0.1:port/v1/traces",
        f"{_CREDENTIALED}:4318/v1/traces",  # empty host
        f"{_CREDENTIALED}127.0.0.1:4318/v1/traces\r\nX-Injected: 1",
        f"{_CREDENTIALED}127.0.0.1:4318/v1 traces",
        f"http://127.0.0.1:99999/v1/traces?token={PASSWORD}",
    ],
)
def test_a_bad_endpoint_argument_raises_and_never_shows_its_secrets(endpoint) -> None:
    with pytest.raises(ConfigurationError, match=r"^endpoint ") as caught:
        otlp_span_exporter(endpoint, timeout=1)
    assert PASSWORD not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_rejected_endpoint_is_shown_without_user_info_or_query() -> None:
    with pytest.raises(ConfigurationError) as caught:
        otlp_span_exporter(f"{_CREDENTIALED}127.0.0.1:99999/v1/traces?token={PASSWORD}")
    assert str(caught.value) == (
        "endpoint has an invalid port, got 'http://***@127.0.0.1:99999/v1/traces?***'"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": f"{API_KEY}\r\nX-Injected: 1"},
        {"x-api-key": f"{API_KEY}\n"},
        {"x-api-key": f"{API_KEY}\x00"},
        {"x-api-key": f" {API_KEY}"},
        {"x-api-key": f"{API_KEY}\u2603"},
        {"x-api-key": 12345},
        {f"bad name {API_KEY}": "v"},
        {"x-api-key\r\n": API_KEY},
    ],
)
def test_a_bad_header_argument_raises_once_and_never_shows_its_value(headers) -> None:
    with pytest.raises(ConfigurationError, match=r"^headers: ") as caught:
        otlp_span_exporter("http://127.0.0.1:9/v1/traces", headers=headers, timeout=1)
    assert API_KEY not in str(caught.value)
    assert "12345" not in str(caught.value)


@pytest.mark.parametrize(
    ("var", "value", "problem"),
    [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "127.0.0.1:{port}/v1/traces", "http"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{_CREDENTIALED}127.0.0.1:99999/x", "port"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{_CREDENTIALED}:{{port}}/x", "host"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"unix://u:{PASSWORD}@/tmp/s", "http"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"ftp://u:{PASSWORD}@127.0.0.1/x", "http"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{_CREDENTIALED}127.0.0.1:1/\x07x", "control"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", f"{_CREDENTIALED}127.0.0.1:99999", "port"),
    ],
)
def test_a_bad_endpoint_variable_warns_once_by_name_and_falls_back(
    monkeypatch, caplog, capfd, var, value, problem
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOTLPBackend() as backend:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        if var == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":  # falls back to the generic one
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{backend.port}")
        monkeypatch.setenv(var, value.format(port=backend.port))
        exporters = [otlp_span_exporter(timeout=1) for _ in range(2)]
        outcome = exporters[0].export_outcome(_spans())
        for exporter in exporters:
            exporter.shutdown(timeout_millis=500)
    if var == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
        assert outcome is ExportOutcome.SUCCESS
        assert backend.request_count == 1
    else:
        assert exporters[0].inner._endpoint == "http://localhost:4318/v1/traces"  # type: ignore[attr-defined]
    warnings = [r.getMessage() for r in caplog.records if var in r.getMessage()]
    assert len(warnings) == 1
    assert problem in warnings[0]
    text = _everything_logged(caplog, capfd)
    assert PASSWORD not in text
    assert value.format(port=backend.port) not in text


def test_a_malformed_headers_variable_is_parsed_here_and_no_entry_is_ever_shown(
    monkeypatch, caplog, capfd
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", raising=False)
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_HEADERS",
        f"x-api-key={API_KEY},bad entry={PASSWORD},x-split=a%0D%0AX-Injected:{PASSWORD},{PASSWORD}",
    )
    with FakeOTLPBackend() as backend:
        exporters = [otlp_span_exporter(backend.endpoint, timeout=1) for _ in range(2)]
        assert exporters[0].export_outcome(_spans()) is ExportOutcome.SUCCESS
        for exporter in exporters:
            exporter.shutdown(timeout_millis=500)
        [request] = backend.requests
    assert request.headers["x-api-key"] == API_KEY  # the good entry is sent
    assert "x-split" not in request.headers
    assert "x-injected" not in request.headers
    ours = [
        r.getMessage() for r in caplog.records if "OTEL_EXPORTER_OTLP_HEADERS" in r.getMessage()
    ]
    assert len(ours) == 1
    assert "3 malformed entries" in ours[0]
    text = _everything_logged(caplog, capfd)
    assert PASSWORD not in text
    assert API_KEY not in text


def test_header_values_from_the_environment_reach_the_request_unchanged(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=Basic%20abc%3D,x-b = 1 ")
    with FakeOTLPBackend() as backend:
        exporter = otlp_span_exporter(backend.endpoint, timeout=1)
        assert exporter.export_outcome(_spans()) is ExportOutcome.SUCCESS
        exporter.shutdown(timeout_millis=500)
        [request] = backend.requests
    assert request.headers["authorization"] == "Basic abc="
    assert request.headers["x-b"] == "1"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@host:4318/v1/traces?token=t#f", "https://***@host:4318/v1/traces?***"),
        ("http://u:p/w@rd@host/x", "http://***@host/x"),  # "/" and "@" in the password
        ("u:secret@host:4318/x", "***@host:4318/x"),  # no scheme
        ("http://host/a\r\nb", "http://host/a??b"),
        (12345, "<int>"),
    ],
)
def test_redact_url_keeps_scheme_host_port_and_path_only(url, shown) -> None:
    from otel_nonblocking._urls import redact_url

    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:4318/v1/traces",
        "HTTPS://127.0.0.1/v1/traces",
        "http://[::1]:4318/v1/traces",
        f"http://user:{PASSWORD}@127.0.0.1:4318/v1/traces?tenant=a",
        " http://127.0.0.1:4318/v1/traces ",
    ],
)
def test_good_endpoints_are_accepted(endpoint) -> None:
    exporter = otlp_span_exporter(endpoint, timeout=1)
    assert exporter.inner._endpoint == endpoint.strip()  # type: ignore[attr-defined]
    exporter.shutdown(timeout_millis=100)
