"""`aioposthog._serialize` against the official SDK's own encoding pipeline.

The official client runs `posthog.utils.clean()` over each event when it is captured and
`json.dumps(..., cls=posthog.request.DatetimeSerializer)` over the batch when it is sent;
`official_json` below reproduces exactly that, so every differential test compares what
both clients would put on the wire.
"""

from __future__ import annotations

import collections
import dataclasses
import decimal
import enum
import fractions
import json
import os
import re
import types
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, cast

import posthog.request
import posthog.utils
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioposthog import _serialize
from aioposthog._serialize import (
    MAX_DEPTH,
    UnserializableValueError,
    encode_event,
    now_iso,
    to_utc_iso,
    uuid7,
)

# posthog's helpers are unannotated: bind them as Any-typed callables once.
_clean: Callable[[Any], Any] = posthog.utils.clean
_DatetimeSerializer = cast(type[json.JSONEncoder], posthog.request.DatetimeSerializer)
_normalize_timestamp = cast(Callable[[Any], str], posthog.utils._normalize_timestamp)


def official_json(event: dict[str, Any]) -> Any:
    """What the official SDK sends for `event`, parsed back."""
    return json.loads(json.dumps(_clean(event), cls=_DatetimeSerializer))


def ours(event: dict[str, Any]) -> Any:
    return json.loads(encode_event(event))


# -- values of every kind the official SDK accepts --------------------------------------


class Plan(pydantic.BaseModel):
    name: str
    seats: int
    started: datetime
    price: decimal.Decimal
    tags: set[str]


class Nested(pydantic.BaseModel):
    plan: Plan
    history: list[date]


@dataclasses.dataclass
class Item:
    sku: str
    qty: int
    added: datetime
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Cart:
    items: list[Item]
    owner: uuid.UUID
    plan: Plan | None = None


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Ratio(float):
    pass


OFFSETS = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
NAIVE = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
AWARE = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=OFFSETS
)
TEXT = st.text(max_size=20)
PLANS = st.builds(
    Plan,
    name=TEXT,
    seats=st.integers(),
    started=st.one_of(NAIVE, AWARE),
    price=st.decimals(allow_nan=False, allow_infinity=False, places=2),
    tags=st.sets(TEXT, max_size=3),
)
HASHABLE = st.one_of(st.integers(), TEXT, st.booleans(), st.none())
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),  # NaN and the infinities included
    TEXT,
    NAIVE,
    AWARE,
    st.dates(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.sampled_from([Color.RED, Level.HIGH, Ratio(2.5), decimal.Decimal("NaN")]),
    TEXT.map(str.encode),
    PLANS,
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    item = st.builds(
        Item,
        sku=TEXT,
        qty=st.integers(),
        added=AWARE,
        extra=st.dictionaries(TEXT, children, max_size=3),
    )
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(TEXT, children, max_size=4),
        # Non-str keys, which json.dumps spells "1", "1.5", "true", "null", "NaN"...
        st.dictionaries(st.one_of(HASHABLE, st.floats()), children, max_size=3),
        st.tuples(children, children),
        st.sets(HASHABLE, max_size=4),
        st.frozensets(HASHABLE, max_size=4),
        st.lists(children, max_size=3).map(collections.deque),
        st.dictionaries(TEXT, children, max_size=3).map(collections.OrderedDict),
        st.builds(Cart, items=st.lists(item, max_size=2), owner=st.uuids()),
        st.builds(Nested, plan=PLANS, history=st.lists(st.dates(), max_size=2)),
    )


VALUES = st.recursive(SCALARS, _containers, max_leaves=25)
PROPERTIES = st.dictionaries(TEXT, VALUES, max_size=12)


