"""Delivery: every status path, retries, 413 splits, Retry-After, and the error translation."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import pytest

from aioposthog import (
    APIError,
    AsyncPostHog,
    AuthenticationError,
    PayloadTooLargeError,
    PostHogError,
    QuotaLimitedError,
    RateLimitedError,
    RequestTimeout,
    ServerError,
    TransportError,
    translate_error,
)
from aioposthog._exceptions import parse_retry_after

from ._mock import MockPostHog, Sleeps, fast_retry

KEY = "phc_deliverytest"


def client(mock: MockPostHog, **options: Any) -> AsyncPostHog:
    options.setdefault("flush_interval", 60)
    options.setdefault("retry", fast_retry())
    return AsyncPostHog(KEY, host="http://posthog.test", transport=mock.transport, **options)


def reply(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, **kwargs)


async def send_one(mock: MockPostHog, **options: Any) -> AsyncPostHog:
    async with client(mock, **options) as posthog:
        await posthog.capture("e", "u1")
        await posthog.flush()
    return posthog


async def test_200_counts_sent() -> None:
    mock = MockPostHog()
    posthog = await send_one(mock)
    stats = posthog.stats
    assert stats.sent == 1 and stats.batches_sent == 1 and stats.dropped_total == 0
    assert stats.bytes_sent == len(mock.requests[0].raw)
    assert stats.last_success is not None


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_client_errors_are_not_retried_and_reported(status: int) -> None:
    mock = MockPostHog().then(reply(status, json={"detail": "token invalid or batch bad"}))
    errors: list[tuple[PostHogError, int]] = []
    posthog = await send_one(mock, on_error=lambda e, n: errors.append((e, n)))
    assert len(mock.requests) == 1
    stats = posthog.stats
    assert stats.dropped["rejected_by_server"] == 1
    assert stats.sent == 0 and stats.retried == 0 and stats.failed == 1
    assert stats.last_error is not None and "token invalid or batch bad" in stats.last_error
    [(error, count)] = errors
    assert count == 1 and isinstance(error, APIError) and error.status == status
    assert isinstance(error, AuthenticationError) == (status in (401, 403))
    assert KEY not in stats.last_error


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(status: int) -> None:
    mock = MockPostHog().then(reply(status), reply(status))
    posthog = await send_one(mock)
    assert len(mock.requests) == 3
    assert posthog.stats.sent == 1 and posthog.stats.retried == 2
    # the same events each time, with a fresh sent_at per attempt
    assert [r.events[0]["uuid"] for r in mock.requests] == [mock.requests[0].events[0]["uuid"]] * 3


async def test_retries_exhausted_count_send_failed() -> None:
    mock = MockPostHog().then(*[reply(503)] * 10)
    posthog = await send_one(mock, retry=fast_retry(attempts=3))
    assert len(mock.requests) == 3
    assert posthog.stats.dropped["send_failed"] == 1
    assert posthog.stats.failed == 1


async def test_429_with_retry_after_seconds_is_a_floor() -> None:
    sleeps = Sleeps()
    mock = MockPostHog().then(reply(429, headers={"Retry-After": "7"}))
    posthog = await send_one(mock, retry=fast_retry(sleep=sleeps))
    assert sleeps.waits == [7.0]
    assert posthog.stats.sent == 1


async def test_429_with_retry_after_http_date() -> None:
    sleeps = Sleeps()
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    mock = MockPostHog().then(reply(429, headers={"Retry-After": when}))
    await send_one(mock, retry=fast_retry(sleep=sleeps))
    [wait] = sleeps.waits
    assert 25 <= wait <= 31


async def test_429_without_retry_after_uses_backoff() -> None:
    sleeps = Sleeps()
    mock = MockPostHog().then(reply(429), reply(429))
    posthog = await send_one(mock, retry=fast_retry(sleep=sleeps))
    assert sleeps.waits == [0.0, 0.0]
    assert posthog.stats.sent == 1


async def test_connection_refused_is_retried() -> None:
    mock = MockPostHog().then(httpx.ConnectError, httpx.ConnectError)
    posthog = await send_one(mock)
    assert posthog.stats.sent == 1 and posthog.stats.retried == 2


async def test_read_timeout_is_retried_then_fails_as_timeout() -> None:
    errors: list[PostHogError] = []
    mock = MockPostHog().then(*[httpx.ReadTimeout("slow")] * 5)
    posthog = await send_one(
        mock, retry=fast_retry(attempts=2), on_error=lambda e, n: errors.append(e)
    )
    assert len(mock.requests) == 2
    assert isinstance(errors[0], RequestTimeout)
    assert posthog.stats.dropped["send_failed"] == 1


async def test_413_splits_the_batch_in_halves() -> None:
    mock = MockPostHog()
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events = mock.requests[-1].events
        sizes.append(len(events))
        return reply(413) if len(events) > 2 else MockPostHog._ok(request)

    mock.default = handler
    async with client(mock) as posthog:
        for i in range(8):
            await posthog.capture("e", f"u{i}")
        await posthog.flush()
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    assert posthog.stats.sent == 8
    delivered = [e["distinct_id"] for r in mock.requests if len(r.events) <= 2 for e in r.events]
    assert delivered == [f"u{i}" for i in range(8)]


async def test_413_on_a_single_event_drops_it_with_reason() -> None:
    mock = MockPostHog()
    mock.default = lambda request: reply(413)
    posthog = await send_one(mock)
    assert posthog.stats.dropped["payload_too_large"] == 1


async def test_v1_per_event_results() -> None:
    mock = MockPostHog()
    outcomes = iter(["retry", "drop", "limited", "warning", "ok"])
    first_uuids: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events = mock.requests[-1].events
        if not first_uuids:
            first_uuids.extend(e["uuid"] for e in events)
            results = {e["uuid"]: {"result": next(outcomes)} for e in events}
        else:
            results = {e["uuid"]: {"result": "ok"} for e in events}
        return reply(200, json={"results": results})

    mock.default = handler
    async with client(mock, capture_mode="v1") as posthog:
        for i in range(5):
            await posthog.capture("e", f"u{i}")
        await posthog.flush()
    assert len(mock.requests) == 2
    assert [e["uuid"] for e in mock.requests[1].events] == [first_uuids[0]]
    assert (
        mock.requests[1].headers["posthog-request-id"]
        != mock.requests[0].headers["posthog-request-id"]
    )
    stats = posthog.stats
    assert stats.sent == 3
    assert stats.dropped["server_drop"] == 1 and stats.dropped["server_limited"] == 1


async def test_v1_retry_keeps_request_id_and_counts_attempts() -> None:
    mock = MockPostHog().then(reply(503))
    await send_one(mock, capture_mode="v1")
    first, second = mock.requests
    assert first.headers["posthog-attempt"] == "1" and second.headers["posthog-attempt"] == "2"
    assert first.headers["posthog-request-id"] == second.headers["posthog-request-id"]


# -- translate_error ------------------------------------------------------------------------


def response(status: int, **kwargs: Any) -> httpx.Response:
    request = httpx.Request("POST", "http://posthog.test/batch/?token=phc_secret")
    return httpx.Response(status, request=request, **kwargs)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, APIError, False),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (402, QuotaLimitedError, False),
        (408, ServerError, True),
        (413, PayloadTooLargeError, False),
        (429, RateLimitedError, True),
        (500, ServerError, True),
        (503, ServerError, True),
    ],
)
def test_translate_statuses(status: int, cls: type[APIError], retryable: bool) -> None:
    error = translate_error(response(status, text="nope", headers={"x-request-id": "req-1"}))
    assert type(error) is cls
    assert isinstance(error, APIError)
    assert error.status == status and error.retryable is retryable
    assert error.request_id == "req-1"
    assert "phc_secret" not in str(error) and "phc_secret" not in repr(error)


def test_translate_rest_throttle_body() -> None:
    body = {
        "type": "throttled_error",
        "detail": "Request was throttled. Expected available in 12 seconds.",
    }
    error = translate_error(response(429, json=body))
    assert isinstance(error, RateLimitedError) and error.retry_after == 12.0


def test_translate_exceptions() -> None:
    refused = translate_error(httpx.ConnectError("refused phc_secret"))
    assert type(refused) is TransportError and refused.retryable
    assert "phc_secret" not in str(refused)
    assert isinstance(refused.original_error, httpx.ConnectError)
    timeout = translate_error(httpx.ReadTimeout("slow"))
    assert type(timeout) is RequestTimeout and timeout.retryable
    assert translate_error(refused) is refused


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("soon", None), (None, None), ("", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected
