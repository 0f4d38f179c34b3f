"""LocalPostHog over real loopback sockets: routes, encodings, errors, faults and waits."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aioposthog.testing import LocalPostHog, Request, Response

pytestmark = pytest.mark.integration

TOKEN = "phc_test"
V0_PATHS = ["/batch/", "/i/v0/e/", "/capture/", "/e/"]
V1_PATH = "/i/v1/analytics/events"


def make_event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "page viewed",
        "distinct_id": f"user-{i}",
        "uuid": str(uuid.uuid4()),
        "timestamp": "2026-01-01T00:00:00+00:00",
        "properties": {"seq": i, "$lib": "aioposthog"},
    }
    event.update(overrides)
    return event


def batch_body(events: list[Any], **top: Any) -> dict[str, Any]:
    return {"api_key": TOKEN, "batch": events, **top}


def v1_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "authorization": f"Bearer {TOKEN}",
        "posthog-sdk-info": "aioposthog/0.1.0",
        "posthog-attempt": "1",
        "posthog-request-id": str(uuid.uuid4()),
        "content-type": "application/json",
    }
    headers.update(overrides)
    return headers


def v1_body(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"created_at": "2026-01-01T00:00:01+00:00", "batch": events}


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


@pytest.fixture
async def server() -> AsyncIterator[LocalPostHog]:
    async with LocalPostHog() as srv:
        yield srv


@pytest.fixture
async def client(server: LocalPostHog) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


# --- lifecycle ----------------------------------------------------------------------------


async def test_health_and_url(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.port > 0
    response = await client.get("/_health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert server.requests == []  # health checks are not recorded


def test_sync_with_and_stop_closes_the_socket() -> None:
    with LocalPostHog() as server:
        port = server.port
        with httpx.Client(base_url=server.url) as http:
            response = http.post("/batch/", json=batch_body([make_event(1)]))
        assert response.json() == {"status": 1}
        assert server.wait_for_events_sync(1, timeout=5) == 1
        assert server.events[0]["distinct_id"] == "user-1"
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def test_explicit_start_stop_restart_and_given_port() -> None:
    server = LocalPostHog()
    server.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        port = server.port
    finally:
        server.stop()
    server.stop()  # a second stop is a no-op
    with LocalPostHog(port=port) as again:
        assert again.port == port
        assert httpx.get(f"{again.url}/_health").status_code == 200


def test_port_in_use_raises_from_start() -> None:
    with LocalPostHog() as first:
        busy = LocalPostHog(port=first.port)
        with pytest.raises(OSError):
            busy.start()
        busy.stop()


async def test_stop_with_idle_keepalive_connection_open() -> None:
    server = LocalPostHog()
    await server.__aenter__()
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/_health")).status_code == 200
        started = time.perf_counter()
        await server.__aexit__(None, None, None)
        assert time.perf_counter() - started < 2
        with pytest.raises(httpx.TransportError):
            await http.get("/_health")


# --- v0 capture -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", V0_PATHS)
@pytest.mark.parametrize("slash", [True, False])
@pytest.mark.parametrize("compress", [False, True])
async def test_v0_routes_store_batches(
    server: LocalPostHog, client: httpx.AsyncClient, path: str, slash: bool, compress: bool
) -> None:
    path = path if slash else path.rstrip("/")
    events = [make_event(i) for i in range(3)]
    body = dumps(batch_body(events, historical_migration=True, sent_at="2026-01-01T00:00:02Z"))
    headers = {"content-type": "application/json", "user-agent": "aioposthog/0.1.0"}
    if compress:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": 1}
    assert server.events == events
    assert server.batches == 1
    [record] = server.requests
    assert record.path == path
    assert record.status == 200
    assert record.event_count == 3
    assert record.compressed is compress
    assert record.content_encoding == ("gzip" if compress else None)
    assert record.body_size == len(body)
    assert record.decoded_size == len(
        dumps(batch_body(events, historical_migration=True, sent_at="2026-01-01T00:00:02Z"))
    )
    assert record.token == TOKEN
    assert record.api_key == TOKEN
    assert record.historical_migration is True
    assert record.sent_at == "2026-01-01T00:00:02Z"
    assert record.user_agent == "aioposthog/0.1.0"
    assert record.fault is False


@pytest.mark.parametrize("path", ["/i/v0/e/", "/capture/", "/e/", "/batch/"])
async def test_v0_single_event_object(
    server: LocalPostHog, client: httpx.AsyncClient, path: str
) -> None:
    event = make_event(7, api_key=TOKEN)
    response = await client.post(path, json=event)
    assert response.status_code == 200
    assert server.events == [event]  # kept as received, api_key included
    assert server.requests[0].token == TOKEN


async def test_v0_list_of_events_with_token_in_events(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    events = [make_event(0, api_key=TOKEN), make_event(1, properties={"token": TOKEN})]
    response = await client.post("/e/", json=events)
    assert response.status_code == 200
    assert server.events == events


async def test_v0_list_with_two_tokens_is_rejected(client: httpx.AsyncClient) -> None:
    events = [make_event(0, api_key="phc_a"), make_event(1, api_key="phc_b")]
    response = await client.post("/e/", json=events)
    assert response.status_code == 400
    assert response.json()["code"] == "multiple_tokens"


async def test_v0_token_field_and_bearer_header(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    r1 = await client.post("/batch/", json={"token": "phc_token", "batch": [make_event(1)]})
    r2 = await client.post(
        "/batch/",
        json={"batch": [make_event(2)]},
        headers={"authorization": "Bearer phc_bearer"},
    )
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert [r.token for r in server.requests] == ["phc_token", "phc_bearer"]
    assert [r.api_key for r in server.requests] == [None, None]


async def test_distinct_id_may_sit_in_properties(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    event = {"event": "$identify", "properties": {"distinct_id": "u9"}}
    numeric = {"event": "e", "distinct_id": 42}
    response = await client.post("/batch/", json=batch_body([event, numeric]))
    assert response.status_code == 200
    assert server.events == [event, numeric]


async def test_gzip_detected_by_magic_bytes(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    body = gzip.compress(dumps(batch_body([make_event(1)])))
    response = await client.post("/batch/", content=body)  # no Content-Encoding header
    assert response.status_code == 200
    assert server.events[0]["distinct_id"] == "user-1"
    assert server.requests[0].compressed is True
    assert server.requests[0].content_encoding is None


async def test_multi_member_gzip(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    raw = dumps(batch_body([make_event(1)]))
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    response = await client.post("/batch/", content=body, headers={"content-encoding": "gzip"})
    assert response.status_code == 200
    assert server.event_count == 1


@pytest.mark.parametrize("raw_deflate", [False, True])
async def test_deflate_body(
    server: LocalPostHog, client: httpx.AsyncClient, raw_deflate: bool
) -> None:
    raw = dumps(batch_body([make_event(3)]))
    if raw_deflate:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = compressor.compress(raw) + compressor.flush()
    else:
        body = zlib.compress(raw)
    response = await client.post("/batch/", content=body, headers={"content-encoding": "deflate"})
    assert response.status_code == 200
    assert server.events[0]["distinct_id"] == "user-3"


async def test_chunked_request_body(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    raw = dumps(batch_body([make_event(i) for i in range(50)]))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 100):
            yield raw[start : start + 100]

    response = await client.post("/batch/", content=chunks())
    assert response.status_code == 200
    assert server.requests[0].headers.get("transfer-encoding") == "chunked"
    assert [e["properties"]["seq"] for e in server.events] == list(range(50))


async def test_keep_alive_reuses_one_connection(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    for i in range(5):
        response = await client.post("/batch/", json=batch_body([make_event(i)]))
        assert response.status_code == 200
    peers = {record.peer for record in server.requests}
    assert len(peers) == 1
    assert next(iter(peers)).startswith("127.0.0.1:")
    async with httpx.AsyncClient(base_url=server.url) as other:
        await other.post("/batch/", json=batch_body([make_event(9)]))
    assert len({record.peer for record in server.requests}) == 2


async def test_order_preserved_across_many_batches(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    seq = 0
    for batch_no in range(60):
        events = [make_event(seq + i) for i in range(25)]
        seq += 25
        body = dumps(batch_body(events))
        if batch_no % 2:
            body = gzip.compress(body)
        response = await client.post("/batch/", content=body)
        assert response.status_code == 200
    assert await server.wait_for_events(seq, timeout=5) == seq
    assert [e["properties"]["seq"] for e in server.events] == list(range(seq))
    assert server.batches == 60
    assert len(server.requests) == 60


async def test_concurrent_clients_all_stored(server: LocalPostHog) -> None:
    async def sender(worker: int) -> None:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for b in range(10):
                events = [make_event(worker * 1000 + b * 10 + i) for i in range(10)]
                assert (await http.post("/batch/", json=batch_body(events))).status_code == 200

    await asyncio.gather(*(sender(w) for w in range(8)))
    seqs = [e["properties"]["seq"] for e in server.events]
    assert sorted(seqs) == sorted(w * 1000 + n for w in range(8) for n in range(100))
    # Within one client the order holds even when clients interleave.
    for w in range(8):
        mine = [s for s in seqs if s // 1000 == w]
        assert mine == sorted(mine)


# --- errors ---------------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, type_: str, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == type_
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


async def test_malformed_json_is_400(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    response = await client.post("/batch/", content=b'{"api_key": "phc_test", "batch": [')
    assert_error(response, 400, "validation_error", "invalid_payload")
    [record] = server.requests
    assert record.status == 400
    assert record.event_count == 0
    assert record.error is not None
    assert "JSON" in record.error
    assert server.events == []


async def test_bad_gzip_is_400(client: httpx.AsyncClient) -> None:
    bad = gzip.compress(b'{"a": 1}')[:-6]  # truncated member
    response = await client.post("/batch/", content=bad, headers={"content-encoding": "gzip"})
    assert_error(response, 400, "validation_error", "invalid_payload")
    plain_but_labelled = await client.post(
        "/batch/", content=dumps(batch_body([make_event()])), headers={"content-encoding": "gzip"}
    )
    assert plain_but_labelled.status_code == 400


async def test_unknown_encoding_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/batch/", content=b"xx", headers={"content-encoding": "br"})
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (batch_body([]), "empty_batch"),
        (batch_body([{"distinct_id": "u"}]), "missing_event_name"),
        (batch_body([{"event": "", "distinct_id": "u"}]), "missing_event_name"),
        (batch_body([{"event": "e"}]), "missing_distinct_id"),
        (batch_body([{"event": "e", "distinct_id": ""}]), "missing_distinct_id"),
        (batch_body([{"event": "e", "distinct_id": None}]), "missing_distinct_id"),
        (batch_body([make_event(0), {"event": "e", "distinct_id": True}]), "missing_distinct_id"),
        (batch_body([{"event": "e", "distinct_id": "u", "properties": []}]), "invalid_payload"),
        (batch_body(["not an event"]), "invalid_payload"),
        ({"api_key": TOKEN, "batch": {"event": "e"}}, "invalid_payload"),
        (batch_body([make_event()], historical_migration="yes"), "invalid_payload"),
        (42, "invalid_payload"),
    ],
)
async def test_invalid_payloads_are_400(
    server: LocalPostHog, client: httpx.AsyncClient, body: Any, code: str
) -> None:
    response = await client.post("/batch/", json=body)
    assert_error(response, 400, "validation_error", code)
    assert server.events == []
    assert server.batches == 0


async def test_missing_token_is_401(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    response = await client.post("/batch/", json={"batch": [make_event()]})
    assert_error(response, 401, "authentication_error", "invalid_api_key")
    empty = await client.post("/batch/", json={"api_key": "", "batch": [make_event()]})
    assert empty.status_code == 401
    personal = await client.post("/batch/", json={"api_key": "phx_x", "batch": [make_event()]})
    assert personal.status_code == 401
    assert server.events == []


async def test_restricted_api_key() -> None:
    async with (
        LocalPostHog(api_key="phc_right") as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        wrong = await http.post("/batch/", json={"api_key": "phc_wrong", "batch": [make_event()]})
        assert_error(wrong, 401, "authentication_error", "invalid_api_key")
        right = await http.post("/batch/", json={"api_key": "phc_right", "batch": [make_event()]})
        assert right.status_code == 200
        wrong_v1 = await http.post(
            V1_PATH,
            json=v1_body([make_event()]),
            headers=v1_headers(authorization="Bearer phc_wrong"),
        )
        assert wrong_v1.status_code == 401
        assert server.event_count == 1
        assert server.api_key == "phc_right"


async def test_unknown_route_is_404(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    response = await client.post("/nope/", json={})
    assert_error(response, 404, "invalid_request", "not_found")
    assert server.requests == []


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/batch/")
    assert_error(response, 405, "invalid_request", "method_not_allowed")
    assert response.headers["allow"] == "POST"
    assert (await client.post("/_health")).status_code == 405


async def test_content_length_over_limit_is_413_then_a_new_connection_works() -> None:
    async with (
        LocalPostHog(max_body_size=10_000) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        big = dumps(batch_body([make_event(i) for i in range(200)]))
        assert len(big) > 10_000
        response = await http.post("/batch/", content=big)
        assert_error(response, 413, "validation_error", "payload_too_large")
        assert response.headers["connection"] == "close"
        small = await http.post("/batch/", json=batch_body([make_event(1)]))
        assert small.status_code == 200
        assert [r.status for r in server.requests] == [413, 200]
        assert server.requests[0].body_size == len(big)
        assert server.event_count == 1


async def test_chunked_body_over_limit_is_413() -> None:
    async with (
        LocalPostHog(max_body_size=10_000) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b"x" * 1000

        response = await http.post("/batch/", content=chunks())
        assert response.status_code == 413
        assert server.event_count == 0


async def test_decompressed_size_over_limit_is_413() -> None:
    async with (
        LocalPostHog(max_body_size=50_000) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        events = [make_event(i, properties={"pad": "a" * 1000}) for i in range(100)]
        body = gzip.compress(dumps(batch_body(events)))
        assert len(body) < 50_000
        response = await http.post("/batch/", content=body, headers={"content-encoding": "gzip"})
        assert_error(response, 413, "validation_error", "payload_too_large")
        assert server.event_count == 0


async def test_default_limit_is_20_mib(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    limit = 20 * 1024 * 1024
    over = b" " * (limit + 1)
    response = await client.post("/batch/", content=over)
    assert response.status_code == 413
    # Exactly at the limit passes the size check (and then fails as empty JSON, not 413).
    at_limit = await client.post("/batch/", content=b" " * limit)
    assert at_limit.status_code == 400


# --- fault injection ------------------------------------------------------------------------


async def test_fail_next_answers_status_without_storing(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    server.fail_next(2, status=503, headers={"Retry-After": "7"})
    assert server.pending_faults == 2
    body = batch_body([make_event(1)])
    first = await client.post("/batch/", json=body)
    second = await client.post("/batch/", json=body)
    third = await client.post("/batch/", json=body)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.headers["retry-after"] == "7"
    assert first.json()["type"] == "server_error"
    assert server.event_count == 1
    assert [(r.status, r.fault, r.event_count) for r in server.requests] == [
        (503, True, 0),
        (503, True, 0),
        (200, False, 1),
    ]
    assert server.pending_faults == 0


async def test_fail_next_queues_in_order_and_custom_body(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    server.fail_next(1, 429, headers={"Retry-After": "60"})
    server.fail_next(1, 413, body={"detail": "too big"})
    server.fail_next(1, 500, body="boom")
    v1 = await client.post(V1_PATH, json=v1_body([make_event()]), headers=v1_headers())
    v0 = await client.post("/batch/", json=batch_body([make_event()]))
    text = await client.post("/e/", json=batch_body([make_event()]))
    assert v1.status_code == 429
    assert v1.headers["retry-after"] == "60"
    assert v1.json()["code"] == "throttled"
    assert (v0.status_code, v0.json()) == (413, {"detail": "too big"})
    assert (text.status_code, text.text) == (500, "boom")
    assert text.headers["content-type"].startswith("text/plain")
    assert server.event_count == 0
    # Faults do not touch other routes.
    server.fail_next(1)
    assert (await client.get("/_health")).status_code == 200
    assert server.pending_faults == 1


async def test_fail_next_disconnect(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    server.fail_next(1, disconnect=True)
    with pytest.raises(httpx.TransportError):
        await client.post("/batch/", json=batch_body([make_event()]))
    response = await client.post("/batch/", json=batch_body([make_event()]))
    assert response.status_code == 200
    assert [r.status for r in server.requests] == [0, 200]


async def test_set_delay_slows_answers(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    server.set_delay(0.3)
    started = time.perf_counter()
    response = await client.post("/batch/", json=batch_body([make_event()]))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed >= 0.3
    assert (await client.get("/_health")).status_code == 200  # not a capture route
    server.set_delay(0)
    started = time.perf_counter()
    await client.post("/batch/", json=batch_body([make_event()]))
    assert time.perf_counter() - started < 0.25


async def test_client_timeout_during_delay_stores_nothing(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    server.set_delay(0.5)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/batch/", json=batch_body([make_event()]), timeout=0.1)
    await asyncio.sleep(0.6)
    assert server.event_count == 0
    server.set_delay(0)
    assert (await client.post("/batch/", json=batch_body([make_event()]))).status_code == 200
    assert server.event_count == 1


async def test_reset_faults(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    server.fail_next(3)
    server.set_delay(5)
    server.v1_results = {"x": "drop"}
    server.reset_faults()
    assert server.pending_faults == 0
    assert server.v1_results is None
    response = await client.post("/batch/", json=batch_body([make_event()]), timeout=2)
    assert response.status_code == 200


def test_fail_next_validates_arguments() -> None:
    server = LocalPostHog()
    with pytest.raises(ValueError, match="n must be"):
        server.fail_next(-1)
    with pytest.raises(ValueError, match="status"):
        server.fail_next(1, status=42)
    with pytest.raises(ValueError, match="seconds"):
        server.set_delay(-1)


# --- v1 capture -----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("path", [V1_PATH, V1_PATH + "/"])
async def test_v1_accepts_and_answers_per_event(
    server: LocalPostHog, client: httpx.AsyncClient, compress: bool, path: str
) -> None:
    events = [make_event(i, options={"process_person_profile": False}) for i in range(3)]
    body = dumps(v1_body(events))
    headers = v1_headers()
    if compress:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"results": {e["uuid"]: {"result": "ok"} for e in events}}
    assert server.events == events
    [record] = server.requests
    assert record.token == TOKEN
    assert record.created_at == "2026-01-01T00:00:01+00:00"
    assert record.sdk_info == "aioposthog/0.1.0"
    assert record.attempt == 1
    assert record.request_id == headers["posthog-request-id"]
    assert record.compressed is compress
    assert record.results == {e["uuid"]: "ok" for e in events}


async def test_v1_requires_bearer(client: httpx.AsyncClient) -> None:
    headers = v1_headers()
    del headers["authorization"]
    response = await client.post(V1_PATH, json=v1_body([make_event()]), headers=headers)
    assert_error(response, 401, "authentication_error", "invalid_api_key")
    basic = await client.post(
        V1_PATH, json=v1_body([make_event()]), headers=v1_headers(authorization="Basic abc")
    )
    assert basic.status_code == 401


@pytest.mark.parametrize("header", ["posthog-sdk-info", "posthog-attempt", "posthog-request-id"])
async def test_v1_missing_header_is_400(
    server: LocalPostHog, client: httpx.AsyncClient, header: str
) -> None:
    headers = v1_headers()
    del headers[header]
    response = await client.post(V1_PATH, json=v1_body([make_event()]), headers=headers)
    assert_error(response, 400, "validation_error", "missing_header")
    assert header in response.json()["detail"]
    assert server.event_count == 0


async def test_v1_bad_attempt_is_400(client: httpx.AsyncClient) -> None:
    for attempt in ("0", "x", "-1"):
        response = await client.post(
            V1_PATH,
            json=v1_body([make_event()]),
            headers=v1_headers(**{"posthog-attempt": attempt}),
        )
        assert response.status_code == 400, attempt


async def test_v1_duplicate_uuid_is_400(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    first = make_event(1)
    second = make_event(2, uuid=first["uuid"])
    response = await client.post(V1_PATH, json=v1_body([first, second]), headers=v1_headers())
    assert_error(response, 400, "validation_error", "duplicate_uuid")
    assert server.event_count == 0


@pytest.mark.parametrize(
    "body",
    [
        v1_body([]),
        v1_body([make_event(uuid=None)]),
        v1_body([make_event(uuid="not-a-uuid")]),
        v1_body([make_event(options=[1])]),
        v1_body([make_event(timestamp=123)]),
        v1_body([{"event": "e", "uuid": str(uuid.uuid4())}]),
        {"batch": [make_event()]},  # created_at missing
        [make_event()],
    ],
)
async def test_v1_invalid_payloads_are_400(
    server: LocalPostHog, client: httpx.AsyncClient, body: Any
) -> None:
    response = await client.post(V1_PATH, json=body, headers=v1_headers())
    assert response.status_code == 400, response.text
    assert server.event_count == 0


async def test_v1_results_override_and_retry_resend(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    events = [make_event(i) for i in range(5)]
    results = ["ok", "retry", "drop", "limited", "warning"]
    server.v1_results = {e["uuid"]: r for e, r in zip(events, results, strict=True)}
    response = await client.post(V1_PATH, json=v1_body(events), headers=v1_headers())
    assert response.status_code == 200
    answered = response.json()["results"]
    assert [answered[e["uuid"]]["result"] for e in events] == results
    assert server.events == [events[0], events[4]]  # ok and warning are kept
    assert server.requests[0].event_count == 2

    # The resend of the "retry" event is stored once (each override applies once).
    resend = await client.post(
        V1_PATH, json=v1_body([events[1]]), headers=v1_headers(**{"posthog-attempt": "2"})
    )
    assert resend.json() == {"results": {events[1]["uuid"]: {"result": "ok"}}}
    assert server.events == [events[0], events[4], events[1]]
    assert server.requests[1].attempt == 2


async def test_v1_results_callable(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    seen: list[str] = []

    def hook(event_uuid: str, event: dict[str, Any]) -> str | None:
        seen.append(event_uuid)
        return "drop" if event["properties"]["seq"] % 2 else None

    server.v1_results = hook
    events = [make_event(i) for i in range(4)]
    response = await client.post(V1_PATH, json=v1_body(events), headers=v1_headers())
    assert [v["result"] for v in response.json()["results"].values()] == [
        "ok",
        "drop",
        "ok",
        "drop",
    ]
    assert seen == [e["uuid"] for e in events]
    assert [e["properties"]["seq"] for e in server.events] == [0, 2]


async def test_v1_results_bad_value_is_500(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    event = make_event()
    server.v1_results = {event["uuid"]: "maybe"}
    response = await client.post(V1_PATH, json=v1_body([event]), headers=v1_headers())
    assert response.status_code == 500
    assert "maybe" in response.json()["detail"]
    assert server.requests[0].status == 500


# --- waiting and reading --------------------------------------------------------------------


async def test_wait_for_events_wakes_when_events_arrive(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    async def send_later() -> None:
        await asyncio.sleep(0.1)
        await client.post("/batch/", json=batch_body([make_event(i) for i in range(3)]))

    task = asyncio.create_task(send_later())
    started = time.perf_counter()
    assert await server.wait_for_events(3, timeout=5) == 3
    assert time.perf_counter() - started < 2
    await task
    assert await server.wait_for_events(0) == 3  # already satisfied: returns at once


async def test_wait_for_events_timeout_message(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    await client.post("/batch/", json=batch_body([make_event()]))
    started = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"expected at least 5 events within 0\.2s, got 1"):
        await server.wait_for_events(5, timeout=0.2)
    assert 0.15 < time.perf_counter() - started < 2
    with pytest.raises(TimeoutError, match="got 1"):
        server.wait_for_events_sync(2, timeout=0.1)


async def test_wait_for_requests_counts_failures(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    server.fail_next(2)
    for _ in range(3):
        await client.post("/batch/", json=batch_body([make_event()]))
    records = await server.wait_for_requests(3, timeout=5)
    assert [r.status for r in records] == [503, 503, 200]
    assert len(server.wait_for_requests_sync(3, timeout=1)) == 3
    with pytest.raises(TimeoutError, match="requests"):
        await server.wait_for_requests(4, timeout=0.1)


async def test_events_are_copies_and_clear_forgets(
    server: LocalPostHog, client: httpx.AsyncClient
) -> None:
    await client.post("/batch/", json=batch_body([make_event(1)]))
    events = server.events
    events[0]["event"] = "mutated"
    events.clear()
    assert server.events[0]["event"] == "page viewed"
    server.fail_next(1)
    server.clear()
    assert (server.events, server.requests, server.batches, server.event_count) == ([], [], 0, 0)
    assert server.pending_faults == 1  # clear() leaves faults alone


async def test_keep_events_false_counts_only() -> None:
    async with (
        LocalPostHog(keep_events=False) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        await http.post("/batch/", json=batch_body([make_event(i) for i in range(4)]))
        assert await server.wait_for_events(4, timeout=5) == 4
        assert server.events == []
        assert server.batches == 1


def test_events_readable_from_another_thread_while_posting() -> None:
    import threading

    with LocalPostHog() as server:
        counts: list[int] = []
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                counts.append(len(server.events))

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            with httpx.Client(base_url=server.url) as http:
                for b in range(20):
                    events = [make_event(b * 10 + i) for i in range(10)]
                    assert http.post("/batch/", json=batch_body(events)).status_code == 200
        finally:
            stop.set()
            thread.join()
        assert counts == sorted(counts)  # never shrinks, never half a batch
        assert all(c % 10 == 0 for c in counts)
        assert [e["properties"]["seq"] for e in server.events] == list(range(200))


# --- HTTP layer details ---------------------------------------------------------------------


async def raw_exchange(server: LocalPostHog, data: bytes, *, read_until_close: bool) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        if read_until_close:
            return await asyncio.wait_for(reader.read(), 5)
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_expect_100_continue(server: LocalPostHog) -> None:
    body = dumps(batch_body([make_event(5)]))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"POST /batch/ HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(body)
        await writer.drain()
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert final.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
        await writer.wait_closed()
    assert server.events[0]["distinct_id"] == "user-5"


async def test_expect_100_continue_over_limit_answers_413_at_once() -> None:
    async with LocalPostHog(max_body_size=100) as server:
        answer = await raw_exchange(
            server,
            b"POST /batch/ HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
            b"content-length: 5000\r\n\r\n",
            read_until_close=True,
        )
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"payload_too_large" in answer


async def test_malformed_http_is_400(server: LocalPostHog) -> None:
    answer = await raw_exchange(server, b"NOT HTTP AT ALL\r\n\r\n", read_until_close=True)
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_add_route_with_path_params(server: LocalPostHog, client: httpx.AsyncClient) -> None:
    async def flag(request: Request) -> Response:
        return Response.json(
            {"key": request.path_params["key"], "token": request.query.get("token")}
        )

    server.add_route("GET", "/api/projects/{project}/feature_flags/{key}/remote_config", flag)
    response = await client.get(
        "/api/projects/@current/feature_flags/new-checkout/remote_config/?token=phc_x"
    )
    assert response.json() == {"key": "new-checkout", "token": "phc_x"}
    [record] = server.requests
    assert record.group is None
    assert record.query == {"token": "phc_x"}
    wrong = await client.post("/api/projects/1/feature_flags/k/remote_config")
    assert wrong.status_code == 405
