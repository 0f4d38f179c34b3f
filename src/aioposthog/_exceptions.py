"""The error tree of aioposthog, and the one place where transport failures join it.

```
PostHogError                 message, code, retryable, original_error
 +-- ConfigError             bad or missing configuration, raised at construction
 +-- UsageError              closed client, wrong event loop, bad arguments
 |    +-- EventValidationError   empty event name, event over the size limit, unserialisable value
 +-- TransportError          network failure (retryable)
 |    +-- RequestTimeout
 +-- APIError                status, body, request_id
      +-- AuthenticationError    401/403
      +-- QuotaLimitedError      402, or quotaLimited in a /flags answer
      +-- PayloadTooLargeError   413
      +-- RateLimitedError       429, retry_after
      +-- ServerError            5xx (retryable)
```

`translate_error()` turns any httpx exception or HTTP response into this tree; no other module
inspects httpx exceptions or status codes to decide what kind of failure happened.

Messages never carry an API key: request URLs and bodies are not echoed, and the server's
answer is cut to a short excerpt.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConfigError",
    "EventValidationError",
    "PayloadTooLargeError",
    "PostHogError",
    "QuotaLimitedError",
    "RateLimitedError",
    "RequestTimeout",
    "ServerError",
    "TransportError",
    "UsageError",
    "parse_retry_after",
    "translate_error",
]

_BODY_EXCERPT = 500
# PostHog's REST throttling body says "Expected available in N seconds." when it sends no header.
_THROTTLE_DETAIL = re.compile(r"available in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


class PostHogError(Exception):
    """Base of every error aioposthog raises.

    Attributes:
        message: a sentence for humans; never contains a secret.
        code: a stable machine-readable slug (``"config"``, ``"rate_limited"``, ...).
        retryable: whether sending the same request again may succeed.
        original_error: the lower-level exception this one was translated from, if any.
    """

    code: str = "posthog_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        original_error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable
        self.original_error = original_error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"


class ConfigError(PostHogError):
    """Bad or missing configuration, raised when the client or its config is built."""

    code = "config"

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class UsageError(PostHogError):
    """The library was called wrongly: closed client, wrong event loop, bad arguments."""

    code = "usage"


class EventValidationError(UsageError):
    """An event cannot be sent as given: empty name, too large, or an unserialisable value.

    Attributes:
        event: the event name as given.
        key: the dotted path of the offending property, when there is one.
    """

    code = "event_validation"

    def __init__(self, message: str, *, event: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.event = event
        self.key = key


class TransportError(PostHogError):
    """The request did not get an HTTP answer: connection refused, reset, DNS, TLS."""

    code = "transport"
    retryable = True


class RequestTimeout(TransportError):
    """The request timed out (connect, write, read or pool)."""

    code = "timeout"


class APIError(PostHogError):
    """PostHog answered with an error status.

    Attributes:
        status: the HTTP status code.
        body: an excerpt of the answer's body (at most 500 characters).
        request_id: the server's request id, when it sent one.
    """

    code = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: str = "",
        request_id: str | None = None,
        retryable: bool | None = None,
        original_error: BaseException | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, original_error=original_error)
        self.status = status
        self.body = body
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status})"


class AuthenticationError(APIError):
    """401 or 403: the project token or personal API key was refused."""

    code = "authentication"


class QuotaLimitedError(APIError):
    """402, or a /flags answer whose ``quotaLimited`` names feature flags."""

    code = "quota_limited"


class PayloadTooLargeError(APIError):
    """413: the request body is over the server's limit."""

    code = "payload_too_large"


class RateLimitedError(APIError):
    """429: too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    code = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx, or 408: the server failed; the same request may succeed later."""

    code = "server_error"
    retryable = True


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Read a ``Retry-After`` header as seconds from now: delta-seconds or an HTTP date.

    >>> parse_retry_after("2.5")
    2.5
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0)
    10.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _body_excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable bodies are reported as absent, not as a second failure
        return ""
    return text[:_BODY_EXCERPT]


