"""flush_after(): flush when a request handler returns, bounded by the invocation's time.

Given an AWS Lambda context (anything with ``get_remaining_time_in_millis()``), the
budget is ``min(timeout, time left - margin)``, so the flush can never be what makes
the invocation time out.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from . import _config
from ._config import UNSET, _Unset
from ._deadline import Deadline
from ._errors import ConfigurationError
from ._setup import FlushResult, aflush, flush

F = TypeVar("F", bound=Callable[..., Any])

# The end of the running invocation (time left minus the margin, fixed when the handler
# started), for flushes made inside the handler: a bound ``langfuse.flush()`` keeps to it.
_invocation: ContextVar[Deadline | None] = ContextVar("otel_nonblocking_invocation", default=None)


def invocation_deadline() -> Deadline | None:
    """The end of the invocation whose ``flush_after`` handler runs in this context, if known."""
    return _invocation.get()


@runtime_checkable
class InvocationContext(Protocol):
    """The part of an AWS Lambda context object that sets the flush budget."""

    def get_remaining_time_in_millis(self) -> int: ...


def _find_context(args: tuple[Any, ...], kwargs: dict[str, Any]) -> InvocationContext | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, InvocationContext):
            return value
    return None


class FlushAfter:
    """A decorator and (async) context manager made by :func:`flush_after`."""

    def __init__(self, timeout: float, context: InvocationContext | None, margin: float) -> None:
        self._timeout = timeout
        self._context = context
        self._margin = margin
        self.result: FlushResult | None = None
        self._token: Token[Deadline | None] | None = None

    def _left(self, context: InvocationContext | None) -> float | None:
        """Seconds the invocation has left minus the margin, or None without a context."""
        context = context or self._context
        if context is None:
            return None
        try:
            return context.get_remaining_time_in_millis() / 1000 - self._margin
        except Exception:  # noqa: BLE001 - a broken context must not break the handler
            return None

    def budget(self, context: InvocationContext | None = None) -> float:
        """Seconds the flush may take now."""
        left = self._left(context)
        budget = self._timeout if left is None else min(self._timeout, left)
        return max(budget, 0.0)

    def _start(self, context: InvocationContext | None) -> Token[Deadline | None]:
        left = self._left(context)
        return _invocation.set(None if left is None else Deadline.after(max(left, 0.0)))

    def _end(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            # Exited in another context than the one entered: nothing there to undo.
            with contextlib.suppress(ValueError):
                _invocation.reset(token)

    def __enter__(self) -> FlushAfter:
        self._token = self._start(None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end()
        self.result = flush(self.budget())

    async def __aenter__(self) -> FlushAfter:
        self._token = self._start(None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end()
        self.result = await aflush(self.budget())

    def __call__(self, handler: F) -> F:
        if inspect.iscoroutinefunction(handler):
            async_handler = cast(Callable[..., Awaitable[Any]], handler)

            @functools.wraps(handler)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                context = _find_context(args, kwargs)
                token = self._start(context)
                try:
                    return await async_handler(*args, **kwargs)
                finally:
                    _invocation.reset(token)
                    self.result = await aflush(self.budget(context))

            return cast(F, async_wrapper)

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            context = _find_context(args, kwargs)
            token = self._start(context)
            try:
                return handler(*args, **kwargs)
            finally:
                _invocation.reset(token)
                self.result = flush(self.budget(context))

        return cast(F, wrapper)


def flush_after(
    timeout: float | _Unset = UNSET,
    *,
    context: InvocationContext | None = None,
    margin: float = 0.2,
) -> FlushAfter:
    """Flush everything the package installed when the block or handler ends.

    As a decorator it finds a Lambda context among the handler's arguments::

        @flush_after(timeout=1.0)
        def handler(event, context):
            ...

    As a context manager::

        with flush_after(timeout=1.0, context=context):
            ...
    """
    seconds_margin = _config.seconds("margin", margin, allow_zero=True)
    budget = (
        _config.FLUSH_TIMEOUT.resolve()
        if isinstance(timeout, _Unset)
        else _config.seconds("timeout", timeout, allow_zero=True)
    )
    if context is not None and not isinstance(context, InvocationContext):
        raise ConfigurationError("context must have get_remaining_time_in_millis()")
    return FlushAfter(budget, context, seconds_margin)
