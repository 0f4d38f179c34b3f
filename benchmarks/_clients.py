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

Feature flags (``start_flags``, ``get_feature_flags``, ``get_all_flags``): the same rule, one
loop per adapter over a prepared plan of calls, each client through its own API for the same
question (see README.md, "Feature flags"). ``official_async`` has no local evaluation.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from _common import API_KEY, EVENT_NAME, USERS, properties

__all__ = [
    "CLIENTS",
    "BenchClient",
    "ClientOptions",
    "FlagCall",
    "FlagOptions",
    "FlagRun",
    "FlagUser",
    "NotApplicableError",
    "Produced",
    "make_client",
]

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
# The key that fetches flag definitions (a feature flags secure key; the sink takes any phs_).
FLAG_SECURE_KEY = "phs_benchmark_local_only"
# Flag calls per timed chunk: the deadline is checked, and the loop yielded to, between chunks.
FLAG_CHUNK = 200

FlagUser = tuple[str, dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]
"""(distinct id, person properties, groups, group properties): one user of a flags scenario."""
FlagCall = tuple[str, str, dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]
"""(flag key, distinct id, person properties, groups, group properties): one flag call."""


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


@dataclass(frozen=True, slots=True)
class FlagOptions:
    """How a flags scenario wants the client configured.

    ``local``: definitions are fetched with a secure key before the measurement and every
    call passes ``only_evaluate_locally=True``; otherwise no key is given and every call is a
    remote ``/flags`` evaluation. ``cache_ttl``: aioposthog's ``flag_cache_ttl`` (the official
    clients have no answer cache to turn on).
    """

    url: str
    local: bool
    cache_ttl: float | None = None


@dataclass(slots=True)
class FlagRun:
    """What a flags loop did: calls made, values that were None (undecided), values that were
    on (True or a variant), and, for get_all_flags, how many flag values came back."""

    calls: int = 0
    undecided: int = 0
    enabled: int = 0
    flags: int = 0


class NotApplicableError(RuntimeError):
    """The client cannot do what the scenario asks (AsyncPosthog has no local evaluation)."""


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

    # Feature flags. Not abstract: a client without local evaluation raises instead.

    async def start_flags(self, options: FlagOptions) -> None:
        """Construct and open the client for a flags scenario (definitions loaded if local)."""
        raise NotApplicableError(f"{self.name} has no feature-flag adapter")

    async def flag_value(self, call: FlagCall) -> Any:
        """One flag call, untimed: the value (the fixture check and the warm-up use it)."""
        raise NotApplicableError(f"{self.name} has no feature-flag adapter")

    async def all_flags_value(self, user: FlagUser) -> Any:
        """One get_all_flags call, untimed: the ``{key: value}`` dict."""
        raise NotApplicableError(f"{self.name} has no feature-flag adapter")

    async def get_feature_flags(
        self, plan: Sequence[FlagCall], start: int, stop: int, deadline: float | None
    ) -> FlagRun:
        """Calls ``start .. stop - 1`` of ``plan`` (wrapping around), stopping past
        ``deadline``."""
        raise NotApplicableError(f"{self.name} has no feature-flag adapter")

    async def get_all_flags(
        self, users: Sequence[FlagUser], start: int, stop: int, deadline: float | None
    ) -> FlagRun:
        """get_all_flags for users ``start .. stop - 1`` (wrapping around), stopping past
        ``deadline``."""
        raise NotApplicableError(f"{self.name} has no feature-flag adapter")

    @staticmethod
    def version(module: str) -> str:
        """The installed version of ``module``'s distribution."""
        from importlib.metadata import version

        return version(module)


