"""Turn a ``/flags/definitions`` payload into compiled flags, once per poll.

Everything that does not depend on the user is done here: flags indexed by key, filter
values parsed, regexes compiled, dates classified, variant ranges summed, payloads decoded,
cohorts compiled and shared, dependency chains linked to their flags.

Nothing in a payload makes compilation fail. A malformed piece becomes a node that fails
when (and only when) an evaluation reaches it, exactly where the official SDK's code would
raise, so that the same flags come out decided. Flags that are not objects or whose key is
not a string are skipped and listed in ``problems``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn

from ._context import Node
from ._errors import UNSUPPORTED
from ._flag import CompiledFlag, Condition
from ._nodes import (
    CohortFilter,
    Constant,
    FlagDependency,
    MalformedFilter,
    NeedsServer,
    PropertyGroup,
    UndecidedFilter,
)
from ._operators import Date, PropertyFilter, UnknownOperator, UnusableKey, compile_property
from ._reasons import COHORT_OPERATORS, definition_reason, is_nested_group, shape_problem

__all__ = ["CompiledDefinitions", "compile_definitions"]


class CompiledDefinitions(Mapping[str, CompiledFlag]):
    """Compiled flag definitions, a read-only mapping from flag key to compiled flag.

    Build it with :func:`compile_definitions` and hand it to ``FlagEngine``.
    """

    __slots__ = ("_flags", "group_type_mapping", "problems", "property_matching_version")

    def __init__(
        self,
        flags: Mapping[str, CompiledFlag],
        group_type_mapping: Mapping[str, Any],
        property_matching_version: Any,
        problems: tuple[str, ...],
    ) -> None:
        self._flags = flags
        self.group_type_mapping = group_type_mapping
        self.property_matching_version = property_matching_version
        self.problems = problems

    def __getitem__(self, key: str) -> CompiledFlag:
        return self._flags[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._flags)

    def __len__(self) -> int:
        return len(self._flags)

    def __repr__(self) -> str:
        return f"<CompiledDefinitions {len(self._flags)} flags>"


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _decode_payload(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


def _as_dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


class _Compiler:
    def __init__(self, payload: Mapping[str, Any], now: datetime) -> None:
        self.now = now
        self.problems: list[str] = []
        raw_flags = payload.get("flags") or []
        if not isinstance(raw_flags, list):
            self.problems.append("'flags' is not a list")
            raw_flags = []
        self.mapping = _as_dict(payload.get("group_type_mapping"))
        self.cohorts = _as_dict(payload.get("cohorts"))
        self.version = payload.get("property_matching_version", 1)
        self.version2 = self.version == 2
        self.raw_by_key: dict[str, dict[str, Any]] = {}
        for index, flag in enumerate(raw_flags):
            key = flag.get("key") if isinstance(flag, dict) else None
            if isinstance(key, str):
                self.raw_by_key[key] = flag
            else:
                self.problems.append(f"flags[{index}] skipped: no string key")
        self.flags = {key: CompiledFlag(key, raw) for key, raw in self.raw_by_key.items()}
        self.cohort_nodes: dict[str, Node] = {}
        self.cohorts_in_progress: set[str] = set()

    def run(self) -> CompiledDefinitions:
        for key, flag in self.flags.items():
            self.flag(flag, self.raw_by_key[key])
            flag.seal()
        for flag in self.flags.values():
            flag.reads_distinct_id, flag.needs_context = _per_call_needs(flag)
        return CompiledDefinitions(
            MappingProxyType(self.flags),
            MappingProxyType(dict(self.mapping)),
            self.version,
            tuple(self.problems),
        )

    # -- flags ---------------------------------------------------------------------------

    def flag(self, flag: CompiledFlag, raw: Mapping[str, Any]) -> None:
        flag.flag_id = raw.get("id")
        flag.version = raw.get("version")
        flag.active = bool(raw.get("active"))
        flag.continuity = bool(raw.get("ensure_experience_continuity", False))
        try:
            flag.definition_reason = definition_reason(
                raw, self.raw_by_key, self.cohorts, self.mapping, self.now
            )
        except Exception:
            flag.definition_reason_fails = True
        filters = raw.get("filters") or {}
        if not isinstance(filters, dict):
            flag.filters_broken = True
            self.problems.append(f"flag {flag.key!r}: 'filters' is not an object")
            return
        aggregation = filters.get("aggregation_group_type_index")
        flag.aggregation = aggregation
        if aggregation is not None:
            name = self.mapping.get(str(aggregation))
            flag.group_name = name if isinstance(name, str) and name else None
        identifier = raw.get("bucketing_identifier") or filters.get("bucketing_identifier")
        flag.device_bucketing = identifier == "device_id"
        flag.enrollment = filters.get("feature_enrollment") is True
        flag.early_exit = bool(filters.get("early_exit"))
        self.holdout(flag, filters.get("holdout"))
        flag.payloads = {
            str(name): _decode_payload(value)
            for name, value in _as_dict(filters.get("payloads")).items()
        }
        try:
            variants = (filters.get("multivariate") or {}).get("variants") or []
            valid_keys = [variant["key"] for variant in variants]
            conditions = list(filters.get("groups") or [])
        except Exception:
            flag.conditions_broken = True
            self.problems.append(f"flag {flag.key!r}: malformed conditions or variants")
            return
        flag.variant_table = self.variant_table(variants)
        flag.conditions = [
            self.condition(index, condition, aggregation, valid_keys)
            for index, condition in enumerate(conditions)
        ]

    def holdout(self, flag: CompiledFlag, holdout: Any) -> None:
        if not holdout:
            return
        try:
            percentage = holdout.get("exclusion_percentage")
            holdout_id = holdout.get("id")
            if percentage is None or holdout_id is None:
                return
            # Out-of-range percentages are clamped, as the server does.
            clamped = min(max(float(percentage), 0.0), 100.0)
        except Exception:
            flag.holdout_broken = True
            return
        flag.holdout = (clamped, f"holdout-{holdout_id}")

    @staticmethod
    def variant_table(variants: Any) -> list[tuple[Any, float, float]] | None:
        table: list[tuple[Any, float, float]] = []
        low: float = 0
        try:
            for variant in variants:
                high = low + variant["rollout_percentage"] / 100
                table.append((variant["key"], low, high))
                low = high
        except Exception:
            return None
        return table

    def condition(self, index: int, raw: Any, aggregation: Any, valid_keys: list[Any]) -> Condition:
        condition = Condition(index)
        if not isinstance(raw, dict):
            condition.broken = "start"
            return condition
        own = raw.get("aggregation_group_type_index", aggregation)
        if own != aggregation and own is not None:
            condition.group_override = True
            name = self.mapping.get(str(own))
            condition.group_name = name if isinstance(name, str) and name else None
        properties = raw.get("properties") or []
        try:
            has_filters = len(properties) > 0
        except TypeError:
            condition.broken = "properties"
            return condition
        if has_filters:
            condition.filters = [self.filter(prop, in_cohort=False) for prop in properties]
        rollout = raw.get("rollout_percentage")
        if rollout is not None:
            condition.has_rollout = True
            try:
                condition.threshold = rollout / 100
            except Exception:
                if condition.broken == "":
                    condition.broken = "rollout"
        override = raw.get("variant")
        if override and override in valid_keys:
            if isinstance(override, str):
                condition.variant = override
            else:
                condition.variant_broken = True
        return condition

    # -- filters -------------------------------------------------------------------------

    def filter(self, prop: Any, *, in_cohort: bool) -> Node:
        if not isinstance(prop, dict):
            return NeedsServer() if in_cohort else MalformedFilter()
        kind = prop.get("type")
        if kind == "cohort":
            return self.cohort_filter(prop)
        if kind == "flag":
            return self.dependency(prop)
        return compile_property(prop, self.version2)

    def dependency(self, prop: Mapping[str, Any]) -> Node:
        if shape_problem(prop):
            return Constant(False)
        if "dependency_chain" not in prop:
            return UndecidedFilter(UNSUPPORTED)
        chain = prop["dependency_chain"]
        if not isinstance(chain, list) or not chain:
            return UndecidedFilter(UNSUPPORTED)
        linked = [(item, self._flag_for(item)) for item in chain]
        return FlagDependency(prop.get("key"), prop.get("value"), linked, self.flags)

    def _flag_for(self, item: Any) -> CompiledFlag | None:
        return self.flags.get(item) if isinstance(item, str) else None

    def cohort_filter(self, prop: Mapping[str, Any]) -> Node:
        cohort_id = str(prop.get("value"))
        if cohort_id not in self.cohorts:
            return NeedsServer()  # a static cohort: only the server knows its members
        if (prop.get("operator") or "exact") not in COHORT_OPERATORS:
            return UndecidedFilter(UNSUPPORTED)
        node = self.cohort_nodes.get(cohort_id)
        if node is None:
            if cohort_id in self.cohorts_in_progress:
                # The official SDK recurses until RecursionError.
                return MalformedFilter()
            self.cohorts_in_progress.add(cohort_id)
            node = self.group(self.cohorts[cohort_id])
            self.cohorts_in_progress.discard(cohort_id)
            self.cohort_nodes[cohort_id] = node
        return CohortFilter(node, prop.get("operator") == "not_in")

    def group(self, raw: Any) -> Node:
        if raw == {}:
            return Constant(True)
        if not isinstance(raw, dict):
            return NeedsServer()
        values = raw.get("values")
        if raw.get("type") not in ("AND", "OR") or not isinstance(values, list):
            return NeedsServer()
        if not values:
            return Constant(True)
        group = PropertyGroup(raw.get("type") == "AND")
        entries: list[tuple[Node, bool]] = []
        for entry in values:
            if not isinstance(entry, dict):
                entries.append((NeedsServer(), False))
            elif is_nested_group(entry):
                entries.append((self.group(entry), False))
            else:
                node = self.filter(entry, in_cohort=True)
                entries.append((node, bool(entry.get("negation", False))))
        group.seal(entries)
        return group


# Nodes that read neither the context nor any property.
_INERT = (Constant, UndecidedFilter, NeedsServer, MalformedFilter, UnknownOperator, UnusableKey)


def _per_call_needs(flag: CompiledFlag) -> tuple[bool, bool]:
    """Whether evaluating ``flag`` can read ``distinct_id`` from the person properties, and
    whether it needs its own `EvalContext` (the clock, the dependency cache, the device id).

    Every filter the flag can reach counts: its conditions', its cohorts' and, through its
    dependency chains, its dependencies' (which see the same person properties). A node this
    walk does not know makes both answers yes.
    """
    reads_distinct_id = False
    needs_context = flag.device_bucketing
    pending = [flag]
    seen_flags = {flag.key}
    seen_nodes: set[int] = set()
    while pending:
        nodes = [node for condition in pending.pop().conditions for node in condition.filters]
        while nodes:
            node = nodes.pop()
            if id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            if isinstance(node, PropertyFilter):
                reads_distinct_id = reads_distinct_id or node.key == "distinct_id"
                needs_context = needs_context or isinstance(node, Date)
            elif isinstance(node, PropertyGroup):
                nodes.extend(entry for entry, _negated in node.entries)
            elif isinstance(node, CohortFilter):
                nodes.append(node.group)
            elif isinstance(node, FlagDependency):
                needs_context = True
                for _item, dependency in node.chain:
                    if dependency is not None and dependency.key not in seen_flags:
                        seen_flags.add(dependency.key)
                        pending.append(dependency)
            elif not isinstance(node, _INERT):
                return True, True
    return reads_distinct_id, needs_context


def compile_definitions(
    payload: Mapping[str, Any], *, now: datetime | None = None
) -> CompiledDefinitions:
    """Compile a ``/flags/definitions`` payload for :class:`FlagEngine`.

    ``payload`` is the decoded JSON: ``{"flags": [...], "group_type_mapping": {...},
    "cohorts": {...}, "property_matching_version": 1 | 2}``. ``now`` is only used to
    classify relative dates in the definition-level unresolved reasons.

    >>> defs = compile_definitions({"flags": [{"key": "beta", "active": True,
    ...     "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}}]})
    >>> list(defs)
    ['beta']
    """
    return _Compiler(payload, now or datetime.now(UTC)).run()
