"""Differential wire-format test: aioposthog against the official `posthog` SDK (7.91.1).

The same calls go through both clients, each into its own `LocalPostHog`, and what arrives is
compared field by field: event names, distinct ids, uuids, timestamps, properties, the
`$set`/`$set_once`/alias/group-identify shapes, rich property values, `$exception` events and
the batch envelope.

The official client runs in a worker thread (`asyncio.to_thread`): it is blocking. It is built
so that it only ever talks to the loopback server: no personal or secret key (so no flag poller
and no remote config), local evaluation, exception autocapture, metrics and traces off,
`capture_mode="v0"` (its default, stated so that ``POSTHOG_CAPTURE_MODE`` cannot change it), and
every ``POSTHOG_*`` and proxy variable removed from the environment. An autouse fixture also
refuses, and records, any socket connection or name lookup outside 127.0.0.1. No warning
filter is needed: the official client emits no warnings on these paths (under
``filterwarnings = error`` one would fail its call, and the returned-None check would show it).

What is compared as equal:

- event name, top-level keys, ``$set``/``$set_once`` bodies, v1 ``options`` and ``session_id``;
- ``distinct_id`` (for generated ones: both valid UUID strings, uuid4 and UUIDv7);
- ``uuid`` format (canonical lowercase UUID strings; the official SDK mints uuid4 and
  aioposthog UUIDv7), or the same UUID when one is passed explicitly;
- ``timestamp`` shape (ISO-8601, ``+00:00``), and the same value when one is passed (naive,
  aware non-UTC, ISO strings with ``Z`` or a compact offset), with the local zone set to
  UTC+05:30 so that "naive means local when just made" is really exercised;
- properties, apart from ``$lib``/``$lib_version`` (each library names itself) and the
  official SDK's system context (``$python_runtime``, ``$python_version``, ``$os``...), which
  aioposthog does not send: that gap is asserted on its own in
  `test_capture_carries_the_official_system_context`;
- ``$exception_list`` of the same exception object (raised once), entry by entry;
- the batch envelope: ``POST /batch/``, ``api_key``, ``historical_migration``, ``sent_at`` shape,
  ``Content-Type``, and gzip when both compress (v1: its headers and ``created_at``).

Deliberate differences, asserted explicitly as such:

- `super_properties`: an event's own properties win in aioposthog (its `PostHogConfig`
  documents it); in the official SDK the super properties overwrite them.
- A value that cannot be serialised: the official SDK sends ``null``, aioposthog raises
  `EventValidationError` naming the key (documented in `aioposthog._serialize`).
- An invalid explicit ``uuid`` or ``timestamp``: the official SDK logs and falls back to a new
  uuid or the current time; aioposthog raises `EventValidationError` (documented on `capture`).
- An explicit uuid is sent as given by the official SDK (``"ABCDEF00-..."``) and in canonical
  lowercase form by aioposthog: the same UUID either way.
- Compression: the official SDK sends uncompressed bodies unless ``gzip=True``; aioposthog
  gzips by default (``compression="gzip"``).
- ``User-Agent``/``PostHog-Sdk-Info``: ``posthog-python/<v>`` versus ``aioposthog/<v>``.

Suspected bugs in aioposthog (the tests assert the official behaviour, so they fail until the
library changes): `test_capture_carries_the_official_system_context` and
`test_super_properties_reach_person_updates`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import socket
import time
import uuid as uuid_module
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any

import posthog
import pydantic
import pytest
from posthog.utils import system_context
from posthog.version import VERSION as OFFICIAL_VERSION

from aioposthog import AsyncPostHog, EventValidationError
from aioposthog.testing import LocalPostHog, RequestRecord

pytestmark = pytest.mark.integration

KEY = "phc_differential"
LIB_KEYS = frozenset({"$lib", "$lib_version"})
# What the official SDK adds to every capture() from the running interpreter and OS
# (`posthog.utils.system_context()`: $python_runtime, $python_version, $os, $os_version and,
# on Linux, $os_distro). aioposthog sends none of it; see
# test_capture_carries_the_official_system_context.
SYSTEM_CONTEXT_KEYS: frozenset[str] = frozenset(system_context())
UTC_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00")
LIB_AND_VERSION = re.compile(r"(?P<lib>[a-z][a-z0-9-]*)/(?P<version>\d+\.\d+\.\d+\S*)")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# A fixed UTC+05:30 zone in POSIX form (no tz database needed), for the naive-timestamp cases.
LOCAL_TZ = "IST-5:30"


# -- running the same calls through both clients -----------------------------------------------


@dataclass(frozen=True)
class Call:
    """One public method call, made the same way on both clients."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    generated_id: bool = False
    """True when the client mints the distinct id (none was given)."""


