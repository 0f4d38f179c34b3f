"""LocalPostHog's feature-flag endpoints, served from definitions a test loads.

Routes, with the fault-injection group (`fail_next(..., group=...)`, `set_delay`) in brackets:

- `GET /flags/definitions` and the legacy `GET /api/feature_flag/local_evaluation` ["definitions"]:
  the loaded payload with an `ETag`; `If-None-Match` with it answers 304.
- `POST /flags` ["flags"]: remote evaluation, `?v=2` (or higher) shape or the legacy one.
- `GET /api/projects/<id>/feature_flags/<key>/remote_config` (also `/api/environments/<id>/...`)
  ["remote_config"]: a remote-config flag's payload.

`/flags` evaluates with the library's own local engine (`aioposthog._flags`), compiled once per
`set_flag_definitions`. A real server knows things a test server does not, so:

- person and group properties stored with `set_person_properties`/`set_group_properties` are
  merged under those of the request, as the server merges its stored ones;
- static cohorts (cohorts a flag uses that are absent from `"cohorts"`) hold the distinct ids
  given to `set_cohort_members`, nobody otherwise (`not_in` matches everyone else);
- `ensure_experience_continuity` is ignored (there are no hash-key overrides to keep);
- a flag the engine still cannot decide (a property neither stored nor passed, a device-id flag
  without a device id, an unknown operator, an unresolved dependency) answers `enabled: false`
  with reason `no_condition_match`: the value a real server gives when the person lacks the
  property, except for `is_not_set`, which it would match;
- a flag whose definition makes the engine fail answers `failed: true` and sets
  `errorsWhileComputingFlags`; keys in `flag_keys_to_evaluate` without a definition are left
  out, as PostHog does; deleted flags are left out, inactive ones answer `enabled: false`;
- no GeoIP properties are ever added (`geoip_disable` is accepted and ignored).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from aioposthog._flags import (
    InconclusiveReason,
)

from ._flag_state import compile_snapshot, render_legacy, render_v2
from ._messages import HttpError, Request, Response
from ._router import Router

if TYPE_CHECKING:
    from ._records import RequestRecord

__all__ = ["DEFINITIONS_PATHS", "FlagsMixin"]

DEFINITIONS_PATH: Final = "/flags/definitions"
LEGACY_DEFINITIONS_PATH: Final = "/api/feature_flag/local_evaluation"
DEFINITIONS_PATHS: Final = (DEFINITIONS_PATH, LEGACY_DEFINITIONS_PATH)
FLAGS_PATH: Final = "/flags"
# Spelt like the example in `LocalPostHog.add_route`'s tests, so that a test registering its own
# handler on the same pattern replaces this one instead of being shadowed by it.
REMOTE_CONFIG_PATHS: Final = (
    "/api/projects/{project}/feature_flags/{key}/remote_config",
    "/api/environments/{project}/feature_flags/{key}/remote_config",
)

_JSON: Final = {"content-type": "application/json"}
_NOT_FOUND = InconclusiveReason.FLAG_NOT_FOUND
_ERROR = InconclusiveReason.EVALUATION_ERROR
_EMPTY: Final[Mapping[str, Any]] = {}


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _auth_error(detail: str, code: str = "invalid_api_key") -> HttpError:
    return HttpError(401, detail, type="authentication_error", code=code)


def _dict_field(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = body.get(name)
    if value is None:
        return _EMPTY
    if not isinstance(value, dict):
        raise HttpError(400, f"'{name}' must be an object")
    return value


def _api_version(raw: str | None) -> int:
    try:
        return int(raw) if raw else 1
    except ValueError:
        return 1


class FlagsMixin:
    """The feature-flag half of `LocalPostHog`: definitions, `/flags`, remote config.

    Switches (plain attributes, read on each request):

    - `definitions_legacy_only`: `/flags/definitions` answers 404, so that a client's fallback
      to `/api/feature_flag/local_evaluation` can be tested;
    - `flags_quota_limited`: `/flags` answers 200 with no flags and
      `"quotaLimited": ["feature_flags"]`;
    - `flags_errors_while_computing`: `/flags` sets `errorsWhileComputingFlags`.

    Thread safety: the test thread writes, the server thread reads. Every write replaces an
    immutable value (a new snapshot, a new dict), so a request sees one consistent state.
    """

    definitions_legacy_only: bool
    flags_quota_limited: bool
    flags_errors_while_computing: bool

    if TYPE_CHECKING:

        @property
        def requests(self) -> list[RequestRecord]: ...

    def _init_flags(self, *, api_key: str | None, personal_api_key: str | None) -> None:
        self.definitions_legacy_only = False
        self.flags_quota_limited = False
        self.flags_errors_while_computing = False
        self._flag_api_key = api_key
        self._personal_api_key = personal_api_key
        self._flag_lock = threading.Lock()
        self._flag_snapshot = compile_snapshot({})
        self._flag_persons: Mapping[str, Mapping[str, Any]] = {}
        self._flag_groups: Mapping[tuple[str, str], Mapping[str, Any]] = {}
        self._flag_cohorts: Mapping[str, frozenset[str]] = {}
        self._flag_failed: frozenset[str] = frozenset()

    def _register_flags(self, router: Router) -> None:
        router.add("GET", DEFINITIONS_PATH, self._definitions, group="definitions")
        router.add("GET", LEGACY_DEFINITIONS_PATH, self._legacy_definitions, group="definitions")
        router.add("POST", FLAGS_PATH, self._flags, group="flags")
        for path in REMOTE_CONFIG_PATHS:
            router.add("GET", path, self._remote_config, group="remote_config")

    # definitions

    def set_flag_definitions(self, payload: Mapping[str, Any]) -> None:
        """Serve `payload` (the `/flags/definitions` shape) and evaluate `/flags` with it.

        `payload` is `{"flags": [...], "group_type_mapping": {...}, "cohorts": {...}}` plus
        anything else PostHog sends (`property_matching_version`); missing keys default to
        empty. It is copied and compiled once, here. The ETag is a hash of its canonical JSON:
        it changes when, and only when, the definitions do.

        >>> from aioposthog.testing import LocalPostHog
        >>> server = LocalPostHog()
        >>> server.set_flag_definitions({"flags": [{"key": "beta", "active": True, "filters": {
        ...     "groups": [{"properties": [], "rollout_percentage": 100}]}}]})
        >>> [flag["key"] for flag in server.flag_definitions["flags"]]
        ['beta']
        """
        snapshot = compile_snapshot(payload)
        self._flag_snapshot = snapshot

    def clear_flag_definitions(self) -> None:
        """Serve empty definitions (`{"flags": [], ...}`): no flag is known any more."""
        self._flag_snapshot = compile_snapshot({})

    @property
    def flag_definitions(self) -> dict[str, Any]:
        """A copy of the payload `/flags/definitions` serves."""
        result: dict[str, Any] = json.loads(self._flag_snapshot.body)
        return result

    @property
    def flag_definitions_etag(self) -> str:
        """The current definitions' ETag, quoted as sent in the `ETag` header."""
        return self._flag_snapshot.etag

    @property
    def personal_api_key(self) -> str | None:
        """The only accepted Bearer key for definitions and remote config, or None (any
        `phs_`/`phx_` key)."""
        return self._personal_api_key

    # what the "server" knows

    def set_person_properties(self, distinct_id: str, properties: Mapping[str, Any]) -> None:
        """Store a person's properties (replacing earlier ones); requests' own win over them."""
        with self._flag_lock:
            self._flag_persons = {**self._flag_persons, str(distinct_id): dict(properties)}

    def set_group_properties(
        self, group_type: str, group_key: str | int, properties: Mapping[str, Any]
    ) -> None:
        """Store a group's properties (replacing earlier ones); requests' own win over them."""
        key = (group_type, str(group_key))
        with self._flag_lock:
            self._flag_groups = {**self._flag_groups, key: dict(properties)}

    def set_cohort_members(self, cohort_id: int | str, distinct_ids: Iterable[str]) -> None:
        """Set the members of a static cohort (one absent from the definitions' "cohorts").

        A cohort present in "cohorts" is evaluated from its definition instead. Members are
        matched by exact distinct id.
        """
        members = frozenset(str(d) for d in distinct_ids)
        with self._flag_lock:
            self._flag_cohorts = {**self._flag_cohorts, str(cohort_id): members}

    def fail_flag(self, key: str) -> None:
        """Make `/flags` answer `failed: true` for `key` (and `errorsWhileComputingFlags`).

        Only flags that would be in the answer are affected (a defined, requested key).
        """
        with self._flag_lock:
            self._flag_failed = self._flag_failed | {key}

    def reset_flag_state(self) -> None:
        """Forget stored properties, cohort members, failed flags, and turn switches off.

        Definitions stay (see `clear_flag_definitions`).
        """
        with self._flag_lock:
            self._flag_persons = {}
            self._flag_groups = {}
            self._flag_cohorts = {}
            self._flag_failed = frozenset()
        self.definitions_legacy_only = False
        self.flags_quota_limited = False
        self.flags_errors_while_computing = False

    # counts

    @property
    def definitions_requests(self) -> int:
        """Requests answered on the definitions routes (faults, errors and 304s included)."""
        return self._count_group("definitions")

    @property
    def flags_requests(self) -> int:
        """Requests answered on `/flags` (faults and errors included)."""
        return self._count_group("flags")

    @property
    def remote_config_requests(self) -> int:
        """Requests answered on the remote config routes (faults and errors included)."""
        return self._count_group("remote_config")

    def _count_group(self, group: str) -> int:
        return sum(1 for record in self.requests if record.group == group)

    # authentication

    def _check_secret_key(self, request: Request) -> None:
        key = request.bearer_token()
        if key is None:
            raise _auth_error(
                "Authentication credentials were not provided: send Authorization: Bearer "
                "<feature flags secure key (phs_) or personal API key (phx_)>.",
                code="not_authenticated",
            )
        if key.startswith("phc_"):
            raise HttpError(
                403,
                "A project API key (phc_) cannot be used here; use a feature flags secure key "
                "(phs_) or a personal API key (phx_).",
                type="authentication_error",
                code="permission_denied",
            )
        expected = self._personal_api_key
        if expected is not None:
            if key != expected:
                raise _auth_error("Invalid personal API key.")
        elif not key.startswith(("phs_", "phx_")):
            raise _auth_error("Expected a feature flags secure key (phs_) or personal API key.")

    def _check_project_token(self, request: Request, token: object) -> str:
        if not isinstance(token, str) or not token.strip():
            raise _auth_error("API key not found: pass the project API key as token or api_key.")
        if token.startswith("phx_"):
            raise _auth_error("A personal API key (phx_) cannot be used as a project token.")
        if self._flag_api_key is not None and token != self._flag_api_key:
            raise _auth_error(f"Project API key {token!r} is not valid for this server.")
        request.info.token = token
        return token

    def _check_query_token(self, request: Request) -> None:
        token = request.query.get("token")
        if not token:
            raise HttpError(400, "The 'token' query parameter is required", code="missing_token")
        self._check_project_token(request, token)

    # handlers (server thread)

    async def _definitions(self, request: Request) -> Response:
        if self.definitions_legacy_only:
            raise HttpError(
                404, f"Not found: {request.path}", type="invalid_request", code="not_found"
            )
        return await self._legacy_definitions(request)

    async def _legacy_definitions(self, request: Request) -> Response:
        self._check_secret_key(request)
        self._check_query_token(request)
        snapshot = self._flag_snapshot
        # Without `send_cohorts` PostHog inlines cohorts into the flags; we serve one payload
        # either way (clients that poll send it).
        if _etag_matches(request.headers.get("if-none-match"), snapshot.etag):
            return Response(304, b"", {"etag": snapshot.etag})
        return Response(200, snapshot.body, {**_JSON, "etag": snapshot.etag})

    async def _remote_config(self, request: Request) -> Response:
        self._check_secret_key(request)
        self._check_query_token(request)
        key = request.path_params["key"]
        info = self._flag_snapshot.flags.get(key)
        if info is None or not info.remote_config:
            detail = "Not found." if info is None else f"Flag {key!r} is not a remote config flag."
            raise HttpError(404, detail, type="invalid_request", code="not_found")
        # PostHog answers the stored payload (a JSON text) JSON-encoded: a string body.
        return Response(200, json.dumps(info.remote_payload).encode(), dict(_JSON))

    async def _flags(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "Body must be a JSON object")
        self._check_project_token(request, body.get("token") or body.get("api_key"))
        distinct_id = body.get("distinct_id")
        if isinstance(distinct_id, (int, float)) and not isinstance(distinct_id, bool):
            distinct_id = str(distinct_id)
        if not isinstance(distinct_id, str) or not distinct_id:
            raise HttpError(400, "'distinct_id' is required", code="missing_distinct_id")
        groups = _dict_field(body, "groups")
        person_properties = _dict_field(body, "person_properties")
        group_properties = _dict_field(body, "group_properties")
        keys = body.get("flag_keys_to_evaluate")
        if keys is not None and (
            not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
        ):
            raise HttpError(400, "'flag_keys_to_evaluate' must be a list of flag keys")
        device_id = body.get("device_id")
        if device_id is not None and not isinstance(device_id, str):
            device_id = str(device_id)
        v2 = _api_version(request.query.get("v")) >= 2
        request_id = str(uuid.uuid4())

        if self.flags_quota_limited:
            limited: dict[str, Any] = (
                {"flags": {}} if v2 else {"featureFlags": {}, "featureFlagPayloads": {}}
            )
            limited.update(
                errorsWhileComputingFlags=False,
                quotaLimited=["feature_flags"],
                requestId=request_id,
            )
            return Response.json(limited)

        snapshot = self._flag_snapshot
        stored = self._flag_persons.get(distinct_id)
        person = {**stored, **person_properties} if stored else dict(person_properties)
        if snapshot.static_cohorts:
            cohorts = self._flag_cohorts
            for cohort_id, prop in snapshot.static_cohorts:
                person[prop] = distinct_id in cohorts.get(cohort_id, ())
        group_props: Mapping[str, Mapping[str, Any]] = group_properties
        stored_groups = self._flag_groups
        if stored_groups and groups:
            group_props = {**group_properties}
            for group_type, group_key in groups.items():
                known = stored_groups.get((group_type, str(group_key)))
                if known:
                    group_props[group_type] = {**known, **(group_properties.get(group_type) or {})}
        results, inconclusive = snapshot.engine.evaluate_all(
            distinct_id,
            groups=groups,
            person_properties=person,
            group_properties=group_props,
            device_id=device_id,
            keys=keys,
        )
        failed = self._flag_failed
        if v2:
            flags, errors = render_v2(snapshot, results, inconclusive, failed)
            answer: dict[str, Any] = {
                "flags": flags,
                "errorsWhileComputingFlags": errors or self.flags_errors_while_computing,
                "requestId": request_id,
                "evaluatedAt": int(time.time() * 1000),
            }
            return Response.json(answer)
        values, payloads, errors = render_legacy(snapshot, results, inconclusive, failed)
        return Response.json(
            {
                "featureFlags": values,
                "featureFlagPayloads": payloads,
                "errorsWhileComputingFlags": errors or self.flags_errors_while_computing,
                "requestId": request_id,
            }
        )
