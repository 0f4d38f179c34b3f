"""The feature-flag methods of `AsyncPostHog` (a mixin, to keep the client module one thing)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ._config import PostHogConfig, RetryPolicy
from ._exceptions import PostHogError, UsageError
from ._flags._errors import InconclusiveMatch
from ._flags._remote import error_code
from ._flags._snapshot import EvaluatedFlag, FeatureFlagEvaluations
from ._state import ClientState
from ._transport import Transport

if TYPE_CHECKING:
    from ._flags._service import FlagService

__all__ = ["FlagMethods"]

_Read = tuple[
    str,  # key
    Any,  # distinct_id
    Mapping[str, Any] | None,  # groups
    Mapping[str, Any] | None,  # person_properties
    Mapping[str, Mapping[str, Any]] | None,  # group_properties
    str | None,  # device_id
]
"""One single-flag read's arguments, as `_local` and `_one` take them."""

logger = logging.getLogger("aioposthog")

_REMOTE_CONFIG = "/api/projects/@current/feature_flags/{key}/remote_config"
_OPENED = ClientState.OPENED


class FlagMethods:
    """Feature flags: local evaluation when definitions are loaded, ``/flags`` otherwise.

    Every method accepts ``groups`` (group type -> key), ``person_properties`` and
    ``group_properties`` (group type -> properties) for evaluation, ``only_evaluate_locally``
    (never call ``/flags``; undecidable flags read as None), ``disable_geoip`` and
    ``device_id``. None of them raises on a PostHog outage unless ``debug=True``.
    """

    config: PostHogConfig
    _flags: FlagService | None
    _transport: Transport | None
    _state: ClientState
    _loop: asyncio.AbstractEventLoop | None

    async def _ensure_open(self) -> None:  # provided by AsyncPostHog
        raise NotImplementedError

    def _flag_service_now(self) -> FlagService:  # provided by AsyncPostHog
        raise NotImplementedError

    async def _flag_service(self) -> FlagService | None:
        flags = self._flags
        if (
            flags is not None
            and self._state is ClientState.OPENED
            and asyncio.get_running_loop() is self._loop
        ):
            return flags  # the common case, with no await
        if self.config.disabled:
            return None
        await self._ensure_open()
        return self._flag_service_now()

    def _local(self, read: _Read) -> EvaluatedFlag | None:
        """The flag decided by the local engine, or None (not loaded, or undecidable here).

        The fast path of every single-flag read: a plain call, no await, no I/O. The caller
        awaits `_one` when this is None or when the read must be reported.
        """
        key, distinct_id, groups, person_properties, group_properties, device_id = read
        service = self._flags
        if (
            service is None
            or type(distinct_id) is not str
            or not distinct_id
            or self._state is not _OPENED
        ):
            return None
        poller = service.poller  # service.engine, without the property call
        engine = poller.engine if poller is not None else None
        if engine is None or asyncio.get_running_loop() is not self._loop:
            return None
        try:
            return engine.evaluate(
                key,
                distinct_id,
                groups=groups,
                person_properties=person_properties,
                group_properties=group_properties,
                device_id=device_id,
            )
        except InconclusiveMatch:
            return None  # the slow path asks /flags (or answers None when only local)

    async def _one(
        self,
        local: EvaluatedFlag | None,
        read: _Read,
        only_evaluate_locally: bool,
        send_feature_flag_events: bool,
        disable_geoip: bool | None,
    ) -> EvaluatedFlag | None:
        """The rest of a single-flag read, after `_local` gave ``local``: report it, or (when
        None) check the arguments and ask the service."""
        key, distinct_id, groups, person_properties, group_properties, device_id = read
        if local is not None:
            if send_feature_flag_events:
                assert self._flags is not None
                await self._flags.report_read(distinct_id, key, local, groups, disable_geoip)
            return local
        if not key or not isinstance(key, str):
            raise UsageError("a feature flag key must be a non-empty string")
        if distinct_id is None or distinct_id == "":
            raise UsageError("feature flag evaluation needs a distinct_id")
        # The engine has already answered "undecided" for this exact call when it had
        # definitions and a str distinct id: don't make the service evaluate it again.
        engine_tried = (
            self._flags is not None and self._flags.engine is not None and type(distinct_id) is str
        )
        service = await self._flag_service()
        if service is None:
            return None
        return await service.evaluate(
            key,
            str(distinct_id),
            groups=groups,
            person_properties=person_properties,
            group_properties=group_properties,
            only_evaluate_locally=only_evaluate_locally,
            send_feature_flag_events=send_feature_flag_events,
            disable_geoip=disable_geoip,
            device_id=device_id,
            try_local=not engine_tried,
        )

    async def get_feature_flag(
        self,
        key: str,
        distinct_id: Any,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        send_feature_flag_events: bool = True,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
    ) -> bool | str | None:
        """The flag's value for this user: a variant, True/False, or None when unknown.

        Reports ``$feature_flag_called`` the first time a user gets a given value.
        """
        read = (key, distinct_id, groups, person_properties, group_properties, device_id)
        flag = self._local(read)
        if flag is None or send_feature_flag_events:
            flag = await self._one(
                flag, read, only_evaluate_locally, send_feature_flag_events, disable_geoip
            )
        return None if flag is None else flag.value

    async def feature_enabled(
        self,
        key: str,
        distinct_id: Any,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        send_feature_flag_events: bool = True,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
    ) -> bool | None:
        """Whether the flag is on (a variant counts as on); None when it cannot be known."""
        read = (key, distinct_id, groups, person_properties, group_properties, device_id)
        flag = self._local(read)
        if flag is None or send_feature_flag_events:
            flag = await self._one(
                flag, read, only_evaluate_locally, send_feature_flag_events, disable_geoip
            )
        return None if flag is None else flag.enabled

    async def get_feature_flag_payload(
        self,
        key: str,
        distinct_id: Any,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        send_feature_flag_events: bool = False,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
    ) -> Any:
        """The JSON payload configured for the user's value of the flag, or None."""
        read = (key, distinct_id, groups, person_properties, group_properties, device_id)
        flag = self._local(read)
        if flag is None or send_feature_flag_events:
            flag = await self._one(
                flag, read, only_evaluate_locally, send_feature_flag_events, disable_geoip
            )
        return None if flag is None else flag.payload

    async def evaluate_flags(
        self,
        distinct_id: Any,
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
        """Evaluate every flag (or ``flag_keys``) for a user once: a `FeatureFlagEvaluations`.

        Local results are merged with at most one ``/flags`` call for what could not be
        decided locally. Pass the snapshot to ``capture(..., flags=snapshot)``.
        """
        if distinct_id is None or distinct_id == "":
            raise UsageError("feature flag evaluation needs a distinct_id")
        service = await self._flag_service()
        if service is None:
            return FeatureFlagEvaluations(str(distinct_id), {})
        return await service.snapshot(
            str(distinct_id),
            groups=groups,
            person_properties=person_properties,
            group_properties=group_properties,
            only_evaluate_locally=only_evaluate_locally,
            disable_geoip=disable_geoip,
            device_id=device_id,
            flag_keys=flag_keys,
            send_feature_flag_events=send_feature_flag_events,
        )

    async def get_all_flags(
        self,
        distinct_id: Any,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
        flag_keys: Collection[str] | None = None,
    ) -> dict[str, bool | str]:
        """Every flag's value for a user (no ``$feature_flag_called`` events)."""
        flags = await self._all(
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            disable_geoip,
            device_id,
            flag_keys,
        )
        return {key: flag.value for key, flag in flags.items()}

    async def _all(
        self,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        only_evaluate_locally: bool,
        disable_geoip: bool | None,
        device_id: str | None,
        flag_keys: Collection[str] | None,
    ) -> dict[str, EvaluatedFlag]:
        if distinct_id is None or distinct_id == "":
            raise UsageError("feature flag evaluation needs a distinct_id")
        service = await self._flag_service()
        if service is None:
            return {}
        flags, _ = await service.evaluate_all(
            str(distinct_id),
            groups=groups,
            person_properties=person_properties,
            group_properties=group_properties,
            only_evaluate_locally=only_evaluate_locally,
            disable_geoip=disable_geoip,
            device_id=device_id,
            flag_keys=flag_keys,
        )
        return flags

    async def get_all_flags_and_payloads(
        self,
        distinct_id: Any,
        *,
        groups: Mapping[str, Any] | None = None,
        person_properties: Mapping[str, Any] | None = None,
        group_properties: Mapping[str, Mapping[str, Any]] | None = None,
        only_evaluate_locally: bool = False,
        disable_geoip: bool | None = None,
        device_id: str | None = None,
        flag_keys: Collection[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """``{"featureFlags": {key: value}, "featureFlagPayloads": {key: payload}}``."""
        flags = await self._all(
            distinct_id,
            groups,
            person_properties,
            group_properties,
            only_evaluate_locally,
            disable_geoip,
            device_id,
            flag_keys,
        )
        return {
            "featureFlags": {key: flag.value for key, flag in flags.items()},
            "featureFlagPayloads": {
                key: flag.payload for key, flag in flags.items() if flag.payload is not None
            },
        }

    async def load_feature_flags(self) -> bool:
        """Fetch the flag definitions now; True when they are loaded and current.

        Needs ``personal_api_key`` (a ``phs_`` secure key or ``phx_`` personal key).
        """
        service = await self._flag_service()
        if service is None:
            return False
        if service.poller is None:
            raise UsageError(
                "local evaluation needs personal_api_key (a phs_ feature flags secure key or a "
                "phx_ personal API key)"
            )
        return await service.poller.refresh()

    @property
    def feature_flag_definitions(self) -> Mapping[str, Any] | None:
        """The flag definitions payload in use for local evaluation, if loaded."""
        service = self._flags
        if service is None or service.poller is None:
            return None
        return service.poller.payload

    async def get_remote_config_payload(self, key: str) -> Any:
        """The payload of a remote-config flag (needs ``personal_api_key``); None on failure."""
        service = await self._flag_service()
        transport = self._transport
        if service is None or transport is None:
            return None
        if not self.config.personal_api_key:
            raise UsageError("get_remote_config_payload needs personal_api_key")
        path = _REMOTE_CONFIG.format(key=quote(key, safe=""))
        token = quote(self.config.api_key or "", safe="")
        headers = {"Authorization": f"Bearer {self.config.personal_api_key}"}

        async def build(attempt: int) -> tuple[Mapping[str, str], bytes]:
            return headers, b""

        try:
            response = await transport.send(
                "GET",
                f"{path}?token={token}",
                build,
                retry=RetryPolicy(max_attempts=2, base=0.3, cap=0.3, jitter=False),
                span_name="posthog.flags.remote_config",
                timeout=self.config.feature_flags_request_timeout,
            )
        except PostHogError as exc:
            if self.config.debug:
                raise
            logger.warning("aioposthog: remote config %r failed (%s)", key, error_code(exc))
            return None
        try:
            value = response.json()
        except ValueError:
            return response.text
        if isinstance(value, str):
            # PostHog answers with the payload as a JSON-encoded string.
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
