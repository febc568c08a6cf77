"""langfuse_span_exporter(): Langfuse's endpoint, auth and headers, keys from env, real deadline."""

from __future__ import annotations

import base64
import inspect
import logging
import subprocess
import sys
import time

import pytest

pytest.importorskip("langfuse", reason="the Langfuse integration needs otel-nonblocking[langfuse]")

from langfuse import Langfuse
from opentelemetry.sdk.trace import TracerProvider

from otel_nonblocking import ConfigurationError, DeadlineSpanExporter
from otel_nonblocking.integrations.langfuse import (
    DisabledSpanExporter,
    bound_langfuse_flush,
    langfuse_span_exporter,
)
from otel_nonblocking.testing import FakeLangfuse, Mode, refused_endpoint
from tests.integrations.conftest import PUBLIC_KEY, SECRET_KEY

BUDGET = 1.0
SLACK = 0.5
# What identifies a Langfuse export; transport headers (user-agent, length) may differ.
LANGFUSE_HEADERS = ("authorization", "content-encoding", "content-type")
TAKES_SPAN_EXPORTER = "span_exporter" in inspect.signature(Langfuse.__init__).parameters


def _spans(count: int = 2, name: str = "span") -> list:
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("langfuse-sdk")
    spans = []
    for _ in range(count):
        span = tracer.start_span(name)
        span.end()
        spans.append(span)
    return spans


