"""`AsyncPostHog`: the facade over the capture pipeline, its lifecycle, health and statistics."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
import httpx

from ._capture._batcher import Batcher
from ._capture._encode import EventSplicer
from ._capture._queue import EventQueue
from ._capture._spool import Spool
from ._capture_methods import CaptureMethods
from ._config import PostHogConfig
from ._exceptions import ConfigError, PostHogError, UsageError, translate_error
from ._flag_methods import FlagMethods
from ._platform import system_properties
from ._serialize import UnserializableValueError, clean_mapping
from ._state import ClientState
from ._stats import ClientStats, StatsRecorder
from ._telemetry import forget_stats, register_stats, retire_stats, tracer
from ._transport import Transport
from ._version import __version__

if TYPE_CHECKING:
    from ._cache import FlagCache
    from ._flags._service import FlagService

__all__ = ["AsyncPostHog", "ClientState", "HealthStatus"]

logger = logging.getLogger("aioposthog")

_DEFAULT_CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """What `AsyncPostHog.health()` found.

    Attributes:
        status: ``"ok"``, ``"degraded"`` (reachable, but deliveries are failing or the queue is
            nearly full), or ``"down"`` (PostHog could not be reached).
        latency_ms: round trip of the probe, when one was made.
        error: why it is not ``"ok"``.
        queue_depth: events waiting to be sent.
        last_success: when a batch was last delivered.
        flag_definitions_age: seconds since PostHog last confirmed the flag definitions in use
            for local evaluation (None when local evaluation is off or nothing is loaded yet).
        flag_definitions_error: why the last definitions refresh failed, if it did.
    """

    status: str
    latency_ms: float | None
    error: str | None
    queue_depth: int
    last_success: datetime | None
    flag_definitions_age: float | None = None
    flag_definitions_error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the status is ``"ok"``."""
        return self.status == "ok"


