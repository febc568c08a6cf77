"""A pipeline's settings, resolved once (argument > environment variable > default).

The names, variables, defaults and checks are the registry's (``_config.py``); this is
the frozen value a pipeline reads them from, in the units it works in (seconds, bytes).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

from . import _config
from ._config import UNSET, Setting, _Unset
from ._errors import ConfigurationError

_logger = logging.getLogger("otel_nonblocking")


@dataclass(frozen=True)
class SignalSettings:
    """The four batch settings whose variables differ by signal (``OTEL_BSP_*`` for spans,
    ``OTEL_BLRP_*`` for log records); the other settings are the package's, shared."""

    max_queue_size: Setting[int]
    max_export_batch_size: Setting[int]
    schedule_delay_millis: Setting[int]
    export_timeout_millis: Setting[int]


SPANS = SignalSettings(
    _config.MAX_QUEUE_SIZE,
    _config.MAX_EXPORT_BATCH_SIZE,
    _config.SCHEDULE_DELAY_MILLIS,
    _config.EXPORT_TIMEOUT_MILLIS,
)
LOGS = SignalSettings(
    _config.LOG_MAX_QUEUE_SIZE,
    _config.LOG_MAX_EXPORT_BATCH_SIZE,
    _config.LOG_SCHEDULE_DELAY_MILLIS,
    _config.LOG_EXPORT_TIMEOUT_MILLIS,
)


@dataclass(frozen=True)
class PipelineSettings:
    """What a pipeline's parts need to know, fixed when it is built."""

    max_queue_size: int
    max_export_batch_size: int
    schedule_delay: float  # seconds
    export_timeout: float  # seconds
    shutdown_timeout: float  # seconds
    max_queue_bytes: int
    retry_buffer_size: int
    max_export_attempts: int
    spool_dir: str  # "" when there is no spool
    spool_max_bytes: int

    @classmethod
    def resolve(
        cls,
        *,
        signal: SignalSettings = SPANS,
        max_queue_size: int | _Unset = UNSET,
        max_export_batch_size: int | _Unset = UNSET,
        schedule_delay_millis: int | _Unset = UNSET,
        export_timeout_millis: int | _Unset = UNSET,
        shutdown_timeout_millis: int | _Unset = UNSET,
        max_queue_bytes: int | _Unset = UNSET,
        retry_buffer_size: int | _Unset = UNSET,
        max_export_attempts: int | _Unset = UNSET,
        spool_dir: str | os.PathLike[str] | _Unset | None = UNSET,
        spool_max_bytes: int | _Unset = UNSET,
    ) -> PipelineSettings:
        """Each from its argument, else its variable, else its default. A batch size over
        the queue size raises when given, and is lowered to it when it came from the
        environment or the default. ``signal`` says whose four batch settings (and so
        which variables) apply."""
        queue_size = signal.max_queue_size.resolve(max_queue_size)
        batch = signal.max_export_batch_size.resolve(max_export_batch_size)
        if batch > queue_size:
            if not isinstance(max_export_batch_size, _Unset):
                raise ConfigurationError(
                    f"max_export_batch_size ({batch}) must not exceed max_queue_size ({queue_size})"
                )
            batch = queue_size
        if isinstance(spool_dir, os.PathLike):
            spool_dir = os.fspath(spool_dir)
        return cls(
            max_queue_size=queue_size,
            max_export_batch_size=batch,
            schedule_delay=signal.schedule_delay_millis.resolve(schedule_delay_millis) / 1000,
            export_timeout=signal.export_timeout_millis.resolve(export_timeout_millis) / 1000,
            shutdown_timeout=(
                _config.SHUTDOWN_TIMEOUT_MILLIS.resolve(shutdown_timeout_millis) / 1000
            ),
            max_queue_bytes=_config.MAX_QUEUE_BYTES.resolve(max_queue_bytes),
            retry_buffer_size=_config.RETRY_BUFFER_SIZE.resolve(retry_buffer_size),
            max_export_attempts=_config.MAX_EXPORT_ATTEMPTS.resolve(max_export_attempts),
            spool_dir=_config.SPOOL_DIR.resolve("" if spool_dir is None else spool_dir),
            spool_max_bytes=_config.SPOOL_MAX_BYTES.resolve(spool_max_bytes),
        )


def spool_checked(
    settings: PipelineSettings,
    *,
    has_codec: bool,
    given: str | os.PathLike[str] | _Unset | None,
    exporters: str,
    exporter_name: str,
) -> PipelineSettings:
    """The spool writes OTLP request bodies: without an exporter that can encode them
    (``has_codec``), a ``spool_dir`` argument raises, naming the ``exporters`` that can,
    and the variable is ignored with a warning."""
    if not settings.spool_dir or has_codec:
        return settings
    if not isinstance(given, _Unset):
        raise ConfigurationError(
            f"spool_dir needs an OTLP/HTTP exporter ({exporters}), not {exporter_name}"
        )
    _logger.warning("OTEL_NONBLOCKING_SPOOL_DIR ignored: the spool needs an OTLP/HTTP exporter")
    return replace(settings, spool_dir="")
