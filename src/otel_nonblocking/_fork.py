"""Fork safety: re-initialise an object's threads and locks in a forked child.

Threads do not survive ``fork``, and a lock held by one of them at fork time would stay
held forever in the child. Objects register a method that builds fresh state. The
package installs one at-fork hook for all of them, and holds each method weakly: an
object that is gone leaves nothing behind, so ``fork()`` never slows down with the
number of objects a process has created and dropped.
"""

from __future__ import annotations

import itertools
import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

_methods: dict[int, weakref.WeakMethod[Callable[[], Any]]] = {}
_keys = itertools.count()


def after_fork_in_child(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` in every child forked after this call, while its object lives.

    Methods run in the order they were registered.
    """
    key = next(_keys)
    _methods[key] = weakref.WeakMethod(method, lambda _: _methods.pop(key, None))


def registered_count() -> int:
    """How many methods are waiting for the next fork (tests check nothing leaks)."""
    return len(_methods)


def _run_in_child() -> None:
    for ref in list(_methods.values()):
        method = ref()
        if method is None:
            continue
        try:
            method()
        except Exception:  # one object's failure must not leave the others broken
            logging.getLogger("otel_nonblocking").debug(
                "otel_nonblocking: re-initialising after fork failed", exc_info=True
            )


if hasattr(os, "register_at_fork"):  # pragma: no branch - not on Windows
    os.register_at_fork(after_in_child=_run_in_child)