def call(method: str, *args: Any, generated_id: bool = False, **kwargs: Any) -> Call:
    return Call(method, args, kwargs, generated_id)


@dataclass(frozen=True)
class Wire:
    """What one client's calls returned and what its LocalPostHog received."""

    returned: list[Any]
    events: list[dict[str, Any]]
    requests: list[RequestRecord]


def _official_client(url: str, options: Mapping[str, Any]) -> Any:
    settings: dict[str, Any] = {
        "sync_mode": True,  # one request per call, sent before the call returns
        "capture_mode": "v0",
        "disable_geoip": True,
        "enable_exception_autocapture": False,
        "enable_local_evaluation": False,
        "personal_api_key": None,
        "secret_key": None,
        "feature_flags_request_timeout_seconds": 1,
        "feature_flags_request_max_retries": 0,
        "metrics": None,
        "traces": None,
        "capture_trace_context": False,
        "max_retries": 0,
        "timeout": 5,
    }
    settings.update(options)
    client: Any = posthog.Posthog(KEY, host=url, **settings)
    return client


def _run_official(url: str, calls: list[Call], options: Mapping[str, Any]) -> list[Any]:
    client = _official_client(url, options)
    try:
        returned = [getattr(client, c.method)(*c.args, **c.kwargs) for c in calls]
        client.flush()
    finally:
        client.shutdown()
        # The consumer-thread mode registers an exit hook holding the client; it is shut down.
        atexit.unregister(client._atexit)
    return returned


async def official_wire(calls: list[Call], **options: Any) -> Wire:
    async with LocalPostHog(api_key=KEY) as server:
        returned = await asyncio.to_thread(_run_official, server.url, calls, options)
        expected = sum(r is not None for r in returned)
        await server.wait_for_events(expected, timeout=10)
        events = server.events
        assert len(events) == expected
        return Wire(returned, events, server.requests)


async def aio_wire(calls: list[Call], **options: Any) -> Wire:
    async with LocalPostHog(api_key=KEY) as server:
        async with AsyncPostHog(KEY, host=server.url, **options) as client:
            returned = [await getattr(client, c.method)(*c.args, **c.kwargs) for c in calls]
            assert await client.flush(timeout=10)
        expected = sum(r is not None for r in returned)
        await server.wait_for_events(expected, timeout=10)
        events = server.events
        assert len(events) == expected
        return Wire(returned, events, server.requests)


async def both(
    calls: list[Call],
    *,
    official: Mapping[str, Any] | None = None,
    aio: Mapping[str, Any] | None = None,
) -> tuple[Wire, Wire]:
    return await official_wire(calls, **(official or {})), await aio_wire(calls, **(aio or {}))


# -- comparisons -------------------------------------------------------------------------------


