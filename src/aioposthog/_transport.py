"""The one owner of httpx: a keep-alive `httpx.AsyncClient`, the retry loop, spans and latency.

Every request to PostHog goes through `Transport.send()`, which retries what the
`RetryPolicy` allows, honours ``Retry-After`` as a floor, records one span and one latency
sample per attempt, and raises the aioposthog error tree (through `translate_error`) when
it gives up.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import httpx
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._config import PostHogConfig, RetryPolicy
from ._exceptions import PostHogError, RateLimitedError, scrub_secrets, translate_error
from ._telemetry import request_duration, tracer
from ._version import __version__

__all__ = ["USER_AGENT", "Attempt", "Transport"]

USER_AGENT = f"aioposthog/{__version__}"

# Builds the headers and body of attempt n (1-based): v0 stamps `sent_at`, v1 its attempt headers.
Attempt = Callable[[int], Awaitable[tuple[Mapping[str, str], bytes]]]


class Transport:
    """Sends requests to one PostHog host over one pooled HTTP client.

    ``transport`` is httpx's seam for tests (``httpx.MockTransport``); respx works as well.
    """

    def __init__(
        self,
        config: PostHogConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.host = config.host
        self._secrets = tuple(
            key for key in (config.api_key, config.personal_api_key) if key is not None
        )
        connections = max(10, config.max_concurrent_requests * 2)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            # PostHog never redirects capture; following one could leak the token elsewhere.
            follow_redirects=False,
            trust_env=transport is None,
        )

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying client (for the flags and REST layers, which share the pool)."""
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def send(
        self,
        method: str,
        path: str,
        build: Attempt,
        *,
        retry: RetryPolicy,
        span_name: str,
        attributes: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_retry: Callable[[], None] | None = None,
        should_retry: Callable[[PostHogError], bool] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """Send a request, retrying per ``retry``; return the 2xx response or raise.

        ``should_retry`` narrows which retryable errors are retried; statuses in ``accept``
        (e.g. 304) are returned like a 2xx; ``headers`` are added to every attempt's.

        Raises:
            PostHogError: the translated failure of the last attempt, when the error is not
                retryable, attempts are exhausted, or the next wait would pass the deadline.
        """
        url = self.host + path
        started = time.monotonic()
        delays = retry.delays()
        attempt = 0
        request_timeout = httpx.Timeout(timeout) if timeout is not None else None
        while True:
            attempt += 1
            request_headers, body = await build(attempt)
            if headers:
                request_headers = {**headers, **request_headers}
            error = await self._attempt(
                method,
                url,
                request_headers,
                body,
                attempt,
                span_name,
                attributes,
                request_timeout,
                accept,
            )
            if isinstance(error, httpx.Response):
                return error
            retryable = error.retryable if should_retry is None else should_retry(error)
            if not retryable or attempt >= retry.max_attempts:
                raise error
            retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
            wait = retry.wait_for(next(delays), retry_after)
            if retry.deadline is not None and time.monotonic() - started + wait > retry.deadline:
                raise error
            if on_retry is not None:
                on_retry()
            await retry.sleep(wait)

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        attempt: int,
        span_name: str,
        attributes: Mapping[str, Any] | None,
        timeout: httpx.Timeout | None,
        accept: Collection[int],
    ) -> httpx.Response | PostHogError:
        span_attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": url.split("?", 1)[0].removeprefix(self.host) or "/",
            "posthog.attempt": attempt,
            "http.request.body.size": len(body),
        }
        if attributes:
            span_attributes.update(attributes)
        with tracer.start_as_current_span(
            span_name, kind=SpanKind.CLIENT, attributes=span_attributes
        ) as span:
            started = time.perf_counter()
            status: int | None = None
            try:
                if timeout is not None:
                    response = await self._client.request(
                        method, url, headers=headers, content=body, timeout=timeout
                    )
                else:
                    response = await self._client.request(
                        method, url, headers=headers, content=body
                    )
            except (httpx.HTTPError, OSError) as exc:
                result: httpx.Response | PostHogError = translate_error(exc)
            else:
                status = response.status_code
                ok = response.is_success or status in accept
                result = response if ok else translate_error(response)
            if isinstance(result, PostHogError):
                result = scrub_secrets(result, self._secrets)
            elapsed = time.perf_counter() - started
            request_duration.record(
                elapsed,
                {"http.response.status_code": status or 0, "posthog.operation": span_name},
            )
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if isinstance(result, PostHogError):
                span.set_status(Status(StatusCode.ERROR, result.code))
                span.set_attribute("error.type", result.code)
            return result
