"""Fork safety: re-initialise an object's threads and locks in a forked child.

Threads do not survive ``fork``, and a lock held by one of them at fork time would stay
held forever in the child. Objects register a method that builds fresh state; it is
held weakly so that registering never keeps an object alive.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any


def after_fork_in_child(method: Callable[[], Any]) -> None:
    """Call the bound ``method`` in every child forked after this call, while its object lives."""
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - Windows
        return
    ref = weakref.WeakMethod(method)

    def _reinit() -> None:
        bound = ref()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=_reinit)
