"""The capture family of `AsyncPostHog` (a mixin): build, validate, encode and queue events.

This is the hot path: `capture()` allocates one properties dict, touches no lock and does no
I/O. Everything it needs is prepared once, when the client is built (base, library and
runtime properties) or opened (the queue).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid as uuid_module
from collections.abc import Mapping
from datetime import datetime
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from . import _context
from ._capture._encode import EventSplicer, to_v1_event
from ._capture._queue import EventQueue, Item
from ._config import MAX_EVENT_BYTES, BeforeSend, PostHogConfig
from ._exceptions import EventValidationError, UsageError
from ._serialize import (
    UnserializableValueError,
    clean_mapping,
    encode_event,
    encode_native,
    now_iso,
    to_utc_iso,
    uuid7,
)
from ._state import ClientState
from ._stats import StatsRecorder

if TYPE_CHECKING:
    from ._flags._snapshot import FeatureFlagEvaluations

__all__ = ["CaptureMethods"]

logger = logging.getLogger("aioposthog")

# capture() gives the loop a turn on every this many events it takes, and on every event
# the full queue refuses: a producer that never awaits anything else (an import in a web
# app's background task, a burst) can neither starve the sender nor hold the loop for more
# than a fraction of a millisecond. A turn costs about as much as a capture.
_YIELD_EVERY = 16


class CaptureMethods:
    """`capture`, `set`, `set_once`, `alias`, `group_identify` and `capture_exception`."""

    config: PostHogConfig
    _state: ClientState
    _loop: asyncio.AbstractEventLoop | None
    _queue: EventQueue | None
    _stats: StatsRecorder
    _v1: bool
    _before_send: BeforeSend | None
    _base_properties: dict[str, Any]
    _lib_properties: dict[str, Any]
    _capture_properties: dict[str, Any]
    _splicer: EventSplicer | None

    async def _ensure_open(self) -> None:  # provided by AsyncPostHog
        raise NotImplementedError

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
        splicer = self._splicer
        if (
            splicer is not None
            and type(event) is str
            and type(distinct_id) is str
            and event
            and distinct_id
            and groups is None
            and disable_geoip is None
            and flags is None
            and self._state is ClientState.OPENED
            and asyncio.get_running_loop() is self._loop
        ):
            # The common call, in one frame: nothing to merge but the caller's properties,
            # no hook, and no context state to add (v0, or v1 with its own splicer).
            context = _context._current.get()
            if context is None or not (context.tags or context.session_id):
                cleaned = _native(event, properties, "properties") if properties else {}
                stamp = now_iso() if timestamp is None else self._timestamp(event, timestamp)
                uuid = uuid7() if uuid is None else self._uuid(event, uuid)
                data = splicer.encode(event, distinct_id, cleaned, stamp, uuid)
                # None, or too large: the general path encodes it again and says what is wrong.
                if data is not None and len(data) <= MAX_EVENT_BYTES:
                    self._stats.captured += 1
                    queue = self._queue
                    item = (uuid, data)
                    if queue is None:
                        return uuid
                    if queue.put_nowait(item):
                        if not self._stats.captured % _YIELD_EVERY:
                            await asyncio.sleep(0)
                        return uuid
                    return await self._put(queue, item)
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
        # Only what callers supply is walked for non-JSON values (library properties are
        # native already), so the event is encoded at once, without a second walk.
        if properties:
            properties = _native(event, properties, "properties")
        if flags is not None:
            properties = {**flags.event_properties(), **(properties or {})}
        context = _context._current.get()
        if context is not None and context.tags:
            props = {**self._base_properties, **_native(event, context.tags, "properties")}
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
            props["$groups"] = _native(event, groups, "properties.$groups").copy()
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
        return await self._enqueue(message, native=True)

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

    async def _enqueue(self, message: dict[str, Any], *, native: bool = False) -> str | None:
        """Run before_send, encode, check the size, and queue; ``native``: no walk needed."""
        stats = self._stats
        hook = self._before_send
        if hook is not None:
            returned = await self._run_before_send(hook, message)
            if returned is None:
                return None
            message = returned
            native = False  # the hook may have put anything in it
        uuid: str = message["uuid"]
        event: str = message["event"]
        encode = encode_native if native else encode_event
        try:
            data = encode(to_v1_event(message) if self._v1 else message)
        except UnserializableValueError as exc:
            raise _unserializable(event, exc) from None
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
        item = (uuid, data)
        if queue is None:  # send=False: validated, then let go
            return uuid
        if queue.put_nowait(item):
            if not stats.captured % _YIELD_EVERY:
                await asyncio.sleep(0)
            return uuid
        return await self._put(queue, item)

    async def _put(self, queue: EventQueue, item: Item) -> str | None:
        """Queue an event past the fast path: wait for room (block), or apply the overflow."""
        uuid, data = item
        if queue.overflow == "block" and not queue.has_room(len(data)):
            await queue.wait_for_room(len(data))
            if self._state is not ClientState.OPENED:
                self._stats.drop("shutdown")
                return None
        accepted = queue.offer(item)
        if not accepted or not self._stats.captured % _YIELD_EVERY:
            # Past half full this is what lets the sender keep up with a burst; a refused
            # event always yields, so a producer that meets a full queue lets it drain.
            await asyncio.sleep(0)
        return uuid if accepted else None

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


def _native(event: str, values: Mapping[str, Any], path: str) -> dict[str, Any]:
    try:
        return clean_mapping(values, path)
    except UnserializableValueError as exc:
        raise _unserializable(event, exc) from None


def _unserializable(event: str, exc: UnserializableValueError) -> EventValidationError:
    return EventValidationError(
        f"Event {event!r}: the value at {exc.key_path!r} (a {exc.type_name}) cannot be "
        "serialised to JSON; convert it to a str, number, bool, list or dict",
        event=event,
        key=exc.key_path,
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
