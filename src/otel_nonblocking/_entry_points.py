"""What the SDK's configurator loads from entry points, loaded the same way for ours.

``opentelemetry-instrument`` users name components by entry point: exporters
(``OTEL_*_EXPORTER``, see ``_distro.py``), the sampler (``OTEL_TRACES_SAMPLER``, group
``opentelemetry_traces_sampler``, e.g. AWS X-Ray's) and the trace id generator
(``OTEL_PYTHON_ID_GENERATOR``, group ``opentelemetry_id_generator``, e.g. ``xray``). A name
that cannot be loaded warns once, naming the variable (never its value), and the SDK's
default applies: the stock configurator would raise and configure nothing.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from . import _state

_logger = logging.getLogger("otel_nonblocking")

SAMPLER_VAR = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG_VAR = "OTEL_TRACES_SAMPLER_ARG"
SAMPLER_GROUP = "opentelemetry_traces_sampler"
ID_GENERATOR_VAR = "OTEL_PYTHON_ID_GENERATOR"
ID_GENERATOR_GROUP = "opentelemetry_id_generator"
# The samplers whose argument the SDK's configurator reads as a ratio.
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def find(group: str, name: str) -> EntryPoint | None:
    """The first entry point called ``name`` in ``group``, as the SDK's configurator takes
    it (the first of the same name wins); None if no installed package provides one."""
    for entry_point in entry_points(group=group, name=name):
        return entry_point
    return None


SKIPPED = "it is skipped, not replaced"
DEFAULT = "the SDK's default applies"


def load(group: str, name: str, var: str, *, position: int | None = None, then: str) -> Any:
    """What entry point ``name`` of ``group`` names, or None after one warning naming
    ``var`` (and the entry's ``position`` in it): no package provides it, or it cannot be
    imported. ``then`` says what happens instead (:data:`SKIPPED`, :data:`DEFAULT`)."""
    found = find(group, name)
    if found is None:
        why = f"no installed package provides it (entry point group {group})"
        cannot_load(var, why, position=position, then=then)
        return None
    try:
        return found.load()
    except Exception:
        _logger.debug("otel_nonblocking: loading an entry point failed", exc_info=True)
        why = f"its entry point in {group} could not be loaded"
        cannot_load(var, why, position=position, then=then)
        return None


def cannot_load(var: str, why: str, *, position: int | None = None, then: str) -> None:
    """Warn once that ``var`` (its ``position``-th entry) names what cannot be loaded."""
    where = var if position is None else f"{var}: entry {position}"
    _state.warn_once(
        ("entry-point", var, position),
        "%s names something otel_nonblocking cannot load (%s); %s",
        where,
        why,
        then,
    )


def sampler_from_env() -> Any:
    """The sampler ``OTEL_TRACES_SAMPLER`` names, made as the SDK's configurator makes it
    (with ``OTEL_TRACES_SAMPLER_ARG``); None when unset (the provider's default); the
    SDK's default, ``parentbased_always_on``, when it cannot be made (after one warning,
    so that the SDK does not read the variable again and log its value)."""
    from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler

    name = os.environ.get(SAMPLER_VAR, "").strip()
    if not name:
        return None
    if find(SAMPLER_GROUP, name) is None and find(SAMPLER_GROUP, name.lower()) is not None:
        name = name.lower()  # the SDK reads its own sampler names in any case
    factory = load(SAMPLER_GROUP, name, SAMPLER_VAR, then=DEFAULT)
    if factory is None:
        return DEFAULT_ON
    raw_arg = os.environ.get(SAMPLER_ARG_VAR)
    arg: Any = raw_arg
    if name in _RATIO_SAMPLERS:
        try:
            arg = float(raw_arg or "")
        except ValueError:
            _state.warn_once(
                ("bad-variable", SAMPLER_ARG_VAR),
                "%s is not a number; using the rate 1.0",
                SAMPLER_ARG_VAR,
            )
            arg = 1.0
    try:
        sampler = factory(arg)
    except Exception:
        _logger.debug("otel_nonblocking: a sampler factory raised", exc_info=True)
        sampler = None
    if not isinstance(sampler, Sampler):
        cannot_load(SAMPLER_VAR, "its entry point did not make a Sampler", then=DEFAULT)
        return DEFAULT_ON
    return sampler


def id_generator_from_env() -> Any:
    """The id generator ``OTEL_PYTHON_ID_GENERATOR`` names (an ``IdGenerator`` class's
    instance); None when unset or ``random`` (the SDK's default) or when it cannot be
    made (after one warning)."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    name = os.environ.get(ID_GENERATOR_VAR, "").strip()
    if not name or name == "random":
        return None
    made = load(ID_GENERATOR_GROUP, name, ID_GENERATOR_VAR, then=DEFAULT)
    if made is None:
        return None
    try:
        generator = made() if isinstance(made, type) and issubclass(made, IdGenerator) else None
    except Exception:
        _logger.debug("otel_nonblocking: an id generator raised when made", exc_info=True)
        generator = None
    if generator is None:
        why = "its entry point is not an IdGenerator that can be made"
        cannot_load(ID_GENERATOR_VAR, why, then=DEFAULT)
    return generator
