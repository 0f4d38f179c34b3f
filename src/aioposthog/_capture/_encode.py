"""Wire shapes of capture: the v1 event transform, batch envelopes, and compression.

Each event is encoded to JSON once, when it is captured; a batch body is those encodings
joined inside an envelope, so building a request costs one join, not one encode per event.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, Final

from pydantic_core import PydanticSerializationError, to_json

__all__ = [
    "COMPRESS_SLICE_BYTES",
    "EventSplicer",
    "gzip_body",
    "join_body",
    "to_v1_event",
    "v0_envelope",
    "v1_envelope",
]

# Bodies are gzipped on the event loop, about this many bytes at a time, with a turn of the
# loop between slices: at level 1 a slice takes about 0.3 ms, so a 5 MiB batch never stalls the
# loop for long. Not in a worker thread: the thread must take the GIL back from a busy loop
# several times per body (zlib re-acquires it for every output block), and each time waits
# for the interpreter's 5 ms switch interval. Measured on 2 cores, that latency, not the
# CPU, capped gzip delivery at ~120k events/s, against ~175k without compression.
COMPRESS_SLICE_BYTES = 256 * 1024
# Level 1 compresses JSON events about 6-8x at several times the speed of level 6; CPU on the
# sending host is the scarcer resource.
_GZIP_LEVEL = 1

# Sentinel properties that capture v1 lifts into the typed `options` object.
_V1_OPTIONS = (
    ("$cookieless_mode", "cookieless_mode"),
    ("$ignore_sent_at", "disable_skew_correction"),
    ("$process_person_profile", "process_person_profile"),
)
_V1_STRING_OPTIONS = (("$product_tour_id", "product_tour_id"),)
_V1_TOP_LEVEL = (("$session_id", "session_id"), ("$window_id", "window_id"))
# The server takes these from the PostHog-Sdk-Info header instead.
_V1_STRIPPED = ("$lib", "$lib_version")


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        return None
    if isinstance(value, int | float):
        return value != 0
    return None


def to_v1_event(event: dict[str, Any]) -> dict[str, Any]:
    """Reshape a v0 event dict (as built by capture) into capture v1's event object.

    ``$set``/``$set_once`` move into properties, ``$lib`` leaves them, and the ``$`` sentinels
    become ``options`` or top-level fields. A sentinel whose value has the wrong type is left
    out rather than sent: v1 rejects the whole batch on a type error.
    """
    properties: dict[str, Any] = dict(event.get("properties") or {})
    for key in ("$set", "$set_once"):
        value = event.get(key)
        if value is None:
            continue
        existing = properties.get(key)
        if isinstance(value, dict) and isinstance(existing, dict):
            properties[key] = {**value, **existing}
        elif key not in properties:
            properties[key] = value
    for key in _V1_STRIPPED:
        properties.pop(key, None)
    options: dict[str, Any] = {}
    for prop, option in _V1_OPTIONS:
        if prop in properties:
            flag = _as_bool(properties.pop(prop))
            if flag is not None:
                options[option] = flag
    for prop, option in _V1_STRING_OPTIONS:
        if prop in properties:
            text = properties.pop(prop)
            if isinstance(text, str):
                options[option] = text
    wire: dict[str, Any] = {
        "event": event["event"],
        "uuid": event["uuid"],
        "distinct_id": event["distinct_id"],
        "timestamp": event["timestamp"],
        "options": options,
        "properties": properties,
    }
    for prop, field_name in _V1_TOP_LEVEL:
        if prop in properties:
            value = properties.pop(prop)
            if isinstance(value, str):
                wire[field_name] = value
    return wire


Envelope = tuple[bytes, bytes]
"""A batch body's bytes before and after its comma-joined events."""


def v0_envelope(api_key: str, *, historical_migration: bool, sent_at: str) -> Envelope:
    """The ``/batch/`` envelope: the token, the send time, and the ``batch`` array."""
    head = (
        '{"api_key":'
        + json.dumps(api_key)
        + ',"historical_migration":'
        + ("true" if historical_migration else "false")
        + ',"sent_at":"'
        + sent_at
        + '","batch":['
    ).encode()
    return head, b"]}"


def v1_envelope(*, historical_migration: bool, created_at: str) -> Envelope:
    """The ``/i/v1/analytics/events`` envelope (no token: v1 authenticates with a header)."""
    head = '{"created_at":"' + created_at + '",'
    if historical_migration:
        head += '"historical_migration":true,'
    return (head + '"batch":[').encode(), b"]}"


