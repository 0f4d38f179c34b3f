"""Wire shapes of the capture family, through a MockTransport (no sockets)."""

from __future__ import annotations

import dataclasses
import gzip
import re
import uuid as uuid_module
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from aioposthog import AsyncPostHog, EventValidationError, __version__

from ._mock import MockPostHog

KEY = "phc_wiretest"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def client(mock: MockPostHog, **options: Any) -> AsyncPostHog:
    options.setdefault("flush_interval", 60)
    return AsyncPostHog(KEY, host="http://posthog.test", transport=mock.transport, **options)


async def test_v0_batch_envelope_and_headers() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        returned = await posthog.capture("order completed", "u1", {"amount": 29.5})
    [sent] = mock.requests
    assert sent.method == "POST" and sent.path == "/batch/"
    assert sent.headers["content-encoding"] == "gzip"
    assert gzip.decompress(sent.raw)  # really gzip
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"] == f"aioposthog/{__version__}"
    assert sent.body["api_key"] == KEY
    assert sent.body["historical_migration"] is False
    assert ISO_UTC.match(sent.body["sent_at"])
    [event] = sent.events
    assert event["event"] == "order completed"
    assert event["distinct_id"] == "u1"
    assert event["uuid"] == returned
    parsed = uuid_module.UUID(event["uuid"])
    assert parsed.version == 7
    assert ISO_UTC.match(event["timestamp"])
    props = event["properties"]
    assert props["amount"] == 29.5
    assert props["$lib"] == "aioposthog"
    assert props["$lib_version"] == __version__
    assert props["$geoip_disable"] is True
    assert "$process_person_profile" not in props


async def test_compression_none_sends_plain_json() -> None:
    mock = MockPostHog()
    async with client(mock, compression="none") as posthog:
        await posthog.capture("e", "u1")
    [sent] = mock.requests
    assert "content-encoding" not in sent.headers
    assert sent.raw.startswith(b'{"api_key"')


async def test_groups_timestamp_uuid_and_geoip() -> None:
    mock = MockPostHog()
    given = uuid_module.uuid4()
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    async with client(mock) as posthog:
        returned = await posthog.capture(
            "e",
            "u1",
            groups={"company": "c1"},
            timestamp=when,
            uuid=given,
            disable_geoip=False,
        )
        await posthog.capture("e2", "u1", timestamp="2024-05-01T10:30:00Z")
    first, second = mock.events
    assert returned == str(given) == first["uuid"]
    assert first["properties"]["$groups"] == {"company": "c1"}
    assert first["timestamp"] == "2024-05-01T10:30:00+00:00"
    assert second["timestamp"] == "2024-05-01T10:30:00+00:00"
    assert "$geoip_disable" not in first["properties"]


async def test_set_set_once_alias_group_identify_shapes() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        await posthog.set("u1", {"plan": "pro"})
        await posthog.set_once("u1", {"first_seen": "2024-01-01"})
        await posthog.alias(previous_id="anon-1", distinct_id="u1")
        await posthog.group_identify("company", "c1", {"name": "Acme"}, distinct_id="u1")
        assert await posthog.set(None, {"plan": "x"}) is None  # personless: nothing to set
        assert await posthog.set("u1", {}) is None
    set_, set_once, alias, group = mock.events
    assert set_["event"] == "$set" and set_["$set"] == {"plan": "pro"}
    assert set_["distinct_id"] == "u1"
    assert set_once["event"] == "$set_once" and set_once["$set_once"] == {
        "first_seen": "2024-01-01"
    }
    assert alias["event"] == "$create_alias"
    assert alias["distinct_id"] == "anon-1"
    assert alias["properties"]["distinct_id"] == "anon-1"
    assert alias["properties"]["alias"] == "u1"
    assert group["event"] == "$groupidentify"
    assert group["properties"]["$group_type"] == "company"
    assert group["properties"]["$group_key"] == "c1"
    assert group["properties"]["$group_set"] == {"name": "Acme"}


async def test_capture_exception_shape() -> None:
    mock = MockPostHog()

    def fail() -> None:
        raise KeyError("missing")

    async with client(mock) as posthog:
        try:
            fail()
        except KeyError as exc:
            await posthog.capture_exception(exc, "u1", {"route": "/pay"})
    [event] = mock.events
    assert event["event"] == "$exception"
    assert event["properties"]["route"] == "/pay"
    [entry] = event["properties"]["$exception_list"]
    assert entry["type"] == "KeyError"
    frames = entry["stacktrace"]["frames"]
    assert any(frame["function"] == "fail" for frame in frames)


@dataclasses.dataclass
class Cart:
    items: tuple[str, ...]
    total: Decimal


class Address(pydantic.BaseModel):
    city: str
    since: date


async def test_rich_property_values_are_serialised() -> None:
    mock = MockPostHog()
    ident = uuid_module.uuid4()
    async with client(mock) as posthog:
        await posthog.capture(
            "e",
            "u1",
            {
                "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
                "day": date(2024, 1, 2),
                "id": ident,
                "price": Decimal("9.99"),
                "tags": {"a"},
                "pair": (1, 2),
                "cart": Cart(items=("x", "y"), total=Decimal("3.5")),
                "address": Address(city="Paris", since=date(2020, 1, 1)),
            },
        )
    props = mock.events[0]["properties"]
    assert props["when"] == "2024-01-02T03:04:05+00:00"
    assert props["day"] == "2024-01-02"
    assert props["id"] == str(ident)
    assert props["price"] == 9.99
    assert props["tags"] == ["a"]
    assert props["pair"] == [1, 2]
    assert props["cart"] == {"items": ["x", "y"], "total": 3.5}
    assert props["address"] == {"city": "Paris", "since": "2020-01-01"}


