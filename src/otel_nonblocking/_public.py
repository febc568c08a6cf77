"""Makes a name public: its class or function reports the public module it is exported from.

httpx does the same, so that reprs, pickles and docs name ``otel_nonblocking.ExportOutcome``
rather than the private module a name is written in, which may move.
"""

from __future__ import annotations

import typing


def publish(value: object, module: str) -> None:
    """Give ``value`` (a class or function; other objects are left alone) ``module``.

    A class's own annotations are resolved first, where they were written: type-hint readers
    (``typing.get_type_hints``, pydantic, FastAPI) look names up in ``__module__``, and the
    public module does not hold ``Mapping`` or the other names a private one imports.
    """
    if not callable(value) or value.__module__ == module:
        return
    own = vars(value).get("__annotations__") if isinstance(value, type) else None
    if own:
        try:
            hints = typing.get_type_hints(value, include_extras=True)
        except Exception:  # noqa: BLE001 - a name only a type checker sees: keep the strings
            hints = {}
        value.__annotations__ = {name: hints.get(name, hint) for name, hint in own.items()}
    value.__module__ = module
