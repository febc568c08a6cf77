"""Langfuse, safe to flush on the request path: bounded flush, shutdown and exit hook.

The door is :func:`bounded_langfuse` (``langfuse = bounded_langfuse(timeout=2)``); the
parts it is made of (:func:`bound_langfuse_flush`, :func:`langfuse_span_exporter`)
stay available on their own.

Needs the Langfuse Python SDK (``pip install 'otel-nonblocking[langfuse]'``), which this
module imports when it is imported. See ``docs/langfuse.md``.
"""

import typing as _typing
import warnings as _warnings

try:
    import langfuse as _langfuse  # noqa: F401 - fail early, with a message naming the extra
except ImportError as error:
    raise ImportError(
        "otel_nonblocking.integrations.langfuse needs the Langfuse Python SDK: "
        "pip install 'otel-nonblocking[langfuse]'"
    ) from error

from .._public import publish as _publish
from ._langfuse_door import bounded_langfuse
from ._langfuse_exporter import DisabledSpanExporter, langfuse_span_exporter
from ._langfuse_flush import (
    LangfuseBinding,
    LangfuseClientStatus,
    LangfuseFlushResult,
    bound_langfuse_flush,
    current_binding,
    unbind_langfuse_flush,
)

__all__ = [
    "DisabledSpanExporter",
    "LangfuseBinding",
    "LangfuseClientStatus",
    "LangfuseFlushResult",
    "bound_langfuse_flush",
    "bounded_langfuse",
    "current_binding",
    "langfuse_span_exporter",
    "unbind_langfuse_flush",
]

for _name in __all__:  # public names report this module, not the private one they live in
    _publish(globals()[_name], __name__)
del _name


def __getattr__(name: str) -> _typing.Any:
    if name == "langfuse_headers":  # exported before 0.1; an internal of the exporter
        _warnings.warn(
            "otel_nonblocking.integrations.langfuse.langfuse_headers is deprecated and will "
            "be removed in the next release: langfuse_span_exporter() sends these headers",
            DeprecationWarning,
            stacklevel=2,
        )
        from ._langfuse_exporter import langfuse_headers

        return langfuse_headers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
