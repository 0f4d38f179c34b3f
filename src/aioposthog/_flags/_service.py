"""The flags facade: local evaluation first, one ``/flags`` call for the rest, flag-called events.

`FlagService` is what `AsyncPostHog`'s flag methods call. It asks the local engine (when
definitions are loaded), falls back to remote evaluation for what the engine cannot decide
(unless ``only_evaluate_locally``), coalesces identical concurrent ``/flags`` calls through the
cache's single-flight (and caches answers for ``flag_cache_ttl`` when set), and reports
``$feature_flag_called`` once per (distinct id, flag, value, groups).

Failures never raise in production: a flag that cannot be evaluated reads as None (or False
for ``feature_enabled``), and the reason travels as ``$feature_flag_error``. With
``debug=True`` they raise.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .._config import PostHogConfig
from .._exceptions import PostHogError, QuotaLimitedError
from .._transport import Transport
from ._called import CalledEvents
from ._engine import FlagEngine
from ._errors import InconclusiveMatch
from ._poller import DefinitionsPoller
from ._remote import FlagsError, RemoteFlag, RemoteFlags, error_code, fetch_remote_flags
from ._snapshot import EvaluatedFlag, FeatureFlagEvaluations

if TYPE_CHECKING:
    from .._cache import FlagCache

__all__ = ["FlagService", "Report", "Spawn"]

logger = logging.getLogger("aioposthog")

# Captures one $feature_flag_called event: (distinct_id, properties, groups, disable_geoip).
Report = Callable[[str, dict[str, Any], Mapping[str, Any] | None, bool | None], Awaitable[None]]
# Runs a coroutine function in the client's task group (for reads from sync snapshot methods).
Spawn = Callable[..., None]


def _from_remote(flag: RemoteFlag, request_id: str | None) -> EvaluatedFlag:
    return EvaluatedFlag(
        key=flag.key,
        value=flag.value,
        payload=flag.payload if flag.enabled else None,
        reason=flag.reason_description or flag.reason,
        condition_index=flag.condition_index,
        flag_id=flag.flag_id,
        version=flag.version,
        locally_evaluated=False,
        request_id=request_id,
    )


class FlagService:
    """Evaluates flags for `AsyncPostHog`; see the module docstring."""

    def __init__(
        self,
        config: PostHogConfig,
        transport: Transport,
        report: Report,
        spawn: Spawn,
        cache: FlagCache,
    ) -> None:
        self._config = config
        self._transport = transport
        self._report = report
        self._spawn = spawn
        self._cache = cache
        self.called = CalledEvents()
        self.poller: DefinitionsPoller | None = (
            DefinitionsPoller(config, transport, cache=cache) if config.personal_api_key else None
        )
        self.remote_calls = 0

    @property
    def engine(self) -> FlagEngine | None:
        """The local engine, when definitions are loaded."""
        return self.poller.engine if self.poller is not None else None

    # -- remote --------------------------------------------------------------------------

    async def _remote(
        self,
        distinct_id: str,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
        device_id: str | None,
        flag_keys: Collection[str] | None,
    ) -> RemoteFlags:
        request = {
            "distinct_id": distinct_id,
            "groups": groups or {},
            "person_properties": person_properties or {},
            "group_properties": group_properties or {},
            "disable_geoip": disable_geoip,
            "device_id": device_id,
            "flag_keys": sorted(flag_keys) if flag_keys is not None else None,
        }
        fingerprint = hashlib.sha256(
            json.dumps(request, sort_keys=True, default=str).encode()
        ).hexdigest()

        async def fetch() -> RemoteFlags:
            self.remote_calls += 1
            answer = await fetch_remote_flags(
                self._transport,
                self._config,
                distinct_id,
                groups=groups,
                person_properties=person_properties,
                group_properties=group_properties,
                disable_geoip=disable_geoip,
                flag_keys=flag_keys,
                device_id=device_id,
            )
            if answer.quota_limited:
                raise QuotaLimitedError("PostHog feature flags quota limited", status=402, body="")
            return answer

        key = f"flags:{fingerprint}"
        ttl = self._config.flag_cache_ttl
        if not ttl:
            # Nothing is kept: identical concurrent calls only share one request, so the
            # answer needs no JSON form.
            return await self._cache.get_or_fetch(key, fetch, ttl=0)

        async def fetch_json() -> dict[str, Any]:
            return _remote_to_json(await fetch())

        return _remote_from_json(await self._cache.get_or_fetch(key, fetch_json, ttl=ttl))

    # -- one flag ------------------------------------------------------------------------

    async def evaluate(
        self,
        key: str,
        distinct_id: str,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        send_feature_flag_events: bool = True,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
        try_local: bool = True,
    ) -> EvaluatedFlag | None:
        """One flag: locally if possible, else one ``/flags`` call for that key.

        ``try_local=False``: the caller already found the engine undecided for this call.
        """
        flag: EvaluatedFlag | None = None
        error: str | None = None
        engine = self.engine if try_local else None
        decided = False
        if engine is not None:
            try:
                flag = engine.evaluate(
                    key,
                    distinct_id,
                    groups=groups,
                    person_properties=person_properties,
                    group_properties=group_properties,
                    device_id=device_id,
                )
                decided = True
            except InconclusiveMatch:
                pass
        if not decided and not only_evaluate_locally:
            try:
                answer = await self._remote(
                    distinct_id,
                    groups,
                    person_properties,
                    group_properties,
                    disable_geoip,
                    device_id,
                    [key],
                )
            except PostHogError as exc:
                if self._config.debug:
                    raise
                error = error_code(exc)
                logger.warning("aioposthog: /flags failed for %r: %s", key, exc.message)
            else:
                remote = answer.flags.get(key)
                errors = []
                if answer.errors_while_computing:
                    errors.append("errors_while_computing_flags")
                if remote is None:
                    errors.append("flag_missing")
                elif remote.failed:
                    errors.append("evaluation_failed")
                else:
                    flag = _from_remote(remote, answer.request_id)
                error = ",".join(errors) or None
        if send_feature_flag_events and (decided or not only_evaluate_locally):
            await self.report_read(distinct_id, key, flag, groups, disable_geoip, error)
        return flag

    async def report_read(
        self,
        distinct_id: str,
        key: str,
        flag: EvaluatedFlag | None,
        groups: Mapping[str, Any] | None,
        disable_geoip: bool | None,
        error: str | None = None,
    ) -> None:
        """Send ``$feature_flag_called`` for this read unless it was already reported."""
        response = None if flag is None else flag.value
        if not self.called.first_time(distinct_id, key, response, groups):
            return
        properties: dict[str, Any] = {
            "$feature_flag": key,
            "$feature_flag_response": response,
            "locally_evaluated": flag.locally_evaluated if flag is not None else False,
            f"$feature/{key}": response,
        }
        if flag is not None:
            if flag.payload is not None:
                properties["$feature_flag_payload"] = flag.payload
            if flag.request_id is not None:
                properties["$feature_flag_request_id"] = flag.request_id
            if flag.reason is not None:
                properties["$feature_flag_reason"] = flag.reason
            if flag.version is not None:
                properties["$feature_flag_version"] = flag.version
            if flag.flag_id is not None:
                properties["$feature_flag_id"] = flag.flag_id
        if error is not None:
            properties["$feature_flag_error"] = error
        await self._report(distinct_id, properties, groups, disable_geoip)

    # -- every flag ----------------------------------------------------------------------

    async def evaluate_all(
        self,
        distinct_id: str,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
        flag_keys: Collection[str] | None = None,
    ) -> tuple[dict[str, EvaluatedFlag], str | None]:
        """Every flag (or ``flag_keys``): local results merged with one remote call.

        Returns the flags and the ``$feature_flag_error`` value if the remote part failed.
        """
        engine = self.engine
        if engine is not None:
            flags, undecided = engine.evaluate_all(
                distinct_id,
                groups=groups,
                person_properties=person_properties,
                group_properties=group_properties,
                device_id=device_id,
                keys=flag_keys,
            )
            if not undecided:
                return flags, None  # everything decided here: no copy, no call
            remote_keys: Collection[str] | None = list(undecided)
        else:
            flags = {}
            remote_keys = flag_keys
        if only_evaluate_locally:
            return flags, None
        try:
            answer = await self._remote(
                distinct_id,
                groups,
                person_properties,
                group_properties,
                disable_geoip,
                device_id,
                remote_keys,
            )
        except PostHogError as exc:
            if self._config.debug:
                raise
            logger.warning("aioposthog: /flags failed: %s", exc.message)
            return flags, error_code(exc)
        for key, remote in answer.flags.items():
            if not remote.failed and key not in flags:
                flags[key] = _from_remote(remote, answer.request_id)
        error = "errors_while_computing_flags" if answer.errors_while_computing else None
        return flags, error

    async def snapshot(
        self,
        distinct_id: str,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
        flag_keys: Collection[str] | None = None,
        send_feature_flag_events: bool = True,
    ) -> FeatureFlagEvaluations:
        """A `FeatureFlagEvaluations` whose reads report ``$feature_flag_called``."""
        flags, error = await self.evaluate_all(
            distinct_id,
            groups=groups,
            person_properties=person_properties,
            group_properties=group_properties,
            only_evaluate_locally=only_evaluate_locally,
            disable_geoip=disable_geoip,
            device_id=device_id,
            flag_keys=flag_keys,
        )

        def on_read(snapshot: FeatureFlagEvaluations, key: str, flag: EvaluatedFlag | None) -> None:
            missing = None if flag is not None else (snapshot.error or "flag_missing")
            self._spawn(self.report_read, distinct_id, key, flag, groups, disable_geoip, missing)

        return FeatureFlagEvaluations(
            distinct_id,
            flags,
            groups=groups,
            error=error,
            on_read=on_read if send_feature_flag_events else None,
        )


def _remote_to_json(answer: RemoteFlags) -> dict[str, Any]:
    """A cacheable (JSON) form of an answer: the cache may be a shared Redis."""
    return {
        "flags": {key: asdict(flag) for key, flag in answer.flags.items()},
        "request_id": answer.request_id,
        "evaluated_at": answer.evaluated_at,
        "errors_while_computing": answer.errors_while_computing,
    }


def _remote_from_json(stored: Mapping[str, Any]) -> RemoteFlags:
    try:
        flags = {key: RemoteFlag(**value) for key, value in stored["flags"].items()}
        return RemoteFlags(
            flags=flags,
            request_id=stored.get("request_id"),
            evaluated_at=stored.get("evaluated_at"),
            errors_while_computing=bool(stored.get("errors_while_computing")),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise FlagsError("a cached /flags answer is unreadable", code="cache_error") from exc
