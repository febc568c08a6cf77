"""The fast OTLP span encoder decodes equal to the installed stock encoder, for any batch.

Property tests (hypothesis, derandomized: the same examples on every run) build ReadableSpan
objects field by field; other tests use real spans from a TracerProvider and pin edge cases.
Equality is checked on decoded messages, compared through a deterministic re-serialization
so that NaN values compare by their bits.
"""

from __future__ import annotations

import enum
import logging
import math
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.span import TraceState

from otel_nonblocking import ConfigurationError
from otel_nonblocking import _encoder as encoder_module
from otel_nonblocking._encoder import (
    SDK_LAYOUT_OK,
    STOCK_FEATURES,
    SpanEncoder,
    StockFeatures,
    encode_spans,
    stock_encode_spans,
)

# Derandomized: CI and every developer run the same examples; raise max_examples locally
# to search further.
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _canonical(wire: bytes) -> bytes:
    return ExportTraceServiceRequest.FromString(wire).SerializeToString(deterministic=True)


def assert_same_as_stock(spans: Sequence[ReadableSpan], encoder: SpanEncoder) -> None:
    """Both encoders raise, or both succeed and their outputs decode to equal messages."""
    try:
        stock = stock_encode_spans(spans)
    except Exception as error:  # noqa: BLE001 - whatever the stock encoder raises, we must raise
        with pytest.raises(Exception):  # noqa: B017, PT011 - the kind of failure is the stock's
            encoder.encode(spans)
        del error
        return
    ours = encoder.encode(spans)
    assert _canonical(ours) == _canonical(stock)
    ours_message = ExportTraceServiceRequest.FromString(ours)
    stock_message = ExportTraceServiceRequest.FromString(stock)
    if "nan" not in str(stock_message).lower():  # NaN != NaN: the bytes comparison covers it
        assert ours_message == stock_message


# --- strategies -----------------------------------------------------------------------

INT64_EDGES = [0, 1, -1, 127, 128, 4095, 4096, 16383, 16384, 2**31, 2**63 - 1, -(2**63)]
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


class Color(enum.IntEnum):
    RED = 7


class Label(str):
    pass


def _long_text() -> st.SearchStrategy[str]:
    # Lengths around the 1- and 2-byte varint boundaries and the encoder's size thresholds.
    sizes = st.sampled_from([125, 126, 127, 128, 511, 512, 4095, 4096, 20000])
    return st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), sizes)


CLEAN_TEXT = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(["", "GET", "/users/{id}", "ünïcödé", "日本語", "emoji 🎉", "a\x00b"]),
    _long_text(),
)
ANY_TEXT = st.one_of(
    CLEAN_TEXT,
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), SURROGATES, st.text(max_size=4)),
)
CLEAN_INTS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(INT64_EDGES))
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.5]),
)


def _sequences(
    text: st.SearchStrategy[str], ints: st.SearchStrategy[int]
) -> st.SearchStrategy[Any]:
    element_lists = st.one_of(
        st.lists(text, max_size=4),
        st.lists(st.booleans(), max_size=4),
        st.lists(ints, max_size=4),
        st.lists(FLOATS, max_size=4),
    )
    return st.one_of(element_lists.map(tuple), element_lists)


def _values(text: st.SearchStrategy[str], ints: st.SearchStrategy[int], *, odd: bool) -> Any:
    scalars = st.one_of(text, st.booleans(), ints, FLOATS, st.binary(max_size=8))
    values = st.one_of(
        scalars,
        _sequences(text, ints),
        st.dictionaries(st.text(max_size=4), scalars, max_size=3),  # extended attributes
        st.lists(_sequences(text, ints), max_size=2).map(tuple),  # nested sequences
        st.sampled_from([Color.RED, Label("label"), ()]),
    )
    if STOCK_FEATURES.none_as_empty_value or odd:
        values = st.one_of(values, st.none(), st.lists(st.one_of(st.none(), text), max_size=3))
    if odd:
        extras = st.sampled_from(
            [
                object(),
                2**63,
                -(2**63) - 1,
                2**64,
                (1, 2**64),
                bytearray(b"x"),
                {1: "x"},
                {"k": {"n": 2**70}},
            ]
        )
        values = st.one_of(values, extras)
    return values


