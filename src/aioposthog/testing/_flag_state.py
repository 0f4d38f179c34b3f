"""LocalPostHog's flag state: one loaded set of definitions, compiled (`compile_snapshot`),
and the `/flags` answers written from the engine's results (`render_v2`, `render_legacy`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aioposthog._flags import (
    FlagEngine,
    FlagResult,
    InconclusiveReason,
    MatchReason,
    compile_definitions,
)

__all__ = ["FlagInfo", "Snapshot", "compile_snapshot", "render_legacy", "render_v2"]

_NOT_FOUND = InconclusiveReason.FLAG_NOT_FOUND
_ERROR = InconclusiveReason.EVALUATION_ERROR

# Person property that carries static-cohort membership into the engine (see Snapshot).
_COHORT_PROPERTY = "$local_posthog_static_cohort_{}"
_REASONS: Final[dict[MatchReason | str | None, tuple[str, str]]] = {
    MatchReason.CONDITION_MATCH: ("condition_match", "Matched condition set {}"),
    MatchReason.NO_CONDITION_MATCH: ("no_condition_match", "No matching condition set"),
    MatchReason.OUT_OF_ROLLOUT_BOUND: ("out_of_rollout_bound", "Out of rollout bound"),
    MatchReason.FLAG_DISABLED: ("flag_disabled", "Flag is disabled"),
    MatchReason.NO_GROUP_TYPE: ("no_group_type", "No group type"),
    MatchReason.HOLDOUT: ("holdout_condition_value", "Holdout condition value"),
    MatchReason.FEATURE_ENROLLMENT: ("super_condition_value", "Super condition value"),
}
_NO_MATCH: Final = {
    "code": "no_condition_match",
    "condition_index": None,
    "description": "No matching condition set",
}
_FAILED: Final = {
    "code": "evaluation_error",
    "condition_index": None,
    "description": "Flag evaluation failed",
}


@dataclass(frozen=True, slots=True)
class FlagInfo:
    """What `/flags` and remote config need of one definition besides its value."""

    flag_id: Any
    version: Any
    payloads: Mapping[str, str]
    """Payload by value ("true" or a variant), as the JSON text `/flags` sends."""
    remote_config: bool
    remote_payload: Any
    """`filters.payloads["true"]` as stored (a JSON text, normally), for remote config."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One loaded set of definitions; replaced whole, so the server thread never sees a mix."""

    body: bytes
    etag: str
    engine: FlagEngine
    flags: Mapping[str, FlagInfo]
    static_cohorts: tuple[tuple[str, str], ...]
    """(cohort id, person property) for each static cohort a definition uses."""
    rendered: dict[tuple[Any, ...], dict[str, Any]]
    """v2 records by outcome, filled by the server thread only: a flag has few outcomes."""


