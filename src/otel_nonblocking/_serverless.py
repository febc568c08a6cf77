"""flush_after(): flush when a request handler returns, bounded by the invocation's time.

Given an AWS Lambda context (anything with ``get_remaining_time_in_millis()``), the
budget is ``min(timeout, time left - margin)``, so the flush can never be what makes
the invocation time out.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from . import _config
from ._config import UNSET, _Unset
from ._errors import ConfigurationError
from ._setup import FlushResult, aflush, flush

F = TypeVar("F", bound=Callable[..., Any])


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

    def budget(self, context: InvocationContext | None = None) -> float:
        """Seconds the flush may take now."""
        context = context or self._context
        budget = self._timeout
        if context is not None:
            try:
                left = context.get_remaining_time_in_millis() / 1000 - self._margin
            except Exception:  # noqa: BLE001 - a broken context must not break the handler
                left = budget
            budget = min(budget, left)
        return max(budget, 0.0)

    def __enter__(self) -> FlushAfter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.result = flush(self.budget())

    async def __aenter__(self) -> FlushAfter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.result = await aflush(self.budget())

    def __call__(self, handler: F) -> F:
        if inspect.iscoroutinefunction(handler):
            async_handler = cast(Callable[..., Awaitable[Any]], handler)

            @functools.wraps(handler)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await async_handler(*args, **kwargs)
                finally:
                    self.result = await aflush(self.budget(_find_context(args, kwargs)))

            return cast(F, async_wrapper)

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                self.result = flush(self.budget(_find_context(args, kwargs)))

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
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise ConfigurationError(f"margin must be a number of seconds >= 0, got {margin!r}")
    if not isinstance(timeout, _Unset) and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise ConfigurationError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    resolved = _config.FLUSH_TIMEOUT.resolve(
        UNSET if isinstance(timeout, _Unset) else max(float(timeout), 1e-9)
    )
    if context is not None and not isinstance(context, InvocationContext):
        raise ConfigurationError("context must have get_remaining_time_in_millis()")
    return FlushAfter(resolved, context, float(margin))