async def test_personless_event_outside_any_context() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        await posthog.capture("anonymous thing")
        await posthog.capture("anonymous thing")
    first, second = mock.events
    assert first["properties"]["$process_person_profile"] is False
    assert first["distinct_id"] != second["distinct_id"]
    uuid_module.UUID(first["distinct_id"])


@pytest.mark.parametrize("name", ["", None, 42])
async def test_bad_event_name_is_a_typed_error(name: Any) -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        with pytest.raises(EventValidationError, match="event name"):
            await posthog.capture(name, "u1")
        await posthog.capture("fine", "u1")
    assert [e["event"] for e in mock.events] == ["fine"]


async def test_unserialisable_value_names_event_and_key_and_loses_nothing_else() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        await posthog.capture("before", "u1")
        with pytest.raises(EventValidationError) as info:
            await posthog.capture("bad", "u1", {"nested": {"thing": object()}})
        await posthog.capture("after", "u1")
    assert info.value.event == "bad"
    assert info.value.key is not None and "thing" in info.value.key
    assert "bad" in str(info.value)
    assert [e["event"] for e in mock.events] == ["before", "after"]
    assert posthog.stats.sent == 2


async def test_oversized_event_is_refused_naming_the_property() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        with pytest.raises(EventValidationError) as info:
            await posthog.capture("big", "u1", {"small": 1, "blob": "x" * 1_000_000})
        await posthog.capture("after", "u1")
    assert info.value.key == "blob"
    assert "900" in str(info.value) or "921600" in str(info.value)
    assert [e["event"] for e in mock.events] == ["after"]


@pytest.mark.parametrize("timestamp", ["2024-01-01", "yesterday", "2024-13-45T00:00:00Z"])
async def test_bad_timestamp_is_a_typed_error(timestamp: str) -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        with pytest.raises(EventValidationError, match="timestamp"):
            await posthog.capture("e", "u1", timestamp=timestamp)


async def test_bad_uuid_is_a_typed_error() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        with pytest.raises(EventValidationError, match="uuid"):
            await posthog.capture("e", "u1", uuid="not-a-uuid")


async def test_super_properties_and_historical_migration() -> None:
    mock = MockPostHog()
    async with client(
        mock, super_properties={"service": "api", "region": "eu"}, historical_migration=True
    ) as posthog:
        await posthog.capture("e", "u1", {"region": "us"})
    [sent] = mock.requests
    assert sent.body["historical_migration"] is True
    props = sent.events[0]["properties"]
    assert props["service"] == "api"
    assert props["region"] == "us"  # the event's own value wins


async def test_v1_wire_format() -> None:
    mock = MockPostHog()
    async with client(mock, capture_mode="v1") as posthog:
        await posthog.capture("e", "u1", {"$session_id": "s1", "k": 1})
        await posthog.capture("anon")
        await posthog.set("u1", {"plan": "pro"})
    [sent] = mock.requests
    assert sent.path == "/i/v1/analytics/events"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["posthog-sdk-info"] == f"aioposthog/{__version__}"
    assert sent.headers["posthog-attempt"] == "1"
    uuid_module.UUID(sent.headers["posthog-request-id"])
    assert ISO_UTC.match(sent.headers["posthog-request-timestamp"])
    assert "api_key" not in sent.body
    assert ISO_UTC.match(sent.body["created_at"])
    first, anon, set_ = sent.events
    assert first["session_id"] == "s1"
    assert "$session_id" not in first["properties"]
    assert "$lib" not in first["properties"]
    assert first["options"] == {}
    assert anon["options"] == {"process_person_profile": False}
    assert set_["properties"]["$set"] == {"plan": "pro"}
    assert "$set" not in set_


async def test_disabled_client_is_a_no_op() -> None:
    mock = MockPostHog()
    async with AsyncPostHog(disabled=True, transport=mock.transport) as posthog:
        assert await posthog.capture("e", "u1") is None
        assert await posthog.flush() is True
    assert mock.requests == []


async def test_send_false_builds_but_sends_nothing() -> None:
    mock = MockPostHog()
    async with client(mock, send=False) as posthog:
        returned = await posthog.capture("e", "u1")
        with pytest.raises(EventValidationError):
            await posthog.capture("", "u1")
    assert returned is not None
    assert posthog.stats.captured == 1
    assert mock.requests == []


async def test_unserialisable_groups_and_tags_name_their_path() -> None:
    from aioposthog import new_context, tag

    mock = MockPostHog()
    async with client(mock) as posthog:
        with pytest.raises(EventValidationError) as info:
            await posthog.capture("e", "u1", groups={"company": object()})
        assert info.value.key == "properties.$groups.company"
        with new_context():
            tag("broken", object())
            with pytest.raises(EventValidationError) as tagged:
                await posthog.capture("e", "u1")
        assert tagged.value.key == "properties.broken"
        await posthog.capture("fine", "u1", groups={"company": 42})
    [event] = mock.events
    assert event["properties"]["$groups"] == {"company": 42}
