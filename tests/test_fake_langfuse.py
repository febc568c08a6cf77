"""FakeLangfuse answers every Langfuse path like Langfuse does, shows each fault on all of them."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_nonblocking.testing import FakeLangfuse, LangfuseRequest, Mode

AUTH = {"Authorization": "Basic cGstbGYteDpzay1sZi14"}  # "pk-lf-x:sk-lf-x", made up
PROTOBUF = {**AUTH, "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}


@pytest.fixture
def fake() -> Iterator[FakeLangfuse]:
    with FakeLangfuse(drip_interval=0.01, delay=0.3) as backend:
        yield backend
    assert backend.handler_errors == 0


def otlp_body(*spans: tuple[str, int]) -> bytes:
    """A gzipped export of spans given as (name, span id), as the Langfuse SDK sends it."""
    message = ExportTraceServiceRequest()
    scope = message.resource_spans.add().scope_spans.add()
    for name, span_id in spans:
        span = scope.spans.add()
        span.name, span.span_id, span.trace_id = name, span_id.to_bytes(8, "big"), bytes(16)
    return gzip.compress(message.SerializeToString())


def scores_5x(*names: str) -> list[dict[str, object]]:
    return [{"id": f"id-{name}", "name": name, "value": 1.0} for name in names]


def ingestion_4x(*names: str) -> dict[str, object]:
    scores = scores_5x(*names)
    batch = [{"id": f"event-{n}", "type": "score-create", "body": s} for n, s in enumerate(scores)]
    return {"batch": [*batch, {"id": "event-trace", "type": "trace-create", "body": {"id": "t"}}]}


def test_ok_mode_answers_each_path_as_langfuse_does(fake: FakeLangfuse) -> None:
    with requests.Session() as http:
        otlp = http.post(
            fake.endpoint, data=otlp_body(("root", 1), ("child", 2)), headers=PROTOBUF, timeout=2
        )
        v5 = http.post(
            fake.base_url + FakeLangfuse.SCORES_PATH, json=scores_5x("q5"), headers=AUTH, timeout=2
        )
        v4 = http.post(
            fake.base_url + FakeLangfuse.INGESTION_PATH,
            json=ingestion_4x("q4"),
            headers=AUTH,
            timeout=2,
        )
        media = http.post(
            fake.base_url + FakeLangfuse.MEDIA_PATH,
            json={"mediaId": "m-1"},
            headers=AUTH,
            timeout=2,
        )
        other = http.get(fake.base_url + "/api/public/projects", headers=AUTH, timeout=2)
    assert fake.endpoint == fake.base_url + "/api/public/otel/v1/traces"
    assert (otlp.status_code, otlp.content) == (200, b"")
    assert v5.status_code == 202
    assert v4.status_code == 207
    assert [item["id"] for item in v4.json()["successes"]] == ["event-0", "event-trace"]
    assert (media.status_code, media.json()) == (200, {"mediaId": "m-1"})  # no upload URL
    assert other.status_code == 404
    assert fake.span_names() == ["root", "child"]
    assert fake.score_names() == ["q5", "q4"]
    assert (fake.spans_delivered, fake.scores_delivered) == (2, 2)
    (request,) = fake.requests_to(FakeLangfuse.OTLP_PATH)
    assert isinstance(request, LangfuseRequest)
    assert request.span_names() == ["root", "child"]
    assert request.headers["authorization"] == AUTH["Authorization"]
    assert "Basic" not in repr(request)
    assert all(isinstance(r, LangfuseRequest) for r in fake.requests)


def test_retried_spans_and_scores_are_delivered_once(fake: FakeLangfuse) -> None:
    with requests.Session() as http:
        for _ in range(2):
            http.post(fake.endpoint, data=otlp_body(("span", 7)), headers=PROTOBUF, timeout=2)
            http.post(fake.base_url + FakeLangfuse.SCORES_PATH, json=scores_5x("q"), timeout=2)
    assert fake.span_names() == ["span", "span"]
    assert fake.score_names() == ["q", "q"]
    assert (fake.spans_delivered, fake.scores_delivered) == (1, 1)


@pytest.mark.parametrize("path", [FakeLangfuse.OTLP_PATH, FakeLangfuse.SCORES_PATH])
def test_unavailable_mode_answers_503_on_every_path_and_delivers_nothing(
    fake: FakeLangfuse, path: str
) -> None:
    fake.mode = Mode.UNAVAILABLE
    if path == FakeLangfuse.OTLP_PATH:
        body, headers = otlp_body(("span", 1)), PROTOBUF
    else:
        body, headers = json.dumps(scores_5x("q")).encode(), {"Content-Type": "application/json"}
    answer = requests.post(fake.base_url + path, data=body, headers=headers, timeout=2)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "30"
    assert len(fake.requests_to(path)) == 1
    assert fake.score_names(accepted=True) == []
    assert (fake.spans_delivered, fake.scores_delivered) == (0, 0)


def test_hang_mode_holds_score_requests_until_stopped() -> None:
    with FakeLangfuse(Mode.HANG, hang_limit=30) as fake:
        url = fake.base_url + FakeLangfuse.INGESTION_PATH
        with pytest.raises(requests.ReadTimeout):
            requests.post(url, json=ingestion_4x("q"), timeout=0.3)
        assert fake.score_names() == ["q"]
        assert fake.scores_delivered == 0
        started = time.monotonic()
    assert time.monotonic() - started < 2.5  # stop() cut the held connection


def test_drip_mode_sends_the_score_answer_byte_by_byte_then_counts_it(fake: FakeLangfuse) -> None:
    fake.mode = Mode.DRIP
    started = time.monotonic()
    answer = requests.post(fake.base_url + FakeLangfuse.SCORES_PATH, json=scores_5x("q"), timeout=5)
    assert answer.status_code == 202
    assert answer.json() == {"message": "Accepted"}
    assert time.monotonic() - started > 0.3  # well over 50 bytes at 0.01 s each
    assert fake.scores_delivered == 1


def test_slow_mode_answers_every_path_after_the_delay(fake: FakeLangfuse) -> None:
    fake.mode = "slow"
    started = time.monotonic()
    answer = requests.post(fake.base_url + FakeLangfuse.SCORES_PATH, json=scores_5x("q"), timeout=5)
    assert answer.status_code == 202
    assert time.monotonic() - started >= 0.3


def test_reset_mode_resets_score_requests(fake: FakeLangfuse) -> None:
    fake.mode = Mode.RESET
    with pytest.raises(requests.ConnectionError):
        requests.post(fake.base_url + FakeLangfuse.SCORES_PATH, json=scores_5x("q"), timeout=2)
    assert fake.score_names() == ["q"]
    assert fake.scores_delivered == 0


def test_wait_until_polls_until_true_or_timeout(fake: FakeLangfuse) -> None:
    assert not fake.wait_until(lambda: bool(fake.span_names()), timeout=0.1)
    requests.post(fake.endpoint, data=otlp_body(("late", 1)), headers=PROTOBUF, timeout=2)
    assert fake.wait_until(lambda: fake.span_names() == ["late"], timeout=1)


def test_fake_binds_loopback_and_rejects_a_path_of_its_own() -> None:
    with FakeLangfuse() as fake:
        assert fake.base_url.startswith("http://127.0.0.1:")
        assert repr(fake) == f"<FakeLangfuse ok {fake.base_url}>"
    with pytest.raises(TypeError):
        FakeLangfuse(path="/v1/traces")


def test_importing_the_fake_imports_no_langfuse() -> None:
    code = (
        "import sys, otel_nonblocking.testing as t; t.FakeLangfuse().start().stop();"
        "sys.exit('langfuse' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=30).returncode == 0