def _str_keys(items: dict[Any, Any]) -> dict[Any, Any]:
    return {k: v for k, v in items.items() if isinstance(k, str) and k}


def _attributes(*, odd: bool, max_size: int = 6) -> st.SearchStrategy[Any]:
    text = ANY_TEXT if odd else CLEAN_TEXT
    ints = st.one_of(CLEAN_INTS, st.sampled_from([2**63, -(2**63) - 1])) if odd else CLEAN_INTS
    keys = st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=12),
        st.sampled_from(["http.method", "k", "ünï", "x" * 300]),
    )
    if odd:
        keys = st.one_of(keys, st.sampled_from(["bad\udc80", 1, None]))
    values = _values(text, ints, odd=odd)
    mapping = st.dictionaries(keys, values, max_size=max_size)

    def bounded(items: dict[Any, Any], dropped: int) -> BoundedAttributes:
        attributes = BoundedAttributes(maxlen=None, attributes=items, immutable=False)
        attributes.dropped = dropped
        return attributes

    return st.one_of(
        st.none(),
        st.dictionaries(keys, values, min_size=1, max_size=max_size),
        # BoundedAttributes drops (and logs) empty and non-str keys itself: keep those for dicts.
        st.builds(bounded, mapping.map(_str_keys), st.integers(0, 300)),
    )


TRACE_STATES = st.sampled_from(
    [
        TraceState(),
        TraceState([("congo", "t61rcWkgMzE")]),
        TraceState([("rojo", "00f067aa0ba902b7"), ("tenant@vendor", "x")]),
    ]
)


CONTEXTS = st.builds(
    SpanContext,
    trace_id=st.one_of(st.integers(0, 2**128 - 1), st.sampled_from([1, 2**128 - 1])),
    span_id=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([1, 2**64 - 1])),
    is_remote=st.booleans(),
    trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
    trace_state=TRACE_STATES,
)


def _timestamps() -> st.SearchStrategy[Any]:
    times = st.one_of(
        st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1, 1_700_000_000_000_000_000])
    )
    return times


def _bounded_list(items: list[Any], dropped: int) -> BoundedList:
    bounded: BoundedList = BoundedList(None)
    bounded.extend(items)
    bounded.dropped = dropped
    return bounded


def _containers(items: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[Any]:
    return st.one_of(
        items.map(tuple), items, st.builds(_bounded_list, items, st.integers(0, 2**32 - 1))
    )


def _events(*, odd: bool) -> st.SearchStrategy[Event]:
    return st.builds(
        Event,
        name=CLEAN_TEXT,
        attributes=_attributes(odd=odd, max_size=3),
        timestamp=st.one_of(st.integers(1, 2**64 - 1), st.just(0)),
    )


def _links(*, odd: bool) -> st.SearchStrategy[Link]:
    return st.builds(Link, CONTEXTS, _attributes(odd=odd, max_size=3))


def _statuses() -> st.SearchStrategy[Status | None]:
    descriptions = st.one_of(st.none(), CLEAN_TEXT)
    return st.one_of(
        st.sampled_from([None, Status(StatusCode.UNSET), Status(StatusCode.OK)]),
        st.builds(Status, st.just(StatusCode.ERROR), descriptions),
    )


RESOURCE_ATTRIBUTES = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(CLEAN_TEXT, st.booleans(), CLEAN_INTS, st.lists(CLEAN_TEXT, max_size=2).map(tuple)),
    max_size=4,
)
RESOURCE_SCHEMAS = st.sampled_from(["", "https://opentelemetry.io/schemas/1.21.0"])
SCOPE_NAMES = st.sampled_from(["app", "db.client", "ünï"])
SCOPE_VERSIONS = st.sampled_from([None, "", "1.0.0"])
SCOPE_SCHEMAS = st.sampled_from([None, "", "https://opentelemetry.io/schemas/1.24.0"])
SCOPE_ATTRIBUTES = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["a", "b"]), CLEAN_TEXT, max_size=2)
)