def user_properties(
    properties: Mapping[str, Any], ignore: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Properties without what names the library or describes the host."""
    dropped = LIB_KEYS | SYSTEM_CONTEXT_KEYS | ignore
    return {k: v for k, v in properties.items() if k not in dropped}


def assert_uuid(value: Any, version: int) -> None:
    assert isinstance(value, str)
    parsed = uuid_module.UUID(value)
    assert str(parsed) == value, f"{value!r} is not a canonical lowercase UUID string"
    assert parsed.version == version, f"{value!r} is not a UUIDv{version}"
    assert parsed.variant == uuid_module.RFC_4122


def assert_utc_iso(value: Any) -> datetime:
    assert isinstance(value, str)
    assert UTC_ISO.fullmatch(value), f"{value!r} is not an ISO-8601 UTC timestamp"
    return datetime.fromisoformat(value)


def assert_same_event(c: Call, official: dict[str, Any], aio: dict[str, Any]) -> None:
    """One event from each client, produced by the same call."""
    assert aio["event"] == official["event"]
    assert set(aio) == set(official), "different top-level keys"
    for key in set(official) - {"properties", "uuid", "timestamp", "distinct_id"}:
        assert aio[key] == official[key], key

    if c.generated_id:
        assert_uuid(official["distinct_id"], 4)
        assert_uuid(aio["distinct_id"], 7)
    else:
        assert aio["distinct_id"] == official["distinct_id"]

    explicit_uuid = c.kwargs.get("uuid")
    if explicit_uuid is None:
        assert_uuid(official["uuid"], 4)
        assert_uuid(aio["uuid"], 7)
    else:
        assert uuid_module.UUID(aio["uuid"]) == uuid_module.UUID(official["uuid"])
        assert aio["uuid"] == str(uuid_module.UUID(str(explicit_uuid)))

    official_ts, aio_ts = assert_utc_iso(official["timestamp"]), assert_utc_iso(aio["timestamp"])
    if c.kwargs.get("timestamp") is None:
        now = datetime.now(UTC)
        assert abs(now - official_ts) < timedelta(seconds=30)
        assert abs(now - aio_ts) < timedelta(seconds=30)
    else:
        assert aio["timestamp"] == official["timestamp"]

    assert user_properties(aio["properties"]) == user_properties(official["properties"])


def assert_same_events(calls: list[Call], official: Wire, aio: Wire) -> None:
    sent = [c for c, r in zip(calls, official.returned, strict=True) if r is not None]
    assert [r is None for r in aio.returned] == [r is None for r in official.returned]
    assert len(official.events) == len(aio.events) == len(sent)
    for c, o, a in zip(sent, official.events, aio.events, strict=True):
        assert_same_event(c, o, a)
    # Each call returns the uuid its event was sent with.
    for wire in (official, aio):
        assert [r for r in wire.returned if r is not None] == [e["uuid"] for e in wire.events]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither client may read its settings (or a proxy) from the developer's environment."""
    for name in list(os.environ):
        if name.upper().startswith("POSTHOG_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and record) any connection or name lookup that is not 127.0.0.1."""
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(address: Any) -> bool:
        if isinstance(address, tuple):
            return str(address[0]) in LOOPBACK_HOSTS
        return isinstance(address, str | bytes)  # a Unix socket path: local by definition

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            attempts.append(f"connect {address!r}")
            raise OSError(f"test network guard: no connections outside loopback ({address!r})")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            attempts.append(f"connect_ex {address!r}")
            raise OSError(f"test network guard: no connections outside loopback ({address!r})")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK_HOSTS:
            attempts.append(f"getaddrinfo {host!r}")
            raise OSError(f"test network guard: no name lookups outside loopback ({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], "a client tried to reach beyond 127.0.0.1"


@pytest.fixture
def local_zone_ist() -> Iterator[None]:
    """Run with the local time zone at UTC+05:30 (a naive 'now' then differs from UTC)."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset() is needed to change the local time zone")
    previous = os.environ.get("TZ")
    os.environ["TZ"] = LOCAL_TZ
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()


# -- the batch envelope ------------------------------------------------------------------------


@pytest.mark.parametrize("historical_migration", [False, True])
async def test_batch_envelope_matches(historical_migration: bool) -> None:
    calls = [call("capture", f"e{i}", distinct_id="u1", properties={"i": i}) for i in range(3)]
    # The official client here uses its consumer thread (not sync mode): one batch on flush().
    official, aio = await both(
        calls,
        official={
            "sync_mode": False,
            "flush_at": 100,
            "flush_interval": 60,
            "gzip": True,
            "historical_migration": historical_migration,
        },
        aio={"flush_at": 100, "flush_interval": 60, "historical_migration": historical_migration},
    )
    assert_same_events(calls, official, aio)
    assert len(official.requests) == len(aio.requests) == 1
    o, a = official.requests[0], aio.requests[0]
    assert o.method == a.method == "POST"
    assert o.path == a.path == "/batch/"
    assert o.status == a.status == 200
    assert o.event_count == a.event_count == 3
    assert o.api_key == a.api_key == KEY
    assert o.historical_migration is historical_migration
    assert a.historical_migration is historical_migration
    assert_utc_iso(o.sent_at)
    assert_utc_iso(a.sent_at)
    assert o.headers["content-type"] == a.headers["content-type"] == "application/json"
    assert o.content_encoding == a.content_encoding == "gzip"
    assert o.compressed and a.compressed
    # User-Agent: each library's own name and version, as in its events' $lib/$lib_version.
    for record, wire in ((o, official), (a, aio)):
        match = LIB_AND_VERSION.fullmatch(record.user_agent or "")
        assert match is not None, record.user_agent
        properties = wire.events[0]["properties"]
        assert match["lib"] == properties["$lib"]
        assert match["version"] == properties["$lib_version"]
    assert official.events[0]["properties"]["$lib"] == "posthog-python"
    assert official.events[0]["properties"]["$lib_version"] == OFFICIAL_VERSION == "7.91.1"
    assert aio.events[0]["properties"]["$lib"] == "aioposthog"


async def test_default_compression_differs_on_purpose() -> None:
    """Documented: the official SDK's gzip is off by default, aioposthog's on."""
    calls = [call("capture", "e", distinct_id="u1")]
    official, aio = await both(calls)
    assert_same_events(calls, official, aio)
    assert official.requests[0].content_encoding is None
    assert not official.requests[0].compressed
    assert aio.requests[0].content_encoding == "gzip"
    assert aio.requests[0].compressed


async def test_v1_envelope_matches() -> None:
    calls = [
        call("capture", "e", distinct_id="u1"),
        call("set", distinct_id="u1", properties={"plan": "pro"}),
    ]
    official, aio = await both(calls, official={"capture_mode": "v1"}, aio={"capture_mode": "v1"})
    assert_same_events(calls, official, aio)
    # Sync mode: one request per call for the official client; one batch for aioposthog.
    assert len(official.requests) == 2
    assert len(aio.requests) == 1
    for record in official.requests + aio.requests:
        assert record.path == "/i/v1/analytics/events"
        assert record.headers["authorization"] == f"Bearer {KEY}"
        assert record.headers["content-type"] == "application/json"
        assert record.attempt == 1
        assert uuid_module.UUID(record.request_id or "")
        assert_utc_iso(record.headers["posthog-request-timestamp"])
        assert_utc_iso(record.created_at)
        assert LIB_AND_VERSION.fullmatch(record.sdk_info or "")
        assert record.sdk_info == record.user_agent
    assert official.requests[0].sdk_info == f"posthog-python/{OFFICIAL_VERSION}"
    assert (aio.requests[0].sdk_info or "").startswith("aioposthog/")


# -- event fields ------------------------------------------------------------------------------


def _everyday_calls() -> list[Call]:
    return [
        call("capture", "order completed", distinct_id="u1", properties={"amount": 29.5}),
        call(
            "capture",
            "with groups",
            distinct_id="u1",
            properties={"plan": "pro"},
            groups={"company": "c1", "team": "t9"},
        ),
        call("capture", "numeric distinct id", distinct_id=42),
        call("capture", "anonymous", generated_id=True),
        call("capture", "empty distinct id", distinct_id="", generated_id=True),
        call(
            "capture",
            "anonymous with a session",
            properties={"$session_id": "s-1", "k": "v"},
            generated_id=True,
        ),
        call("set", distinct_id="u1", properties={"name": "Max", "age": 7}),
        call("set_once", distinct_id="u1", properties={"first_seen": "2024-01-01"}),
        call("alias", previous_id="anon-1", distinct_id="u1"),
        call("group_identify", "company", "c1", {"name": "Acme", "seats": 11}, distinct_id="u1"),
        call("group_identify", "company", "c2", generated_id=True),
        # Personless person updates send nothing, in both.
        call("set", properties={"name": "nobody"}),
        call("set_once", distinct_id="u1", properties={}),
    ]


@pytest.mark.parametrize("capture_mode", ["v0", "v1"])
async def test_event_fields_match(capture_mode: str) -> None:
    calls = _everyday_calls()
    official, aio = await both(
        calls, official={"capture_mode": capture_mode}, aio={"capture_mode": capture_mode}
    )
    assert_same_events(calls, official, aio)
    assert official.returned[-2:] == aio.returned[-2:] == [None, None]


async def test_event_shapes_are_posthogs() -> None:
    """Beyond being equal, the shapes are the ones PostHog's capture contract names."""
    calls = _everyday_calls()
    official, aio = await both(calls)
    for wire in (official, aio):
        by_name = {e["event"]: e for e in wire.events}
        capture = by_name["with groups"]
        assert capture["properties"]["$groups"] == {"company": "c1", "team": "t9"}
        assert capture["properties"]["$geoip_disable"] is True
        assert capture["properties"]["$is_server"] is True
        assert "$process_person_profile" not in capture["properties"]
        assert by_name["numeric distinct id"]["distinct_id"] == "42"
        for name in ("anonymous", "empty distinct id", "anonymous with a session"):
            assert by_name[name]["properties"]["$process_person_profile"] is False
        assert by_name["anonymous with a session"]["properties"]["$session_id"] == "s-1"

        set_ = by_name["$set"]
        assert set_["$set"] == {"name": "Max", "age": 7}
        assert "$set" not in set_["properties"]
        assert by_name["$set_once"]["$set_once"] == {"first_seen": "2024-01-01"}

        alias = by_name["$create_alias"]
        assert alias["distinct_id"] == "anon-1"
        assert user_properties(
            alias["properties"], frozenset({"$geoip_disable", "$is_server"})
        ) == {
            "distinct_id": "anon-1",
            "alias": "u1",
        }

        groups = [e for e in wire.events if e["event"] == "$groupidentify"]
        assert [g["properties"]["$group_key"] for g in groups] == ["c1", "c2"]
        assert groups[0]["properties"]["$group_type"] == "company"
        assert groups[0]["properties"]["$group_set"] == {"name": "Acme", "seats": 11}
        assert groups[1]["properties"]["$group_set"] == {}
        assert groups[0]["distinct_id"] == "u1"
        # group_identify is personful even without a distinct id.
        assert "$process_person_profile" not in groups[1]["properties"]


async def test_geoip_flags_match() -> None:
    calls = [
        call("capture", "client default", distinct_id="u1"),
        call("capture", "per call off", distinct_id="u1", disable_geoip=False),
        call("capture", "per call on", distinct_id="u1", disable_geoip=True),
        call("set", distinct_id="u1", properties={"p": 1}, disable_geoip=False),
        call("alias", previous_id="a", distinct_id="u1", disable_geoip=False),
        call("group_identify", "company", "c1", {}, distinct_id="u1", disable_geoip=False),
    ]
    for client_default in (True, False):
        official, aio = await both(
            calls,
            official={"disable_geoip": client_default},
            aio={"disable_geoip": client_default},
        )
        assert_same_events(calls, official, aio)
        for wire in (official, aio):
            flags = [e["properties"].get("$geoip_disable") for e in wire.events]
            first = True if client_default else None
            assert flags == [first, None, True, None, None, None]


# -- explicit uuids and timestamps -------------------------------------------------------------


async def test_explicit_uuids_are_kept() -> None:
    as_text = "0190e8c3-4f1a-7b2c-9d3e-4f5a6b7c8d9e"
    as_uuid = uuid_module.UUID("6f1d4c2a-8b3e-4f5a-9c7d-0e1f2a3b4c5d")
    upper = "ABCDEF00-1234-5678-9ABC-DEF012345678"
    calls = [
        call("capture", "text", distinct_id="u1", uuid=as_text),
        call("capture", "object", distinct_id="u1", uuid=as_uuid),
        call("set", distinct_id="u1", properties={"p": 1}, uuid=as_uuid),
        call("alias", previous_id="a", distinct_id="u1", uuid=as_text),
        call("group_identify", "company", "c1", {}, distinct_id="u1", uuid=as_text),
        call("capture", "upper case", distinct_id="u1", uuid=upper),
    ]
    official, aio = await both(calls)
    assert_same_events(calls, official, aio)
    assert [e["uuid"] for e in aio.events] == [
        as_text,
        str(as_uuid),
        str(as_uuid),
        as_text,
        as_text,
        upper.lower(),
    ]
    # Documented difference: the official SDK sends an explicit uuid string as given,
    # aioposthog in canonical form. The UUID is the same.
    assert official.events[-1]["uuid"] == upper


@pytest.mark.usefixtures("local_zone_ist")
async def test_explicit_timestamps_convert_to_the_same_utc() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    assert datetime.now().astimezone().utcoffset() == ist.utcoffset(None)
    just_now = datetime.now() - timedelta(seconds=1)  # naive and recent: taken as local time
    later = datetime.now() + timedelta(hours=3)  # naive, not recent: taken as UTC
    cases: list[tuple[datetime | str, str]] = [
        (datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00+00:00"),
        (datetime(2024, 5, 1, 12, 30, 0, 250), "2024-05-01T12:30:00.000250+00:00"),
        (just_now, just_now.replace(tzinfo=ist).astimezone(UTC).isoformat()),
        (later, later.replace(tzinfo=UTC).isoformat()),
        (datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "2024-05-01T12:30:00+00:00"),
        (
            datetime(2024, 5, 1, 1, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2))),
            "2024-04-30T23:30:05.123456+00:00",
        ),
        (
            datetime(2024, 5, 1, 22, 0, tzinfo=timezone(timedelta(hours=-3))),
            "2024-05-02T01:00:00+00:00",
        ),
        ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00+00:00"),
        ("2024-05-01T12:30:00.5Z", "2024-05-01T12:30:00.500000+00:00"),
        ("2024-05-01T12:30:00+0530", "2024-05-01T07:00:00+00:00"),
        ("2024-05-01T12:30:00-02:00", "2024-05-01T14:30:00+00:00"),
        ("2024-05-01T12:30:00", "2024-05-01T12:30:00+00:00"),
    ]
    calls = [
        call("capture", f"t{i}", distinct_id="u1", timestamp=ts) for i, (ts, _) in enumerate(cases)
    ]
    calls += [
        call("set", distinct_id="u1", properties={"p": 1}, timestamp="2024-05-01T12:30:00Z"),
        call("set_once", distinct_id="u1", properties={"p": 1}, timestamp=just_now),
        call("alias", previous_id="a", distinct_id="u1", timestamp=cases[5][0]),
        call("group_identify", "company", "c1", {}, distinct_id="u1", timestamp=later),
    ]
    official, aio = await both(calls)
    assert_same_events(calls, official, aio)
    expected = [want for _, want in cases] + [cases[7][1], cases[2][1], cases[5][1], cases[3][1]]
    assert [e["timestamp"] for e in official.events] == expected
    assert [e["timestamp"] for e in aio.events] == expected


async def test_invalid_uuid_or_timestamp_falls_back_officially_and_raises_here() -> None:
    """Documented difference (`AsyncPostHog.capture` raises `EventValidationError`)."""
    bad = [
        call("capture", "bad uuid", distinct_id="u1", uuid="not-a-uuid"),
        call("capture", "date only", distinct_id="u1", timestamp="2024-05-01"),
        call("capture", "bad timestamp", distinct_id="u1", timestamp="yesterday"),
    ]
    official = await official_wire(bad)
    assert [e["event"] for e in official.events] == ["bad uuid", "date only", "bad timestamp"]
    assert_uuid(official.events[0]["uuid"], 4)  # a fresh uuid instead of the bad one
    for event in official.events[1:]:  # the current time instead of the bad timestamp
        sent = assert_utc_iso(event["timestamp"])
        assert abs(datetime.now(UTC) - sent) < timedelta(seconds=30)

    async with LocalPostHog(api_key=KEY) as server:
        async with AsyncPostHog(KEY, host=server.url) as client:
            for c in bad:
                with pytest.raises(EventValidationError) as raised:
                    await getattr(client, c.method)(*c.args, **c.kwargs)
                assert raised.value.key in ("uuid", "timestamp")
        assert server.events == []


# -- property values ---------------------------------------------------------------------------


class Colour(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


@dataclass
class Address:
    city: str
    since: date
    tags: tuple[str, ...]


@dataclass
class Customer:
    id: uuid_module.UUID
    address: Address
    balance: Decimal


class Order(pydantic.BaseModel):
    id: uuid_module.UUID
    placed: datetime
    items: list[str]
    total: Decimal
    customer: Customer


UUID_VALUE = uuid_module.UUID("12345678-1234-5678-1234-567812345678")
ADDRESS = Address("Paris", date(2020, 1, 2), ("home", "billing"))
CUSTOMER = Customer(UUID_VALUE, ADDRESS, Decimal("10.25"))


def rich_properties() -> dict[str, Any]:
    return {
        "text": "héllo ✓",
        "int": 2**64,
        "float": 1.5e100,
        "bool": True,
        "none": None,
        "aware": datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        "aware_utc": datetime(2024, 5, 1, 12, 30, 0, 5, tzinfo=UTC),
        "naive": datetime(2024, 5, 1, 12, 30),
        "date": date(2024, 5, 1),
        "uuid": UUID_VALUE,
        "decimal": Decimal("19.99"),
        "decimal_int": Decimal("7"),
        "decimal_nan": Decimal("NaN"),
        "nan": float("nan"),
        "inf": float("inf"),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", "b", "c"}),
        "tuple": (1, (2, 3), "x"),
        "deque": deque([1, 2]),
        "bytes": "café".encode(),
        "int_keys": {1: "one", 2.5: "two and a half", None: "null"},
        "str_enum": Colour.RED,
        "int_enum": Level.HIGH,
        "dataclass": CUSTOMER,
        "pydantic": Order(
            id=UUID_VALUE,
            placed=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
            items=["a", "b"],
            total=Decimal("3.50"),
            customer=CUSTOMER,
        ),
        "nested": {
            "list": [UUID_VALUE, {"when": date(2024, 1, 1)}, [Decimal("1.1"), {2}]],
            "address": ADDRESS,
            "deep": {"a": {"b": {"c": [datetime(2024, 1, 1, tzinfo=UTC)]}}},
        },
    }


async def test_rich_property_values_encode_identically() -> None:
    calls = [
        call("capture", "rich", distinct_id="u1", properties=rich_properties()),
        call("set", distinct_id="u1", properties=rich_properties()),
        call("set_once", distinct_id="u1", properties={"since": date(2024, 5, 1), "ids": {7}}),
        call("group_identify", "company", "c1", rich_properties(), distinct_id="u1"),
    ]
    official, aio = await both(calls)
    assert_same_events(calls, official, aio)
    # Spot checks on what "identically" means, on both sides.
    for wire in (official, aio):
        props = wire.events[0]["properties"]
        assert props["aware"] == "2024-05-01T12:30:00+02:00"
        assert props["naive"] == "2024-05-01T12:30:00"
        assert props["decimal"] == 19.99
        assert props["decimal_nan"] is None and props["nan"] is None and props["inf"] is None
        assert props["set"] == [1, 2, 3]
        assert props["int_keys"] == {"1": "one", "2.5": "two and a half", "null": "null"}
        assert props["dataclass"] == {
            "id": str(UUID_VALUE),
            "address": {"city": "Paris", "since": "2020-01-02", "tags": ["home", "billing"]},
            "balance": 10.25,
        }
        assert props["pydantic"]["placed"] == "2024-05-01T12:30:00+00:00"
        assert wire.events[1]["$set"]["int_enum"] == 3


async def test_unserialisable_values_become_null_officially_and_raise_here() -> None:
    """Documented difference (`aioposthog._serialize`): no silent nulls."""

    class Opaque:
        pass

    properties = {"ok": 1, "opaque": Opaque(), "nested": {"bad": [1, Opaque()]}}
    official = await official_wire(
        [call("capture", "opaque", distinct_id="u1", properties=properties)]
    )
    sent = official.events[0]["properties"]
    assert sent["ok"] == 1
    assert sent["opaque"] is None
    assert sent["nested"] == {"bad": [1, None]}

    async with LocalPostHog(api_key=KEY) as server:
        async with AsyncPostHog(KEY, host=server.url) as client:
            with pytest.raises(EventValidationError) as raised:
                await client.capture("opaque", "u1", properties)
            assert raised.value.key == "properties.opaque"
            with pytest.raises(EventValidationError) as raised:
                await client.capture("opaque", "u1", {"nested": properties["nested"]})
            assert raised.value.key == "properties.nested.bad[1]"
        assert server.events == []


# -- super properties --------------------------------------------------------------------------

SUPER = {"service": "api", "plan": "free"}


async def test_super_properties_precedence_differs_on_purpose() -> None:
    """Documented: an event's own properties win in aioposthog; super properties officially."""
    calls = [
        call("capture", "e", distinct_id="u1", properties={"plan": "pro", "own": 1}),
        call("alias", previous_id="a", distinct_id="u1"),
        call("group_identify", "company", "c1", {"name": "Acme"}, distinct_id="u1"),
        call("capture", "anonymous", generated_id=True),
    ]
    official, aio = await both(
        calls, official={"super_properties": SUPER}, aio={"super_properties": SUPER}
    )
    conflicting = frozenset({"plan"})
    for o, a in zip(official.events, aio.events, strict=True):
        assert a["event"] == o["event"]
        assert user_properties(a["properties"], conflicting) == user_properties(
            o["properties"], conflicting
        )
        assert o["properties"]["service"] == a["properties"]["service"] == "api"
    assert official.events[0]["properties"]["plan"] == "free"
    assert aio.events[0]["properties"]["plan"] == "pro"
    for o, a in zip(official.events[1:], aio.events[1:], strict=True):
        assert o["properties"]["plan"] == a["properties"]["plan"] == "free"


async def test_super_properties_reach_person_updates() -> None:
    """SUSPECTED BUG: the official SDK adds super properties to every event, `$set` and
    `$set_once` included, and aioposthog's `super_properties` says "added to every event";
    aioposthog leaves them out of person updates."""
    calls = [
        call("set", distinct_id="u1", properties={"name": "Max"}),
        call("set_once", distinct_id="u1", properties={"first": "x"}),
    ]
    official, aio = await both(
        calls, official={"super_properties": SUPER}, aio={"super_properties": SUPER}
    )
    for o in official.events:
        assert o["properties"]["service"] == "api"
    assert_same_events(calls, official, aio)


# -- system context ----------------------------------------------------------------------------


async def test_capture_carries_the_official_system_context() -> None:
    """SUSPECTED BUG: the official SDK adds `system_context()` ($python_runtime,
    $python_version, $os, $os_version, $os_distro on Linux) to every capture() and
    capture_exception(); aioposthog sends none of it and documents no such choice."""
    try:
        raise RuntimeError("for the system context")
    except RuntimeError as exc:
        error = exc
    calls = [
        call("capture", "e", distinct_id="u1"),
        call("capture", "anonymous", generated_id=True),
        call("capture_exception", error, distinct_id="u1"),
        # Officially not on person updates, alias or group identify: the same is expected.
        call("set", distinct_id="u1", properties={"p": 1}),
        call("alias", previous_id="a", distinct_id="u1"),
        call("group_identify", "company", "c1", {}, distinct_id="u1"),
    ]
    official, aio = await both(calls)
    assert {"$python_runtime", "$python_version", "$os", "$os_version"} <= SYSTEM_CONTEXT_KEYS
    for o, a in zip(official.events, aio.events, strict=True):
        expected = {k: v for k, v in o["properties"].items() if k in SYSTEM_CONTEXT_KEYS}
        if o["event"] in ("e", "anonymous", "$exception"):
            assert expected.keys() == SYSTEM_CONTEXT_KEYS
        else:
            assert expected == {}
        got = {k: v for k, v in a["properties"].items() if k in SYSTEM_CONTEXT_KEYS}
        assert got == expected, o["event"]


# -- exceptions --------------------------------------------------------------------------------


class PaymentError(Exception):
    pass


def _parse_amount(text: str) -> int:
    return int(text)


def _charge(text: str) -> None:
    try:
        _parse_amount(text)
    except ValueError as exc:
        raise PaymentError(f"cannot charge {text!r}") from exc


def _charge_and_log(text: str) -> None:
    try:
        _charge(text)
    except PaymentError:
        targets: dict[str, str] = {}
        targets["log-target"]  # raised while handling: an implicit __context__ chain


def _raise_group() -> None:
    errors: list[Exception] = []
    for text in ("x", "y"):
        try:
            _parse_amount(text)
        except ValueError as exc:
            errors.append(exc)
    raise ExceptionGroup("two bad amounts", errors)


def _raised(fn: Callable[[], None]) -> BaseException:
    """Raise once; the same exception object then goes to both clients."""
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def _frame_view(entry: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    frames = (entry.get("stacktrace") or {}).get("frames") or []
    return [(f["function"], f["module"], f["filename"], f["lineno"]) for f in frames]


async def test_capture_exception_matches() -> None:
    chained = _raised(lambda: _charge_and_log("abc"))
    group = _raised(_raise_group)
    plain = _raised(lambda: _charge("12x"))
    calls = [
        call("capture_exception", chained, distinct_id="u1", properties={"order": 7}),
        call("capture_exception", group, distinct_id="u1"),
        # Personless: no distinct id.
        call("capture_exception", plain, generated_id=True),
    ]
    official, aio = await both(calls)
    assert_same_events(calls, official, aio)

    for o, a in zip(official.events, aio.events, strict=True):
        assert o["event"] == a["event"] == "$exception"
        o_list, a_list = o["properties"]["$exception_list"], a["properties"]["$exception_list"]
        assert [(e["type"], e["value"], e["module"]) for e in a_list] == [
            (e["type"], e["value"], e["module"]) for e in o_list
        ]
        assert [e["mechanism"] for e in a_list] == [e["mechanism"] for e in o_list]
        assert [_frame_view(e) for e in a_list] == [_frame_view(e) for e in o_list]
        assert [sorted(e) for e in a_list] == [sorted(e) for e in o_list]
        for o_entry, a_entry in zip(o_list, a_list, strict=True):
            o_frames = (o_entry.get("stacktrace") or {}).get("frames") or []
            a_frames = (a_entry.get("stacktrace") or {}).get("frames") or []
            assert [sorted(f) for f in a_frames] == [sorted(f) for f in o_frames]
        assert a_list == o_list
        assert a["properties"]["$exception_level"] == o["properties"]["$exception_level"]

    chain = official.events[0]["properties"]["$exception_list"]
    assert [e["type"] for e in chain] == ["KeyError", "PaymentError", "ValueError"]
    assert [e["mechanism"].get("source") for e in chain] == [None, "context", "cause"]
    assert chain[0]["mechanism"]["handled"] is True
    assert [f["function"] for f in chain[2]["stacktrace"]["frames"]] == ["_charge", "_parse_amount"]
    assert official.events[0]["properties"]["order"] == 7
    members = official.events[1]["properties"]["$exception_list"]
    assert [e["type"] for e in members] == ["ExceptionGroup", "ValueError", "ValueError"]
    assert official.events[2]["properties"]["$process_person_profile"] is False
