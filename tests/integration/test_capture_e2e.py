"""The capture pipeline against LocalPostHog over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

import pytest

from aioposthog import AsyncPostHog, RetryPolicy
from aioposthog.testing import LocalPostHog

pytestmark = pytest.mark.integration

KEY = "phc_integration"


async def no_sleep(_: float) -> None:
    pass


@pytest.mark.parametrize("capture_mode", ["v0", "v1"])
async def test_50k_events_from_50_tasks_arrive_exactly_once(capture_mode: str) -> None:
    tasks, per_task = 50, 1_000
    async with LocalPostHog() as server:
        async with AsyncPostHog(
            KEY, host=server.url, overflow="block", capture_mode=capture_mode
        ) as posthog:

            async def produce(task: int) -> list[str]:
                uuids = []
                for i in range(per_task):
                    uuid = await posthog.capture(
                        "step", f"task-{task}", {"task": task, "i": i, "tags": ["a", "b"]}
                    )
                    assert uuid is not None
                    uuids.append(uuid)
                return uuids

            sent = await asyncio.gather(*(produce(t) for t in range(tasks)))
            assert await posthog.flush(timeout=60)
        await server.wait_for_events(tasks * per_task, timeout=30)
        received = server.events
    expected = {uuid for uuids in sent for uuid in uuids}
    assert len(expected) == tasks * per_task
    counts = Counter(event["uuid"] for event in received)
    assert set(counts) == expected
    assert max(counts.values()) == 1
    assert posthog.stats.sent == tasks * per_task
    assert posthog.stats.dropped_total == 0


async def test_per_task_order_with_one_request_in_flight() -> None:
    tasks, per_task = 20, 500
    async with LocalPostHog() as server:
        async with AsyncPostHog(
            KEY, host=server.url, overflow="block", max_concurrent_requests=1, flush_at=200
        ) as posthog:

            async def produce(task: int) -> None:
                for i in range(per_task):
                    await posthog.capture("step", f"task-{task}", {"i": i})
                    if i % 50 == 0:
                        await asyncio.sleep(0)

            await asyncio.gather(*(produce(t) for t in range(tasks)))
        await server.wait_for_events(tasks * per_task, timeout=30)
        received = server.events
    by_task: dict[str, list[int]] = defaultdict(list)
    for event in received:
        by_task[event["distinct_id"]].append(event["properties"]["i"])
    assert len(by_task) == tasks
    for sequence in by_task.values():
        assert sequence == list(range(per_task))


async def test_retries_through_real_server_faults() -> None:
    policy = RetryPolicy(max_attempts=5, base=0.0, cap=0.0, sleep=no_sleep)
    async with LocalPostHog() as server:
        server.fail_next(2, status=503)
        async with AsyncPostHog(KEY, host=server.url, retry=policy, flush_at=10) as posthog:
            for i in range(10):
                await posthog.capture("e", f"u{i}")
            assert await posthog.flush(timeout=10)
        await server.wait_for_events(10)
        assert len(server.events) == 10
    assert posthog.stats.retried == 2
    assert posthog.stats.sent == 10


async def test_429_retry_after_from_real_server() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(max_attempts=3, base=0.0, cap=0.0, sleep=record)
    async with LocalPostHog() as server:
        server.fail_next(1, status=429, headers={"Retry-After": "3"})
        async with AsyncPostHog(KEY, host=server.url, retry=policy) as posthog:
            await posthog.capture("e", "u1")
            await posthog.flush()
        assert len(server.events) == 1
    assert waits == [3.0]


async def test_server_413_splits_until_it_fits() -> None:
    async with LocalPostHog() as server:
        server.fail_next(1, status=413)
        async with AsyncPostHog(KEY, host=server.url, flush_at=100) as posthog:
            for i in range(100):
                await posthog.capture("e", f"u{i}")
            await posthog.flush()
        await server.wait_for_events(100)
        sizes = [record.event_count for record in server.requests if record.status == 200]
    assert sorted(sizes) == [50, 50]


async def test_wrong_token_is_reported_not_retried() -> None:
    errors: list[Any] = []
    async with LocalPostHog(api_key="phc_right") as server:
        async with AsyncPostHog(
            "phc_wrong", host=server.url, on_error=lambda e, n: errors.append((e, n))
        ) as posthog:
            await posthog.capture("e", "u1")
            await posthog.flush()
        assert server.events == []
    assert posthog.stats.dropped["rejected_by_server"] == 1
    [(error, count)] = errors
    assert error.status == 401 and count == 1
    assert "phc_wrong" not in str(error)


async def test_connection_refused_then_spooled(tmp_path: Any) -> None:
    policy = RetryPolicy(max_attempts=2, base=0.0, cap=0.0, sleep=no_sleep)
    with LocalPostHog() as server:
        url = server.url
    # the server is gone: nothing listens on that port any more
    async with AsyncPostHog(KEY, host=url, retry=policy, spool_dir=tmp_path) as posthog:
        await posthog.capture("e", "u1")
        await posthog.flush()
    assert posthog.stats.spooled == 1
    assert posthog.stats.last_error is not None
    async with LocalPostHog() as server:
        async with AsyncPostHog(KEY, host=server.url, spool_dir=tmp_path) as again:
            await again.flush()
        await server.wait_for_events(1)
        assert server.events[0]["distinct_id"] == "u1"


async def test_health_probe() -> None:
    async with LocalPostHog() as server:
        async with AsyncPostHog(KEY, host=server.url) as posthog:
            health = await posthog.health()
            assert health.ok and health.latency_ms is not None and health.error is None
        url = server.url
    async with AsyncPostHog(KEY, host=url) as posthog:
        down = await posthog.health(timeout=1.0)
    assert down.status == "down" and down.error
