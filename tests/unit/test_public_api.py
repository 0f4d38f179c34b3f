"""The public namespace is a contract: it changes only on purpose."""

import aioposthog

EXPECTED = [
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


def test_all_is_pinned() -> None:
    assert aioposthog.__all__ == EXPECTED


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in aioposthog.__all__:
        value = getattr(aioposthog, name)
        if callable(value) and not isinstance(value, str):
            assert value.__doc__, f"{name} has no docstring"
            assert getattr(value, "__module__", "aioposthog").startswith("aioposthog")


def test_exception_tree() -> None:
    a = aioposthog
    assert issubclass(a.ConfigError, a.PostHogError)
    assert issubclass(a.EventValidationError, a.UsageError)
    assert issubclass(a.RequestTimeout, a.TransportError)
    for cls in (
        a.AuthenticationError,
        a.QuotaLimitedError,
        a.PayloadTooLargeError,
        a.RateLimitedError,
        a.ServerError,
    ):
        assert issubclass(cls, a.APIError)
    assert issubclass(a.APIError, a.PostHogError)
