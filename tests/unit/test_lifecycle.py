"""Lifecycle, queue bounds and overflow, flush and close deadlines, contexts, hooks, spool."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from aioposthog import (
    AsyncPostHog,
    ClientState,
    UsageError,
    identify_context,
    new_context,
    set_context_session,
    tag,
)

from ._mock import MockPostHog, fast_retry

KEY = "phc_lifecycletest"


def client(mock: MockPostHog, **options: Any) -> AsyncPostHog:
    options.setdefault("flush_interval", 60)
    options.setdefault("retry", fast_retry())
    return AsyncPostHog(KEY, host="http://posthog.test", transport=mock.transport, **options)


class Gate:
    """A transport whose requests wait until the test opens the gate."""

    def __init__(self) -> None:
        self.mock = MockPostHog()
        self.open = asyncio.Event()
        self.arrived = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.arrived += 1
        await self.open.wait()
        return self.mock.handler(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


async def test_states_and_double_close() -> None:
    posthog = client(MockPostHog())
    assert posthog.state is ClientState.UNOPENED
    await posthog.start()
    await posthog.start()  # idempotent
    assert posthog.state.value == "opened"
    await posthog.aclose()
    await posthog.aclose()
    assert posthog.state.value == "closed"
    with pytest.raises(UsageError, match="closed"):
        await posthog.capture("e", "u1")
    with pytest.raises(UsageError, match="closed"):
        await posthog.start()


async def test_capture_starts_the_client_lazily() -> None:
    mock = MockPostHog()
    posthog = client(mock)
    await posthog.capture("e", "u1")
    assert posthog.state is ClientState.OPENED
    await posthog.aclose()
    assert len(mock.events) == 1


async def test_flush_at_closes_a_batch() -> None:
    mock = MockPostHog()
    async with client(mock, flush_at=10) as posthog:
        for i in range(25):
            await posthog.capture("e", f"u{i}")
        await asyncio.sleep(0.05)
        assert [len(r.events) for r in mock.requests] == [10, 10]
    assert [len(r.events) for r in mock.requests] == [10, 10, 5]


async def test_flush_interval_closes_a_batch() -> None:
    mock = MockPostHog()
    async with client(mock, flush_interval=0.05) as posthog:
        await posthog.capture("e", "u1")
        for _ in range(100):
            if mock.requests:
                break
            await asyncio.sleep(0.01)
        assert len(mock.events) == 1


async def test_drop_newest_counts_queue_full() -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY,
        host="http://posthog.test",
        transport=gate.transport,
        flush_at=2,
        max_queue_size=4,
        max_concurrent_requests=1,
        flush_interval=60,
    )
    async with posthog:
        uuids = [await posthog.capture("e", f"u{i}") for i in range(2)]
        await asyncio.sleep(0.01)  # the first batch of 2 is now in flight, blocked
        more = [await posthog.capture("e", f"v{i}") for i in range(6)]
        assert uuids[0] is not None
        assert more[:4] == [m for m in more[:4] if m is not None]
        assert more[4:] == [None, None]
        assert posthog.stats.dropped["queue_full"] == 2
        gate.open.set()
    sent = [e["distinct_id"] for e in gate.mock.events]
    assert sent == ["u0", "u1", "v0", "v1", "v2", "v3"]


async def test_drop_oldest_keeps_the_newest() -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY,
        host="http://posthog.test",
        transport=gate.transport,
        flush_at=2,
        max_queue_size=4,
        max_concurrent_requests=1,
        overflow="drop_oldest",
        flush_interval=60,
    )
    async with posthog:
        for i in range(2):
            await posthog.capture("e", f"u{i}")
        await asyncio.sleep(0.01)
        for i in range(6):
            assert await posthog.capture("e", f"v{i}") is not None
        assert posthog.stats.dropped["queue_full"] == 2
        gate.open.set()
    assert [e["distinct_id"] for e in gate.mock.events] == ["u0", "u1", "v2", "v3", "v4", "v5"]


async def test_block_waits_for_room_and_loses_nothing() -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY,
        host="http://posthog.test",
        transport=gate.transport,
        flush_at=2,
        max_queue_size=4,
        max_concurrent_requests=1,
        overflow="block",
        flush_interval=60,
    )
    async with posthog:

        async def produce() -> None:
            for i in range(20):
                await posthog.capture("e", f"u{i}")

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.05)
        assert not producer.done()  # blocked: the queue is full and the sender is stuck
        assert posthog.stats.queue_depth == 4
        gate.open.set()
        await asyncio.wait_for(producer, 5)
    assert posthog.stats.dropped_total == 0
    assert sorted(e["distinct_id"] for e in gate.mock.events) == sorted(f"u{i}" for i in range(20))


async def test_max_queue_bytes_bounds_memory() -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY,
        host="http://posthog.test",
        transport=gate.transport,
        flush_at=1,
        max_queue_bytes=1_000_000,
        max_concurrent_requests=1,
        flush_interval=60,
    )
    async with posthog:
        await posthog.capture("first", "u")
        await asyncio.sleep(0.01)
        for _ in range(10):
            await posthog.capture("big", "u", {"blob": "x" * 300_000})
        assert posthog.stats.queue_bytes <= 1_000_000
        assert posthog.stats.dropped["queue_full"] == 7
        gate.open.set()


async def test_flush_deadline_returns_false_and_keeps_sending() -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY, host="http://posthog.test", transport=gate.transport, flush_interval=60
    )
    async with posthog:
        await posthog.capture("e", "u1")
        assert await posthog.flush(timeout=0.05) is False
        gate.open.set()
        assert await posthog.flush(timeout=5) is True
    assert len(gate.mock.events) == 1


async def test_flush_waits_only_for_events_queued_before_it() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        for i in range(3):
            await posthog.capture("e", f"u{i}")
        assert await posthog.flush(timeout=5)
        assert len(mock.events) == 3
        assert posthog.stats.queue_depth == 0 and posthog.stats.in_flight_batches == 0


async def test_close_deadline_is_enforced_and_losses_counted() -> None:
    gate = Gate()  # never opens: PostHog hangs
    posthog = AsyncPostHog(
        KEY, host="http://posthog.test", transport=gate.transport, flush_at=5, flush_interval=60
    )
    await posthog.start()
    for i in range(12):
        await posthog.capture("e", f"u{i}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await posthog.aclose(timeout=0.2)
    assert loop.time() - started < 2.0
    stats = posthog.stats
    assert stats.dropped["shutdown"] == 12
    assert stats.sent == 0


async def test_close_is_shielded_from_cancellation() -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY, host="http://posthog.test", transport=gate.transport, flush_interval=60
    )
    await posthog.start()
    await posthog.capture("e", "u1")
    closing = asyncio.create_task(posthog.aclose(timeout=5))
    await asyncio.sleep(0.02)
    closing.cancel()
    gate.open.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    # the drain went on despite the cancellation
    for _ in range(200):
        if posthog.state is ClientState.CLOSED:
            break
        await asyncio.sleep(0.01)
    assert posthog.state is ClientState.CLOSED
    assert posthog.stats.sent == 1


async def test_spool_keeps_what_shutdown_could_not_send(tmp_path: Path) -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY,
        host="http://posthog.test",
        transport=gate.transport,
        flush_at=2,
        flush_interval=60,
        spool_dir=tmp_path,
    )
    await posthog.start()
    for i in range(5):
        await posthog.capture("e", f"u{i}")
    await posthog.aclose(timeout=0.1)
    assert posthog.stats.spooled == 5
    assert posthog.stats.dropped_total == 0
    assert len(list(tmp_path.glob("spool-v0-*.jsonl"))) >= 1

    mock = MockPostHog()
    async with AsyncPostHog(
        KEY, host="http://posthog.test", transport=mock.transport, spool_dir=tmp_path
    ) as again:
        await again.flush()
    assert sorted(e["distinct_id"] for e in mock.events) == [f"u{i}" for i in range(5)]
    assert list(tmp_path.glob("spool-*")) == []


async def test_use_from_another_event_loop_is_a_usage_error() -> None:
    posthog = client(MockPostHog())
    await posthog.start()
    failure: list[BaseException] = []

    def other_thread() -> None:
        try:
            asyncio.run(posthog.capture("e", "u1"))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    await posthog.aclose()
    assert len(failure) == 1 and isinstance(failure[0], UsageError)
    assert "event loop" in str(failure[0])


async def test_context_distinct_id_tags_and_session_per_task() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:

        async def request(user: str) -> None:
            with new_context():
                identify_context(user)
                tag("route", f"/{user}")
                set_context_session(f"s-{user}")
                await asyncio.sleep(0)  # let the other requests interleave
                await posthog.capture(
                    "viewed", properties={"route": "own"} if user == "b" else None
                )

        await asyncio.gather(*(request(u) for u in "abc"))
        await posthog.capture("outside")
    by_user = {e["distinct_id"]: e for e in mock.events if e["event"] == "viewed"}
    assert set(by_user) == {"a", "b", "c"}
    assert by_user["a"]["properties"]["route"] == "/a"
    assert by_user["b"]["properties"]["route"] == "own"
    assert by_user["c"]["properties"]["$session_id"] == "s-c"
    outside = next(e for e in mock.events if e["event"] == "outside")
    assert outside["properties"]["$process_person_profile"] is False
    assert "route" not in outside["properties"]


async def test_fresh_context_does_not_inherit() -> None:
    mock = MockPostHog()
    async with client(mock) as posthog:
        with new_context():
            identify_context("parent")
            with new_context(fresh=True):
                await posthog.capture("inner")
            with new_context():
                await posthog.capture("inherited")
    inner, inherited = mock.events
    assert inner["properties"]["$process_person_profile"] is False
    assert inherited["distinct_id"] == "parent"


async def test_before_send_sync_async_and_drop() -> None:
    mock = MockPostHog()

    def scrub(event: dict[str, Any]) -> dict[str, Any] | None:
        if event["event"] == "secret":
            return None
        event["properties"].pop("email", None)
        return event

    async with client(mock, before_send=scrub) as posthog:
        await posthog.capture("visible", "u1", {"email": "a@b.c", "keep": 1})
        assert await posthog.capture("secret", "u1") is None

    async def rename(event: dict[str, Any]) -> dict[str, Any]:
        event["event"] = "renamed"
        return event

    async with client(mock, before_send=rename) as other:
        await other.capture("x", "u1")
    assert [e["event"] for e in mock.events] == ["visible", "renamed"]
    assert "email" not in mock.events[0]["properties"]
    assert mock.events[0]["properties"]["keep"] == 1
    assert posthog.stats.dropped["before_send"] == 1


async def test_before_send_that_raises_drops_only_that_event() -> None:
    mock = MockPostHog()

    def broken(event: dict[str, Any]) -> dict[str, Any]:
        if event["event"] == "boom":
            raise RuntimeError("bug in hook")
        return event

    async with client(mock, before_send=broken) as posthog:
        await posthog.capture("boom", "u1")
        await posthog.capture("fine", "u1")
    assert [e["event"] for e in mock.events] == ["fine"]
    assert posthog.stats.dropped["before_send"] == 1


async def test_resource_warning_when_collected_with_unsent_events() -> None:
    gate = Gate()
    posthog = AsyncPostHog(
        KEY, host="http://posthog.test", transport=gate.transport, flush_interval=60, flush_at=50
    )
    await posthog.start()
    await posthog.capture("e", "u1")
    supervisor = posthog._supervisor
    with pytest.warns(ResourceWarning, match="unsent events"):
        posthog.__del__()
    await posthog.aclose(timeout=0.01)
    assert supervisor is not None and supervisor.done()
    del posthog
    gc.collect()


async def test_a_burst_that_never_yields_still_lets_the_sender_drain() -> None:
    # Past half full, capture() gives the sender a turn of the loop, so a tight loop of
    # captures with a healthy PostHog loses nothing even with a small queue.
    mock = MockPostHog()
    async with client(mock, flush_at=50, max_queue_size=200) as posthog:
        for i in range(3_000):
            await posthog.capture("burst", f"u{i}")
    assert posthog.stats.dropped["queue_full"] == 0
    assert len(mock.events) == 3_000