@settings(max_examples=400, deadline=None)
@given(PROPERTIES)
def test_properties_match_the_official_sdk(properties: dict[str, Any]) -> None:
    event = {
        "event": "e",
        "distinct_id": "d",
        "properties": properties,
        "timestamp": "2024-05-01T12:30:15.123456+00:00",
        "uuid": "0190a0b0-1234-7abc-8def-0123456789ab",
    }
    assert ours(event) == official_json(event)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_any_value_matches_the_official_sdk(value: Any) -> None:
    event = {"properties": {"v": value}, "$set": {"v": value}}
    assert ours(event) == official_json(event)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Python's isoformat, never pydantic's "Z" or trimmed fractions.
        (datetime(2024, 1, 1, 12, 0, 0, 1000, tzinfo=UTC), "2024-01-01T12:00:00.001000+00:00"),
        (datetime(2024, 1, 1, 12, 0, 0), "2024-01-01T12:00:00"),
        (
            datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30, seconds=7))),
            "2024-01-01T00:00:00+05:30:07",
        ),
        (date(2024, 1, 2), "2024-01-02"),
        (decimal.Decimal("1.10"), 1.1),
        (decimal.Decimal("Infinity"), None),
        (decimal.Decimal("NaN"), None),
        (float("nan"), None),
        (float("-inf"), None),
        ([1.5, float("inf")], [1.5, None]),
        ((1, (2, 3)), [1, [2, 3]]),
        (collections.deque([1]), [1]),
        (frozenset({"a"}), ["a"]),
        (b"caf\xc3\xa9", "café"),
        (Color.RED, "red"),
        (Level.HIGH, 3),
        (Ratio(2.5), 2.5),
        (2**80, 2**80),
        (
            {1: "a", 2.5: "b", None: "c", False: "d"},
            {"1": "a", "2.5": "b", "null": "c", "false": "d"},
        ),
        ({float("nan"): 1, float("-inf"): 2}, {"NaN": 1, "-Infinity": 2}),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_value_encodings(value: Any, expected: Any) -> None:
    event = {"properties": {"v": value}}
    assert ours(event) == {"properties": {"v": expected}}
    assert official_json(event) == {"properties": {"v": expected}}


def test_models_and_dataclasses() -> None:
    plan = Plan(
        name="pro",
        seats=3,
        started=datetime(2024, 1, 1, tzinfo=UTC),
        price=decimal.Decimal("9.99"),
        tags={"x"},
    )
    cart = Cart(
        items=[Item("a", 1, datetime(2024, 1, 1, tzinfo=UTC), {"d": date(2024, 1, 1)})],
        owner=uuid.UUID(int=7),
        plan=plan,
    )
    event = {"properties": {"plan": plan, "cart": cart}}
    assert ours(event) == official_json(event)
    assert ours(event)["properties"]["plan"] == {
        "name": "pro",
        "seats": 3,
        "started": "2024-01-01T00:00:00+00:00",
        "price": 9.99,
        "tags": ["x"],
    }


def test_output_is_compact_utf8_and_keeps_key_order() -> None:
    event = {"event": "é", "properties": {"b": 1, "a": [True, None]}}
    assert encode_event(event) == '{"event":"é","properties":{"b":1,"a":[true,null]}}'.encode()


def test_native_event_is_not_copied_or_changed() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    props: dict[str, Any] = {"when": when, "n": [1, {"s": {1, 2}}]}
    event = {"properties": props}
    encode_event(event)
    assert event == {"properties": {"when": when, "n": [1, {"s": {1, 2}}]}}
    assert event["properties"] is props


def test_duplicate_keys_after_conversion_keep_the_last_value_as_json_does() -> None:
    event = {"properties": {1: "int", "1": "str"}}
    assert ours(event) == official_json(event) == {"properties": {"1": "str"}}


# -- values the official SDK silently drops: we refuse them, naming the key path --------


class Opaque:
    pass


class Shape(enum.Enum):
    SQUARE = 1


class Listy(pydantic.RootModel[list[int]]):
    pass


class ExplodingModel:
    def model_dump(self) -> dict[str, Any]:
        raise RuntimeError("nope")


@dataclasses.dataclass
class HoldsLock:
    lock: Any


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (Opaque(), "Opaque"),
        (object(), "object"),
        (Shape.SQUARE, "Shape"),
        (b"\xff\xfe", "bytes"),
        (bytearray(b"x"), "bytearray"),
        (timedelta(seconds=1), "timedelta"),
        (datetime(2024, 1, 1).time(), "time"),
        (fractions.Fraction(1, 3), "Fraction"),
        (1j, "complex"),
        (decimal.Decimal("sNaN"), "Decimal"),
        (Listy([1, 2]), "Listy"),
        (ExplodingModel(), "ExplodingModel"),
        (iter([1]), "list_iterator"),
        (types.MappingProxyType({"a": 1}), "mappingproxy"),
        (Opaque, "type"),
        ("lone \ud800 surrogate", "str"),
        ({(1, 2): "tuple key"}, "tuple"),
        ({"\udcff": 1}, "str"),
    ],
)
def test_unserializable_values_raise_with_their_path(value: Any, type_name: str) -> None:
    event = {"event": "e", "properties": {"cart": {"items": [1, 2, value]}}}
    with pytest.raises(UnserializableValueError) as caught:
        encode_event(event)
    assert caught.value.key_path == "properties.cart.items[2]"
    assert caught.value.type_name == type_name
    assert str(caught.value).startswith("properties.cart.items[2]: " + type_name)