@st.composite
def _resources(draw: st.DrawFn, *, odd: bool) -> list[Resource]:
    """One to three resources, sometimes equal but distinct objects (grouped as one)."""
    pool = []
    for _ in range(draw(st.integers(1, 3))):
        attributes = draw(RESOURCE_ATTRIBUTES)
        schema = draw(RESOURCE_SCHEMAS)
        pool.append(Resource(attributes, schema))
        if draw(st.booleans()):
            pool.append(Resource(attributes, schema))  # equal, distinct object
    if odd and draw(st.booleans()):
        pool.append(Resource({"bad.value": "x\ud800", "n": 2**64}))  # attributes the stock drops
    return pool


@st.composite
def _scopes(draw: st.DrawFn, *, odd: bool) -> list[InstrumentationScope | None]:
    """None and one to three scopes, with and without version, schema URL and attributes."""
    pool: list[InstrumentationScope | None] = [None]
    for _ in range(draw(st.integers(1, 3))):
        fields = (
            draw(SCOPE_NAMES),
            draw(SCOPE_VERSIONS),
            draw(SCOPE_SCHEMAS),
            draw(SCOPE_ATTRIBUTES),
        )
        pool.append(InstrumentationScope(*fields))
        if draw(st.booleans()):
            pool.append(InstrumentationScope(*fields))
    if odd:
        pool.append(InstrumentationScope("odd", "1", None, {"k": 2**64}))
    return pool


class _Mode:
    """Every strategy a batch needs, built once (building them per draw is slow)."""

    def __init__(self, *, odd: bool) -> None:
        self.odd = odd
        # Odd values go where the stock encoder tolerates them (attributes, which it drops);
        # fields it rejects for the whole batch are corrupted one at a time in their own test.
        self.text = CLEAN_TEXT
        self.attributes = _attributes(odd=odd)
        self.events = _containers(st.lists(_events(odd=odd), max_size=3))
        self.links = _containers(st.lists(_links(odd=odd), max_size=2))
        self.statuses = _statuses()
        self.times = st.one_of(st.none(), _timestamps())
        self.resources = _resources(odd=odd)
        self.scopes = _scopes(odd=odd)


_MODES = {False: _Mode(odd=False), True: _Mode(odd=True)}
PARENTS = st.one_of(st.none(), CONTEXTS)
KINDS = st.sampled_from(list(SpanKind))


@st.composite
def batches(draw: st.DrawFn, *, odd: bool = False) -> list[ReadableSpan]:
    mode = _MODES[odd]
    resources = draw(mode.resources)
    scopes = draw(mode.scopes)
    spans = []
    for _ in range(draw(st.integers(1, 6))):
        spans.append(
            ReadableSpan(
                name=draw(mode.text),
                context=draw(CONTEXTS),
                parent=draw(PARENTS),
                resource=draw(st.sampled_from(resources)),
                attributes=draw(mode.attributes),
                events=draw(mode.events),
                links=draw(mode.links),
                kind=draw(KINDS),
                status=draw(mode.statuses),
                start_time=draw(mode.times),
                end_time=draw(mode.times),
                instrumentation_scope=draw(st.sampled_from(scopes)),
            )
        )
    return spans


@pytest.fixture(autouse=True)
def _quiet_stock_encoder_logs() -> Any:
    """The stock encoder logs each attribute it drops; odd inputs make a lot of that."""
    logger = logging.getLogger("opentelemetry.exporter.otlp.proto.common._internal")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(previous)


# --- properties -------------------------------------------------------------------------


@PROPERTY
@given(batches())
def test_sdk_typed_batches_encode_equal_to_stock_without_falling_back(
    spans: list[ReadableSpan],
) -> None:
    encoder = SpanEncoder()
    assert_same_as_stock(spans, encoder)
    assert encoder.stats().fallback_spans == 0  # the fast path itself produced every span
    assert_same_as_stock(spans, encoder)  # and again from warm caches


