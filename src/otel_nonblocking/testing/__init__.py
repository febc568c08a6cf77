"""Test helpers: fake OTLP/HTTP backends (traces, logs, metrics) and a fake Langfuse API for tests
and demos (hanging, dripping, resetting collectors), and :func:`reset` of global state.

Standard library only (plus ``opentelemetry-proto`` for decoding); everything binds 127.0.0.1.

Example::

    from otel_nonblocking.testing import FakeLangfuse, FakeOTLPBackend, Mode

    with FakeOTLPBackend(Mode.HANG) as backend:
        ...  # point an exporter at backend.endpoint

    with FakeLangfuse(Mode.DRIP) as fake:  # the Langfuse API: traces, scores, media
        ...  # Langfuse(base_url=fake.base_url, ...)

Between tests, :func:`reset` puts the package's process-wide state back as it was after
import (what ``configure_tracing()`` installed, one-time warnings, exit hooks, ...)::

    @pytest.fixture(autouse=True)
    def _fresh_otel_nonblocking():
        reset()
        yield
        reset()
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
from otel_nonblocking.testing._reset import reset

__all__ = [
    "FakeLangfuse",
    "FakeOTLPBackend",
    "FakeTLSStallListener",
    "LangfuseRequest",
    "Mode",
    "ProcessBackend",
    "RequestRecord",
    "refused_endpoint",
    "reset",
]

for _name in __all__:  # public names report this module, not the private one they live in
    _publish(globals()[_name], __name__)
del _name