class AsyncPostHog(CaptureMethods, FlagMethods):
    """An asyncio PostHog client: capture with a bounded batching queue, typed errors, tracing.

    >>> import asyncio
    >>> from aioposthog.testing import LocalPostHog
    >>> async def main() -> int:
    ...     async with LocalPostHog() as server:
    ...         async with AsyncPostHog("phc_demo", host=server.url) as posthog:
    ...             await posthog.capture("signed up", distinct_id="u1")
    ...         return len(server.events)
    >>> asyncio.run(main())
    1

    Options are the fields of `PostHogConfig` (each also read from ``POSTHOG_<NAME>``); pass a
    ready ``config=`` instead to share one. ``transport`` is httpx's seam for tests.
    """

    def __init__(
        self,
        api_key: str | None = None,
        host: str | None = None,
        *,
        config: PostHogConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = PostHogConfig.from_env(api_key=api_key, host=host, **options)
        else:
            explicit = {"api_key": api_key, "host": host, **options}
            changes = {k: v for k, v in explicit.items() if v is not None}
            if changes:
                config = config.replace(**changes)
        self.config = config
        self._http_transport = transport
        self._init_runtime()
        _clients.add(self)
        self._v1 = config.capture_mode == "v1"
        self._before_send = config.before_send
        # The properties every event starts from; an event's own properties override them,
        # and $lib/$lib_version are set last so nothing overrides what the library is.
        try:
            self._base_properties = dict(
                clean_mapping(config.super_properties or {}, "super_properties")
            )
        except UnserializableValueError as exc:
            raise ConfigError(
                f"super_properties: the value at {exc.key_path!r} (a {exc.type_name}) cannot be "
                "serialised to JSON",
                setting="super_properties",
            ) from None
        self._lib_properties: dict[str, Any] = {
            "$lib": "aioposthog",
            "$lib_version": __version__,
            "$is_server": True,
        }
        if config.disable_geoip:
            self._lib_properties["$geoip_disable"] = True
        # capture() and capture_exception() also describe the runtime, as the official SDK does;
        # $set, alias and $groupidentify do not.
        self._capture_properties = {**system_properties(), **self._lib_properties}
        # capture()'s fast path appends these, encoded once (no before_send, enabled).
        constant = {**self._base_properties, **self._capture_properties}
        self._splicer: EventSplicer | None = None
        if not config.disabled and self._before_send is None:
            self._splicer = EventSplicer.for_v1(constant) if self._v1 else EventSplicer(constant)

    def _init_runtime(self) -> None:
        """The state of one life of the client: unopened, with nothing queued or running."""
        self._state = ClientState.UNOPENED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stats = StatsRecorder()
        register_stats(self._stats)
        self._queue: EventQueue | None = None
        self._batcher: Batcher | None = None
        self._transport: Transport | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._flags: FlagService | None = None
        self._cache: FlagCache | None = None
        self._start_lock: asyncio.Lock | None = None
        self._stop = asyncio.Event()
        self._closed: asyncio.Event | None = None

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's loop, queue, connections and tasks.

        The parent still owns (and sends) the events it had queued, so the child starts empty
        rather than sending them twice; its first use opens the client on the child's loop.
        The inherited sockets are dropped, not closed: they are the parent's connections.
        A closed client stays closed.
        """
        if self._state is ClientState.UNOPENED or self._state is ClientState.CLOSED:
            return
        forget_stats(self._stats)  # the parent's counts, which the parent reports
        self._init_runtime()

    def __repr__(self) -> str:
        return f"<AsyncPostHog host={self.config.host!r} state={self._state.value}>"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """The lifecycle state."""
        return self._state

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Open the client: bind it to this event loop and start the background sender.

        Safe to call more than once; capture() also starts the client on first use.
        """
        if self._state is ClientState.OPENED:
            self._check_loop()
            return
        if self._state is not ClientState.UNOPENED:
            raise UsageError("This AsyncPostHog client is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise UsageError(_WRONG_LOOP)
        self._loop = loop
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._state is not ClientState.UNOPENED:
                return
            if self.config.disabled:
                self._state = ClientState.OPENED
                return
            await self._open()
            self._state = ClientState.OPENED

    async def _open(self) -> None:
        config = self.config
        self._transport = Transport(config, transport=self._http_transport)
        if config.personal_api_key:
            self._flag_service_now()  # its poller starts with the task group
        if config.send:
            self._queue = queue = EventQueue(
                max_events=config.max_queue_size,
                max_bytes=config.max_queue_bytes,
                overflow=config.overflow,
                flush_at=config.flush_at,
                stats=self._stats,
            )
            self._stats.queue_depth = queue.__len__
            self._stats.queue_bytes = lambda: queue.nbytes
            spool = Spool(config.spool_dir, config.capture_mode) if config.spool_dir else None
            self._batcher = Batcher(config, queue, self._transport, self._stats, spool)
            if spool is not None:
                self._restore_spool(spool, queue)
        started = asyncio.Event()
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(started), name="aioposthog-supervisor"
        )
        await started.wait()

    def _restore_spool(self, spool: Spool, queue: EventQueue) -> None:
        for path in spool.files():
            try:
                items = spool.read(path)
            except OSError as exc:
                logger.error("aioposthog: could not read spool file %s (%s)", path, exc)
                continue
            for item in items:
                queue.offer(item)
            path.unlink(missing_ok=True)
            logger.info("aioposthog: restored %d spooled events from %s", len(items), path)

    async def _supervise(self, started: asyncio.Event) -> None:
        # The one task that owns the task group, so start() and aclose() may be called from
        # different tasks (a web framework's startup and shutdown hooks often are).
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            if self._batcher is not None:
                task_group.start_soon(self._batcher.run, task_group)
            if self._flags is not None and self._flags.poller is not None:
                task_group.start_soon(self._flags.poller.run)
            started.set()
            await self._stop.wait()
            self._task_group = None
            task_group.cancel_scope.cancel()

    def _flag_service_now(self) -> FlagService:
        """The flags layer, built on first use: a capture-only app never imports aiocache."""
        if self._flags is None:
            from ._cache import FlagCache, process_owner_id
            from ._flags._service import FlagService

            config = self.config
            assert self._transport is not None
            # Each client is its own member of the fleet, even beside others in one process.
            owner = f"{process_owner_id()}:{id(self):x}"
            self._cache = FlagCache(config.cache_url, token=config.api_key or "", owner=owner)
            self._flags = FlagService(
                config, self._transport, self._report_flag_call, self._spawn, self._cache
            )
        return self._flags

    def _spawn(self, function: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``function(*args)`` in the client's task group (dropped once closing)."""
        if self._task_group is not None and self._state is ClientState.OPENED:
            self._task_group.start_soon(function, *args)

    async def _report_flag_call(
        self,
        distinct_id: str,
        properties: dict[str, Any],
        groups: Mapping[str, Any] | None,
        disable_geoip: bool | None,
    ) -> None:
        if self._state is not ClientState.OPENED:
            return
        try:
            await self._capture(
                "$feature_flag_called",
                distinct_id,
                properties,
                groups,
                None,
                None,
                disable_geoip,
                self._capture_properties,
                None,
            )
        except PostHogError as exc:
            logger.warning("aioposthog: could not capture $feature_flag_called (%s)", exc)

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop intake, deliver what is queued within ``timeout`` seconds, and close.

        The deadline (10 s by default) covers the whole drain and is shielded from
        cancellation, so a cancelled shutdown still delivers or accounts for every event:
        what is left at the deadline goes to the spool (``spool_dir``) or is counted as
        dropped with reason ``shutdown``. Safe to call twice.
        """
        if self._state is ClientState.CLOSED:
            return
        if self._state is ClientState.UNOPENED:
            self._state = ClientState.CLOSED
            return
        self._check_loop()
        if self._state is ClientState.CLOSING:
            await self._closed_event().wait()
            return
        # One turn of the loop first: $feature_flag_called captures scheduled by snapshot
        # reads get to enqueue before intake stops.
        await anyio.lowlevel.checkpoint()
        if self._state is not ClientState.OPENED:
            await self._closed_event().wait()
            return
        self._state = ClientState.CLOSING
        deadline = _DEFAULT_CLOSE_TIMEOUT if timeout is None else timeout
        with anyio.CancelScope(shield=True):
            try:
                await self._drain(deadline)
            finally:
                self._state = ClientState.CLOSED
                retire_stats(self._stats)
                self._closed_event().set()

    def _closed_event(self) -> asyncio.Event:
        if self._closed is None:
            self._closed = asyncio.Event()
        return self._closed

    async def _drain(self, deadline: float) -> None:
        batcher, queue = self._batcher, self._queue
        with tracer.start_as_current_span("posthog.shutdown") as span:
            span.set_attribute("posthog.queue.depth", len(queue) if queue is not None else 0)
            if batcher is not None:
                batcher.stop()
                with anyio.move_on_after(deadline):
                    await batcher.flush()
            self._stop.set()
            if self._supervisor is not None:
                await asyncio.gather(self._supervisor, return_exceptions=True)
            left = queue.take_all() if queue is not None else []
            if left:
                spool = self.config.spool_dir
                if spool is not None:
                    try:
                        self._stats.spooled += Spool(spool, self.config.capture_mode).write(left)
                        left = []
                    except OSError as exc:
                        logger.error("aioposthog: could not write the spool (%s)", exc)
                if left:
                    self._stats.drop("shutdown", len(left))
                    logger.warning(
                        "aioposthog: %d events were still queued at shutdown and are lost "
                        "(set spool_dir to keep them)",
                        len(left),
                    )
            span.set_attribute("posthog.events.lost", self._stats.dropped["shutdown"])
            if self._flags is not None and self._flags.poller is not None:
                await self._flags.poller.aclose()
            if self._cache is not None:
                await self._cache.aclose()
            if self._transport is not None:
                await self._transport.aclose()

    def __del__(self) -> None:
        queue = getattr(self, "_queue", None)
        if (
            queue is not None
            and len(queue)
            and getattr(self, "_state", None) is not (ClientState.CLOSED)
        ):
            warnings.warn(
                f"AsyncPostHog was garbage-collected with {len(queue)} unsent events; "
                "use `async with AsyncPostHog(...)` or `await posthog.aclose()`",
                ResourceWarning,
                stacklevel=1,
            )

    def _check_loop(self) -> None:
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise UsageError(_WRONG_LOOP)

    async def _ensure_open(self) -> None:
        if self._state is ClientState.UNOPENED:
            await self.start()
        elif self._state is not ClientState.OPENED:
            raise UsageError("This AsyncPostHog client is closed; events can no longer be sent")
        else:
            self._check_loop()

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """Send everything queued now; return True once it is all delivered or given up.

        Returns False if ``timeout`` seconds pass first; the events keep going in the
        background. Cancelling the caller stops the wait, never the sending.
        """
        if self._state is not ClientState.OPENED:
            if self._state is ClientState.UNOPENED:
                return True
            raise UsageError("This AsyncPostHog client is closed")
        self._check_loop()
        batcher = self._batcher
        if batcher is None:
            return True
        await anyio.lowlevel.checkpoint()  # scheduled $feature_flag_called captures enqueue first
        with tracer.start_as_current_span("posthog.flush") as span:
            span.set_attribute("posthog.queue.depth", len(self._queue or ()))
            with anyio.move_on_after(timeout) as scope:
                await batcher.flush()
            span.set_attribute("posthog.flush.complete", not scope.cancelled_caught)
            return not scope.cancelled_caught

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the client's counters (`ClientStats`)."""
        return self._stats.snapshot()

    async def health(self, *, probe: bool = True, timeout: float = 3.0) -> HealthStatus:
        """Check the client and, with ``probe``, that PostHog's host answers.

        The probe is a ``GET /_health`` whose answer is ignored unless it is a 5xx or
        nothing: it sends no event and costs nothing in PostHog's billing.
        """
        stats = self._stats
        queue_depth = stats.queue_depth()
        latency: float | None = None
        error: str | None = None
        status = "ok"
        if probe and not self.config.disabled:
            try:
                latency = await self._probe(timeout)
            except PostHogError as exc:
                status, error = "down", exc.message
        if status == "ok":
            recent_failure = stats.last_error is not None and (
                stats.last_success is None or (stats.failed > 0 and stats.sent == 0)
            )
            if queue_depth >= 0.9 * self.config.max_queue_size:
                status, error = "degraded", "the capture queue is over 90% full"
            elif recent_failure:
                status, error = "degraded", stats.last_error
        poller = self._flags.poller if self._flags is not None else None
        return HealthStatus(
            status=status,
            latency_ms=latency,
            error=error,
            queue_depth=queue_depth,
            last_success=stats.last_success,
            flag_definitions_age=poller.age() if poller is not None else None,
            flag_definitions_error=poller.last_error if poller is not None else None,
        )

    async def _probe(self, timeout: float) -> float:
        transport = self._transport
        owned = transport is None
        if transport is None:
            transport = Transport(self.config, transport=self._http_transport)
        started = time.perf_counter()
        try:
            response = await transport.http.get(self.config.host + "/_health", timeout=timeout)
        except (httpx.HTTPError, OSError) as exc:
            raise translate_error(exc) from None
        finally:
            if owned:
                await transport.aclose()
        if response.status_code >= 500:
            raise translate_error(response)
        return (time.perf_counter() - started) * 1000


_WRONG_LOOP = (
    "This AsyncPostHog client is bound to the event loop it started on and was used from "
    "another one; create one client per event loop (e.g. per thread or per worker)"
)

# Every client, so that a forked child can reset the ones it inherited (see
# `AsyncPostHog._reset_after_fork`): a pre-fork server (gunicorn --preload, multiprocessing)
# may open a client in the parent before forking its workers.
_clients: weakref.WeakSet[AsyncPostHog] = weakref.WeakSet()


def _reset_clients_after_fork() -> None:
    for client in list(_clients):
        client._reset_after_fork()


os.register_at_fork(after_in_child=_reset_clients_after_fork)