def join_body(envelope: Envelope, events: Sequence[bytes]) -> bytes:
    """The uncompressed body: the envelope around the events, joined by commas."""
    head, tail = envelope
    if not events:
        return head + tail
    # One copy of the events, not two (a join, then the envelope around it): a list of
    # head, event, comma, event, ..., event, tail, joined once.
    parts = [b","] * (2 * len(events) + 1)
    parts[1::2] = events
    parts[0] = head
    parts[-1] = tail
    return b"".join(parts)


class EventSplicer:
    """Encodes an event whose constant properties were encoded once, up front.

    Every `capture()` sends the same library and runtime properties (and any
    ``super_properties``): encoding them per event was a third of the event's encode.
    Here they are encoded when the client is built and appended to the caller's encoded
    properties as bytes. A v0 event comes out as ``{"event", "distinct_id", "timestamp",
    "uuid", "properties": {<caller's>, <constant>}}``, a v1 event as capture v1's object
    (`to_v1_event`) with empty ``options``: the same JSON objects as the general path's
    (``properties`` merely comes last).

    `encode` declines (returns None) when a caller's key is also a constant key (the
    precedence rules then need a merged dict) or one that v1 moves out of ``properties``,
    and when the JSON encoder refuses the event: the general path handles those and
    reports the error. `for_v1` returns None when the constant properties themselves hold
    something v1 moves out.
    """

    __slots__ = ("_empty", "_keys", "_tail", "_v1")

    def __init__(self, constant: dict[str, Any], *, reserved: frozenset[str] = frozenset()):
        encoded = to_json(constant)  # b'{...}'
        self._keys = frozenset(constant) | reserved
        self._tail = (b"," + encoded[1:-1] if constant else b"") + b"}}"
        self._empty = encoded + b"}"
        self._v1 = bool(reserved)

    @classmethod
    def for_v1(cls, constant: dict[str, Any]) -> EventSplicer | None:
        """A splicer for capture v1 events, or None if the constant part needs reshaping."""
        wire = to_v1_event({"event": "", "uuid": "", "distinct_id": "", "timestamp": ""})
        shaped = to_v1_event({**wire, "properties": constant})
        if shaped.keys() != wire.keys() or shaped["options"]:
            return None  # e.g. a $session_id or $process_person_profile super property
        return cls(shaped["properties"], reserved=_V1_RESERVED)

    def encode(
        self, event: str, distinct_id: str, properties: dict[str, Any], timestamp: str, uuid: str
    ) -> bytes | None:
        """The event's JSON; ``properties`` must be native JSON already (`clean_mapping`)."""
        if properties and not self._keys.isdisjoint(properties):
            return None
        wire: dict[str, Any]
        if self._v1:
            wire = {
                "event": event,
                "uuid": uuid,
                "distinct_id": distinct_id,
                "timestamp": timestamp,
                "options": _NO_OPTIONS,
                "properties": properties,
            }
        else:
            wire = {
                "event": event,
                "distinct_id": distinct_id,
                "timestamp": timestamp,
                "uuid": uuid,
                "properties": properties,
            }
        try:
            encoded = to_json(wire, inf_nan_mode="null")
        except PydanticSerializationError:
            return None
        if properties:
            return encoded[:-2] + self._tail  # drop '}}', close with the constant ones
        return encoded[:-3] + self._empty  # drop '{}}'


# What capture v1 takes out of properties (options, top-level fields, the SDK header's $lib).
_V1_RESERVED: Final = frozenset(
    [prop for prop, _ in (*_V1_OPTIONS, *_V1_STRING_OPTIONS, *_V1_TOP_LEVEL)] + list(_V1_STRIPPED)
)
_NO_OPTIONS: Final[dict[str, Any]] = {}


async def gzip_body(envelope: Envelope, events: Sequence[bytes]) -> bytes:
    """Gzip the body `join_body` would build, without ever building it whole.

    Events are joined and compressed a group of up to `COMPRESS_SLICE_BYTES` at a time (at
    least one event per group), with a turn of the running loop between groups: the loop
    never stalls for long, and the only full-size buffer is the compressed one, a few
    percent of the body (a 5,000-event batch is ~3 MB of JSON).
    """
    head, tail = envelope
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    parts = [compressor.compress(head)]
    ends = list(accumulate(map(len, events)))  # the body offset after each event
    start, count = 0, len(events)
    while start < count:
        reached = ends[start - 1] if start else 0
        stop = bisect_right(ends, reached + COMPRESS_SLICE_BYTES, lo=start + 1)
        if start:
            parts.append(compressor.compress(b","))
        parts.append(compressor.compress(b",".join(events[start:stop])))
        start = stop
        if start < count:
            await asyncio.sleep(0)
    parts.append(compressor.compress(tail))
    parts.append(compressor.flush())
    return b"".join(parts)
