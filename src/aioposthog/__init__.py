"""aioposthog: a native asyncio client for PostHog.

>>> from aioposthog import AsyncPostHog
>>> AsyncPostHog("phc_example").config.flush_at
1000
"""

from ._client import AsyncPostHog, HealthStatus
from ._config import PostHogConfig, RetryPolicy, load_config
from ._context import (
    PostHogContext,
    current_context,
    identify_context,
    new_context,
    set_context_session,
    tag,
)
from ._exceptions import (
    APIError,
    AuthenticationError,
    ConfigError,
    EventValidationError,
    PayloadTooLargeError,
    PostHogError,
    QuotaLimitedError,
    RateLimitedError,
    RequestTimeout,
    ServerError,
    TransportError,
    UsageError,
    translate_error,
)
from ._state import ClientState
from ._stats import DROP_REASONS, ClientStats
from ._version import __version__

__all__ = [
    "DROP_REASONS",
    "APIError",
    "AsyncPostHog",
    "AuthenticationError",
    "ClientState",
    "ClientStats",
    "ConfigError",
    "EventValidationError",
    "HealthStatus",
    "PayloadTooLargeError",
    "PostHogConfig",
    "PostHogContext",
    "PostHogError",
    "QuotaLimitedError",
    "RateLimitedError",
    "RequestTimeout",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "UsageError",
    "__version__",
    "current_context",
    "identify_context",
    "load_config",
    "new_context",
    "set_context_session",
    "tag",
    "translate_error",
]
