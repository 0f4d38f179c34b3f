"""FlagCache against a real Redis: sharing between processes, the leader lock, outages, secrets.

The server comes from ``AIOPOSTHOG_TEST_REDIS_URL`` (CI starts one). Without it, a private
``redis-server`` is started on a free port for the session; with ``AIOPOSTHOG_REQUIRE_SERVICES=1``
a missing URL is a failure, not a skip. Every test works under its own project token, so the
tests never touch each other's keys, nor anything else in a shared Redis.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as redis

from aioposthog._cache import FlagCache

from .conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def token() -> str:
    return f"phc_test_{uuid.uuid4().hex}"


@pytest.fixture
async def make_cache(redis_url: str, token: str) -> AsyncIterator[Callable[..., FlagCache]]:
    """Build FlagCaches (one per simulated process) on the test's Redis; all closed after."""
    made: list[FlagCache] = []

    def make(url: str | None = None, **options: Any) -> FlagCache:
        options.setdefault("token", token)
        cache = FlagCache(url or redis_url, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()
    async with FlagCache(redis_url, token=token) as cleanup:
        await cleanup.clear()


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


class Counter:
    def __init__(self, value: Any, gate: asyncio.Event | None = None) -> None:
        self.value, self.gate, self.calls = value, gate, 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.value


# -- values shared between processes ------------------------------------------------------------


async def test_values_round_trip_and_expire(make_cache: Callable[..., FlagCache]) -> None:
    cache = make_cache()
    assert cache.kind == "redis"
    assert cache.shared is True
    assert await cache.set("definitions", {"flags": [{"key": "a"}]}) is True
    assert await cache.set("short", 1, ttl=0.05) is True
    assert await cache.get("definitions") == {"flags": [{"key": "a"}]}
    assert await cache.get("short") == 1
    await asyncio.sleep(0.1)
    assert await cache.get("short") is None
    assert await cache.delete("definitions") is True
    assert await cache.get("definitions") is None
    assert cache.available is True


async def test_two_processes_share_definitions_and_their_age(
    make_cache: Callable[..., FlagCache],
) -> None:
    leader_clock, follower_clock = [1_000.0], [1_010.0]
    leader = make_cache(owner="leader", clock=lambda: leader_clock[0])
    follower = make_cache(owner="follower", clock=lambda: follower_clock[0])
    payload = {"flags": [{"key": "new-checkout", "active": True}], "etag": '"abc"'}
    assert await leader.set("definitions", payload) is True
    entry = await follower.get_with_age("definitions")
    assert entry is not None
    assert entry.value == payload
    assert entry.age == pytest.approx(10.0)
    # the follower's get_or_fetch finds it without fetching
    fetch = Counter("should not be called")
    assert await follower.get_or_fetch("definitions", fetch, ttl=None) == payload
    assert fetch.calls == 0


async def test_single_flight_per_process_and_shared_result(
    make_cache: Callable[..., FlagCache],
) -> None:
    one, two = make_cache(), make_cache()
    gate = asyncio.Event()
    fetch_one, fetch_two = Counter({"a": True}, gate), Counter({"a": True}, gate)
    callers = [
        asyncio.create_task(one.get_or_fetch("flags:u1", fetch_one, 30)) for _ in range(1000)
    ]
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*callers) == [{"a": True}] * 1000
    assert fetch_one.calls == 1
    # the other process finds the stored value
    results = await asyncio.gather(
        *(two.get_or_fetch("flags:u1", fetch_two, 30) for _ in range(10))
    )
    assert results == [{"a": True}] * 10
    assert fetch_two.calls == 0


