"""Test helpers: fake OTLP/HTTP backends (traces, logs, metrics) and a fake Langfuse API for tests
and demos (hanging, dripping, resetting collectors), and :func:`reset` of global state.

Standard library only (plus ``opentelemetry-proto`` for decoding); everything binds 127.0.0.1.
:class:`FakeGrpcBackend` (an OTLP/gRPC collector for traces, logs and metrics) is loaded
on first use and needs the ``grpc`` extra.

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
    "FakeGrpcBackend",
    "FakeLangfuse",
    "FakeOTLPBackend",
    "FakeTLSStallListener",
    "GrpcRequest",
    "LangfuseRequest",
    "Mode",
    "ProcessBackend",
    "RequestRecord",
    "refused_endpoint",
    "reset",
]

_NEEDS_GRPC = ("FakeGrpcBackend", "GrpcRequest")  # loaded on first use: the grpc extra

for _name in __all__:  # public names report this module, not the private one they live in
    if _name not in _NEEDS_GRPC:
        _publish(globals()[_name], __name__)
del _name


def __getattr__(name: str) -> object:
    if name not in _NEEDS_GRPC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from otel_nonblocking.testing import _grpc_backend

    for loaded in _NEEDS_GRPC:
        value = getattr(_grpc_backend, loaded)
        _publish(value, __name__)
        globals()[loaded] = value
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
