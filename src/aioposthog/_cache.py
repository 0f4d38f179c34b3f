"""The cache layer: flag definitions and remote flag results, in memory or shared through Redis.

One ``FlagCache`` per client, built from ``cache_url``:

- ``None`` or ``"memory://"``: an aiocache ``SimpleMemoryCache`` private to the process;
- ``"redis://[[user]:password@]host[:port][/db]"`` or ``"rediss://..."`` (TLS): aiocache's
  ``RedisCache`` on ``redis.asyncio``, shared by every process that uses the same Redis.
  Accepted query options: ``socket_timeout``, ``socket_connect_timeout``, ``max_connections``,
  ``health_check_interval``, ``client_name`` and, for ``rediss``, ``ssl_cert_reqs``,
  ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname``.

Keys live under ``<prefix>:v1:<first 16 hex digits of sha256(token)>``: several projects (and
library versions with another entry format) can share one Redis, and the token itself is never
written there. Values are stored as JSON (never pickle: a shared store must not be able to run
code in its readers) in an envelope ``{"value": ..., "stored_at": <epoch seconds>}``, so a reader
knows how old an entry is. The memory backend stores the same JSON text, so what works in
development works against Redis, and a caller can never mutate a cached value in place.

Failure policy: the cache is an optimisation, so a broken backend never breaks a caller.
Backend errors (connection refused, timeouts, Redis errors) are translated in one place,
``FlagCache._guard``: ``get`` becomes a miss, ``set``/``delete`` return False, ``get_or_fetch``
calls ``fetch`` itself, the leader lock is not granted. The first failure logs a warning; the
backend is then left alone for ``retry_interval`` seconds (calls during that time fail fast and
log at debug), so an outage costs one warning and no latency per call. The URL's password
never appears in a log message or a ``repr``.

How the definitions poller uses it (stale-if-error, one poller per fleet)::

    cache = FlagCache(config.cache_url, token=project_token)
    while True:
        if await cache.try_acquire_leader("definitions", ttl=3 * poll_interval):
            try:
                payload, etag = await fetch_definitions(etag=last_etag)
            except QuotaLimitedError:
                await cache.clear()                 # 402: flags must stop evaluating locally
            except PostHogError:
                pass                                # keep serving what is stored: never delete
            else:
                if payload is not None:             # None: 304 Not Modified
                    await cache.set("definitions", {"flags": payload, "etag": etag})
        entry = await cache.get_with_age("definitions")
        if entry is not None:
            recompile_if_changed(entry.value)       # health() reports entry.age
        await asyncio.sleep(poll_interval)
    # on shutdown: await cache.aclose() also releases the leadership it holds
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit

from aiocache import SimpleMemoryCache

from ._cache_backends import backend_errors, build_redis, process_owner_id, redact_url
from ._exceptions import ConfigError, UsageError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["CachedValue", "FlagCache", "process_owner_id", "redact_url"]

logger = logging.getLogger("aioposthog.cache")

T = TypeVar("T")

_ENTRY_FORMAT: Final = "v1"
# Larger entries are decoded in a worker thread: a definitions payload can be megabytes.
_OFFLOAD_DECODE_BYTES: Final = 512 * 1024
# KEYS[1] is the lock, ARGV[1] the owner: only the owner may extend or delete it.
_RENEW_SCRIPT: Final = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE_SCRIPT: Final = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('DEL', KEYS[1]) else return 0 end"
)


class CachedValue(NamedTuple):
    """A cached value and its age: ``value, age = await cache.get_with_age(key)``.

    ``age`` is the number of seconds since the entry was written, by whichever process wrote
    it (clamped at 0 when the writer's clock is ahead of ours).
    """

    value: Any
    age: float


class _Down(enum.Enum):
    DOWN = "down"


_DOWN: Final = _Down.DOWN


def _identity(value: Any) -> Any:
    return value


def _check_ttl(ttl: float | None, *, zero_ok: bool = False) -> None:
    if ttl is None:
        return
    if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl < 0:
        raise UsageError(f"ttl must be None or a positive number of seconds, not {ttl!r}")
    if ttl == 0 and not zero_ok:
        raise UsageError("ttl must be None (no expiry) or more than 0 seconds")


def _lock_ms(ttl: float) -> int:
    if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise UsageError(f"a leader lock needs a ttl of more than 0 seconds, not {ttl!r}")
    return max(1, round(ttl * 1000))


class FlagCache:
    """Cache for flag definitions and remote flag results, in memory or shared through Redis.

    Args:
        url: ``None`` or ``"memory://"`` for a per-process cache, ``"redis://..."`` or
            ``"rediss://..."`` for a cache shared by a fleet.
        token: the project token; only a short sha256 of it is used, as the key namespace.
        timeout: seconds allowed to each backend command (Redis only; memory never waits).
        max_connections: size of the Redis connection pool (a ``max_connections`` query
            option in the URL wins).
        retry_interval: after a backend failure, seconds during which the backend is not
            tried again (calls fail fast as misses); 0 retries on every call.
        owner: the leader-lock owner id; by default :func:`process_owner_id`.
        clock: wall clock for ``stored_at`` and ages (tests inject one).
        prefix: first part of every key.
        backend: an aiocache ``SimpleMemoryCache`` or ``RedisCache`` to use instead of
            building one from ``url`` (the cache takes ownership and closes it).

    Example::

        async with FlagCache("redis://cache:6379/0", token="phc_...") as cache:
            flags = await cache.get_or_fetch("flags:u1", lambda: remote_flags("u1"), ttl=30)
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str,
        timeout: float = 1.0,
        max_connections: int = 16,
        retry_interval: float = 5.0,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        prefix: str = "aioposthog",
        backend: Any = None,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ConfigError("the cache needs the project token (a non-empty string)")
        if not timeout > 0 or not retry_interval >= 0 or max_connections < 1:
            raise ConfigError(
                "cache timeout must be > 0, retry_interval >= 0, max_connections >= 1",
                setting="cache_url",
            )
        self._kind: Literal["memory", "redis"]
        self._backend: Any
        # Every spelling of the password that could reach a message: raw, decoded, encoded.
        password = urlsplit(url).password if url else None
        self._secrets = {s for s in (password, password and unquote(password)) if s}
        self._secrets |= {quote(s, safe="") for s in self._secrets}
        if backend is not None:
            if url is not None:
                raise ConfigError("give the cache a url or a backend, not both")
            self._kind, self._backend = self._backend_kind(backend), backend
            self._display_url = type(backend).__name__
        elif url is None or url == "memory://":
            self._kind, self._backend = "memory", SimpleMemoryCache(timeout=None)
            self._display_url = "memory://"
        elif url.startswith(("redis://", "rediss://")):
            self._backend = build_redis(url, timeout=timeout, max_connections=max_connections)
            self._kind, self._display_url = "redis", redact_url(url)
        else:
            scheme = url.partition("://")[0] if "://" in url else url
            raise ConfigError(
                f"cache_url {redact_url(url)}: unsupported scheme {scheme[:20]!r} "
                "(use memory://, redis:// or rediss://)",
                setting="cache_url",
            )

        self._redis: Redis | None = self._backend.client if self._kind == "redis" else None
        if self._redis is not None:
            self._renew = self._redis.register_script(_RENEW_SCRIPT)
            self._release = self._redis.register_script(_RELEASE_SCRIPT)
        # Memory commands never wait; a timeout there would only add a timer per call.
        self._timeout: float | None = timeout if self._kind == "redis" else None
        self._errors = backend_errors(self._kind)
        self._retry_interval = retry_interval
        self._owner = owner
        self._clock = clock
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        self._namespace = f"{prefix}:{_ENTRY_FORMAT}:{digest}"
        self._data_prefix = f"{self._namespace}:k:"
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._held: set[str] = set()
        self._down = False
        self._down_until = 0.0
        self._last_error: str | None = None
        self._closed = False

    @staticmethod
    def _backend_kind(backend: Any) -> Literal["memory", "redis"]:
        if isinstance(backend, SimpleMemoryCache):
            return "memory"
        try:
            from aiocache.backends.redis import RedisBackend
        except ImportError:  # pragma: no cover - without redis it cannot be a RedisCache
            pass
        else:
            if isinstance(backend, RedisBackend):
                return "redis"
        raise ConfigError(
            f"unsupported cache backend {type(backend).__name__}: "
            "use aiocache's SimpleMemoryCache or RedisCache"
        )

    def __repr__(self) -> str:
        return f"FlagCache({self._display_url!r}, namespace={self._namespace!r})"

    async def __aenter__(self) -> FlagCache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def kind(self) -> Literal["memory", "redis"]:
        """``"memory"`` (this process only) or ``"redis"`` (shared by every process)."""
        return self._kind

    @property
    def shared(self) -> bool:
        """Whether other processes see what this one stores (and the leader lock means anything)."""
        return self._kind == "redis"

    @property
    def namespace(self) -> str:
        """The prefix of every key of this project: ``<prefix>:v1:<sha256(token)[:16]>``."""
        return self._namespace

    @property
    def owner(self) -> str:
        """The id this cache writes into the leader locks it holds."""
        return self._owner or process_owner_id()

    @property
    def available(self) -> bool:
        """False from a backend failure until the next successful command."""
        return not self._down

    @property
    def last_error(self) -> str | None:
        """The last backend failure, redacted (for health reports); None if there was none."""
        return self._last_error

    # -- values ------------------------------------------------------------------------------

    async def get(self, key: str) -> Any:
        """The value stored under ``key``, or None on a miss or when the backend is down.

        A stored ``None`` reads as a miss; use :meth:`get_with_age` to tell them apart.
        """
        entry = await self._read(self._key(key))
        return None if entry is None else entry.value

    async def get_with_age(self, key: str) -> CachedValue | None:
        """``(value, age_seconds)`` of the entry under ``key``, or None (miss or backend down).

        For stale-if-error: the age keeps growing while refreshes fail, and the value stays
        servable until someone explicitly overwrites it, deletes it or calls :meth:`clear`.
        """
        return await self._read(self._key(key))

    async def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store a JSON-serialisable ``value`` for ``ttl`` seconds (None: no expiry).

        Returns False, after logging, when the backend could not store it. Raises UsageError
        for a value JSON cannot encode or a ttl that is not None or > 0.
        """
        _check_ttl(ttl)
        return await self._write(self._key(key), value, ttl)

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed, False if not or when the backend is down."""
        full = self._key(key)
        done = await self._guard("delete", lambda: self._backend.delete(full))
        return done is not _DOWN and bool(done)

    async def clear(self) -> bool:
        """Delete every value of this project (not other projects', not the leader locks).

        Meant for a 402 (quota limited): local evaluation must stop everywhere. Never call it
        because a refresh failed; serving the last definitions is the point of the cache.
        Returns False when the backend is down.
        """
        if self._redis is None:
            done = await self._guard(
                "clear", lambda: self._backend.clear(namespace=self._data_prefix)
            )
        else:
            # SCAN, not aiocache's KEYS: KEYS blocks a shared Redis while it walks every key.
            done = await self._guard("clear", self._clear_redis, timeout=10 * (self._timeout or 1))
        return done is not _DOWN

    async def get_or_fetch(
        self, key: str, fetch: Callable[[], Awaitable[T]], ttl: float | None
    ) -> T:
        """The cached value of ``key``, or ``await fetch()`` stored for ``ttl`` seconds.

        Single flight: while a lookup for ``key`` is in progress in this process, other
        callers wait for it instead of starting their own, so a thousand concurrent callers
        cause one backend read and at most one ``fetch``. If ``fetch`` raises, every waiter
        gets that exception and nothing is stored. Cancelling one waiter does not cancel the
        shared fetch. ``fetch`` runs in a task created in the first caller's context, and a
        caller that joins a flight in progress gets its result whatever ``fetch`` and ``ttl``
        it passed itself (so the key must identify the request completely).

        ``ttl``: seconds to keep the value, None for no expiry, or 0 to only coalesce
        concurrent calls (nothing is read from or written to the cache). When the backend is
        down, ``fetch`` is called (still once per key at a time) and its value returned.
        """
        _check_ttl(ttl, zero_ok=True)
        self._check_open()
        full = self._key(key)
        flight = self._inflight.get(full)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(
                self._fill(full, fetch, ttl), name=f"aioposthog cache fill {key[:64]}"
            )
            # The task is owned here (not by a task group) so that no single caller's
            # cancellation reaches it; aclose() cancels whatever is still in flight.
            self._inflight[full] = flight
            flight.add_done_callback(functools.partial(self._landed, full))
        try:
            return cast(T, await asyncio.shield(flight))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.cancelled() and task is not None and not task.cancelling():
                raise UsageError(f"the cache was closed while fetching {key!r}") from None
            raise

    def _landed(self, full: str, flight: asyncio.Task[Any]) -> None:
        if self._inflight.get(full) is flight:
            del self._inflight[full]
        if not flight.cancelled():
            flight.exception()  # retrieved here even if every waiter was cancelled

    async def _fill(self, full: str, fetch: Callable[[], Awaitable[T]], ttl: float | None) -> T:
        if ttl == 0:
            return await fetch()
        entry = await self._read(full)
        if entry is not None:
            return cast(T, entry.value)
        value = await fetch()
        await self._write(full, value, ttl)
        return value

    # -- leader lock -------------------------------------------------------------------------

    async def try_acquire_leader(self, name: str, ttl: float) -> bool:
        """Become (or stay) the one process holding lock ``name`` for ``ttl`` seconds.

        Redis: ``SET lock owner NX PX ttl``, and if the lock exists and is ours, its expiry
        is extended; so the leader simply calls this every cycle. Memory: always True (the
        process is its own fleet). False when another owner holds it or Redis is down: a
        fleet that cannot coordinate must not turn into a thousand pollers.
        """
        ms = _lock_ms(ttl)
        self._check_open()
        if self._redis is None:
            self._held.add(name)
            return True
        redis, key, owner = self._redis, self._lock_key(name), self.owner

        async def acquire() -> bool:
            if await redis.set(key, owner, nx=True, px=ms):
                return True
            return bool(await self._renew(keys=[key], args=[owner, ms]))

        held = await self._guard("acquire leader lock", acquire) is True
        self._note_held(name, held)
        return held

    async def renew_leader(self, name: str, ttl: float) -> bool:
        """Extend lock ``name`` to ``ttl`` seconds from now if this owner still holds it.

        False means leadership is lost (expired, taken, or Redis down): stop leading.
        """
        ms = _lock_ms(ttl)
        self._check_open()
        if self._redis is None:
            return True
        key, owner = self._lock_key(name), self.owner
        done = await self._guard(
            "renew leader lock", lambda: self._renew(keys=[key], args=[owner, ms])
        )
        held = done is not _DOWN and bool(done)
        self._note_held(name, held)
        return held

    async def release_leader(self, name: str) -> bool:
        """Give lock ``name`` up if this owner holds it (compare-and-delete); True if it did."""
        self._check_open()
        self._held.discard(name)
        if self._redis is None:
            return True
        key, owner = self._lock_key(name), self.owner
        done = await self._guard(
            "release leader lock", lambda: self._release(keys=[key], args=[owner])
        )
        return done is not _DOWN and bool(done)

    def _note_held(self, name: str, held: bool) -> None:
        if held:
            self._held.add(name)
        else:
            self._held.discard(name)

    # -- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Release held leader locks, cancel in-flight fetches, close connections. Idempotent.

        Waiters of a cancelled fetch get a UsageError. Later calls raise UsageError.
        """
        if self._closed:
            return
        for name in sorted(self._held):
            await self.release_leader(name)  # a successor need not wait for the ttl
        self._closed = True
        flights = list(self._inflight.values())
        for flight in flights:
            flight.cancel()
        if flights:
            await asyncio.gather(*flights, return_exceptions=True)
        if self._redis is not None:
            try:
                # Not aiocache's close(): it calls the deprecated Redis.close().
                await self._redis.aclose()
            except self._errors as exc:
                logger.debug("closing cache %s: %s", self._display_url, self._describe(exc))

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("the flag cache is closed")

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise UsageError(f"cache keys are non-empty strings, not {key!r}")
        return self._data_prefix + key

    def _lock_key(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise UsageError(f"lock names are non-empty strings, not {name!r}")
        return f"{self._namespace}:lock:{name}"

    async def _read(self, full: str) -> CachedValue | None:
        raw = await self._guard("get", lambda: self._backend.get(full, loads_fn=_identity))
        if raw is _DOWN or raw is None:
            return None
        try:
            if len(raw) > _OFFLOAD_DECODE_BYTES:
                entry = await asyncio.to_thread(json.loads, raw)
            else:
                entry = json.loads(raw)
            value, stored_at = entry["value"], float(entry["stored_at"])
        except (TypeError, ValueError, KeyError) as exc:
            logger.warning(
                "cache entry %s is not an aioposthog %s entry (%s); treating it as a miss",
                full,
                _ENTRY_FORMAT,
                type(exc).__name__,
            )
            return None
        return CachedValue(value, max(0.0, self._clock() - stored_at))

    async def _write(self, full: str, value: Any, ttl: float | None) -> bool:
        try:
            raw = json.dumps({"value": value, "stored_at": self._clock()}, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the value for cache key {full!r} is not JSON: {exc}") from exc
        # Redis takes whole milliseconds: a tiny ttl must not round to an invalid 0.
        seconds = None if ttl is None else max(float(ttl), 0.001)
        done = await self._guard(
            "set", lambda: self._backend.set(full, raw, ttl=seconds, dumps_fn=_identity)
        )
        return done is not _DOWN and bool(done)

    async def _clear_redis(self) -> int:
        assert self._redis is not None
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self._data_prefix) + "*"
        removed, batch = 0, []
        async for name in self._redis.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= 500:
                removed += await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            removed += await self._redis.unlink(*batch)
        return removed

    async def _guard(
        self, op: str, call: Callable[[], Awaitable[T]], *, timeout: float | None = None
    ) -> T | Literal[_Down.DOWN]:
        """Run one backend command; the one place where backend failures are translated."""
        self._check_open()
        if self._down and time.monotonic() < self._down_until:
            logger.debug("cache %s skipped: backend %s unavailable", op, self._display_url)
            return _DOWN
        try:
            async with asyncio.timeout(timeout or self._timeout):
                result = await call()
        except self._errors as exc:
            self._last_error = self._describe(exc)
            log = logging.WARNING if not self._down or not self._retry_interval else logging.DEBUG
            logger.log(
                log,
                "cache %s failed on %s (%s); treating the cache as unavailable for %.1fs",
                op,
                self._display_url,
                self._last_error,
                self._retry_interval,
            )
            self._down = True
            self._down_until = time.monotonic() + self._retry_interval
            return _DOWN
        if self._down:
            self._down = False
            logger.info("cache backend %s is reachable again", self._display_url)
        return result

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]