def test_dataclass_that_cannot_be_copied_is_refused() -> None:
    import threading

    with pytest.raises(UnserializableValueError) as caught:
        encode_event({"properties": {"d": HoldsLock(threading.Lock())}})
    assert caught.value.key_path == "properties.d"
    assert caught.value.type_name == "HoldsLock"
    assert "asdict" in caught.value.reason


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"properties": {"a": object()}}, "properties.a"),
        ({"x": object()}, "x"),
        ({"properties": {"a": [[1, [2, object()]]]}}, "properties.a[0][1][1]"),
        ({"properties": {"a": ({"b": (object(),)},)}}, "properties.a[0].b[0]"),
        ({"properties": {7: {"k": object()}}}, "properties.7.k"),
        (
            {"properties": {"m": Item("s", 1, datetime(2024, 1, 1), {"x": object()})}},
            "properties.m.extra.x",
        ),
        ({"properties": {"s": {"ok", 1, b"\xff"}}}, "properties.s[{}]"),
    ],
)
def test_key_paths(event: dict[str, Any], path: str) -> None:
    if "{}" in path:
        # Set order is arbitrary: find where the bad element landed.
        path = path.format(list(event["properties"]["s"]).index(b"\xff"))
    with pytest.raises(UnserializableValueError) as caught:
        encode_event(event)
    assert caught.value.key_path == path


def test_error_pickles_and_prints() -> None:
    import pickle

    error = UnserializableValueError("properties.a", "object")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.key_path, clone.type_name, str(clone)) == (
        "properties.a",
        "object",
        "properties.a: object is not JSON serialisable",
    )
    assert isinstance(error, Exception)


def test_depth_limit_and_circular_references() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(MAX_DEPTH - 5):
        node["a"] = {}
        node = node["a"]
    assert encode_event({"p": deep}).count(b"{") == MAX_DEPTH - 3

    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(UnserializableValueError) as caught:
        encode_event({"properties": {"loop": loop}})
    assert caught.value.key_path.startswith("properties.loop.self.self")
    assert "nested deeper" in caught.value.reason

    looped_list: list[Any] = []
    looped_list.append(looped_list)
    with pytest.raises(UnserializableValueError):
        encode_event({"properties": {"l": looped_list}})


# -- timestamps -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(NAIVE, AWARE))
def test_to_utc_iso_datetimes_match_the_official_sdk(value: datetime) -> None:
    assert to_utc_iso(value) == _normalize_timestamp(value)


def _spellings(value: datetime) -> st.SearchStrategy[str]:
    text = value.isoformat()
    compact = re.sub(r"([+-]\d{2}):(\d{2})$", r"\1\2", text)
    zulu = re.sub(r"\+00:00$", "Z", text)
    return st.sampled_from(
        [text, compact, zulu, text.replace("T", " "), text[:19], text[:16], text + "Z"]
    )


@settings(max_examples=300, deadline=None)
@given(st.one_of(NAIVE, AWARE).flatmap(_spellings) | st.text(max_size=30))
def test_to_utc_iso_strings_match_the_official_sdk(value: str) -> None:
    try:
        expected = _normalize_timestamp(value)
    except ValueError:
        with pytest.raises(ValueError, match="Invalid timestamp"):
            to_utc_iso(value)
    else:
        assert to_utc_iso(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00+00:00"),
        ("2024-05-01T12:30:00+0530", "2024-05-01T07:00:00+00:00"),
        ("2024-05-01T12:30:00.5-02:00", "2024-05-01T14:30:00.500000+00:00"),
        ("2024-05-01 12:30:00", "2024-05-01T12:30:00+00:00"),
        (datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "2024-05-01T12:30:00+00:00"),
        (datetime(2020, 5, 1, 12, 30), "2020-05-01T12:30:00+00:00"),
    ],
)
def test_to_utc_iso_examples(value: datetime | str, expected: str) -> None:
    assert to_utc_iso(value) == expected == _normalize_timestamp(value)