@PROPERTY
@given(batches(odd=True))
def test_any_batch_encodes_equal_to_stock_or_raises_like_it(spans: list[ReadableSpan]) -> None:
    encoder = SpanEncoder()
    assert_same_as_stock(spans, encoder)
    assert_same_as_stock(spans, encoder)


def _corrupt(span: ReadableSpan, field: str) -> ReadableSpan:
    """A copy of ``span`` with one field the stock encoder rejects (or, on some SDKs, accepts)."""
    fields: dict[str, Any] = {
        "name": span.name,
        "context": span.get_span_context(),
        "parent": span.parent,
        "resource": span.resource,
        "attributes": span.attributes,
        "events": span.events,
        "links": span.links,
        "kind": span.kind,
        "status": span.status,
        "start_time": span.start_time,
        "end_time": span.end_time,
        "instrumentation_scope": span.instrumentation_scope,
    }
    bad = {
        "name": "bad\ud800",
        "name_int": 5,
        "name_bytes": b"bytes",
        "start_negative": -1,
        "start_huge": 2**64,
        "start_float": 1.5,
        "start_bool": True,
        "kind": 7,
        "context": None,
        "trace_id_huge": SpanContext(2**128, 1, False),
        "status": Status(StatusCode.ERROR, "bad\udfff"),
        "event_name": (Event("bad\ud800", timestamp=1),),
        "event_time": (Event("e", timestamp=2**64),),
        "link_context": (Link(SpanContext(1, 2**64, False)),),
    }[field]
    key = {"name_int": "name", "name_bytes": "name", "trace_id_huge": "context"}.get(field, field)
    key = {"event_name": "events", "event_time": "events", "link_context": "links"}.get(key, key)
    key = "start_time" if key.startswith("start_") else key
    fields[key] = bad
    return ReadableSpan(**fields)


CORRUPTIONS = [
    "name",
    "name_int",
    "name_bytes",
    "start_negative",
    "start_huge",
    "start_float",
    "start_bool",
    "kind",
    "context",
    "trace_id_huge",
    "status",
    "event_name",
    "event_time",
    "link_context",
]


@pytest.mark.parametrize("corruption", CORRUPTIONS)
@settings(PROPERTY, max_examples=12)
@given(batches(), st.data())
def test_a_field_the_stock_encoder_rejects_makes_ours_raise_too(
    corruption: str, spans: list[ReadableSpan], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(spans) - 1))
    spans[index] = _corrupt(spans[index], corruption)
    assert_same_as_stock(spans, SpanEncoder())


@settings(PROPERTY, max_examples=60)
@given(batches())
def test_without_the_field_layout_the_public_properties_give_the_same_output(
    spans: list[ReadableSpan],
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoder_module, "SDK_LAYOUT_OK", False)
        encoder = SpanEncoder()
        assert_same_as_stock(spans, encoder)
        assert encoder.stats().fallback_spans == 0


@settings(PROPERTY, max_examples=50)
@given(st.lists(batches(), min_size=2, max_size=3))
def test_caches_carried_across_batches_never_change_the_output(
    many: list[list[ReadableSpan]],
) -> None:
    encoder = SpanEncoder(max_cached_resources=2, max_cached_scopes=2, max_cached_strings=3)
    for spans in many + many[::-1]:
        assert_same_as_stock(spans, encoder)


# --- the installed SDK ------------------------------------------------------------------


def test_fast_path_and_field_reads_are_enabled_on_the_installed_sdk() -> None:
    # If a new SDK release changes what the probes look at, this fails instead of the
    # encoder quietly falling back to stock speed.
    assert STOCK_FEATURES.fast_path
    assert SDK_LAYOUT_OK
    assert STOCK_FEATURES.root_flags == STOCK_FEATURES.local_parent_flags == 0x100
    assert STOCK_FEATURES.remote_parent_flags == 0x300


def test_when_the_stock_probe_fails_every_span_goes_to_the_stock_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(encoder_module, "STOCK_FEATURES", StockFeatures(fast_path=False))
    spans = _real_spans()
    encoder = SpanEncoder()
    assert encoder.encode(spans) == stock_encode_spans(spans)
    assert encoder.stats().fallback_spans == len(spans)


