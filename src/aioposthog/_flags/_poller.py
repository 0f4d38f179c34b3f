"""The definitions poller: fetch ``/flags/definitions`` with ETag, compile once, keep serving.

Answers and what they do:

- 200: compile the payload into a new `FlagEngine` and swap it in (readers never see a half
  state: the engine is replaced by one assignment).
- 304: nothing changed; keep the engine.
- 404: an older PostHog; switch to ``/api/feature_flag/local_evaluation/`` and ask again.
- 401/403: the key is refused; stop polling, log why, keep serving what was loaded.
- 402: the project is over its flags quota; clear the definitions (flags go remote).
- 429, 5xx, network errors: keep the last definitions (stale-if-error) and back off,
  doubling the wait up to ten times the poll interval.

A fleet sharing a Redis cache (``cache_url``) polls PostHog once: the holder of a leader lock
fetches and writes the payload to the cache; the others read it from there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio

from .._config import PostHogConfig, RetryPolicy
from .._exceptions import APIError, AuthenticationError, PostHogError
from .._transport import Transport
from ._compile import compile_definitions
from ._engine import FlagEngine

if TYPE_CHECKING:
    from .._cache import FlagCache

__all__ = ["DefinitionsPoller"]

logger = logging.getLogger("aioposthog")

_PATH = "/flags/definitions"
_LEGACY_PATH = "/api/feature_flag/local_evaluation/"
_ONE_ATTEMPT = RetryPolicy(max_attempts=1)
_CACHE_KEY = "definitions"
_LEADER = "definitions-poller"


class DefinitionsPoller:
    """Keeps a `FlagEngine` up to date from PostHog's flag definitions."""

    def __init__(
        self,
        config: PostHogConfig,
        transport: Transport,
        *,
        cache: FlagCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._transport = transport
        self._cache = cache
        self._clock = clock
        self._path = _PATH
        self.engine: FlagEngine | None = None
        self.payload: Mapping[str, Any] | None = None
        self.etag: str | None = None
        self.fetched_at: float | None = None
        """Wall-clock time of the last answer that confirmed the definitions (200 or 304)."""
        self.stopped: str | None = None
        """Why polling stopped for good (the key was refused), if it did."""
        self.last_error: str | None = None
        self.polls = 0
        self._failures = 0
        self._loaded = anyio.Event()
        self._inflight: asyncio.Task[bool] | None = None

    @property
    def loaded(self) -> bool:
        """Whether definitions have been loaded (an empty set counts)."""
        return self.engine is not None

    def age(self) -> float | None:
        """Seconds since the definitions were last confirmed by PostHog."""
        return None if self.fetched_at is None else max(0.0, self._clock() - self.fetched_at)

    def install(
        self, payload: Mapping[str, Any], etag: str | None = None, *, age: float = 0.0
    ) -> None:
        """Compile ``payload`` and serve it (used by polls and by the shared cache)."""
        self.engine = FlagEngine(compile_definitions(payload))
        self.payload = payload
        self.etag = etag
        self.fetched_at = self._clock() - age
        self._loaded.set()

    async def sync_from_cache(self) -> bool:
        """Serve the definitions another process stored in the shared cache, if newer."""
        if self._cache is None:
            return False
        cached = await self._cache.get_with_age(_CACHE_KEY)
        if cached is None or not isinstance(cached.value, dict):
            return False
        payload, etag = cached.value.get("payload"), cached.value.get("etag")
        if not isinstance(payload, dict):
            return False
        if self.engine is None or etag != self.etag or etag is None:
            self.install(payload, etag if isinstance(etag, str) else None, age=cached.age)
        else:
            self.fetched_at = self._clock() - cached.age
        return True

    async def _store(self) -> None:
        if self._cache is not None and self.payload is not None:
            await self._cache.set(_CACHE_KEY, {"payload": self.payload, "etag": self.etag})

    async def cycle(self) -> bool:
        """One poll period: the fleet's leader asks PostHog; the others read the cache."""
        cache = self._cache
        if cache is not None and cache.shared:
            ttl = max(self._config.poll_interval * 3, 10.0)
            if not await cache.try_acquire_leader(_LEADER, ttl):
                return await self.sync_from_cache()
            if self.engine is None:
                # start from what the fleet has, so the first poll can be a cheap 304
                await self.sync_from_cache()
        return await self.refresh()

    def clear(self) -> None:
        """Forget the definitions (402: the project's flags quota is used up)."""
        self.engine = None
        self.payload = None
        self.etag = None

    async def wait_loaded(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a first load; True if loaded."""
        with anyio.move_on_after(timeout):
            await self._loaded.wait()
        return self.loaded

    async def refresh(self) -> bool:
        """Poll once (joining a poll already in progress); True when current (200 or 304)."""
        if self.stopped is not None:
            return False
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._poll())
        # shield: a cancelled caller must not cancel the poll others are waiting on
        return await asyncio.shield(self._inflight)

    async def _poll(self) -> bool:
        config = self._config
        token = quote(config.api_key or "", safe="")
        headers = {"Authorization": f"Bearer {config.personal_api_key}"}
        if self.etag is not None and self.engine is not None:
            headers["If-None-Match"] = self.etag

        async def build(attempt: int) -> tuple[Mapping[str, str], bytes]:
            return headers, b""

        self.polls += 1
        try:
            response = await self._transport.send(
                "GET",
                f"{self._path}?token={token}&send_cohorts",
                build,
                retry=_ONE_ATTEMPT,
                span_name="posthog.flags.definitions",
                timeout=config.feature_flags_request_timeout * 3,
                accept=(304,),
            )
        except APIError as error:
            return await self._failed(error)
        except PostHogError as error:
            self._note_failure(error)
            return False
        self._failures = 0
        self.last_error = None
        if response.status_code == 304:
            self.fetched_at = self._clock()
            if self._cache is not None and self._cache.shared:
                await self._store()  # tells the fleet the definitions are still current
            return True
        try:
            payload = response.json()
        except ValueError:
            self._note_failure(PostHogError("flag definitions are not valid JSON"))
            return False
        if not isinstance(payload, dict):
            self._note_failure(PostHogError("flag definitions are not a JSON object"))
            return False
        self.install(payload, response.headers.get("etag"))
        await self._store()
        return True

    async def _failed(self, error: APIError) -> bool:
        if error.status == 404 and self._path == _PATH:
            logger.info("aioposthog: /flags/definitions not found; using the legacy endpoint")
            self._path = _LEGACY_PATH
            return await self._poll()
        if isinstance(error, AuthenticationError):
            self.stopped = (
                f"the personal/secure key was refused ({error.status}); local evaluation is "
                "off until the client is restarted with a valid key"
            )
            self.last_error = error.message
            logger.error("aioposthog: flag definitions polling stopped: %s", self.stopped)
            return False
        if error.status == 402:
            logger.warning("aioposthog: feature flags quota exceeded (402): definitions cleared")
            self.clear()
            if self._cache is not None:
                await self._cache.delete(_CACHE_KEY)
            self.last_error = error.message
            return False
        self._note_failure(error)
        return False

    def _note_failure(self, error: PostHogError) -> None:
        self._failures += 1
        self.last_error = error.message
        logger.warning(
            "aioposthog: could not refresh flag definitions (%s); serving the last ones",
            error.message,
        )

    def next_delay(self) -> float:
        """The wait before the next poll: the interval, doubled per consecutive failure."""
        interval = self._config.poll_interval
        if not self._failures:
            return interval
        return float(min(interval * 2**self._failures, interval * 10))

    async def run(self) -> None:
        """Poll until cancelled or stopped (a refused key)."""
        try:
            while self.stopped is None:
                await self.cycle()
                await anyio.sleep(self.next_delay())
        finally:
            # A poll is shared by its callers through a shield; nobody waits for it now.
            if self._inflight is not None:
                self._inflight.cancel()

    async def aclose(self) -> None:
        """Cancel a poll in flight and wait for it (before the HTTP pool closes)."""
        task = self._inflight
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