def _server_detail(body: str) -> str:
    """The human part of a PostHog error body (``detail`` or ``error``), else the excerpt."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    if isinstance(parsed, dict):
        for field in ("detail", "error", "message"):
            value = parsed.get(field)
            if isinstance(value, str) and value:
                return value[:200]
    return body.strip()[:200]


def _request_id(response: httpx.Response) -> str | None:
    for header in ("x-request-id", "posthog-request-id", "x-amzn-requestid"):
        value: str | None = response.headers.get(header)
        if value:
            return value
    return None


def _what(response: httpx.Response) -> str:
    # Only the path: the query string of a definitions poll carries the project token.
    request = response._request
    return f"{request.method} {request.url.path}" if request is not None else "request"


def _from_response(response: httpx.Response) -> PostHogError:
    status = response.status_code
    # Servers echo tokens back ("API key 'phc_...' is not valid"): redact before keeping any.
    body = _redact(_body_excerpt(response))
    detail = _server_detail(body)
    request_id = _request_id(response)
    where = _what(response)
    suffix = f": {detail}" if detail else ""
    common: dict[str, Any] = {"status": status, "body": body, "request_id": request_id}
    if status in (401, 403):
        return AuthenticationError(
            f"PostHog refused the credentials ({status}) for {where}{suffix}", **common
        )
    if status == 402:
        return QuotaLimitedError(f"PostHog quota limit reached (402) for {where}{suffix}", **common)
    if status == 413:
        return PayloadTooLargeError(f"Request too large (413) for {where}{suffix}", **common)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            match = _THROTTLE_DETAIL.search(body)
            if match:
                retry_after = float(match.group(1))
        return RateLimitedError(
            f"Rate limited by PostHog (429) for {where}{suffix}",
            retry_after=retry_after,
            **common,
        )
    if status == 408 or status >= 500:
        return ServerError(f"PostHog server error ({status}) for {where}{suffix}", **common)
    return APIError(f"PostHog rejected {where} ({status}){suffix}", retryable=False, **common)


def translate_error(error: BaseException | httpx.Response) -> PostHogError:
    """Turn an httpx exception, or an error response, into the aioposthog error tree.

    An error that already belongs to the tree is returned as it is.

    >>> import httpx
    >>> translate_error(httpx.ConnectError("refused")).code
    'transport'
    """
    if isinstance(error, httpx.Response):
        return _from_response(error)
    if isinstance(error, PostHogError):
        return error
    if isinstance(error, httpx.HTTPStatusError):
        translated = _from_response(error.response)
        translated.original_error = error
        return translated
    if isinstance(error, httpx.TimeoutException):
        return RequestTimeout(
            f"PostHog request timed out ({type(error).__name__})", original_error=error
        )
    if isinstance(error, httpx.TransportError):
        # httpx messages can name the host, never credentials; keep only the class for safety.
        return TransportError(
            f"Could not reach PostHog ({type(error).__name__}: {_redact(str(error))[:200]})",
            original_error=error,
        )
    if isinstance(error, (OSError, EOFError)):
        return TransportError(
            f"Could not reach PostHog ({type(error).__name__})", original_error=error
        )
    return PostHogError(
        f"Unexpected error talking to PostHog ({type(error).__name__})", original_error=error
    )


_SECRETISH = re.compile(r"(ph[cxs]_[A-Za-z0-9_-]+|token=[^&\s\"']+|Bearer\s+[^\s\"']+)")


def scrub_secrets(error: PostHogError, secrets: tuple[str, ...]) -> PostHogError:
    """Remove the client's own keys from an error's message and body, whatever their shape."""
    for secret in secrets:
        if secret and secret in error.message:
            error.message = error.message.replace(secret, "[redacted]")
            error.args = (error.message,)
        if isinstance(error, APIError) and secret and secret in error.body:
            error.body = error.body.replace(secret, "[redacted]")
    return error


def _redact(text: str) -> str:
    """Replace anything shaped like a PostHog key or bearer token with ``[redacted]``."""
    return _SECRETISH.sub("[redacted]", text)