def test_importing_the_encoder_logs_nothing() -> None:
    # On SDK 1.33 the import-time probe makes the stock encoder drop (and log) attributes;
    # those records are filtered out for the probing thread only.
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG); "
        "import otel_nonblocking._encoder as e; assert e.STOCK_FEATURES.fast_path"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _real_spans() -> list[ReadableSpan]:
    collect = _Collect()
    providers = [
        TracerProvider(resource=Resource.create({"service.name": name}), shutdown_on_exit=False)
        for name in ("checkout", "billing")
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(collect))
    remote = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("congo", "t61")]),
    )
    for provider in providers:
        tracers = [
            provider.get_tracer("app"),
            provider.get_tracer("db", "2.1", schema_url="https://opentelemetry.io/schemas/1.21.0"),
        ]
        for i, tracer in enumerate(tracers * 3):
            token = context_api.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
            try:
                with tracer.start_as_current_span(
                    f"request {i}", kind=SpanKind.SERVER, links=[Link(remote, {"why": "retry"})]
                ) as span:
                    span.set_attribute("http.request.method", "GET")
                    span.set_attribute("http.response.status_code", 200 + i)
                    span.set_attribute("ratio", i / 3)
                    span.set_attribute("tags", ["a", "b"])
                    span.set_attribute("ok", i % 2 == 0)
                    span.add_event("exception", {"exception.message": "boom ü"})
                    with tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
                        child.set_status(Status(StatusCode.ERROR, "timeout"))
                    span.set_status(Status(StatusCode.OK))
            finally:
                context_api.detach(token)
    for provider in providers:
        provider.shutdown()
    return collect.spans


def test_real_sdk_spans_from_two_resources_and_several_scopes_encode_equal_to_stock() -> None:
    spans = _real_spans()
    encoder = SpanEncoder()
    assert_same_as_stock(spans, encoder)
    assert_same_as_stock(spans[::-1], encoder)
    assert encoder.stats().fallback_spans == 0
    request = ExportTraceServiceRequest.FromString(encoder.encode(spans))
    assert len(request.resource_spans) == 2
    assert [len(r.scope_spans) for r in request.resource_spans] == [2, 2]


def test_module_function_uses_a_shared_encoder_and_matches_stock() -> None:
    spans = _real_spans()
    assert _canonical(encode_spans(spans)) == _canonical(stock_encode_spans(spans))
    assert encode_spans([]) == stock_encode_spans([]) == b""


def test_spans_of_a_readable_span_subclass_are_read_through_public_properties() -> None:
    class Renamed(ReadableSpan):
        @property
        def name(self) -> str:
            return "renamed"

    span = Renamed(name="original", context=SpanContext(1, 2, False), attributes={"k": "v"})
    encoder = SpanEncoder()
    assert_same_as_stock([span], encoder)
    assert encoder.stats().fallback_spans == 0
    decoded = ExportTraceServiceRequest.FromString(encoder.encode([span]))
    assert decoded.resource_spans[0].scope_spans[0].spans[0].name == "renamed"


# --- edge cases, pinned ----------------------------------------------------------------


def _span(**fields: Any) -> ReadableSpan:
    fields.setdefault("name", "span")
    fields.setdefault("context", SpanContext(0x1234, 0x5678, is_remote=False))
    return ReadableSpan(**fields)


def _decoded_attributes(wire: bytes) -> dict[str, Any]:
    span = ExportTraceServiceRequest.FromString(wire).resource_spans[0].scope_spans[0].spans[0]
    return {kv.key: kv.value for kv in span.attributes}


def test_an_attribute_with_a_lone_surrogate_is_dropped_like_the_stock_encoder_drops_it() -> None:
    span = _span(attributes={"good": "ok", "bad": "x\udc80y", "bad.key\ud800": "v"})
    encoder = SpanEncoder()
    assert_same_as_stock([span], encoder)
    assert set(_decoded_attributes(encoder.encode([span]))) == {"good"}
    assert encoder.stats().fallback_spans == 2  # handed to the stock encoder, both times


