"""The package's ``LoggingHandler`` stays out of the way of the application's logging set-up.

With our handler on the root logger, an application's ``logging.basicConfig(...)`` would do
nothing (the root logger has a handler already, so its console output is lost), and a
``dictConfig``/``fileConfig`` or ``basicConfig(force=True)`` would remove the handler (so
its log records stop being exported). The SDK's configurator avoids both by wrapping those
three functions; so does this module: during the call the handler steps off the root
logger, and afterwards it is put back.
"""

from __future__ import annotations

import functools
import logging
import logging.config
import threading
import weakref
from collections.abc import Callable
from typing import Any

_kept: weakref.WeakSet[logging.Handler] = weakref.WeakSet()
_lock = threading.Lock()
_wrapped = False
_MARK = "__otel_nonblocking_keeps_handlers__"


def keep_on_root(handler: logging.Handler) -> None:
    """Keep ``handler`` on the root logger through ``logging.basicConfig``,
    ``logging.config.dictConfig`` and ``logging.config.fileConfig`` calls. A handler
    removed from the root logger otherwise (the handle's shutdown) is left off."""
    global _wrapped
    with _lock:
        _kept.add(handler)
        if _wrapped:
            return
        _wrapped = True
        logging.basicConfig = _stepping_aside(logging.basicConfig)
        logging.config.dictConfig = _stepping_aside(logging.config.dictConfig)
        logging.config.fileConfig = _stepping_aside(logging.config.fileConfig)


def _stepping_aside(configure: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(configure, _MARK, False):
        return configure  # wrapped already (a reloaded module)

    @functools.wraps(configure)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        root = logging.getLogger()
        ours = [h for h in list(root.handlers) if h in _kept]
        for handler in ours:
            root.removeHandler(handler)
        try:
            return configure(*args, **kwargs)
        finally:
            for handler in ours:  # even when the configuration raised
                root.addHandler(handler)

    setattr(wrapper, _MARK, True)
    return wrapper
