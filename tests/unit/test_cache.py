"""FlagCache on the memory backend: values, TTLs, single flight, ages, namespaces, failures."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiocache import SimpleMemoryCache
from hypothesis import given, settings
from hypothesis import strategies as st

from aioposthog._cache import CachedValue, FlagCache, process_owner_id, redact_url
from aioposthog._exceptions import ConfigError, UsageError

TOKEN = "phc_unit_test_token"


@pytest.fixture
async def cache() -> AsyncIterator[FlagCache]:
    async with FlagCache(token=TOKEN) as flag_cache:
        yield flag_cache


class Counter:
    """An async fetch that counts its calls, optionally waiting for a gate first."""

    def __init__(self, value: Any = "fetched", gate: asyncio.Event | None = None) -> None:
        self.value = value
        self.gate = gate
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        else:
            await asyncio.sleep(0)
        return self.value


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- values and TTLs ---------------------------------------------------------------------------


async def test_set_then_get_round_trips_json(cache: FlagCache) -> None:
    value = {"flags": [{"key": "a", "active": True, "rollout": 12.5}], "etag": None}
    assert await cache.set("definitions", value) is True
    assert await cache.get("definitions") == value
    assert await cache.get("missing") is None


async def test_values_are_copies_not_shared_objects(cache: FlagCache) -> None:
    value: dict[str, Any] = {"flags": [1]}
    await cache.set("k", value)
    value["flags"].append(2)
    first = await cache.get("k")
    first["flags"].append(3)
    assert await cache.get("k") == {"flags": [1]}


async def test_json_round_trip_turns_tuples_into_lists(cache: FlagCache) -> None:
    # The memory backend stores the same JSON text as Redis: no backend-specific surprises.
    await cache.set("k", {"pair": (1, 2)})
    assert await cache.get("k") == {"pair": [1, 2]}


async def test_ttl_expires(cache: FlagCache) -> None:
    await cache.set("short", 1, ttl=0.05)
    await cache.set("long", 2, ttl=10)
    await cache.set("forever", 3)
    assert await cache.get("short") == 1
    await asyncio.sleep(0.08)
    assert await cache.get("short") is None
    assert await cache.get("long") == 2
    assert await cache.get("forever") == 3


async def test_overwrite_resets_the_ttl(cache: FlagCache) -> None:
    await cache.set("k", 1, ttl=0.05)
    await cache.set("k", 2)
    await asyncio.sleep(0.08)
    assert await cache.get("k") == 2


async def test_delete(cache: FlagCache) -> None:
    await cache.set("k", 1)
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.get("k") is None


async def test_stored_none_is_told_apart_by_get_with_age(cache: FlagCache) -> None:
    await cache.set("k", None)
    assert await cache.get("k") is None
    entry = await cache.get_with_age("k")
    assert entry is not None
    assert entry.value is None
    assert 0 <= entry.age < 1
    assert await cache.get_with_age("missing") is None


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "10"])
async def test_invalid_ttl_is_a_usage_error(cache: FlagCache, ttl: Any) -> None:
    with pytest.raises(UsageError, match="ttl"):
        await cache.set("k", 1, ttl=ttl)


@pytest.mark.parametrize("key", ["", None, 3])
async def test_invalid_key_is_a_usage_error(cache: FlagCache, key: Any) -> None:
    with pytest.raises(UsageError, match="key"):
        await cache.get(key)


async def test_value_that_is_not_json_is_a_usage_error(cache: FlagCache) -> None:
    with pytest.raises(UsageError, match="not JSON"):
        await cache.set("k", {"when": object()})
    assert await cache.get("k") is None


async def test_large_entries_round_trip(cache: FlagCache) -> None:
    big = {"flags": ["x" * 1000] * 1000}  # over the size decoded off the event loop
    await cache.set("big", big)
    assert await cache.get("big") == big


async def test_a_foreign_entry_reads_as_a_miss(caplog: pytest.LogCaptureFixture) -> None:
    backend = SimpleMemoryCache()
    async with FlagCache(token=TOKEN, backend=backend) as cache:
        await backend.set(cache.namespace + ":k:k", "not json")
        await backend.set(cache.namespace + ":k:j", '{"other": "format"}')
        with caplog.at_level(logging.WARNING, logger="aioposthog.cache"):
            assert await cache.get("k") is None
            assert await cache.get_with_age("j") is None
        assert caplog.text.count("treating it as a miss") == 2
        # and get_or_fetch replaces it
        assert await cache.get_or_fetch("k", Counter(5), ttl=None) == 5
        assert await cache.get("k") == 5


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


@settings(max_examples=20, deadline=None)
@given(values=st.lists(json_values, min_size=1, max_size=8))
def test_any_json_value_round_trips(values: list[Any]) -> None:
    async def scenario() -> list[CachedValue | None]:
        async with FlagCache(token=TOKEN) as cache:
            for index, value in enumerate(values):
                await cache.set(str(index), value)
            return [await cache.get_with_age(str(index)) for index in range(len(values))]

    stored = asyncio.run(scenario())
    assert [entry.value if entry else "missing" for entry in stored] == values


# -- ages (stale-if-error) ----------------------------------------------------------------------


async def test_age_is_reported_from_the_clock() -> None:
    clock = FakeClock()
    async with FlagCache(token=TOKEN, clock=clock) as cache:
        await cache.set("definitions", {"flags": []})
        clock.now += 42.5
        entry = await cache.get_with_age("definitions")
        assert entry is not None
        value, age = entry
        assert value == {"flags": []}
        assert age == pytest.approx(42.5)
        # a failed refresh writes nothing: the old value stays, older
        clock.now += 60
        entry = await cache.get_with_age("definitions")
        assert entry is not None
        assert entry.age == pytest.approx(102.5)
        # a successful refresh resets the age
        await cache.set("definitions", {"flags": [1]})
        assert await cache.get_with_age("definitions") == CachedValue({"flags": [1]}, 0.0)


async def test_age_is_never_negative_when_the_writer_clock_is_ahead() -> None:
    backend = SimpleMemoryCache()
    writer_clock, reader_clock = FakeClock(2_000.0), FakeClock(1_000.0)
    writer = FlagCache(token=TOKEN, backend=backend, clock=writer_clock)
    reader = FlagCache(token=TOKEN, backend=backend, clock=reader_clock)
    await writer.set("k", 1)
    assert await reader.get_with_age("k") == (1, 0.0)
    await writer.aclose()
    await reader.aclose()


# -- single flight ------------------------------------------------------------------------------


async def test_a_thousand_concurrent_callers_cause_one_fetch(cache: FlagCache) -> None:
    gate = asyncio.Event()
    fetch = Counter({"flags": {"a": True}}, gate)
    callers = [asyncio.create_task(cache.get_or_fetch("u1", fetch, ttl=30)) for _ in range(1000)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*callers)
    assert fetch.calls == 1
    assert all(result == {"flags": {"a": True}} for result in results)
    # and now it is cached
    assert await cache.get_or_fetch("u1", fetch, ttl=30) == {"flags": {"a": True}}
    assert fetch.calls == 1
    assert await cache.get("u1") == {"flags": {"a": True}}


async def test_different_keys_fetch_independently(cache: FlagCache) -> None:
    fetches = {key: Counter(key) for key in ("a", "b", "c")}
    results = await asyncio.gather(
        *(cache.get_or_fetch(key, fetches[key], ttl=30) for key in "abcabcabc")
    )
    assert results == list("abcabcabc")
    assert [f.calls for f in fetches.values()] == [1, 1, 1]


async def test_a_failed_fetch_reaches_every_waiter_and_caches_nothing(cache: FlagCache) -> None:
    gate = asyncio.Event()
    calls = 0

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise RuntimeError("posthog is down")

    callers = [asyncio.create_task(cache.get_or_fetch("k", failing, ttl=30)) for _ in range(100)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, RuntimeError) and str(r) == "posthog is down" for r in results)
    assert len({id(r) for r in results}) == 1  # the very same exception
    assert await cache.get_with_age("k") is None
    # the failure is not remembered either: the next call fetches again
    retry = Counter("recovered")
    assert await cache.get_or_fetch("k", retry, ttl=30) == "recovered"
    assert retry.calls == 1


async def test_cancelling_one_waiter_does_not_cancel_the_fetch(cache: FlagCache) -> None:
    gate = asyncio.Event()
    fetch = Counter("value", gate)
    first = asyncio.create_task(cache.get_or_fetch("k", fetch, ttl=30))
    others = [asyncio.create_task(cache.get_or_fetch("k", fetch, ttl=30)) for _ in range(5)]
    await asyncio.sleep(0.01)
    first.cancel()  # the caller that started the fetch
    others[0].cancel()
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(first, *others, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2:] == ["value"] * 4
    assert fetch.calls == 1


async def test_a_fetch_whose_waiters_all_left_still_fills_the_cache(cache: FlagCache) -> None:
    gate = asyncio.Event()
    fetch = Counter("value", gate)
    waiter = asyncio.create_task(cache.get_or_fetch("k", fetch, ttl=30))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert await cache.get("k") == "value"
    assert fetch.calls == 1


async def test_a_fetch_whose_waiters_all_left_and_that_fails_logs_nothing(
    cache: FlagCache, caplog: pytest.LogCaptureFixture
) -> None:
    gate = asyncio.Event()

    async def failing() -> None:
        await gate.wait()
        raise RuntimeError("nobody is listening")

    waiter = asyncio.create_task(cache.get_or_fetch("k", failing, ttl=30))
    await asyncio.sleep(0.01)
    waiter.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_zero_ttl_coalesces_without_storing(cache: FlagCache) -> None:
    gate = asyncio.Event()
    fetch = Counter("value", gate)
    callers = [asyncio.create_task(cache.get_or_fetch("k", fetch, ttl=0)) for _ in range(10)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*callers) == ["value"] * 10
    assert fetch.calls == 1
    assert await cache.get_with_age("k") is None


async def test_cached_value_expires_then_is_fetched_again(cache: FlagCache) -> None:
    fetch = Counter("v")
    await cache.get_or_fetch("k", fetch, ttl=0.05)
    await cache.get_or_fetch("k", fetch, ttl=0.05)
    assert fetch.calls == 1
    await asyncio.sleep(0.08)
    await cache.get_or_fetch("k", fetch, ttl=0.05)
    assert fetch.calls == 2


async def test_a_fetched_value_that_is_not_json_is_a_usage_error(cache: FlagCache) -> None:
    async def bad() -> object:
        return object()

    results = await asyncio.gather(
        *(cache.get_or_fetch("k", bad, ttl=30) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, UsageError) for r in results)


# -- namespaces ---------------------------------------------------------------------------------


async def test_two_tokens_sharing_a_store_do_not_see_each_other() -> None:
    backend = SimpleMemoryCache()
    one = FlagCache(token="phc_project_one", backend=backend)
    two = FlagCache(token="phc_project_two", backend=backend)
    await one.set("definitions", "one")
    await two.set("definitions", "two")
    assert await one.get("definitions") == "one"
    assert await two.get("definitions") == "two"
    assert await one.clear() is True
    assert await one.get("definitions") is None
    assert await two.get("definitions") == "two"
    fetch = Counter("fetched")
    assert await one.get_or_fetch("definitions", fetch, ttl=None) == "fetched"
    assert await two.get("definitions") == "two"
    await one.aclose()
    await two.aclose()


async def test_namespace_is_a_short_hash_never_the_token() -> None:
    token = "phc_secret_project_token"
    async with FlagCache(token=token) as a, FlagCache(token=token) as b:
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        assert a.namespace == f"aioposthog:v1:{digest}" == b.namespace
        assert token not in a.namespace
        assert token not in repr(a)
    async with FlagCache(token=token, prefix="staging") as c:
        assert c.namespace.startswith("staging:v1:")


# -- leader lock --------------------------------------------------------------------------------


async def test_leader_lock_is_always_granted_on_memory(cache: FlagCache) -> None:
    assert cache.kind == "memory"
    assert cache.shared is False
    assert await cache.try_acquire_leader("definitions", ttl=0.05) is True
    assert await cache.try_acquire_leader("definitions", ttl=0.05) is True
    async with FlagCache(token=TOKEN, owner="other") as other:
        assert await other.try_acquire_leader("definitions", ttl=0.05) is True
    await asyncio.sleep(0.08)
    assert await cache.renew_leader("definitions", ttl=0.05) is True
    assert await cache.release_leader("definitions") is True


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), None])
async def test_leader_lock_needs_a_positive_ttl(cache: FlagCache, ttl: Any) -> None:
    with pytest.raises(UsageError, match="ttl"):
        await cache.try_acquire_leader("definitions", ttl=ttl)


def test_process_owner_id_is_stable_and_unique_per_process() -> None:
    owner = process_owner_id()
    assert owner == process_owner_id()
    host, pid, random_part = owner.rsplit(":", 2)
    assert host
    assert pid == str(os.getpid())
    assert len(random_part) == 16


async def test_owner_defaults_to_the_process_id() -> None:
    async with FlagCache(token=TOKEN) as a, FlagCache(token=TOKEN, owner="b") as b:
        assert a.owner == process_owner_id()
        assert b.owner == "b"


# -- construction, lifecycle --------------------------------------------------------------------


async def test_memory_url_and_none_are_the_same() -> None:
    async with FlagCache("memory://", token=TOKEN) as a, FlagCache(None, token=TOKEN) as b:
        assert a.kind == b.kind == "memory"
        assert repr(a) == repr(b) == f"FlagCache('memory://', namespace={a.namespace!r})"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("memcached://127.0.0.1:11211", "unsupported scheme"),
        ("postgres://user:hunter2@db/0", "unsupported scheme"),
        ("redis://:hunter2@127.0.0.1:6379/0?bogus=1", "unsupported option"),
        ("redis://:hunter2@127.0.0.1:6379/0?ssl_ca_certs=/x", "unsupported option"),
        ("redis://:hunter2@127.0.0.1:notaport/0", "not a valid Redis URL"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        FlagCache(url, token=TOKEN)
    assert "hunter2" not in str(info.value)
    assert info.value.setting == "cache_url"


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="token"):
        FlagCache(token="")
    with pytest.raises(ConfigError, match="not both"):
        FlagCache("memory://", token=TOKEN, backend=SimpleMemoryCache())
    with pytest.raises(ConfigError, match="unsupported cache backend"):
        FlagCache(token=TOKEN, backend=object())
    with pytest.raises(ConfigError, match="timeout"):
        FlagCache(token=TOKEN, timeout=0)


async def test_closed_cache_refuses_calls_and_closes_twice() -> None:
    cache = FlagCache(token=TOKEN)
    await cache.aclose()
    await cache.aclose()
    with pytest.raises(UsageError, match="closed"):
        await cache.get("k")
    with pytest.raises(UsageError, match="closed"):
        await cache.set("k", 1)
    with pytest.raises(UsageError, match="closed"):
        await cache.get_or_fetch("k", Counter(), ttl=0)
    with pytest.raises(UsageError, match="closed"):
        await cache.try_acquire_leader("definitions", ttl=1)


async def test_aclose_cancels_fetches_in_flight_and_tells_their_waiters() -> None:
    cache = FlagCache(token=TOKEN)
    fetch = Counter("never", asyncio.Event())
    waiters = [asyncio.create_task(cache.get_or_fetch("k", fetch, ttl=30)) for _ in range(3)]
    await asyncio.sleep(0.01)
    await cache.aclose()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, UsageError) and "closed" in str(r) for r in results)


# -- backend failures ---------------------------------------------------------------------------


class FlakyMemory(SimpleMemoryCache):  # type: ignore[misc]  # aiocache is untyped
    """A memory backend that fails like an unreachable Redis while ``broken`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.attempts = 0

    async def _fail_or(self, call: Callable[[], Awaitable[Any]]) -> Any:
        self.attempts += 1
        if self.broken:
            raise ConnectionRefusedError(111, "Connection refused")
        return await call()

    async def _get(self, key: str, encoding: str = "utf-8", _conn: Any = None) -> Any:
        return await self._fail_or(lambda: super(FlakyMemory, self)._get(key, encoding))

    async def _set(self, key: str, value: Any, ttl: Any = None, **kwargs: Any) -> Any:
        return await self._fail_or(lambda: super(FlakyMemory, self)._set(key, value, ttl))

    async def _delete(self, key: str, _conn: Any = None) -> Any:
        return await self._fail_or(lambda: super(FlakyMemory, self)._delete(key))


async def test_backend_down_means_misses_false_and_fetch_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FlakyMemory()
    async with FlagCache(token=TOKEN, backend=backend, retry_interval=60) as cache:
        with caplog.at_level(logging.DEBUG, logger="aioposthog.cache"):
            assert await cache.get("k") is None
            assert cache.available is False
            assert cache.last_error is not None
            assert "ConnectionRefusedError" in cache.last_error
            assert await cache.set("k", 1) is False
            assert await cache.delete("k") is False
            assert await cache.get_with_age("k") is None
            fetch = Counter("from posthog")
            results = await asyncio.gather(
                *(cache.get_or_fetch("k", fetch, ttl=30) for _ in range(100))
            )
            assert results == ["from posthog"] * 100
            assert fetch.calls == 1
        # one attempt, then the backend is left alone for retry_interval: one warning only
        assert backend.attempts == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unavailable" in warnings[0].getMessage()


async def test_backend_recovery_is_noticed(caplog: pytest.LogCaptureFixture) -> None:
    backend = FlakyMemory()
    async with FlagCache(token=TOKEN, backend=backend, retry_interval=0) as cache:
        with caplog.at_level(logging.INFO, logger="aioposthog.cache"):
            assert await cache.set("k", 1) is False
            assert await cache.set("k", 1) is False  # retry_interval=0: tried every time
            assert backend.attempts == 2
            backend.broken = False
            assert await cache.set("k", 1) is True
            assert cache.available is True
            assert await cache.get("k") == 1
        assert "reachable again" in caplog.text


def test_redact_url() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("rediss://app:p%40ss@h:1/2") == "rediss://app:***@h:1/2"
    assert redact_url("redis://bare-secret@h/0") == "redis://***@h/0"
    assert redact_url("redis://h/0?password=x&db=1") == "redis://h/0?password=***&db=1"