class AioPostHogClient(BenchClient):
    """aioposthog with its defaults: 4 requests in flight; `flush_at` 1,000, or 5,000 with
    ``overflow="block"`` (its throughput setting, docs/configuration.md)."""

    name = "aioposthog"
    library = "aioposthog"

    async def start(self) -> None:
        from aioposthog import AsyncPostHog

        o = self.options
        config: dict[str, Any] = {
            "host": o.url,
            "send": o.send,
            "compression": "gzip" if o.gzip else "none",
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

    async def start_flags(self, options: FlagOptions) -> None:
        from aioposthog import AsyncPostHog

        self.flag_options = options
        config: dict[str, Any] = {"host": options.url, "send": False}
        if options.local:
            config["personal_api_key"] = FLAG_SECURE_KEY
        if options.cache_ttl:
            config["flag_cache_ttl"] = options.cache_ttl
        self.config = config
        self.client = AsyncPostHog(API_KEY, **config)
        await self.client.start()
        if options.local and not await self.client.load_feature_flags():
            raise RuntimeError("aioposthog did not load the flag definitions")

    async def flag_value(self, call: FlagCall) -> Any:
        key, distinct_id, person, groups, group_properties = call
        return await self.client.get_feature_flag(
            key,
            distinct_id,
            groups=groups,
            person_properties=person,
            group_properties=group_properties,
            only_evaluate_locally=self.flag_options.local,
            send_feature_flag_events=False,
        )

    async def all_flags_value(self, user: FlagUser) -> Any:
        distinct_id, person, groups, group_properties = user
        return await self.client.get_all_flags(
            distinct_id,
            groups=groups,
            person_properties=person,
            group_properties=group_properties,
            only_evaluate_locally=self.flag_options.local,
        )

    async def get_feature_flags(
        self, plan: Sequence[FlagCall], start: int, stop: int, deadline: float | None
    ) -> FlagRun:
        get = self.client.get_feature_flag
        local = self.flag_options.local
        perf = time.perf_counter
        out = FlagRun()
        undecided = enabled = 0
        for a, b in _spans(len(plan), start, stop):
            for key, distinct_id, person, groups, group_properties in plan[a:b]:
                value = await get(
                    key,
                    distinct_id,
                    groups=groups,
                    person_properties=person,
                    group_properties=group_properties,
                    only_evaluate_locally=local,
                    send_feature_flag_events=False,
                )
                if value is None:
                    undecided += 1
                elif value is not False:
                    enabled += 1
            out.calls += b - a
            await asyncio.sleep(0)
            if deadline is not None and perf() >= deadline:
                break
        out.undecided, out.enabled = undecided, enabled
        return out

    async def get_all_flags(
        self, users: Sequence[FlagUser], start: int, stop: int, deadline: float | None
    ) -> FlagRun:
        get_all = self.client.get_all_flags
        local = self.flag_options.local
        perf = time.perf_counter
        out = FlagRun()
        undecided = enabled = flags = 0
        for a, b in _spans(len(users), start, stop):
            for distinct_id, person, groups, group_properties in users[a:b]:
                values = await get_all(
                    distinct_id,
                    groups=groups,
                    person_properties=person,
                    group_properties=group_properties,
                    only_evaluate_locally=local,
                )
                flags += len(values)
                for value in values.values():
                    if value is None:
                        undecided += 1
                    elif value is not False:
                        enabled += 1
            out.calls += b - a
            await asyncio.sleep(0)
            if deadline is not None and perf() >= deadline:
                break
        out.undecided, out.enabled, out.flags = undecided, enabled, flags
        return out


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

    async def start_flags(self, options: FlagOptions) -> None:
        posthog: Any = importlib.import_module("posthog")
        self.flag_options = options
        config: dict[str, Any] = {
            "host": options.url,
            "send": False,
            "enable_exception_autocapture": False,
        }
        if options.local:
            # `secret_key`: 7.91.1's name for the key (`personal_api_key` is its deprecated
            # alias). The poller it starts refreshes every 30 s, longer than a run.
            config["secret_key"] = FLAG_SECURE_KEY
        else:
            config["enable_local_evaluation"] = False
        self.config = config
        self.client = posthog.Posthog(API_KEY, **config)
        if options.local:
            # Blocking (requests), before the clock starts; the sink is another process.
            self.client.load_feature_flags()
            if not self.client.feature_flags:
                raise RuntimeError("the official client did not load the flag definitions")

    async def flag_value(self, call: FlagCall) -> Any:
        key, distinct_id, person, groups, group_properties = call
        result = self.client.get_feature_flag_result(
            key,
            distinct_id,
            groups=groups,
            person_properties=person,
            group_properties=group_properties,
            only_evaluate_locally=self.flag_options.local,
            send_feature_flag_events=False,
        )
        return None if result is None else result.get_value()

    async def all_flags_value(self, user: FlagUser) -> Any:
        distinct_id, person, groups, group_properties = user
        return self.client.get_all_flags(
            distinct_id,
            groups=groups,
            person_properties=person,
            group_properties=group_properties,
            only_evaluate_locally=self.flag_options.local,
        )

    async def get_feature_flags(
        self, plan: Sequence[FlagCall], start: int, stop: int, deadline: float | None
    ) -> FlagRun:
        # get_feature_flag_result, not get_feature_flag: the same evaluation without the
        # DeprecationWarning that 7.91.1's get_feature_flag issues on every call. A blocking
        # call made on the loop, as an async app calling it directly would (its fastest way).
        get = self.client.get_feature_flag_result
        local = self.flag_options.local
        perf = time.perf_counter
        out = FlagRun()
        undecided = enabled = 0
        for a, b in _spans(len(plan), start, stop):
            for key, distinct_id, person, groups, group_properties in plan[a:b]:
                result = get(
                    key,
                    distinct_id,
                    groups=groups,
                    person_properties=person,
                    group_properties=group_properties,
                    only_evaluate_locally=local,
                    send_feature_flag_events=False,
                )
                value = None if result is None else result.get_value()
                if value is None:
                    undecided += 1
                elif value is not False:
                    enabled += 1
            out.calls += b - a
            await asyncio.sleep(0)
            if deadline is not None and perf() >= deadline:
                break
        out.undecided, out.enabled = undecided, enabled
        return out

    async def get_all_flags(
        self, users: Sequence[FlagUser], start: int, stop: int, deadline: float | None
    ) -> FlagRun:
        get_all = self.client.get_all_flags
        local = self.flag_options.local
        perf = time.perf_counter
        out = FlagRun()
        undecided = enabled = flags = 0
        for a, b in _spans(len(users), start, stop):
            for distinct_id, person, groups, group_properties in users[a:b]:
                values = get_all(
                    distinct_id,
                    groups=groups,
                    person_properties=person,
                    group_properties=group_properties,
                    only_evaluate_locally=local,
                )
                if values is None:
                    continue
                flags += len(values)
                for value in values.values():
                    if value is None:
                        undecided += 1
                    elif value is not False:
                        enabled += 1
            out.calls += b - a
            await asyncio.sleep(0)
            if deadline is not None and perf() >= deadline:
                break
        out.undecided, out.enabled, out.flags = undecided, enabled, flags
        return out


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

    async def start_flags(self, options: FlagOptions) -> None:
        if options.local:
            # 7.91.1's AsyncPosthog has no definitions poller and no local engine: its
            # evaluate_flags always posts to /flags ("This client does not evaluate flags
            # locally"). Measuring remote calls as local evaluations would be meaningless.
            raise NotApplicableError("AsyncPosthog has no local flag evaluation")
        posthog: Any = importlib.import_module("posthog")
        self.flag_options = options
        self.config = {"host": options.url, "send": False}
        self.client = posthog.AsyncPosthog(API_KEY, **self.config)
        await self.client.__aenter__()

    async def flag_value(self, call: FlagCall) -> Any:
        key, distinct_id, person, groups, group_properties = call
        flags = await self.client.evaluate_flags(
            distinct_id,
            groups=groups,
            person_properties=person,
            group_properties=group_properties,
            flag_keys=[key],
        )
        return flags.get_flag(key, send_feature_flag_events=False)

    async def get_feature_flags(
        self, plan: Sequence[FlagCall], start: int, stop: int, deadline: float | None
    ) -> FlagRun:
        # AsyncPosthog's only flag API is evaluate_flags (a remote snapshot): one flag per
        # call (`flag_keys=[key]`, as the other clients' single-flag calls ask /flags for),
        # read without a $feature_flag_called event.
        evaluate = self.client.evaluate_flags
        perf = time.perf_counter
        out = FlagRun()
        undecided = enabled = 0
        for a, b in _spans(len(plan), start, stop):
            for key, distinct_id, person, groups, group_properties in plan[a:b]:
                flags = await evaluate(
                    distinct_id,
                    groups=groups,
                    person_properties=person,
                    group_properties=group_properties,
                    flag_keys=[key],
                )
                value = flags.get_flag(key, send_feature_flag_events=False)
                if value is None:
                    undecided += 1
                elif value is not False:
                    enabled += 1
            out.calls += b - a
            await asyncio.sleep(0)
            if deadline is not None and perf() >= deadline:
                break
        out.undecided, out.enabled = undecided, enabled
        return out


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


def _spans(length: int, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """Slices ``[a, b)`` of a plan of ``length`` calls covering calls ``start .. stop - 1``
    (call ``j`` is ``plan[j % length]``), at most `FLAG_CHUNK` calls each."""
    j = start
    while j < stop:
        a = j % length
        b = min(length, a + FLAG_CHUNK, a + (stop - j))
        yield a, b
        j += b - a


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
