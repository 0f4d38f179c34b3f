"""Event encoding, timestamps and ids, matching what the official SDK puts on the wire.

The capture hot path encodes each event to JSON once, at capture time, so that a value
that cannot be sent is reported to the caller right away instead of failing a whole
batch later in the background.

`encode_event` produces, for every value, the JSON the official SDK (posthog 7.91.1)
sends after `posthog.utils.clean()` and `posthog.request.DatetimeSerializer`:

==========================================  ===========================================
value                                       JSON
==========================================  ===========================================
str, int, float, bool, None, dict, list     itself (subclasses as their base type)
NaN, Infinity, -Infinity                    null
Decimal                                     float(value)
UUID                                        str(value)
datetime, date                              value.isoformat() ("+00:00", never "Z")
set, frozenset, tuple, deque                array
pydantic model (``model_dump``/``dict``)    the dump, encoded by these same rules
dataclass instance                          dataclasses.asdict(), likewise
bytes                                       the UTF-8 decoded text
dict keys int, float, bool, None            "1", "1.5", "true", "null" (as json.dumps)
==========================================  ===========================================

Deliberate differences: where the official SDK silently sends ``null`` (any other
object, bytes that are not UTF-8, a model dump that is not a mapping or a string, a
dataclass that cannot be copied) or fails the whole batch at send time (a dict key
or a number type JSON cannot represent, a string holding a lone surrogate), this
module raises `UnserializableValueError` naming the offending key path. Containers
nested deeper than `MAX_DEPTH` levels (a circular reference, usually) are refused too.

Speed: one type check per value finds the common event (exact str/int/float/bool/None,
plain dicts with str keys and lists) native and hands it to `pydantic_core.to_json` as
is, about 3.5 times faster than `json.dumps`. Other values are converted in Python, and
only the containers holding them are copied (never mutated): pydantic_core's own output
for datetime, Decimal, models and non-str keys differs from the official SDK's, so none
of them reaches it.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic_core import PydanticSerializationError, to_json

__all__ = [
    "MAX_DEPTH",
    "UnserializableValueError",
    "clean_mapping",
    "encode_event",
    "encode_native",
    "now_iso",
    "to_utc_iso",
    "uuid7",
]

#: Deepest container nesting `encode_event` accepts (pydantic_core stops near 255).
MAX_DEPTH = 200


class UnserializableValueError(Exception):
    """A value in an event that cannot be sent as the official SDK would send it.

    ``key_path`` is the dotted path from the event's top level, with list indices in
    brackets, e.g. ``"properties.cart.items[2]"``; ``type_name`` is the offending
    value's (or dict key's) type.

    >>> encode_event({"properties": {"when": object()}})
    Traceback (most recent call last):
    ...
    aioposthog._serialize.UnserializableValueError: properties.when: object is not JSON serialisable
    """

    def __init__(
        self, key_path: str, type_name: str, reason: str = "is not JSON serialisable"
    ) -> None:
        super().__init__(key_path, type_name, reason)
        self.key_path = key_path
        self.type_name = type_name
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.key_path or '<event>'}: {self.type_name} {self.reason}"


class _Unserializable(Exception):
    """Raised at the offending value; each enclosing container adds its path segment."""

    def __init__(self, value: object, reason: str = "is not JSON serialisable") -> None:
        super().__init__()
        self.type_name = type(value).__qualname__
        self.reason = reason
        self.segments: list[str | int] = []

    def public(self) -> UnserializableValueError:
        path = ""
        for segment in reversed(self.segments):
            if isinstance(segment, int):
                path = f"{path}[{segment}]"
            else:
                path = f"{path}.{segment}" if path else segment
        return UnserializableValueError(path, self.type_name, self.reason)


_SCALARS = frozenset({str, int, float, bool, type(None)})
_SEQUENCES = (set, frozenset, list, tuple, deque)


def encode_event(event: dict[str, Any]) -> bytes:
    """Encode one event to compact UTF-8 JSON, as the official SDK would send it.

    >>> encode_event({"event": "signup", "properties": {"plan": "pro", "seats": {3}}})
    b'{"event":"signup","properties":{"plan":"pro","seats":[3]}}'

    Raises `UnserializableValueError` for a value the official SDK would drop or fail on.
    """
    try:
        cleaned = _clean(event, 0)
    except _Unserializable as exc:
        raise exc.public() from None
    try:
        return to_json(cleaned, inf_nan_mode="null")
    except PydanticSerializationError:
        # Everything is a native JSON type by now; what is left is a string
        # (value or key) that holds a lone surrogate and so has no UTF-8 form.
        _raise_for_surrogates(cleaned)
        raise


def clean_mapping(values: Mapping[Any, Any], path: str) -> dict[str, Any]:
    """``values`` with every value made native JSON, as `encode_event` would send it.

    Returns ``values`` itself when it already is (the common case: no copy). ``path`` prefixes
    the key path of an `UnserializableValueError`, e.g. ``"properties"``. With the parts of
    an event cleaned this way, `encode_native` encodes it without walking it again.
    """
    try:
        if type(values) is dict:
            return _clean_dict(values, 1)
        return _rebuild_dict(values, 1)
    except _Unserializable as exc:
        exc.segments.append(path)
        raise exc.public() from None


def encode_native(event: dict[str, Any]) -> bytes:
    """Encode an event whose values are all native JSON already (see `clean_mapping`)."""
    try:
        return to_json(event, inf_nan_mode="null")
    except PydanticSerializationError:
        _raise_for_surrogates(event)
        raise


def _clean(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return _clean_dict(value, depth)
    if kind is list:
        return _clean_list(value, depth)
    return _clean_other(value, depth)


def _clean_dict(d: dict[Any, Any], depth: int) -> dict[Any, Any]:
    """Return `d` itself when it is already native JSON, else a cleaned copy."""
    # A plain loop: measured faster than C-level prechecks such as
    # `frozenset.issuperset(map(type, d.values()))` once a dict holds any container.
    if depth > MAX_DEPTH:
        raise _Unserializable(d, f"is nested deeper than {MAX_DEPTH} levels")
    out: dict[Any, Any] | None = None
    for key, value in d.items():
        if type(key) is not str:
            return _rebuild_dict(d, depth)
        kind = type(value)
        if kind in _SCALARS:
            continue
        new: Any
        try:
            if kind is dict:
                new = _clean_dict(value, depth + 1)
            elif kind is list:
                new = _clean_list(value, depth + 1)
            else:
                new = _clean_other(value, depth + 1)
        except _Unserializable as exc:
            exc.segments.append(key)
            raise
        if new is not value:
            if out is None:
                out = d.copy()
            out[key] = new
    return d if out is None else out


def _rebuild_dict(d: Any, depth: int) -> dict[str, Any]:
    """Clean a mapping with non-str keys or of a dict subclass into a new plain dict."""
    if depth > MAX_DEPTH:
        raise _Unserializable(d, f"is nested deeper than {MAX_DEPTH} levels")
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = key if type(key) is str else _json_key(key)
        try:
            out[name] = _clean(value, depth + 1)
        except _Unserializable as exc:
            exc.segments.append(name)
            raise
    return out


def _json_key(key: Any) -> str:
    # The keys json.dumps accepts, spelled as it spells them.
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, float):
        if math.isfinite(key):
            return float.__repr__(key)
        return "NaN" if key != key else ("Infinity" if key > 0 else "-Infinity")
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    raise _Unserializable(key, "is not a valid dict key (str, int, float, bool or None)")


def _clean_list(items: list[Any], depth: int) -> list[Any]:
    """Return `items` itself when it is already native JSON, else a cleaned copy."""
    if depth > MAX_DEPTH:
        raise _Unserializable(items, f"is nested deeper than {MAX_DEPTH} levels")
    if _SCALARS.issuperset(map(type, items)):
        return items
    out: list[Any] | None = None
    for index, value in enumerate(items):
        if type(value) in _SCALARS:
            continue
        try:
            new = _clean(value, depth + 1)
        except _Unserializable as exc:
            exc.segments.append(index)
            raise
        if new is not value:
            if out is None:
                out = items.copy()
            out[index] = new
    return items if out is None else out


def _clean_sequence(items: Any, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise _Unserializable(items, f"is nested deeper than {MAX_DEPTH} levels")
    out = []
    for index, value in enumerate(items):
        try:
            out.append(_clean(value, depth + 1))
        except _Unserializable as exc:
            exc.segments.append(index)
            raise
    return out


def _clean_other(value: Any, depth: int) -> Any:
    """Everything but exact str/int/float/bool/None/dict/list, in `clean()`'s order."""
    kind = type(value)
    if kind is datetime or kind is date:
        return value.isoformat()
    if isinstance(value, Decimal):
        try:
            return float(value)
        except ValueError:
            raise _Unserializable(value, "is a signalling NaN") from None
    if isinstance(value, UUID):
        return str(value)
    # Subclasses (enums, numpy.float64, ...) encode as json.dumps does: by base value.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, numbers.Number):
        # Fraction, complex, numpy.int64...: the official SDK's json.dumps fails on
        # them at send time, losing the whole batch.
        raise _Unserializable(value)
    if isinstance(value, _SEQUENCES):
        return _clean_sequence(value, depth)
    original, value = value, _dump_model(value)
    if isinstance(value, dict):
        return _rebuild_dict(value, depth)
    if is_dataclass(value) and not isinstance(value, type):
        try:
            dumped = asdict(value)
        except Exception as exc:
            raise _Unserializable(value, f"cannot be converted by asdict(): {exc!r}") from None
        return _rebuild_dict(dumped, depth)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unserializable(value, "is not valid UTF-8") from None
    if isinstance(value, str):
        # A model whose dump is a plain string is sent as that string.
        return str.__str__(value)
    if value is not original:
        raise _Unserializable(
            original, f"dumps to a {type(value).__qualname__}, not a mapping or a string"
        )
    raise _Unserializable(value)


