"""`AsyncPostHog`: the facade over the capture pipeline, its lifecycle, health and statistics."""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import time
import uuid as uuid_module
import warnings
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from inspect import isawaitable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
import httpx

from . import _context
from ._cache import FlagCache, process_owner_id
from ._capture._batcher import Batcher
from ._capture._encode import to_v1_event
from ._capture._queue import EventQueue
from ._capture._spool import Spool
from ._config import MAX_EVENT_BYTES, PostHogConfig
from ._exceptions import EventValidationError, PostHogError, UsageError, translate_error
from ._flag_methods import FlagMethods
from ._flags._service import FlagService
from ._flags._snapshot import FeatureFlagEvaluations
from ._platform import system_properties
from ._serialize import UnserializableValueError, encode_event, now_iso, to_utc_iso, uuid7
from ._stats import ClientStats, StatsRecorder
from ._telemetry import register_stats, retire_stats, tracer
from ._transport import Transport
from ._version import __version__

__all__ = ["AsyncPostHog", "ClientState", "HealthStatus"]

logger = logging.getLogger("aioposthog")

_DEFAULT_CLOSE_TIMEOUT = 10.0


class ClientState(enum.Enum):
    """Where a client is in its life: it opens once and closes once."""

    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSING = "closing"
    CLOSED = "closed"


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