def test_naive_now_is_local_time_as_in_the_official_sdk() -> None:
    local_now = datetime.now()
    assert to_utc_iso(local_now) == _normalize_timestamp(local_now)
    assert to_utc_iso(local_now) == local_now.astimezone(UTC).isoformat()


@pytest.mark.parametrize("value", ["2024-05-01", "20240501", "garbage", "", "2024-13-01T00:00"])
def test_to_utc_iso_rejects_dates_and_garbage(value: str) -> None:
    with pytest.raises(ValueError, match="Invalid timestamp"):
        to_utc_iso(value)


def test_to_utc_iso_rejects_other_types() -> None:
    with pytest.raises(ValueError, match="date without a time"):
        to_utc_iso(date(2024, 5, 1))  # type: ignore[arg-type]  # testing a misuse
    with pytest.raises(TypeError, match="not int"):
        to_utc_iso(1714566600)  # type: ignore[arg-type]  # testing a misuse


def test_now_iso_has_the_official_default_timestamp_format() -> None:
    before = datetime.now(UTC)
    value = now_iso()
    after = datetime.now(UTC)
    parsed = datetime.fromisoformat(value)
    assert before <= parsed <= after
    # Same string as the official SDK's `datetime.now(tz=timezone.utc).isoformat()`.
    assert parsed.isoformat() == value == _normalize_timestamp(parsed)


@pytest.mark.parametrize(
    ("nanos", "expected"),
    [
        (1_714_566_615_123_456_789, "2024-05-01T12:30:15.123456+00:00"),
        (1_714_566_615_000_000_999, "2024-05-01T12:30:15+00:00"),
        (1_714_566_616_000_001_000, "2024-05-01T12:30:16.000001+00:00"),
    ],
)
def test_now_iso_formatting(monkeypatch: pytest.MonkeyPatch, nanos: int, expected: str) -> None:
    monkeypatch.setattr(_serialize, "time", types.SimpleNamespace(time_ns=lambda: nanos))
    assert now_iso() == expected
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (epoch + timedelta(microseconds=nanos // 1000)).isoformat() == expected


# -- UUIDv7 -----------------------------------------------------------------------------


def test_uuid7_layout() -> None:
    before_ms = datetime.now(UTC).timestamp() * 1000
    value = uuid7()
    after_ms = datetime.now(UTC).timestamp() * 1000
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert int(before_ms) - 1 <= parsed.int >> 80 <= after_ms + 1


def test_uuid7_is_monotonic_and_unique() -> None:
    values = [uuid7() for _ in range(10_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    for value in values[:100]:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_uuid7_stays_monotonic_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([5_000_000_000_000, 4_000_000_000_000, 4_000_000_000_000, 5_000_000_000_000])
    monkeypatch.setattr(_serialize, "time", types.SimpleNamespace(time_ns=lambda: next(clock)))
    for name in ("_last_ms", "_counter", "_ms_prefix"):
        monkeypatch.setattr(_serialize, name, getattr(_serialize, name))
    monkeypatch.setattr(_serialize, "_last_ms", 0)
    values = [uuid7() for _ in range(4)]
    assert values == sorted(values)
    assert len(set(values)) == 4
    assert {uuid.UUID(v).int >> 80 for v in values} == {5_000_000}


def test_uuid7_random_bits_vary() -> None:
    tails = {uuid7()[-8:] for _ in range(1000)}
    assert len(tails) > 990


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_uuid7_differs_in_a_forked_child() -> None:
    uuid7()  # fill the parent's random buffer and counter
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a multi-threaded process; the child only
        # calls uuid7() and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, "".join(uuid7() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    child_values = {child[i : i + 36] for i in range(0, len(child), 36)}
    parent_values = {uuid7() for _ in range(50)}
    assert len(child_values) == 50
    assert not child_values & parent_values
    assert {v[-8:] for v in child_values}.isdisjoint({v[-8:] for v in parent_values})