def test_a_span_name_with_a_lone_surrogate_raises_like_the_stock_encoder() -> None:
    span = _span(name="bad\ud800")
    with pytest.raises(UnicodeEncodeError):
        stock_encode_spans([span])
    with pytest.raises(UnicodeEncodeError):
        SpanEncoder().encode([span])


def test_a_span_without_a_context_raises_like_the_stock_encoder() -> None:
    span = ReadableSpan(name="no context")
    with pytest.raises(AttributeError):
        stock_encode_spans([span])
    with pytest.raises(AttributeError):
        SpanEncoder().encode([span])


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64, (1, 2**63), object()])
def test_a_value_the_stock_encoder_cannot_encode_drops_the_attribute_in_both(value: object) -> None:
    span = _span(attributes={"kept": 1, "dropped": value})
    encoder = SpanEncoder()
    assert_same_as_stock([span], encoder)
    assert set(_decoded_attributes(encoder.encode([span]))) == {"kept"}


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), -1, 0, 127, 128, 4096])
def test_int64_edges_round_trip_exactly(value: int) -> None:
    encoder = SpanEncoder()
    wire = encoder.encode([_span(attributes={"n": value})])
    assert _decoded_attributes(wire)["n"].int_value == value
    assert_same_as_stock([_span(attributes={"n": value})], encoder)
    assert encoder.stats().fallback_spans == 0


def test_nan_infinities_and_negative_zero_keep_their_bits() -> None:
    values = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "-0": -0.0, "0": 0.0}
    encoder = SpanEncoder()
    span = _span(attributes=values)
    assert_same_as_stock([span], encoder)
    decoded = _decoded_attributes(encoder.encode([span]))
    assert math.isnan(decoded["nan"].double_value)
    assert math.copysign(1.0, decoded["-0"].double_value) == -1.0
    assert decoded["0"].HasField("double_value")  # a oneof member is written even when zero


def test_none_values_follow_the_installed_stock_encoder() -> None:
    span = _span(attributes={"none": None, "seq": ("a", None), "kept": "v"})
    encoder = SpanEncoder()
    assert_same_as_stock([span], encoder)
    decoded = _decoded_attributes(encoder.encode([span]))
    if STOCK_FEATURES.none_as_empty_value:  # SDK 1.45: an empty AnyValue
        assert decoded["none"].WhichOneof("value") is None
        assert len(decoded["seq"].array_value.values) == 2
        assert encoder.stats().fallback_spans == 0
    else:  # SDK 1.33: the attribute is dropped (the stock encoder does it, and logs)
        assert set(decoded) == {"kept"}


def test_values_cached_per_key_never_confuse_true_one_and_one_point_zero() -> None:
    encoder = SpanEncoder()
    for value in (1, True, 1.0, "1", 1, True, 0, False, 0.0, -0.0, 0):
        span = _span(attributes={"k": value})
        assert_same_as_stock([span], encoder)
        kind = _decoded_attributes(encoder.encode([span]))["k"].WhichOneof("value")
        expected = {
            bool: "bool_value",
            int: "int_value",
            float: "double_value",
            str: "string_value",
        }
        assert kind == expected[type(value)]


def test_a_key_with_many_distinct_values_stays_exact_after_its_value_cache_gives_up() -> None:
    encoder = SpanEncoder()
    for i in [*range(40), 3, 3, 39]:
        assert_same_as_stock([_span(attributes={"id": f"user-{i}", "n": i * 1000})], encoder)


def test_enum_and_str_subclass_values_encode_as_their_base_values() -> None:
    span = _span(attributes={"color": Color.RED, "label": Label("x"), "seq": (Color.RED,)})
    encoder = SpanEncoder()
    assert_same_as_stock([span], encoder)
    assert encoder.stats().fallback_spans == 0