class AsyncPostHog(FlagMethods):
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
        self._v1 = config.capture_mode == "v1"
        self._before_send = config.before_send
        # The properties every event starts from; an event's own properties override them,
        # and $lib/$lib_version are set last so nothing overrides what the library is.
        self._base_properties: dict[str, Any] = dict(config.super_properties or {})
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
        # Each client is its own member of the fleet, even beside others in one process.
        owner = f"{process_owner_id()}:{id(self):x}"
        self._cache = FlagCache(config.cache_url, token=config.api_key or "", owner=owner)
        self._flags = FlagService(
            config, self._transport, self._report_flag_call, self._spawn, self._cache
        )
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

    # -- capture family ----------------------------------------------------------------------

    async def capture(
        self,
        event: str,
        distinct_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        *,
        groups: Mapping[str, Any] | None = None,
        timestamp: datetime | str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        disable_geoip: bool | None = None,
        flags: FeatureFlagEvaluations | None = None,
    ) -> str | None:
        """Queue an event; return its uuid, or None when the client is disabled or dropped it.

        Does no I/O: validates, enriches (context, super properties, ``$lib``), runs
        ``before_send``, encodes and queues. With ``overflow="block"`` it waits for room.
        ``flags``, a snapshot from `evaluate_flags()`, attaches ``$feature/<key>`` and
        ``$active_feature_flags`` with the values the code saw (its own properties win).

        Raises:
            EventValidationError: empty event name, bad timestamp or uuid, a property value
                that cannot be serialised, or an event over 900 KiB.
            UsageError: the client is closed or bound to another event loop.
        """
        return await self._capture(
            event,
            distinct_id,
            properties,
            groups,
            timestamp,
            uuid,
            disable_geoip,
            self._capture_properties,
            flags,
        )

    async def _capture(
        self,
        event: str,
        distinct_id: Any,
        properties: Mapping[str, Any] | None,
        groups: Mapping[str, Any] | None,
        timestamp: datetime | str | None,
        uuid: str | uuid_module.UUID | None,
        disable_geoip: bool | None,
        fixed: dict[str, Any],
        flags: FeatureFlagEvaluations | None = None,
    ) -> str | None:
        if self.config.disabled:
            return None
        if self._state is not ClientState.OPENED or asyncio.get_running_loop() is not self._loop:
            await self._ensure_open()
        if not event or not isinstance(event, str):
            raise EventValidationError(
                "capture() needs a non-empty event name (a str)", event=str(event)
            )
        if flags is not None:
            properties = {**flags.event_properties(), **(properties or {})}
        context = _context._current.get()
        if context is not None and context.tags:
            props = {**self._base_properties, **context.tags}
            if properties:
                props.update(properties)
            props.update(fixed)
        elif properties:
            props = {**self._base_properties, **properties, **fixed}
        else:
            props = {**self._base_properties, **fixed}
        if distinct_id is None or distinct_id == "":
            if context is not None and context.distinct_id:
                distinct_id = context.distinct_id
            else:
                distinct_id = uuid7()
                props.setdefault("$process_person_profile", False)
        elif not isinstance(distinct_id, str):
            distinct_id = str(distinct_id)
        if context is not None and context.session_id and "$session_id" not in props:
            props["$session_id"] = context.session_id
        if groups:
            props["$groups"] = dict(groups)
        if disable_geoip is not None:
            if disable_geoip:
                props["$geoip_disable"] = True
            else:
                props.pop("$geoip_disable", None)
        message = {
            "event": event,
            "distinct_id": distinct_id,
            "properties": props,
            "timestamp": now_iso() if timestamp is None else self._timestamp(event, timestamp),
            "uuid": uuid7() if uuid is None else self._uuid(event, uuid),
        }
        return await self._enqueue(message)

    @staticmethod
    def _timestamp(event: str, timestamp: datetime | str) -> str:
        try:
            return to_utc_iso(timestamp)
        except (ValueError, TypeError) as exc:
            raise EventValidationError(
                f"Event {event!r} has an invalid timestamp: {exc}", event=event, key="timestamp"
            ) from None

    @staticmethod
    def _uuid(event: str, value: str | uuid_module.UUID) -> str:
        try:
            return str(value if isinstance(value, uuid_module.UUID) else uuid_module.UUID(value))
        except (ValueError, TypeError, AttributeError):
            raise EventValidationError(
                f"Event {event!r} has an invalid uuid; pass a UUID or its string form",
                event=event,
                key="uuid",
            ) from None

    async def _enqueue(self, message: dict[str, Any]) -> str | None:
        stats = self._stats
        hook = self._before_send
        if hook is not None:
            returned = await self._run_before_send(hook, message)
            if returned is None:
                return None
            message = returned
        uuid: str = message["uuid"]
        event: str = message["event"]
        try:
            data = encode_event(to_v1_event(message) if self._v1 else message)
        except UnserializableValueError as exc:
            raise EventValidationError(
                f"Event {event!r}: the value at {exc.key_path!r} (a {exc.type_name}) cannot be "
                "serialised to JSON; convert it to a str, number, bool, list or dict",
                event=event,
                key=exc.key_path,
            ) from None
        if len(data) > MAX_EVENT_BYTES:
            key = _largest_property(message)
            raise EventValidationError(
                f"Event {event!r} is {len(data)} bytes encoded, over the {MAX_EVENT_BYTES}-byte "
                f"limit per event; the largest property is {key!r}",
                event=event,
                key=key,
            )
        stats.captured += 1
        queue = self._queue
        if queue is None:  # send=False: built and validated, then let go
            return uuid
        item = (uuid, data)
        if queue.overflow == "block" and not queue.has_room(len(data)):
            await queue.wait_for_room(len(data))
            if self._state is not ClientState.OPENED:
                self._stats.drop("shutdown")
                return None
        return uuid if queue.offer(item) else None

    async def _run_before_send(self, hook: Any, message: dict[str, Any]) -> dict[str, Any] | None:
        try:
            returned = hook(message)
            if isawaitable(returned):
                returned = await returned
        except Exception as exc:
            if self.config.debug:
                raise
            self._stats.drop("before_send")
            logger.exception("aioposthog: before_send raised; the event was dropped (%s)", exc)
            return None
        if returned is None:
            self._stats.drop("before_send")
            return None
        if not isinstance(returned, dict) or "event" not in returned:
            raise UsageError("before_send must return the event dict (changed or not) or None")
        if not returned.get("uuid"):
            returned["uuid"] = message["uuid"]
        return returned

    async def set(
        self,
        distinct_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        *,
        timestamp: datetime | str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        disable_geoip: bool | None = None,
    ) -> str | None:
        """Set person properties (``$set``). Does nothing for a personless caller or no props."""
        return await self._person_update(
            "$set", distinct_id, properties, timestamp, uuid, disable_geoip
        )

    async def set_once(
        self,
        distinct_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        *,
        timestamp: datetime | str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        disable_geoip: bool | None = None,
    ) -> str | None:
        """Set person properties only where not already set (``$set_once``)."""
        return await self._person_update(
            "$set_once", distinct_id, properties, timestamp, uuid, disable_geoip
        )

    async def _person_update(
        self,
        kind: str,
        distinct_id: Any,
        properties: Mapping[str, Any] | None,
        timestamp: datetime | str | None,
        uuid: str | uuid_module.UUID | None,
        disable_geoip: bool | None,
    ) -> str | None:
        if self.config.disabled:
            return None
        context = _context._current.get()
        values = dict(context.tags) if context is not None and context.tags else {}
        values.update(properties or {})
        if distinct_id is None or distinct_id == "":
            distinct_id = context.distinct_id if context is not None else None
        if not distinct_id or not values:
            return None  # a personless $set would create nobody; nothing to send
        await self._ensure_open()
        props = {**self._base_properties, **self._lib_properties}
        if disable_geoip is False:
            props.pop("$geoip_disable", None)
        elif disable_geoip:
            props["$geoip_disable"] = True
        message = {
            "event": kind,
            "distinct_id": str(distinct_id),
            kind: values,
            "properties": props,
            "timestamp": now_iso() if timestamp is None else self._timestamp(kind, timestamp),
            "uuid": uuid7() if uuid is None else self._uuid(kind, uuid),
        }
        return await self._enqueue(message)

    async def alias(
        self,
        previous_id: str,
        distinct_id: str,
        *,
        timestamp: datetime | str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        disable_geoip: bool | None = None,
    ) -> str | None:
        """Merge ``previous_id`` (e.g. an anonymous id) into ``distinct_id`` (``$create_alias``)."""
        if not previous_id or not distinct_id:
            raise UsageError("alias() needs both previous_id and distinct_id")
        return await self._capture(
            "$create_alias",
            str(previous_id),
            {"distinct_id": str(previous_id), "alias": str(distinct_id)},
            None,
            timestamp,
            uuid,
            disable_geoip,
            self._lib_properties,
        )

    async def group_identify(
        self,
        group_type: str,
        group_key: str,
        properties: Mapping[str, Any] | None = None,
        *,
        distinct_id: Any = None,
        timestamp: datetime | str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        disable_geoip: bool | None = None,
    ) -> str | None:
        """Set a group's properties (``$groupidentify``)."""
        if not group_type or not group_key:
            raise UsageError("group_identify() needs a group_type and a group_key")
        if distinct_id is None:
            context = _context._current.get()
            distinct_id = context.distinct_id if context and context.distinct_id else uuid7()
        group = {
            "$group_type": group_type,
            "$group_key": str(group_key),
            "$group_set": dict(properties or {}),
        }
        return await self._capture(
            "$groupidentify",
            distinct_id,
            group,
            None,
            timestamp,
            uuid,
            disable_geoip,
            self._lib_properties,
        )

    async def capture_exception(
        self,
        exception: BaseException | None = None,
        distinct_id: Any = None,
        properties: Mapping[str, Any] | None = None,
        *,
        handled: bool = True,
        timestamp: datetime | str | None = None,
        uuid: str | uuid_module.UUID | None = None,
    ) -> str | None:
        """Capture an exception as a ``$exception`` event (``$exception_list`` with frames).

        Without ``exception``, the one being handled (``sys.exception()``) is used.
        """
        if exception is None:
            exception = sys.exception()
            if exception is None:
                raise UsageError("capture_exception() needs an exception, or an active one")
        from ._capture._exceptions import exception_properties  # only paid for when used

        props = exception_properties(exception, handled=handled)
        if properties:
            props.update(properties)
        return await self.capture("$exception", distinct_id, props, timestamp=timestamp, uuid=uuid)

    # -- flush, stats, health ----------------------------------------------------------------

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


def _largest_property(message: dict[str, Any]) -> str | None:
    """The key of the largest property (only computed for an event that is too big)."""
    properties = message.get("properties") or {}
    best: str | None = None
    best_size = -1
    for key, value in properties.items():
        try:
            size = len(encode_event({"v": value}))
        except UnserializableValueError:
            continue
        if size > best_size:
            best, best_size = key, size
    for key in ("$set", "$set_once"):
        if key in message and len(encode_event({"v": message[key]})) > best_size:
            best, best_size = key, len(encode_event({"v": message[key]}))
    return best
