"""The capture endpoints: v0 (`/batch/`, `/i/v0/e/`, `/capture/`, `/e/`) and v1.

Validation follows PostHog's capture service closely enough to catch client bugs (missing
`event` or `distinct_id`, empty batches, duplicate v1 uuids, missing v1 headers) while doing as
little per-event work as possible: the body is parsed once and each event is checked with a few
dict lookups.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from ._messages import HttpError, Request, Response
from ._router import Router

__all__ = ["V1_RESULTS", "CaptureEndpoints", "V1ResultResolver"]

V0_PATHS: Final = ("/batch/", "/i/v0/e/", "/capture/", "/e/")
V1_PATH: Final = "/i/v1/analytics/events"
V1_RESULTS: Final = frozenset({"ok", "warning", "drop", "retry", "limited"})
# Results whose events PostHog keeps; "retry" asks for a resend, "drop"/"limited" lose them.
_STORED_RESULTS: Final = frozenset({"ok", "warning"})
_V1_HEADERS: Final = ("posthog-sdk-info", "posthog-attempt", "posthog-request-id")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_OK_V0: Final = b'{"status":1}'

V1ResultResolver = Callable[[str, dict[str, Any]], str]
"""(uuid, event) -> the v1 result to answer for that event."""


def _auth_error(detail: str) -> HttpError:
    return HttpError(401, detail, type="authentication_error", code="invalid_api_key")


class CaptureEndpoints:
    """Handlers for the capture routes; what to store is described in `request.info`.

    `api_key` restricts the accepted project token (None accepts any non-empty token);
    `v1_result` picks each v1 event's result.
    """

    def __init__(self, *, api_key: str | None, v1_result: V1ResultResolver) -> None:
        self.api_key = api_key
        self._v1_result = v1_result

    def register(self, router: Router) -> None:
        """Add every capture route to `router`, in the "capture" fault-injection group."""
        for path in V0_PATHS:
            router.add("POST", path, self.v0, group="capture")
        router.add("POST", V1_PATH, self.v1, group="capture")

    def _check_token(self, token: object) -> str:
        if not isinstance(token, str) or not token.strip():
            raise _auth_error(
                "API key not found. You must pass your project API key as api_key, token "
                "or an Authorization: Bearer header."
            )
        if token.startswith("phx_"):
            raise _auth_error("A personal API key (phx_) cannot be used to capture events.")
        if self.api_key is not None and token != self.api_key:
            raise _auth_error(f"Project API key {token!r} is not valid for this server.")
        return token

    async def v0(self, request: Request) -> Response:
        """Single event, batch object, or JSON list of events; answers `{"status": 1}`."""
        payload = request.json()
        info = request.info
        top: dict[str, Any]
        if isinstance(payload, list):
            top, events = {}, payload
            info.shape = "list"
        elif isinstance(payload, dict):
            top = payload
            if "batch" in payload:
                events = payload["batch"]
                if not isinstance(events, list):
                    raise HttpError(400, "'batch' must be a list of events")
            else:
                events = [payload]
                info.shape = "single"
        else:
            raise HttpError(400, "Body must be an event, a batch object or a list of events")

        api_key = top.get("api_key")
        info.api_key = api_key if isinstance(api_key, str) else None
        hm = top.get("historical_migration")
        if hm is not None and not isinstance(hm, bool):
            raise HttpError(400, "'historical_migration' must be a boolean")
        info.historical_migration = hm
        sent_at = top.get("sent_at")
        if sent_at is not None and not isinstance(sent_at, str):
            raise HttpError(400, "'sent_at' must be an ISO-8601 string")
        info.sent_at = sent_at

        token = top.get("api_key") or top.get("token") or request.bearer_token()
        if not token and events:
            token = _token_from_events(events)
        info.token = self._check_token(token)

        if not events:
            raise HttpError(400, "Batch is empty", code="empty_batch")
        for index, event in enumerate(events):
            _check_event(index, event)
        info.event_count = len(events)
        return Response(200, _OK_V0, {"content-type": "application/json"})

    async def v1(self, request: Request) -> Response:
        """The v1 analytics endpoint; answers a result per event uuid."""
        info = request.info
        token = request.bearer_token()
        if token is None:
            raise _auth_error("Missing Authorization: Bearer <project API key> header.")
        info.token = self._check_token(token)
        headers = request.headers
        for name in _V1_HEADERS:
            if not headers.get(name):
                raise HttpError(400, f"Missing required header {name}", code="missing_header")
        if not headers["posthog-attempt"].strip().isdigit() or int(headers["posthog-attempt"]) < 1:
            raise HttpError(400, "posthog-attempt must be a positive integer")

        payload = request.json()
        if not isinstance(payload, dict):
            raise HttpError(400, "Body must be a JSON object")
        created_at = payload.get("created_at")
        if not isinstance(created_at, str) or not created_at:
            raise HttpError(400, "'created_at' is required (ISO-8601 string)")
        info.created_at = created_at
        hm = payload.get("historical_migration")
        if hm is not None and not isinstance(hm, bool):
            raise HttpError(400, "'historical_migration' must be a boolean")
        info.historical_migration = hm
        events = payload.get("batch")
        if not isinstance(events, list):
            raise HttpError(400, "'batch' must be a list of events")
        if not events:
            raise HttpError(400, "Batch is empty", code="empty_batch")

        seen: set[str] = set()
        for index, event in enumerate(events):
            _check_event(index, event)
            uuid = event.get("uuid")
            if not isinstance(uuid, str) or _UUID.fullmatch(uuid) is None:
                raise HttpError(400, f"Event {index}: 'uuid' is required and must be a UUID")
            if uuid in seen:
                raise HttpError(400, f"Event {index}: duplicate uuid {uuid}", code="duplicate_uuid")
            seen.add(uuid)
            for key, kind in (("timestamp", str), ("options", dict)):
                value = event.get(key)
                if value is not None and not isinstance(value, kind):
                    raise HttpError(400, f"Event {index}: '{key}' must be a {kind.__name__}")

        results: dict[str, str] = {}
        skipped: list[str] = []
        resolve = self._v1_result
        for event in events:
            uuid = event["uuid"]
            result = resolve(uuid, event)
            if result not in V1_RESULTS:
                raise ValueError(
                    f"v1 result {result!r} for {uuid} is not one of {sorted(V1_RESULTS)}"
                )
            results[uuid] = result
            if result not in _STORED_RESULTS:
                skipped.append(uuid)
        info.results = results
        info.event_count = len(events) - len(skipped)
        info.skip_uuids = frozenset(skipped) if skipped else None
        return Response.json({"results": {u: {"result": r} for u, r in results.items()}})


def _token_from_events(events: list[Any]) -> str | None:
    tokens: set[str] = set()
    for event in events:
        if not isinstance(event, dict):
            continue
        props = event.get("properties")
        token = (
            event.get("api_key")
            or event.get("token")
            or (props.get("token") if isinstance(props, dict) else None)
        )
        if isinstance(token, str) and token:
            tokens.add(token)
    if len(tokens) > 1:
        raise HttpError(400, "Events in one batch carry different tokens", code="multiple_tokens")
    return tokens.pop() if tokens else None


def _check_event(index: int, event: Any) -> None:
    # Hot loop: a handful of dict lookups and type checks per event, nothing more.
    if type(event) is not dict:
        raise HttpError(400, f"Event {index} is not a JSON object")
    name = event.get("event")
    if type(name) is not str or not name:
        raise HttpError(400, f"Event {index}: 'event' is required", code="missing_event_name")
    props = event.get("properties")
    if props is not None and type(props) is not dict:
        raise HttpError(400, f"Event {index}: 'properties' must be an object")
    distinct_id = event.get("distinct_id")
    if distinct_id is None and props is not None:
        # PostHog also reads distinct_id from the properties.
        distinct_id = props.get("distinct_id")
    kind = type(distinct_id)
    if kind is str:
        if distinct_id:
            return
    elif kind is int or kind is float:
        return
    raise HttpError(
        400,
        f"Event {index}: 'distinct_id' is required (a non-empty string)",
        code="missing_distinct_id",
    )
