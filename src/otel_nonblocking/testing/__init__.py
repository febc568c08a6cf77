"""Fake OTLP/HTTP trace backends for tests and demos: hanging, dripping, resetting collectors.

Standard library only (plus ``opentelemetry-proto`` for decoding); everything binds 127.0.0.1.

Example::

    from otel_nonblocking.testing import FakeOTLPBackend, Mode

    with FakeOTLPBackend(Mode.HANG) as backend:
        ...  # point an exporter at backend.endpoint
"""

from otel_nonblocking.testing._backend import (
    FakeOTLPBackend,
    FakeTLSStallListener,
    Mode,
    RequestRecord,
    refused_endpoint,
)
from otel_nonblocking.testing._process import ProcessBackend

__all__ = [
    "FakeOTLPBackend",
    "FakeTLSStallListener",
    "Mode",
    "ProcessBackend",
    "RequestRecord",
    "refused_endpoint",
]