def _payload_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _cohort_ids(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        if node.get("type") == "cohort" and "value" in node:
            found.add(str(node["value"]))
        for child in node.values():
            _cohort_ids(child, found)
    elif isinstance(node, list):
        for child in node:
            _cohort_ids(child, found)


def compile_snapshot(payload: Mapping[str, Any]) -> Snapshot:
    if not isinstance(payload, Mapping):
        raise TypeError("flag definitions must be a mapping like {'flags': [...]}")
    full: dict[str, Any] = {"flags": [], "group_type_mapping": {}, "cohorts": {}, **payload}
    if not isinstance(full["flags"], list):
        raise ValueError("'flags' must be a list of flag definitions")
    if not isinstance(full["cohorts"], dict):
        raise ValueError("'cohorts' must be an object")
    try:
        body = json.dumps(full, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"flag definitions are not JSON: {exc}") from exc
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'

    # The server's copy: a fresh one (the test keeps its dicts) that is edited to decide what a
    # local evaluation leaves to the server.
    server = json.loads(body)
    flags = [f for f in server["flags"] if not (isinstance(f, dict) and f.get("deleted"))]
    server["flags"] = flags
    infos: dict[str, FlagInfo] = {}
    for flag in flags:
        if not isinstance(flag, dict) or not isinstance(flag.get("key"), str):
            continue
        flag.pop("ensure_experience_continuity", None)
        filters = flag.get("filters")
        raw_payloads = filters.get("payloads") if isinstance(filters, dict) else None
        raw_payloads = raw_payloads if isinstance(raw_payloads, dict) else {}
        texts = {str(k): _payload_text(v) for k, v in raw_payloads.items()}
        infos[flag["key"]] = FlagInfo(
            flag_id=flag.get("id"),
            version=flag.get("version"),
            payloads={k: v for k, v in texts.items() if v is not None},
            remote_config=flag.get("is_remote_configuration") is True,
            remote_payload=raw_payloads.get("true") or None,
        )
    used: set[str] = set()
    _cohort_ids(flags, used)
    _cohort_ids(server["cohorts"], used)
    static: list[tuple[str, str]] = []
    for cohort_id in sorted(used.difference(server["cohorts"])):
        prop = _COHORT_PROPERTY.format(cohort_id)
        # Membership becomes a person property set on every request: the engine then treats
        # the cohort like any other (nested, negated, `not_in`) without knowing it is static.
        server["cohorts"][cohort_id] = {
            "type": "AND",
            "values": [{"key": prop, "type": "person", "operator": "exact", "value": ["true"]}],
        }
        static.append((cohort_id, prop))
    engine = FlagEngine(compile_definitions(server))
    return Snapshot(body, etag, engine, infos, tuple(static), {})


def render_v2(
    snapshot: Snapshot,
    results: Mapping[str, FlagResult],
    inconclusive: Mapping[str, InconclusiveReason],
    failed: frozenset[str],
) -> tuple[dict[str, Any], bool]:
    """The v2 `flags` object, and whether a flag failed."""
    infos = snapshot.flags
    rendered = snapshot.rendered
    flags: dict[str, Any] = {}
    errors = False
    for key, result in results.items():
        if key in failed:
            flags[key] = _off_record(key, infos[key], failed=True)
            errors = True
            continue
        outcome = (key, result.value, result.reason, result.condition_index)
        record = rendered.get(outcome)
        if record is None:
            # Shared between answers: json.dumps only reads it.
            record = rendered[outcome] = _record(result, infos[key])
        flags[key] = record
    for key, why in inconclusive.items():
        if why is _NOT_FOUND:
            continue
        broken = why is _ERROR or key in failed
        errors = errors or broken
        flags[key] = _off_record(key, infos[key], failed=broken)
    return flags, errors


def render_legacy(
    snapshot: Snapshot,
    results: Mapping[str, FlagResult],
    inconclusive: Mapping[str, InconclusiveReason],
    failed: frozenset[str],
) -> tuple[dict[str, bool | str], dict[str, str], bool]:
    """`featureFlags`, `featureFlagPayloads`, and whether a flag failed (failed ones are left
    out, as the legacy shape has no way to say so)."""
    infos = snapshot.flags
    values: dict[str, bool | str] = {}
    payloads: dict[str, str] = {}
    errors = False
    for key, result in results.items():
        if key in failed:
            errors = True
            continue
        value = values[key] = result.value
        if value is not False:
            payload = infos[key].payloads.get("true" if value is True else str(value))
            if payload is not None:
                payloads[key] = payload
    for key, why in inconclusive.items():
        if why is _NOT_FOUND:
            continue
        if why is _ERROR or key in failed:
            errors = True
        else:
            values[key] = False
    return values, payloads, errors


def _metadata(info: FlagInfo, payload: str | None) -> dict[str, Any]:
    return {"id": info.flag_id, "version": info.version, "description": None, "payload": payload}


def _record(result: FlagResult, info: FlagInfo) -> dict[str, Any]:
    value = result.value
    code, description = _REASONS.get(result.reason, (str(result.reason), str(result.reason)))
    index = result.condition_index
    if "{}" in description:
        description = description.replace(" {}", "" if index is None else f" {index + 1}")
    payload = None
    if value is not False:
        payload = info.payloads.get("true" if value is True else str(value))
    return {
        "key": result.key,
        "enabled": value is not False,
        "variant": value if isinstance(value, str) else None,
        "reason": {"code": code, "condition_index": index, "description": description},
        "metadata": _metadata(info, payload),
        "failed": False,
    }


def _off_record(key: str, info: FlagInfo, *, failed: bool) -> dict[str, Any]:
    return {
        "key": key,
        "enabled": False,
        "variant": None,
        "reason": dict(_FAILED if failed else _NO_MATCH),
        "metadata": _metadata(info, None),
        "failed": failed,
    }
