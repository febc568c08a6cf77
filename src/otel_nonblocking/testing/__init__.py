"""Fake OTLP/HTTP trace backends and a fake Langfuse API for tests and demos: hanging, dripping,
resetting collectors.

Standard library only (plus ``opentelemetry-proto`` for decoding); everything binds 127.0.0.1.

Example::

    from otel_nonblocking.testing import FakeLangfuse, FakeOTLPBackend, Mode

    with FakeOTLPBackend(Mode.HANG) as backend:
        ...  # point an exporter at backend.endpoint

    with FakeLangfuse(Mode.DRIP) as fake:  # the Langfuse API: traces, scores, media
        ...  # Langfuse(base_url=fake.base_url, ...)
"""

from otel_nonblocking._public import publish as _publish
from otel_nonblocking.testing._backend import (
    FakeOTLPBackend,
    FakeTLSStallListener,
    Mode,
    RequestRecord,
    refused_endpoint,
)
from otel_nonblocking.testing._fake_langfuse import FakeLangfuse, LangfuseRequest
from otel_nonblocking.testing._process import ProcessBackend

__all__ = [
    "FakeLangfuse",
    "FakeOTLPBackend",
    "FakeTLSStallListener",
    "LangfuseRequest",
    "Mode",
    "ProcessBackend",
    "RequestRecord",
    "refused_endpoint",
]

for _name in __all__:  # public names report this module, not the private one they live in
    _publish(globals()[_name], __name__)
del _name
