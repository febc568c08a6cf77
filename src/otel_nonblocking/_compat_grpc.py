"""Every read of grpcio internals, in one place, probed: whether a channel is connected.

grpcio's public API tells a channel's state only through ``subscribe``, which starts a
polling thread per channel and a thread per change; the deadline exporter needs one
look, at the moment an RPC ended or was given up on. ``grpc._channel.Channel`` keeps its
core channel as ``_channel``, whose ``check_connectivity_state`` is that look (grpcio
1.x). Where a release moved it, :func:`channel_ready` says None: not known.
"""

from __future__ import annotations

from typing import Any


def channel_ready(channel: Any) -> bool | None:
    """Whether ``channel`` (a ``grpc.Channel``) holds a connection that formed (READY)
    now, without trying to connect; None when this grpcio does not say."""
    import grpc  # type: ignore[import-untyped,unused-ignore]

    check = getattr(getattr(channel, "_channel", None), "check_connectivity_state", None)
    if not callable(check):
        return None
    try:
        state = check(False)
    except Exception:  # noqa: BLE001 - a closed channel, a moved internal: not known
        return None
    ready: int = grpc.ChannelConnectivity.READY.value[0]
    return bool(state == ready)
