"""The clients under test, behind one small interface, each configured as its docs recommend.

- ``aioposthog``: `aioposthog.AsyncPostHog`.
- ``official``: the official SDK's threaded `posthog.Posthog`.
- ``official_async``: the official SDK's `posthog.AsyncPosthog` (asyncio, capture-only).

A worker builds exactly one of them and imports only that one's package, so a client's
import cost and memory never show up in another's figures.

Each adapter has its own capture loop rather than a shared ``await adapter.capture(...)``: a
wrapper call per event would add the same fixed cost to every client and hide the ratios.
The loops are otherwise identical: the same event name, 10 properties built fresh per event,
one of 1,000 distinct ids, and (when ``yield_every`` is set) ``await asyncio.sleep(0)`` after
every ``yield_every`` events, which is what a request handler doing other I/O gives its loop.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from _common import API_KEY, EVENT_NAME, USERS, properties

__all__ = ["CLIENTS", "BenchClient", "ClientOptions", "Produced", "make_client"]

QueueMode = Literal["throughput", "default", "holds_burst"]

# The official clients' throughput settings. Their docs give no throughput recipe beyond the
# constructor's options (flush_at, thread, max_queue_size, gzip), so these were chosen by
# sweeping thread in {1, 2, 4} and flush_at in {100, 1000}, gzip on and off, on this machine
# (README.md, "Fairness"): 1,000-event batches and two consumers (threads for Posthog, tasks
# for AsyncPosthog) were at or near the best of each; more consumers did not help either.
OFFICIAL_FLUSH_AT = 1000
OFFICIAL_THREADS = 2
OFFICIAL_ASYNC_FLUSH_AT = 1000
OFFICIAL_ASYNC_WORKERS = 2
# The official SDKs' default queue length (both clients), used by the "default queue" burst.
OFFICIAL_DEFAULT_QUEUE = 10_000


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a scenario wants the client configured.

    ``queue``: ``throughput`` is the recommended configuration for moving many events (a
    queue that loses nothing: backpressure for aioposthog, a queue as long as the run for the
    official clients, which have no backpressure); ``default`` keeps each client's default
    queue length and overflow policy; ``holds_burst`` is ``throughput`` for the burst (the
    official queues hold all ``events``; aioposthog blocks on its default-length queue).
    """

    url: str
    events: int
    send: bool = True
    gzip: bool = True
    queue: QueueMode = "throughput"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Constructor arguments that replace the chosen ones (``--set 'config={...}'``): how the
    official clients' settings were swept; the runner never sets it."""


@dataclass(slots=True)
class Produced:
    """What a capture loop did: events attempted, refused (capture returned None), and time."""

    attempted: int = 0
    refused: int = 0
    call_seconds: float = 0.0


class BenchClient(ABC):
    """One client under test."""

    name: ClassVar[str]
    library: ClassVar[str]

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.config: dict[str, Any] = {}
        """The constructor arguments actually used (recorded with each result)."""

    @abstractmethod
    async def start(self) -> None:
        """Construct and open the client."""

    @abstractmethod
    async def produce(
        self, start: int, stop: int, yield_every: int, deadline: float | None = None
    ) -> Produced:
        """Capture events ``start .. stop - 1`` (stopping early past ``deadline``)."""

    @abstractmethod
    async def flush(self, timeout: float) -> None:
        """Deliver what is queued, waiting at most ``timeout`` seconds."""

    def stats(self) -> dict[str, Any]:
        """The client's own counters, where it has any."""
        return {}

    @staticmethod
    def version(module: str) -> str:
        """The installed version of ``module``'s distribution."""
        from importlib.metadata import version

        return version(module)


class AioPostHogClient(BenchClient):
    """aioposthog: `flush_at` 1,000 (its default), 4 requests in flight (its default)."""

    name = "aioposthog"
    library = "aioposthog"

    async def start(self) -> None:
        from aioposthog import AsyncPostHog

        o = self.options
        config: dict[str, Any] = {
            "host": o.url,
            "send": o.send,
            "compression": "gzip" if o.gzip else "none",
            "flush_at": 1000,
        }
        if o.queue != "default":
            # Backpressure: capture() waits for room instead of dropping (docs/capture.md:
            # "block (for imports and workers) ... nothing is lost"). The queue keeps its
            # default length: with backpressure it does not need to hold the whole run.
            config["overflow"] = "block"
        config.update(o.overrides)
        self.config = config
        self.client = AsyncPostHog(API_KEY, **config)
        await self.client.start()

    async def produce(
        self, start: int, stop: int, yield_every: int, deadline: float | None = None
    ) -> Produced:
        capture = self.client.capture
        users = USERS
        perf = time.perf_counter
        out = Produced()
        step = _step(start, stop, yield_every, deadline)
        for chunk in range(start, stop, step):
            end = min(stop, chunk + step)
            began = perf()
            for i in range(chunk, end):
                if await capture(EVENT_NAME, users[i % 1000], properties(i)) is None:
                    out.refused += 1
            out.call_seconds += perf() - began
            out.attempted += end - chunk
            if yield_every:
                await asyncio.sleep(0)
            if deadline is not None and perf() >= deadline:
                break
        return out

    async def flush(self, timeout: float) -> None:
        await self.client.flush(timeout=timeout)

    def stats(self) -> dict[str, Any]:
        s = self.client.stats
        return {
            "captured": s.captured,
            "sent": s.sent,
            "dropped": {k: v for k, v in s.dropped.items() if v},
            "retried": s.retried,
            "batches_sent": s.batches_sent,
            "queue_depth": s.queue_depth,
        }


