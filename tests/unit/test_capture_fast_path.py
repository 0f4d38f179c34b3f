"""capture()'s fast path (constant properties spliced in as pre-encoded bytes) sends exactly
what the general path sends, and hands every case it cannot take to the general path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aioposthog import AsyncPostHog, EventValidationError, new_context, tag
from aioposthog._capture._encode import EventSplicer
from aioposthog._capture._queue import EventQueue
from aioposthog._stats import StatsRecorder

from ._mock import LoopTurns, MockPostHog

KEY = "phc_fastpath"


def client(mock: MockPostHog, **options: Any) -> AsyncPostHog:
    options.setdefault("flush_interval", 60)
    return AsyncPostHog(KEY, host="http://posthog.test", transport=mock.transport, **options)


def without_ids(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("uuid", "timestamp")}


async def test_fast_and_general_paths_send_the_same_event() -> None:
    mock = MockPostHog()
    props = {"plan": "pro", "amount": 1.5, "tags": ["a", {"b": None}], "n": 3, "ok": True}
    async with client(mock, super_properties={"team": "core"}) as posthog:
        assert posthog._splicer is not None
        await posthog.capture("e", "u1", props)  # fast path
        with new_context():  # a context: the general path
            await posthog.capture("e", "u1", props)
    fast, general = mock.events
    assert fast["properties"] == general["properties"]
    assert without_ids(fast) == without_ids(general)
    assert fast["properties"]["team"] == "core" and fast["properties"]["$lib"] == "aioposthog"


async def test_timestamp_and_uuid_given_to_the_fast_path() -> None:
    mock = MockPostHog()
    given = "0190a9d2-5b7e-7c3a-8d4e-123456789abc"
    async with client(mock) as posthog:
        returned = await posthog.capture(
            "e", "u1", {"x": 1}, timestamp=datetime(2024, 1, 1, 12, tzinfo=UTC), uuid=given
        )
        with pytest.raises(EventValidationError):
            await posthog.capture("e", "u1", timestamp="not a time")
        with pytest.raises(EventValidationError):
            await posthog.capture("e", "u1", uuid="not a uuid")
    [event] = mock.events
    assert returned == given == event["uuid"]
    assert event["timestamp"] == "2024-01-01T12:00:00+00:00"


async def test_no_properties_and_empty_properties() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        await posthog.capture("a", "u1")
        await posthog.capture("b", "u1", {})
    for event in mock.events:
        assert event["properties"]["$lib"] == "aioposthog"
        assert "$process_person_profile" not in event["properties"]


async def test_a_caller_key_that_is_also_constant_keeps_the_precedence_rules() -> None:
    # The caller's value beats a super property; the library's own $lib beats the caller.
    mock = MockPostHog()
    async with client(mock, super_properties={"team": "core"}) as posthog:
        await posthog.capture("e", "u1", {"team": "mine", "$lib": "spoofed", "x": 1})
    [event] = mock.events
    assert event["properties"]["team"] == "mine"
    assert event["properties"]["$lib"] == "aioposthog"
    assert event["properties"]["x"] == 1
    assert event["properties"] == json.loads(json.dumps(event["properties"]))


async def test_context_tags_take_the_general_path() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        with new_context():
            tag("request_id", "r-1")
            await posthog.capture("e", "u1", {"x": 1})
    [event] = mock.events
    assert event["properties"]["request_id"] == "r-1"


async def test_errors_found_by_the_fast_path_are_reported_by_the_general_path() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        with pytest.raises(EventValidationError) as lone:
            await posthog.capture("e", "u1", {"text": "\ud800"})
        assert lone.value.key == "properties.text"
        with pytest.raises(EventValidationError) as big:
            await posthog.capture("e", "u1", {"blob": "x" * 1_000_000})
        assert big.value.key == "blob"
        with pytest.raises(EventValidationError):
            await posthog.capture("e", "u1", {"when": object()})
        await posthog.capture("e", "u1", {"ok": 1})
        assert posthog.stats.captured == 1
    assert [e["properties"]["ok"] for e in mock.events] == [1]


async def test_disabled_and_hooked_clients_have_no_fast_path() -> None:
    mock = MockPostHog()
    async with client(mock, disabled=True) as posthog:
        assert posthog._splicer is None
        assert await posthog.capture("e", "u1") is None
    seen: list[str] = []

    def hook(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event["event"])
        return event

    async with client(mock, before_send=hook) as posthog:
        assert posthog._splicer is None
        await posthog.capture("e", "u1")
    assert seen == ["e"]


async def test_v1_fast_and_general_paths_send_the_same_event() -> None:
    mock = MockPostHog()
    props = {"plan": "pro", "n": 3, "nested": {"a": [1, None]}}
    async with client(mock, capture_mode="v1", super_properties={"team": "core"}) as posthog:
        assert posthog._splicer is not None
        await posthog.capture("e", "u1", props)  # fast path
        with new_context():  # a context: the general path
            await posthog.capture("e", "u1", props)
        await posthog.capture("e", "u1")  # fast path, no properties
    fast, general, bare = mock.events
    assert without_ids(fast) == without_ids(general)
    assert fast["options"] == {} and "$lib" not in fast["properties"]
    assert fast["properties"]["team"] == "core" and fast["properties"]["plan"] == "pro"
    assert bare["properties"] == {k: v for k, v in fast["properties"].items() if k not in props}


async def test_v1_keys_that_leave_properties_take_the_general_path() -> None:
    mock = MockPostHog()
    async with client(mock, capture_mode="v1") as posthog:
        await posthog.capture(
            "e", "u1", {"$session_id": "s1", "$process_person_profile": False, "$lib": "x"}
        )
    [event] = mock.events
    assert event["session_id"] == "s1"
    assert event["options"] == {"process_person_profile": False}
    assert not {"$session_id", "$process_person_profile", "$lib"} & set(event["properties"])


async def test_v1_super_properties_that_v1_reshapes_disable_the_fast_path() -> None:
    mock = MockPostHog()
    options = {"capture_mode": "v1", "super_properties": {"$process_person_profile": False}}
    async with client(mock, **options) as posthog:
        assert posthog._splicer is None
        await posthog.capture("e", "u1", {"x": 1})
    [event] = mock.events
    assert event["options"] == {"process_person_profile": False}


async def test_past_half_full_the_overflow_policy_still_applies() -> None:
    mock = MockPostHog()
    async with client(mock, send=True, max_queue_size=4, flush_at=4) as posthog:
        results = [await posthog.capture("e", "u1", {"i": i}) for i in range(4)]
        assert all(results)
    assert sorted(e["properties"]["i"] for e in mock.events) == [0, 1, 2, 3]


def test_put_nowait_takes_only_below_half_full() -> None:
    stats = StatsRecorder()
    queue = EventQueue(
        max_events=4, max_bytes=1000, overflow="drop_newest", flush_at=100, stats=stats
    )
    assert queue.put_nowait(("a", b"x"))
    assert queue.put_nowait(("b", b"x"))
    assert not queue.put_nowait(("c", b"x"))  # at the high-water mark: the offer path decides
    assert len(queue) == 2 and queue.tail_seq == 2 and stats.enqueued == 2
    assert not queue.put_nowait(("d", b"x" * 999))  # no byte room
    assert queue.offer(("c", b"x")) and len(queue) == 3


def test_splicer_output_is_one_json_object() -> None:
    splicer = EventSplicer({"$lib": "aioposthog", "n": 1})
    with_props = splicer.encode("e", "u", {"a": [1, {"b": None}]}, "t", "id")
    assert with_props is not None
    assert json.loads(with_props) == {
        "event": "e",
        "distinct_id": "u",
        "timestamp": "t",
        "uuid": "id",
        "properties": {"a": [1, {"b": None}], "$lib": "aioposthog", "n": 1},
    }
    empty = splicer.encode("e", "u", {}, "t", "id")
    assert empty is not None and json.loads(empty)["properties"] == {"$lib": "aioposthog", "n": 1}
    assert splicer.encode("e", "u", {"n": 2}, "t", "id") is None  # overlap: general path
    bare = EventSplicer({})
    assert json.loads(bare.encode("e", "u", {}, "t", "id") or b"")["properties"] == {}
    assert json.loads(bare.encode("e", "u", {"a": 1}, "t", "id") or b"")["properties"] == {"a": 1}


@pytest.mark.parametrize("options", [{}, {"groups": {"company": "c1"}}], ids=["fast", "general"])
async def test_a_tight_producer_gives_the_loop_a_turn_every_16_events(
    options: dict[str, Any],
) -> None:
    # Far below half full: nothing needs the sender, yet other tasks (a web app's request
    # handlers beside an import, say) must not wait for the whole loop to end.
    mock = MockPostHog()
    posthog = client(mock, max_queue_size=100_000, flush_at=10_000)
    async with posthog, LoopTurns() as turns:
        for i in range(1_600):
            await posthog.capture("e", "u1", {"i": i}, **options)
    assert 95 <= turns.count <= 110  # one turn per 16 captures
    assert len(mock.events) == 1_600