def _identity(headers: dict[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in headers.items() if k in LANGFUSE_HEADERS or k.startswith("x-langfuse-")
    }


def test_exporter_sends_what_the_stock_sdk_exporter_sends(fake, make_client) -> None:
    stock = make_client()
    with stock.start_as_current_observation(name="stock-span"):
        pass
    stock.flush()
    assert fake.wait_until(lambda: "stock-span" in fake.span_names())
    stock_request = fake.requests_to(FakeLangfuse.OTLP_PATH)[-1]

    exporter = langfuse_span_exporter(
        timeout=BUDGET, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=fake.base_url
    )
    assert isinstance(exporter, DeadlineSpanExporter)
    assert exporter.export(_spans(name="ours")).name == "SUCCESS"
    exporter.shutdown()
    ours = fake.requests_to(FakeLangfuse.OTLP_PATH)[-1]

    assert ours.path == stock_request.path == FakeLangfuse.OTLP_PATH
    assert _identity(ours.headers) == _identity(stock_request.headers)
    token = base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    assert ours.headers["authorization"] == f"Basic {token}"
    assert ours.headers["x-langfuse-public-key"] == PUBLIC_KEY
    assert ours.span_names() == ["ours", "ours"]


def test_exporter_encodes_with_the_fast_encoder_and_sends_what_the_stock_one_would(
    fake,
) -> None:
    import gzip

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    spans = _spans(count=5, name="encoded")
    bodies = {}
    for encoder in ("fast", "stock"):
        exporter = langfuse_span_exporter(
            timeout=BUDGET,
            public_key=PUBLIC_KEY,
            secret_key=SECRET_KEY,
            base_url=fake.base_url,
            encoder=encoder,
        )
        assert isinstance(exporter, DeadlineSpanExporter)
        assert exporter.export(spans).name == "SUCCESS"
        fast = getattr(exporter.inner, "_nb_encoder", None)
        assert (fast is not None and fast.stats().spans == 5) == (encoder == "fast")
        exporter.shutdown()
        request = fake.requests_to(FakeLangfuse.OTLP_PATH)[-1]
        payload = request.body
        if request.headers.get("content-encoding", "").lower() == "gzip":
            payload = gzip.decompress(payload)
        bodies[encoder] = ExportTraceServiceRequest.FromString(payload)
    assert bodies["fast"] == bodies["stock"]


def test_exporter_reads_keys_and_host_from_the_langfuse_variables(fake, monkeypatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-from-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-from-env")
    monkeypatch.setenv("LANGFUSE_HOST", fake.base_url + "/")
    exporter = langfuse_span_exporter(timeout=BUDGET)
    assert exporter.export(_spans(1)).name == "SUCCESS"
    exporter.shutdown()
    request = fake.requests_to(FakeLangfuse.OTLP_PATH)[-1]
    token = base64.b64encode(b"pk-from-env:sk-from-env").decode()
    assert request.headers["authorization"] == f"Basic {token}"
    assert request.headers["x-langfuse-public-key"] == "pk-from-env"


def test_base_url_variable_wins_over_host(fake, monkeypatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PUBLIC_KEY)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("LANGFUSE_BASE_URL", fake.base_url)
    monkeypatch.setenv("LANGFUSE_HOST", refused_endpoint("/").rstrip("/"))
    exporter = langfuse_span_exporter(timeout=BUDGET)
    assert exporter.export(_spans(1)).name == "SUCCESS"
    exporter.shutdown()
    assert fake.requests_to(FakeLangfuse.OTLP_PATH)


MALFORMED_HOSTS = [
    "127.0.0.1:{port}",  # no scheme: once sent the key pair to Langfuse Cloud instead
    "not a url",
    "ftp://127.0.0.1:{port}",
    "http://user:pw-8Rt@127.0.0.1:99999",
    "http://user:pw-8Rt@:{port}",
    " ",
]


def _all_text(caplog, capfd) -> str:
    out, err = capfd.readouterr()
    lines = [r.getMessage() for r in caplog.records]
    lines += [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    return "\n".join([*lines, out, err])


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
@pytest.mark.parametrize("var", ["LANGFUSE_HOST", "LANGFUSE_BASE_URL"])
def test_a_malformed_host_turns_tracing_off_and_sends_the_keys_nowhere(
    fake, monkeypatch, caplog, capfd, var, host
) -> None:
    caplog.set_level(logging.DEBUG)
    value = host.format(port=fake.port)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", PUBLIC_KEY)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv(var, value)
    if var == "LANGFUSE_BASE_URL":  # Langfuse would send its scores to the malformed one
        monkeypatch.setenv("LANGFUSE_HOST", fake.base_url)
    first = langfuse_span_exporter(timeout=BUDGET)
    second = langfuse_span_exporter(timeout=BUDGET)
    assert isinstance(first, DisabledSpanExporter)
    assert isinstance(second, DisabledSpanExporter)
    assert first.export(_spans(2)).name == "SUCCESS"
    assert first.dropped == 2
    assert fake.requests == []
    warnings = [r.getMessage() for r in caplog.records if var in r.getMessage()]
    assert len(warnings) == 1
    assert "tracing is off" in warnings[0]
    text = _all_text(caplog, capfd)
    assert "pw-8Rt" not in text
    if value.strip():
        assert value not in text


@pytest.mark.parametrize(
    "environ",
    [
        {"LANGFUSE_HOST": "http://127.0.0.1:1"},
        {"LANGFUSE_BASE_URL": "http://127.0.0.1:2", "LANGFUSE_HOST": "http://127.0.0.1:1"},
        {"LANGFUSE_BASE_URL": "", "LANGFUSE_HOST": "http://127.0.0.1:1"},  # empty: unset
    ],
)
def test_the_exporter_resolves_the_host_langfuse_sends_its_scores_to(monkeypatch, environ) -> None:
    from otel_nonblocking.integrations._langfuse_exporter import resolve_host

    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    client = Langfuse(public_key=PUBLIC_KEY, secret_key=SECRET_KEY, tracing_enabled=False)
    assert resolve_host().url == client._resources.base_url.rstrip("/")
    assert resolve_host("http://127.0.0.1:3/").url == "http://127.0.0.1:3"


def test_a_bad_base_url_argument_raises_without_its_credentials() -> None:
    with pytest.raises(ConfigurationError, match=r"^base_url ") as caught:
        langfuse_span_exporter(
            timeout=BUDGET,
            public_key=PUBLIC_KEY,
            secret_key=SECRET_KEY,
            base_url="ftp://user:pw-8Rt@127.0.0.1/?token=tk-77",
        )
    assert "pw-8Rt" not in str(caught.value)
    assert "tk-77" not in str(caught.value)


@pytest.mark.parametrize("value", ["v\r\nX-Injected: 1", 5, " leading"])
def test_bad_additional_headers_raise_without_their_value(value) -> None:
    with pytest.raises(ConfigurationError, match="additional_headers") as caught:
        langfuse_span_exporter(
            timeout=BUDGET,
            public_key=PUBLIC_KEY,
            secret_key=SECRET_KEY,
            base_url="http://127.0.0.1:9",
            additional_headers={"x-extra": value},
        )
    assert str(value) not in str(caught.value)


def test_empty_keys_with_tracing_off_send_no_scores_and_cost_no_wait(monkeypatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "")
    with FakeLangfuse(Mode.HANG, hang_limit=30) as hanging:
        exporter = langfuse_span_exporter(timeout=BUDGET, missing_keys="disable")
        assert isinstance(exporter, DisabledSpanExporter)
        kwargs = {"span_exporter": exporter} if TAKES_SPAN_EXPORTER else {}
        # Langfuse itself takes the empty strings as keys and would send scores with them.
        client = Langfuse(base_url=hanging.base_url, **kwargs)
        binding = bound_langfuse_flush(timeout=BUDGET)
        for _ in range(2):
            with client.start_as_current_observation(name="invocation"):
                trace_id = client.get_current_trace_id()
            client.create_score(name="quality", value=1.0, trace_id=trace_id)
            started = time.monotonic()
            result = binding.flush(client)
            assert time.monotonic() - started < 0.5, "a flush waited for refused scores"
            assert result.ok
        time.sleep(0.3)
        assert hanging.requests_to(FakeLangfuse.SCORES_PATH) == []
        assert hanging.requests_to(FakeLangfuse.INGESTION_PATH) == []
    binding.unbind(timeout=0.1)
    rm = client._resources
    assert "add_score_task" not in vars(rm)  # unbind gives the project its scores back


@pytest.mark.parametrize(
    ("present", "named"),
    [
        ({}, ["LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"]),
        ({"LANGFUSE_PUBLIC_KEY": PUBLIC_KEY}, ["LANGFUSE_SECRET_KEY"]),
        ({"LANGFUSE_SECRET_KEY": SECRET_KEY}, ["LANGFUSE_PUBLIC_KEY"]),
    ],
)
def test_missing_keys_raise_an_error_naming_the_variable(monkeypatch, present, named) -> None:
    for var, value in present.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigurationError) as caught:
        langfuse_span_exporter(timeout=BUDGET, missing_keys="raise")
    message = str(caught.value)
    for var in named:
        assert var in message
    assert SECRET_KEY not in message


def test_missing_keys_disable_warns_once_and_turns_tracing_off(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_nonblocking"):
        first = langfuse_span_exporter(timeout=BUDGET, missing_keys="disable")
        second = langfuse_span_exporter(timeout=BUDGET, missing_keys="disable")
    assert isinstance(first, DisabledSpanExporter)
    assert isinstance(second, DisabledSpanExporter)
    warnings = [r for r in caplog.records if "LANGFUSE_PUBLIC_KEY" in r.getMessage()]
    assert len(warnings) == 1
    assert first.export(_spans(3)).name == "SUCCESS"
    assert first.dropped == 3


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": "2"}, "timeout"),
        ({"timeout": -1}, "timeout .* got -1$"),
        ({"timeout": 10**6}, "timeout must be at most a day"),
        ({"base_url": "ftp://example.invalid"}, "base_url"),
        ({"compression": "deflate"}, "compression"),
        ({"missing_keys": "ignore"}, "missing_keys"),
        ({"encoder": "zip"}, "encoder"),
    ],
)
def test_bad_arguments_raise_configuration_error_naming_them(kwargs, named) -> None:
    kwargs = {"public_key": PUBLIC_KEY, "secret_key": SECRET_KEY, **kwargs}
    with pytest.raises(ConfigurationError, match=named):
        langfuse_span_exporter(**kwargs)


def test_export_returns_within_its_deadline_against_a_hanging_backend() -> None:
    with FakeLangfuse(Mode.HANG, hang_limit=30) as hanging:
        exporter = langfuse_span_exporter(
            timeout=BUDGET, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=hanging.base_url
        )
        started = time.monotonic()
        result = exporter.export(_spans())
        elapsed = time.monotonic() - started
        exporter.shutdown(timeout_millis=500)
    assert result.name == "FAILURE"
    assert elapsed < BUDGET + SLACK, f"export took {elapsed:.2f}s"


def test_span_exporter_argument_is_the_first_way_where_the_sdk_takes_it(fake, make_client) -> None:
    exporter = langfuse_span_exporter(
        timeout=BUDGET, public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=fake.base_url
    )
    if not TAKES_SPAN_EXPORTER:  # 3.x, 4.0.x, 4.1.x: the swap is the way (see the flush tests)
        with pytest.raises(TypeError, match="span_exporter"):
            make_client(span_exporter=exporter)
        exporter.shutdown()
        return
    client = make_client(span_exporter=exporter)
    binding = bound_langfuse_flush(timeout=BUDGET)
    assert [c.exporter for c in binding.clients()] == ["kept"]
    with client.start_as_current_observation(name="via-span-exporter"):
        pass
    assert binding.flush(client).ok
    assert "via-span-exporter" in fake.span_names()


def test_importing_otel_nonblocking_never_imports_langfuse() -> None:
    code = (
        "import sys, otel_nonblocking, otel_nonblocking.integrations\n"
        "print('langfuse' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def test_importing_the_integration_without_langfuse_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['langfuse'] = None\n"
        "try:\n"
        "    import otel_nonblocking.integrations.langfuse\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "otel-nonblocking[langfuse]" in out.stdout


@pytest.mark.parametrize("source", ["argument", "LANGFUSE_HOST"])
def test_a_bound_project_with_a_malformed_host_exports_nothing_and_logs_no_credentials(
    fake, monkeypatch, caplog, capfd, source
) -> None:
    caplog.set_level(logging.DEBUG)
    host = f"http://user:pw-8Rt@127.0.0.1:99999/?k={fake.port}"
    if source == "argument":
        client = Langfuse(public_key=PUBLIC_KEY, secret_key=SECRET_KEY, base_url=host)
    else:
        monkeypatch.setenv("LANGFUSE_HOST", host)
        client = Langfuse(public_key=PUBLIC_KEY, secret_key=SECRET_KEY)
    binding = bound_langfuse_flush(timeout=BUDGET)
    assert [c.exporter for c in binding.clients()] == ["none"]
    for _ in range(3):
        with client.start_as_current_observation(name="never-sent"):
            trace_id = client.get_current_trace_id()
        client.create_score(name="quality", value=1.0, trace_id=trace_id)
        assert binding.flush(client).ok
    warnings = [r.getMessage() for r in caplog.records if "tracing is off" in r.getMessage()]
    assert len(warnings) == 1
    assert ("base_url" if source == "argument" else "LANGFUSE_HOST") in warnings[0]
    text = _all_text(caplog, capfd)
    assert "pw-8Rt" not in text
    assert fake.requests == []
