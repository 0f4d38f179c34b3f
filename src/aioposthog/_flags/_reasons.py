"""The unresolved reason a flag's definition alone implies, known when definitions load.

Used where the official SDK refines a reason with it: a flag bucketed by device id called
without one, and a flag that needs the server. Works on the raw JSON, as the official does,
and raises on the same malformed shapes (the caller decides what a failure means).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ._errors import CONTINUITY, UNSUPPORTED, InconclusiveReason
from ._operators import filter_supported

__all__ = ["definition_reason", "is_nested_group", "shape_problem"]

COHORT_OPERATORS = ("exact", "in", "not_in")


def shape_problem(prop: Mapping[str, Any]) -> bool:
    """Whether a flag-dependency filter is malformed (a plain non-match, not a gap)."""
    if prop.get("operator", "exact") != "flag_evaluates_to":
        return True
    return not prop.get("key") or prop.get("value") is None


def is_nested_group(entry: Mapping[str, Any]) -> bool:
    """Whether a cohort entry is itself a property group rather than a filter."""
    return entry == {} or "values" in entry or entry.get("type") in ("AND", "OR")


def definition_reason(
    flag: Mapping[str, Any],
    flags_by_key: Mapping[str, Any],
    cohorts: Mapping[str, Any],
    group_type_mapping: Mapping[str, Any],
    now: datetime,
) -> InconclusiveReason | None:
    """``experience_continuity``, ``unsupported_definition`` or ``None`` for a flag."""
    if not flag.get("active"):
        return None
    if flag.get("ensure_experience_continuity"):
        return CONTINUITY
    filters = flag.get("filters") or {}
    aggregation = filters.get("aggregation_group_type_index")
    if aggregation is not None and not group_type_mapping.get(str(aggregation)):
        return UNSUPPORTED
    for condition in filters.get("groups") or []:
        for prop in condition.get("properties") or []:
            if _unsupported(prop, flags_by_key, cohorts, set(), now):
                return UNSUPPORTED
    return None


def _unsupported(
    prop: Any,
    flags_by_key: Mapping[str, Any],
    cohorts: Mapping[str, Any],
    seen: set[str],
    now: datetime,
) -> bool:
    kind = prop.get("type")
    if kind == "flag":
        if shape_problem(prop):
            return False
        chain = prop.get("dependency_chain")
        if not isinstance(chain, list) or not chain:
            return True
        return any(not flags_by_key.get(item) for item in chain)
    if kind != "cohort":
        return not filter_supported(prop, now)
    cohort_id = str(prop.get("value"))
    if cohort_id not in cohorts:
        return True
    if (prop.get("operator") or "exact") not in COHORT_OPERATORS:
        return True
    if cohort_id in seen:
        return False
    seen.add(cohort_id)
    return _group_unsupported(cohorts[cohort_id], flags_by_key, cohorts, seen, now)


def _group_unsupported(
    group: Any,
    flags_by_key: Mapping[str, Any],
    cohorts: Mapping[str, Any],
    seen: set[str],
    now: datetime,
) -> bool:
    if group == {}:
        return False
    if not isinstance(group, dict):
        return True
    values = group.get("values")
    if group.get("type") not in ("AND", "OR") or not isinstance(values, list):
        return True
    for entry in values:
        if not isinstance(entry, dict):
            return True
        if is_nested_group(entry):
            if _group_unsupported(entry, flags_by_key, cohorts, seen, now):
                return True
        elif _unsupported(entry, flags_by_key, cohorts, seen, now):
            return True
    return False
