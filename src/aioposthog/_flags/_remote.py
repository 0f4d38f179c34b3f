"""Remote evaluation: ``POST /flags/?v=2``, both answer shapes, and what a failure is called.

The answer is parsed once into `RemoteFlags`; payloads, which PostHog sends as JSON strings,
are decoded here. A failed call becomes a `FlagsError` whose ``code`` is the value of the
``$feature_flag_error`` property the official SDKs send (``timeout``, ``connection_error``,
``api_error_<status>``, ``quota_limited``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._config import PostHogConfig, RetryPolicy
from .._exceptions import (
    APIError,
    PostHogError,
    RequestTimeout,
    ServerError,
    TransportError,
)
from .._transport import Transport

__all__ = ["FlagsError", "RemoteFlag", "RemoteFlags", "error_code", "fetch_remote_flags"]


@dataclass(frozen=True, slots=True)
class RemoteFlag:
    """One flag as ``/flags`` evaluated it."""

    key: str
    enabled: bool
    variant: str | None
    payload: Any = None
    reason: str | None = None
    reason_description: str | None = None
    condition_index: int | None = None
    flag_id: int | None = None
    version: int | None = None
    failed: bool = False

    @property
    def value(self) -> bool | str:
        """The variant for a multivariate flag, else whether it is enabled."""
        if self.enabled and self.variant:
            return self.variant
        return self.enabled


@dataclass(frozen=True, slots=True)
class RemoteFlags:
    """A parsed ``/flags`` answer."""

    flags: Mapping[str, RemoteFlag] = field(default_factory=dict)
    request_id: str | None = None
    evaluated_at: int | None = None
    errors_while_computing: bool = False
    quota_limited: bool = False


class FlagsError(PostHogError):
    """A ``/flags`` call that produced no usable answer; ``code`` is the error property value."""

    code = "flags_error"


def error_code(error: PostHogError) -> str:
    """The ``$feature_flag_error`` value for a failed flags call."""
    if isinstance(error, RequestTimeout):
        return "timeout"
    if isinstance(error, TransportError):
        return "connection_error"
    if isinstance(error, APIError):
        return "quota_limited" if error.status == 402 else f"api_error_{error.status}"
    return error.code if isinstance(error, FlagsError) else "unknown_error"


def _decode_payload(raw: Any) -> Any:
    # PostHog sends payloads as JSON strings; a string that is not JSON is kept as it is.
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_flags_answer(body: Any) -> RemoteFlags:
    """Parse a v2 (``flags``) or legacy (``featureFlags``) answer."""
    if not isinstance(body, dict):
        raise FlagsError("PostHog's /flags answer is not a JSON object", code="api_error_200")
    quota = body.get("quotaLimited")
    quota_limited = isinstance(quota, list) and "feature_flags" in quota
    flags: dict[str, RemoteFlag] = {}
    raw_flags = body.get("flags")
    if isinstance(raw_flags, dict):
        for key, entry in raw_flags.items():
            if not isinstance(entry, dict):
                continue
            reason = _dict(entry.get("reason"))
            metadata = _dict(entry.get("metadata"))
            variant = entry.get("variant")
            flags[key] = RemoteFlag(
                key=key,
                enabled=bool(entry.get("enabled")),
                variant=variant if isinstance(variant, str) else None,
                payload=_decode_payload(metadata.get("payload")),
                reason=reason.get("code"),
                reason_description=reason.get("description"),
                condition_index=_int_or_none(reason.get("condition_index")),
                flag_id=_int_or_none(metadata.get("id")),
                version=_int_or_none(metadata.get("version")),
                failed=entry.get("failed") is True,
            )
    else:
        values = body.get("featureFlags")
        payloads = body.get("featureFlagPayloads")
        payloads = payloads if isinstance(payloads, dict) else {}
        if isinstance(values, dict):
            for key, value in values.items():
                flags[key] = RemoteFlag(
                    key=key,
                    enabled=bool(value),
                    variant=value if isinstance(value, str) else None,
                    payload=_decode_payload(payloads.get(key)),
                )
    request_id = body.get("requestId")
    return RemoteFlags(
        flags=flags,
        request_id=request_id if isinstance(request_id, str) else None,
        evaluated_at=_int_or_none(body.get("evaluatedAt")),
        errors_while_computing=body.get("errorsWhileComputingFlags") is True,
        quota_limited=quota_limited,
    )


def _retry_flags(error: PostHogError) -> bool:
    # PROTOCOL: one retry on network errors and 502/504 only; other failures answer at once.
    if isinstance(error, TransportError):
        return True
    return isinstance(error, ServerError) and error.status in (502, 504)


async def fetch_remote_flags(
    transport: Transport,
    config: PostHogConfig,
    distinct_id: str,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    disable_geoip: bool | None = None,
    flag_keys: Collection[str] | None = None,
    device_id: str | None = None,
    retry: RetryPolicy | None = None,
) -> RemoteFlags:
    """Ask ``/flags/?v=2``. Raises `PostHogError` (translated) when no answer can be used."""
    body: dict[str, Any] = {
        "token": config.api_key,
        "distinct_id": distinct_id,
        "groups": dict(groups or {}),
        "person_properties": dict(person_properties or {}),
        "group_properties": {k: dict(v) for k, v in (group_properties or {}).items()},
        "geoip_disable": config.disable_geoip if disable_geoip is None else disable_geoip,
    }
    if flag_keys is not None:
        body["flag_keys_to_evaluate"] = list(flag_keys)
    if device_id is not None:
        body["device_id"] = device_id
    content = json.dumps(body, default=str).encode()

    async def build(attempt: int) -> tuple[Mapping[str, str], bytes]:
        return {"Content-Type": "application/json"}, content

    policy = retry or RetryPolicy(max_attempts=2, base=0.3, cap=0.3, jitter=False)
    response = await transport.send(
        "POST",
        "/flags/?v=2",
        build,
        retry=policy,
        span_name="posthog.flags",
        attributes={"posthog.flags.keys": len(flag_keys) if flag_keys is not None else -1},
        timeout=config.feature_flags_request_timeout,
        should_retry=_retry_flags,
    )
    try:
        parsed = response.json()
    except ValueError:
        raise FlagsError(
            "PostHog's /flags answer is not valid JSON", code="api_error_200"
        ) from None
    return parse_flags_answer(parsed)