async def test_failed_fetch_stores_nothing(make_cache: Callable[..., FlagCache]) -> None:
    one, two = make_cache(), make_cache()
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("flags endpoint down")

    results = await asyncio.gather(
        *(one.get_or_fetch("flags:u1", failing, 30) for _ in range(50)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await two.get_with_age("flags:u1") is None


async def test_cancelled_waiter_does_not_cancel_the_fetch(
    make_cache: Callable[..., FlagCache],
) -> None:
    cache = make_cache()
    gate = asyncio.Event()
    fetch = Counter("value", gate)
    first = asyncio.create_task(cache.get_or_fetch("k", fetch, 30))
    second = asyncio.create_task(cache.get_or_fetch("k", fetch, 30))
    await asyncio.sleep(0.05)
    first.cancel()
    gate.set()
    assert await second == "value"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert fetch.calls == 1
    assert await cache.get("k") == "value"


async def test_projects_sharing_a_redis_are_isolated(
    make_cache: Callable[..., FlagCache], admin: redis.Redis, redis_url: str
) -> None:
    mine = make_cache()
    other_token = f"phc_other_{uuid.uuid4().hex}"
    other = make_cache(token=other_token)
    await mine.set("definitions", "mine")
    await other.set("definitions", "other")
    assert await other.try_acquire_leader("definitions", ttl=5) is True
    assert await mine.get("definitions") == "mine"
    assert await other.get("definitions") == "other"
    keys = set(await admin.keys(mine.namespace + "*"))
    assert keys == {f"{mine.namespace}:k:definitions"}
    assert not [key for key in await admin.keys("*") if other_token in key]
    # clear() (a 402) drops this project's values only: not another's, not the locks
    assert await other.clear() is True
    assert await other.get("definitions") is None
    assert await mine.get("definitions") == "mine"
    assert await admin.exists(f"{other.namespace}:lock:definitions") == 1
    await other.release_leader("definitions")
    await other.aclose()
    async with FlagCache(redis_url, token=other_token) as cleanup:
        await cleanup.clear()


# -- leader lock --------------------------------------------------------------------------------


async def test_leader_lock_is_exclusive_and_owned(
    make_cache: Callable[..., FlagCache], admin: redis.Redis
) -> None:
    a, b = make_cache(owner="process-a"), make_cache(owner="process-b")
    assert await a.try_acquire_leader("definitions", ttl=5) is True
    assert await admin.get(f"{a.namespace}:lock:definitions") == "process-a"
    assert await b.try_acquire_leader("definitions", ttl=5) is False
    assert await a.try_acquire_leader("definitions", ttl=5) is True  # the leader keeps it
    assert await b.renew_leader("definitions", ttl=5) is False
    assert await b.release_leader("definitions") is False  # only the owner may release
    assert await b.try_acquire_leader("definitions", ttl=5) is False
    assert await a.renew_leader("definitions", ttl=5) is True
    assert await a.release_leader("definitions") is True
    assert await b.try_acquire_leader("definitions", ttl=5) is True
    assert await b.release_leader("definitions") is True


async def test_leader_lock_expires(make_cache: Callable[..., FlagCache]) -> None:
    a, b = make_cache(owner="process-a"), make_cache(owner="process-b")
    assert await a.try_acquire_leader("definitions", ttl=0.1) is True
    assert await a.renew_leader("definitions", ttl=0.1) is True
    assert await b.try_acquire_leader("definitions", ttl=0.1) is False
    await asyncio.sleep(0.15)
    assert await b.try_acquire_leader("definitions", ttl=5) is True
    assert await a.renew_leader("definitions", ttl=5) is False  # a has lost it
    assert await b.release_leader("definitions") is True


async def test_closing_the_leader_hands_over_at_once(make_cache: Callable[..., FlagCache]) -> None:
    a, b = make_cache(owner="process-a"), make_cache(owner="process-b")
    assert await a.try_acquire_leader("definitions", ttl=30) is True
    await a.aclose()
    assert await b.try_acquire_leader("definitions", ttl=30) is True
    assert await b.release_leader("definitions") is True


async def test_concurrent_acquirers_get_one_leader(make_cache: Callable[..., FlagCache]) -> None:
    caches = [make_cache(owner=f"process-{i}") for i in range(20)]
    granted = await asyncio.gather(*(c.try_acquire_leader("definitions", ttl=5) for c in caches))
    assert sum(granted) == 1
    leader = caches[granted.index(True)]
    assert await leader.release_leader("definitions") is True


# -- outages and secrets ------------------------------------------------------------------------


async def test_redis_down_means_misses_and_fetch_fallback(
    make_cache: Callable[..., FlagCache], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:s3cr3t-PASS@127.0.0.1:{free_port()}/0"
    cache = make_cache(url)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="aioposthog.cache"):
        assert await cache.get("definitions") is None
        assert await cache.get_with_age("definitions") is None
        assert await cache.set("definitions", {"flags": []}) is False
        assert await cache.delete("definitions") is False
        assert await cache.clear() is False
        fetch = Counter({"flags": {"a": True}})
        results = await asyncio.gather(*(cache.get_or_fetch("u1", fetch, 30) for _ in range(1000)))
        assert results == [{"flags": {"a": True}}] * 1000
        assert fetch.calls == 1
        assert await cache.try_acquire_leader("definitions", ttl=5) is False
        assert await cache.renew_leader("definitions", ttl=5) is False
    assert time.monotonic() - started < 2
    assert cache.available is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "Connect" in warnings[0].getMessage()
    assert "redis://:***@127.0.0.1" in warnings[0].getMessage()
    for text in (caplog.text, repr(cache), str(cache.last_error)):
        assert "s3cr3t" not in text


async def test_unresponsive_redis_times_out(make_cache: Callable[..., FlagCache]) -> None:
    with socket.socket() as black_hole:  # accepts connections, never answers
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        port = black_hole.getsockname()[1]
        cache = make_cache(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        started = time.monotonic()
        assert await cache.get("definitions") is None
        assert await cache.get_or_fetch("k", Counter("fetched"), 30) == "fetched"
        assert time.monotonic() - started < 1.5
        assert cache.last_error is not None
        await cache.aclose()


async def test_password_in_the_url(
    make_cache: Callable[..., FlagCache],
    admin: redis.Redis,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password = f"aioposthog-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    try:
        where = urlsplit(redis_url)
        url = f"redis://{user}:{password}@{where.hostname}:{where.port}{where.path}"
        good = make_cache(url)
        assert await good.set("k", 1) is True
        assert await good.get("k") == 1
        assert await good.try_acquire_leader("definitions", ttl=5) is True
        assert await good.release_leader("definitions") is True
        bad_url = f"redis://{user}:wrong-{password}@{where.hostname}:{where.port}{where.path}"
        bad = make_cache(bad_url)
        with caplog.at_level(logging.DEBUG, logger="aioposthog.cache"):
            assert await bad.get("k") is None
            assert await bad.set("k", 2) is False
        assert "AuthenticationError" in caplog.text
        for cache in (good, bad):
            assert password not in repr(cache)
            assert f"{user}:***@" in repr(cache)
        assert password not in caplog.text
        assert password not in str(bad.last_error)
    finally:
        await admin.acl_deluser(user)


async def test_tls_url_against_a_plain_server_fails_gracefully(
    make_cache: Callable[..., FlagCache], redis_url: str
) -> None:
    where = urlsplit(redis_url)
    cache = make_cache(
        f"rediss://:pw@{where.hostname}:{where.port}{where.path}?ssl_cert_reqs=none",
        timeout=0.2,
    )
    assert await cache.get("k") is None
    assert await cache.get_or_fetch("k", Counter("fetched"), 30) == "fetched"
    assert cache.available is False