class OfficialClient(BenchClient):
    """The official threaded `Posthog`: consumer threads post batches with `requests`."""

    name = "official"
    library = "posthog"

    def _queue_size(self) -> int:
        if self.options.queue == "default":
            return OFFICIAL_DEFAULT_QUEUE
        # No backpressure: a queue shorter than the run would drop events.
        return max(OFFICIAL_DEFAULT_QUEUE, self.options.events + 1000)

    def _common_config(self) -> dict[str, Any]:
        o = self.options
        return {
            "host": o.url,
            "send": o.send,
            "gzip": o.gzip,
            "max_queue_size": self._queue_size(),
            # Nothing may phone home: no personal/secret key (no definitions poller, no
            # remote config), no exception autocapture, no metrics or traces export.
            "enable_exception_autocapture": False,
            "enable_local_evaluation": False,
        }

    async def start(self) -> None:
        posthog: Any = importlib.import_module("posthog")
        config = self._common_config()
        config["flush_at"] = OFFICIAL_FLUSH_AT
        config["thread"] = OFFICIAL_THREADS
        config.update(self.options.overrides)
        self.config = config
        self.client = posthog.Posthog(API_KEY, **config)

    async def produce(
        self, start: int, stop: int, yield_every: int, deadline: float | None = None
    ) -> Produced:
        return await _produce_sync(self.client.capture, start, stop, yield_every, deadline)

    async def flush(self, timeout: float) -> None:
        # flush() blocks its thread until the queue drains: off the loop, so a loop-lag
        # monitor (or anything else on the loop) keeps running, as it would in an app.
        await asyncio.to_thread(self.client.flush, timeout)


class OfficialAsyncClient(OfficialClient):
    """The official `AsyncPosthog`: asyncio consumer tasks post batches with httpx."""

    name = "official_async"
    library = "posthog"

    async def start(self) -> None:
        posthog: Any = importlib.import_module("posthog")
        config = self._common_config()
        # AsyncPosthog has neither local evaluation nor exception autocapture to turn off.
        del config["enable_exception_autocapture"], config["enable_local_evaluation"]
        config["flush_at"] = OFFICIAL_ASYNC_FLUSH_AT
        config["thread"] = OFFICIAL_ASYNC_WORKERS  # the number of consumer tasks
        config.update(self.options.overrides)
        self.config = config
        self.client = posthog.AsyncPosthog(API_KEY, **config)
        await self.client.__aenter__()  # binds the loop and starts the consumer tasks

    async def flush(self, timeout: float) -> None:
        await self.client.flush(timeout_seconds=timeout)


async def _produce_sync(
    capture: Any, start: int, stop: int, yield_every: int, deadline: float | None
) -> Produced:
    """The capture loop of the official clients, whose capture() is a plain call."""
    users = USERS
    perf = time.perf_counter
    out = Produced()
    step = _step(start, stop, yield_every, deadline)
    for chunk in range(start, stop, step):
        end = min(stop, chunk + step)
        began = perf()
        for i in range(chunk, end):
            if capture(EVENT_NAME, distinct_id=users[i % 1000], properties=properties(i)) is None:
                out.refused += 1
        out.call_seconds += perf() - began
        out.attempted += end - chunk
        if yield_every:
            await asyncio.sleep(0)
        if deadline is not None and perf() >= deadline:
            break
    return out


def _step(start: int, stop: int, yield_every: int, deadline: float | None) -> int:
    """Events per timed chunk: one yield's worth, else 1,000 (to watch a deadline), else all."""
    if yield_every:
        return yield_every
    return 1000 if deadline is not None else max(1, stop - start)


CLIENTS: dict[str, type[BenchClient]] = {
    cls.name: cls for cls in (AioPostHogClient, OfficialClient, OfficialAsyncClient)
}


def make_client(name: str, options: ClientOptions) -> BenchClient:
    """The adapter called ``name``, not yet started."""
    return CLIENTS[name](options)