def test_a_link_trace_state_is_not_written_as_the_stock_encoder_does_not() -> None:
    state = TraceState([("congo", "t61rcWkgMzE")])
    link = Link(SpanContext(1, 2, is_remote=True, trace_state=state), {"k": "v"})
    span = _span(links=(link,), context=SpanContext(1, 3, is_remote=False, trace_state=state))
    encoder = SpanEncoder()
    assert_same_as_stock([span], encoder)
    decoded = ExportTraceServiceRequest.FromString(encoder.encode([span]))
    encoded = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert encoded.trace_state == "congo=t61rcWkgMzE"
    assert encoded.links[0].trace_state == ""
    assert encoded.links[0].flags == STOCK_FEATURES.remote_link_flags


def test_dropped_counts_beyond_uint32_raise_like_the_stock_encoder() -> None:
    attributes = BoundedAttributes(attributes={"k": "v"})
    attributes.dropped = 2**32
    span = _span(attributes=attributes)
    with pytest.raises(ValueError, match="out of range"):
        stock_encode_spans([span])
    with pytest.raises(ValueError, match="out of range"):
        SpanEncoder().encode([span])


def test_a_resource_freed_and_replaced_is_never_served_from_a_stale_cache_entry() -> None:
    # CPython reuses a freed object's address, so id() repeats: a cache keyed by id() that
    # did not keep its resources alive would serve an old encoding for a new resource.
    encoder = SpanEncoder(max_cached_resources=2, max_cached_scopes=2)
    for i in range(50):
        resource = Resource({"n": i})
        scope = InstrumentationScope(f"s{i}")
        assert_same_as_stock([_span(resource=resource, instrumentation_scope=scope)], encoder)
        del resource, scope


def test_caches_stay_within_their_bounds() -> None:
    encoder = SpanEncoder(max_cached_resources=2, max_cached_scopes=3, max_cached_strings=5)
    for i in range(20):
        span = _span(
            name=f"name {i}",
            resource=Resource({"r": i}),
            instrumentation_scope=InstrumentationScope(f"scope {i}"),
            attributes={f"key {i}": i},
            events=(Event(f"event {i}", timestamp=1),),
        )
        assert_same_as_stock([span], encoder)
    stats = encoder.stats()
    assert stats.cached_resources <= 2
    assert stats.cached_scopes <= 3
    assert stats.cached_strings <= 5 * 6  # keys for 4 kinds of message, span and event names
    encoder.clear()
    assert encoder.stats().cached_strings == 0


def test_one_encoder_shared_by_threads_gives_each_thread_exact_output() -> None:
    spans = _real_spans()
    batches = [spans[i::4] for i in range(4)]
    expected = [_canonical(stock_encode_spans(batch)) for batch in batches]
    encoder = SpanEncoder()
    failures: list[int] = []

    def work(index: int) -> None:
        for _ in range(30):
            if _canonical(encoder.encode(batches[index])) != expected[index]:
                failures.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert encoder.stats().batches == 120


@pytest.mark.parametrize(
    "argument", ["max_cached_resources", "max_cached_scopes", "max_cached_strings"]
)
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "8"])
def test_bad_cache_bounds_raise_configuration_error_naming_the_argument(
    argument: str, value: object
) -> None:
    make: Callable[..., SpanEncoder] = SpanEncoder
    with pytest.raises(ConfigurationError, match=argument):
        make(**{argument: value})


@pytest.mark.parametrize("value", [-1, 1.5, True, "64"])
def test_a_bad_yield_every_raises_configuration_error(value: object) -> None:
    make: Callable[..., SpanEncoder] = SpanEncoder
    with pytest.raises(ConfigurationError, match="yield_every"):
        make(yield_every=value)


@pytest.mark.parametrize(("yield_every", "pauses"), [(0, 0), (64, 15), (10, 100)])
def test_encoding_lets_go_of_the_gil_every_yield_every_spans(
    yield_every: int, pauses: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = (_real_spans() * 1000)[:1000]
    expected = SpanEncoder(yield_every=0).encode(spans)
    sleeps: list[float] = []

    class Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)

    monkeypatch.setattr(encoder_module, "time", Clock)
    assert SpanEncoder(yield_every=yield_every).encode(spans) == expected  # same bytes
    assert sleeps == [0] * pauses