def _dump_model(value: Any) -> Any:
    # pydantic v2 `model_dump()`, else v1 `dict()`; a TypeError keeps the value as is,
    # as the official SDK does.
    try:
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return dump()
        dump = getattr(value, "dict", None)
        if callable(dump):
            return dump()
    except TypeError:
        return value
    except Exception as exc:
        raise _Unserializable(value, f"failed to dump: {exc!r}") from None
    return value


def _raise_for_surrogates(value: Any) -> None:
    try:
        _find_surrogates(value)
    except _Unserializable as exc:
        raise exc.public() from None


def _find_surrogates(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unserializable(
                value, "holds a lone surrogate (not encodable as UTF-8)"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise _Unserializable(key, "dict key holds a lone surrogate") from None
            try:
                _find_surrogates(item)
            except _Unserializable as exc:
                exc.segments.append(key)
                raise
    elif isinstance(value, list):
        for index, item in enumerate(value):
            try:
                _find_surrogates(item)
            except _Unserializable as exc:
                exc.segments.append(index)
                raise


# -- timestamps ---------------------------------------------------------------------

_DATE_ONLY = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_COMPACT_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def to_utc_iso(ts: datetime | str) -> str:
    """Normalise an event timestamp to a UTC ISO-8601 string, as the official SDK does.

    Aware datetimes are converted to UTC. A naive datetime made within the last five
    seconds is taken as local time (it came from ``datetime.now()``), any other naive
    one as UTC. Strings are parsed with `datetime.fromisoformat`, accepting ``Z`` and
    compact offsets such as ``+0530``.

    >>> to_utc_iso("2024-05-01T12:30:00+02:00")
    '2024-05-01T10:30:00+00:00'

    Raises ValueError for a date without a time, or a string that is not an ISO-8601
    datetime; TypeError for other types.
    """
    if isinstance(ts, str):
        if _DATE_ONLY.fullmatch(ts):
            raise ValueError(
                f"Invalid timestamp {ts!r}: a date without a time of day; "
                "expected an ISO 8601 datetime string such as '2024-05-01T12:30:00Z'."
            )
        try:
            parsed = datetime.fromisoformat(
                _COMPACT_OFFSET.sub(r"\1:\2", ts.replace("Z", "+00:00"))
            )
        except ValueError:
            raise ValueError(
                f"Invalid timestamp {ts!r}: expected an ISO 8601 datetime string "
                "such as '2024-05-01T12:30:00Z'."
            ) from None
    elif isinstance(ts, datetime):
        parsed = ts
    elif isinstance(ts, date):
        raise ValueError(
            f"Invalid timestamp {ts!r}: a date without a time of day; expected a datetime."
        )
    else:
        raise TypeError(
            f"Invalid timestamp {ts!r}: expected a datetime or an ISO 8601 string, "
            f"not {type(ts).__qualname__}."
        )
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        age = (datetime.now() - parsed).total_seconds()
        if 0 <= age < 5:
            parsed = parsed.replace(tzinfo=datetime.now().astimezone().tzinfo)
        else:
            parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()


_now_second = -1
_now_prefix = ""


def now_iso() -> str:
    """The current UTC time, formatted exactly as ``datetime.now(timezone.utc).isoformat()``.

    That is the official SDK's default event timestamp, e.g.
    ``'2024-05-01T12:30:15.123456+00:00'`` (no fraction when the microseconds are 0).
    The date-and-seconds prefix is cached for the current second, which makes this
    about three times faster than building a datetime.
    """
    global _now_second, _now_prefix
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    if second != _now_second:
        # Unsynchronised on purpose: racing threads compute the same prefix.
        _now_prefix = datetime.fromtimestamp(second, UTC).isoformat()[:19]
        _now_second = second
    micros = nanos // 1000
    if micros:
        return f"{_now_prefix}.{micros:06d}+00:00"
    return f"{_now_prefix}+00:00"


# -- UUIDv7 -------------------------------------------------------------------------
#
# Layout (RFC 9562 section 5.7): 48-bit unix milliseconds | version 7 | 12-bit rand_a |
# variant 0b10 | 62-bit rand_b. Monotonicity within a millisecond follows the RFC's
# "fixed-length dedicated counter" method: rand_a is 12 random bits drawn once per
# millisecond, and the top 30 bits of rand_b are a counter, re-seeded with 29 random bits
# (so it cannot overflow) on every new millisecond and incremented within one; the low 32
# bits of rand_b are fresh random bits for every id. So the version, rand_a and the time
# are formatted once per millisecond, and each id formats only its last two groups. A
# clock that steps back keeps the last millisecond.
#
# Random bits come from os.urandom (a CSPRNG, as RFC 9562 section 6.9 asks), fetched
# 4 KiB at a time and handed out by a memoryview iterator: `next()` on it is atomic
# under the GIL, so threads never share a word, and it costs as much as
# random.getrandbits (~40 ns) without being seedable by the application (a
# `random.seed(0)` elsewhere must not make two processes mint the same ids). The
# buffer and the counter are reset in a forked child, which would otherwise replay
# its parent's bits. Counter updates are not locked: two threads racing inside one
# millisecond may share a counter value, and the 32 random bits still keep their ids
# distinct.

_URANDOM_CHUNK = 4096
_words: Iterator[int] = iter(())
_last_ms = 0
_counter = 0
_ms_prefix = ""


def _random32() -> int:
    global _words
    try:
        return next(_words)
    except StopIteration:
        _words = iter(memoryview(os.urandom(_URANDOM_CHUNK)).cast("I"))
        return next(_words)


def _reset_after_fork() -> None:
    global _words, _last_ms
    _words = iter(())
    _last_ms = 0


os.register_at_fork(after_in_child=_reset_after_fork)


def uuid7() -> str:
    """A new time-ordered UUIDv7, as a lowercase hyphenated string.

    Ids from one process sort in creation order, also within the same millisecond.

    >>> len(uuid7()), uuid7()[14]
    (36, '7')
    """
    global _last_ms, _counter, _ms_prefix
    ms = time.time_ns() // 1_000_000
    if ms > _last_ms:
        rand_a = _random32() >> 20
        _ms_prefix = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-{0x7000 | rand_a:04x}-"
        counter = _random32() >> 3
        _last_ms = ms
    else:
        counter = _counter + 1
    _counter = counter
    try:
        rand = next(_words)
    except StopIteration:
        rand = _random32()
    # variant 0b10 | the counter's top 14 bits; its low 16 bits | 32 random bits.
    return "%s%04x-%012x" % (  # noqa: UP031 - measured faster than an f-string here
        _ms_prefix,
        0x8000 | (counter >> 16),
        ((counter & 0xFFFF) << 32) | rand,
    )
