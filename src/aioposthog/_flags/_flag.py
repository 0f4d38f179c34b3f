"""A compiled flag and its release conditions: bucketing, rollout, variants, holdouts.

Order of evaluation, as in the official SDK: inactive flags are ``False``; experience
continuity needs the server; a group flag needs its group type mapped and passed (if not
passed it is ``False``); then early-access enrollment, the holdout, and the conditions in
order. The first matching condition decides; an undecided condition is skipped, but the
flag stays undecided if no later condition matches; with ``early_exit`` a condition whose
filters matched but whose rollout excluded the user ends the search.

Bucketing hashes ``sha1("<flag key>.<id><salt>")`` into ``[0, 1]``: the distinct id, the
group key for group flags and group conditions, or the device id when the flag says
``bucketing_identifier: "device_id"`` (undecided without one).

Two behaviours of the official SDK that surprise, reproduced on purpose:

- a flag evaluated as a *dependency* inside a group flag sees the group's key as its
  distinct id and the group's properties as its person properties;
- inside a dependency, conditions aggregated on a group type (mixed targeting) never match.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from ._context import EvalContext, FlagValue, Node
from ._errors import (
    CONTINUITY,
    MISSING,
    UNRESOLVED,
    UNSUPPORTED,
    InconclusiveReason,
    Malformed,
    ServerRequired,
    Undecided,
    pick,
)
from ._result import FlagResult, MatchReason

__all__ = ["CompiledFlag", "Condition", "bucket"]

_SCALE = float(0xFFFFFFFFFFFFFFF)
_sha1 = hashlib.sha1
_first_u64 = struct.Struct(">Q").unpack_from


def bucket(prefix: bytes, value: Any, salt: bytes = b"") -> float:
    """``int(sha1(prefix + value + salt).hexdigest()[:15], 16) / 0xFFFFFFFFFFFFFFF``."""
    text = value if type(value) is str else f"{value}"
    # The first 15 hex digits are the top 60 bits of the first 8 bytes.
    top: int = _first_u64(_sha1(prefix + text.encode() + salt).digest())[0]
    return (top >> 4) / _SCALE


def _all_match(
    filters: Sequence[Node], ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]
) -> bool:
    """A condition's filters, all required. Undecided filters do not stop the loop."""
    reason: InconclusiveReason | None = None
    server: ServerRequired | None = None
    for node in filters:
        try:
            if not node.match(ctx, distinct_id, props):
                return False
        except ServerRequired as exc:
            if reason is None:
                server = exc  # only the first unchecked filter may send the flag away
            reason = pick(reason, exc.reason)
        except Undecided as exc:
            reason = pick(reason, exc.reason)
        except Exception:
            if reason is None:
                raise
            break  # after an undecided filter, an error just ends the condition
    if server is not None:
        raise server
    if reason is not None:
        raise Undecided(reason)
    return True


class Condition:
    """One release condition (an entry of ``filters.groups``).

    ``broken`` says where a malformed condition fails: ``"start"`` (not an object),
    ``"properties"`` (properties with no length), ``"rollout"`` (a non-numeric
    percentage); ``""`` when it is well formed.
    """

    __slots__ = (
        "always_out",
        "broken",
        "check_rollout",
        "fast",
        "filters",
        "group_name",
        "group_override",
        "has_rollout",
        "index",
        "result",
        "results",
        "single",
        "threshold",
        "variant",
        "variant_broken",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.broken = ""
        self.group_override = False
        self.group_name: str | None = None
        self.filters: Sequence[Node] = ()
        self.has_rollout = False
        self.threshold = 1.0
        self.variant: str | None = None
        self.variant_broken = False
        # Derived by ``seal``, for the inline path of ``CompiledFlag.body``.
        self.fast = False
        self.single: Node | None = None
        self.result: FlagResult | None = None
        self.results: dict[FlagValue, FlagResult] = {}
        self.check_rollout = False
        self.always_out = False

    def seal(self, flag: CompiledFlag) -> None:
        """Precompute what the inline path needs, once the flag's variants are known."""
        self.fast = not self.broken and not self.group_override
        self.single = self.filters[0] if len(self.filters) == 1 else None
        threshold = self.threshold
        # The hash lies in [0, 1]: no need to compute it for 100% or negative rollouts.
        self.check_rollout = self.has_rollout and not threshold >= 1.0
        self.always_out = threshold < 0.0
        value: FlagValue | None = None
        if self.variant is not None:
            value = self.variant
        elif not self.variant_broken and flag.variant_table == []:
            value = True
        if value is not None:
            self.result = flag.result(value, MatchReason.CONDITION_MATCH, self.index)

    def matched(self, flag: CompiledFlag, bucketing: Any) -> FlagResult:
        """The result of a match whose value needs the variant hash."""
        value = self._value(flag, bucketing)
        found = self.results.get(value)
        if found is None:
            found = self.results[value] = flag.result(
                value, MatchReason.CONDITION_MATCH, self.index
            )
        return found

    def evaluate(
        self,
        flag: CompiledFlag,
        ctx: EvalContext,
        distinct_id: Any,
        props: Mapping[str, Any],
        bucketing: Any,
        groups: Mapping[str, Any] | None,
        group_props: Mapping[str, Mapping[str, Any]] | None,
    ) -> FlagValue | None:
        """The flag's value if the condition matches, ``False`` if out of rollout, else None."""
        broken = self.broken
        if broken == "start":
            raise Malformed("condition is not an object")
        if self.group_override:
            name = self.group_name
            if groups is None or group_props is None or name is None or name not in groups:
                return None
            if name not in group_props:
                raise Undecided(MISSING)
            props = group_props[name]
            bucketing = groups[name]
        if broken == "properties":
            raise Malformed("condition properties have no length")
        if self.filters:
            if not _all_match(self.filters, ctx, distinct_id, props):
                return None
            if not self.has_rollout:
                return self._value(flag, bucketing)
        if self.has_rollout:
            if broken == "rollout":
                raise Malformed("rollout percentage is not a number")
            threshold = self.threshold
            # The hash lies in [0, 1]: no need to compute it for 100% or negative rollouts.
            if not threshold >= 1.0 and (
                threshold < 0.0 or bucket(flag.prefix, bucketing) > threshold
            ):
                return False
        return self._value(flag, bucketing)

    def _value(self, flag: CompiledFlag, bucketing: Any) -> FlagValue:
        if self.variant is not None:
            return self.variant
        if self.variant_broken:
            raise Malformed("variant override is not a string")
        return flag.pick_variant(bucketing) or True


class CompiledFlag:
    """One flag definition, compiled. Built by ``compile_definitions``; read-only after."""

    __slots__ = (
        "active",
        "aggregation",
        "conditions",
        "conditions_broken",
        "continuity",
        "definition_reason",
        "definition_reason_fails",
        "device_bucketing",
        "direct",
        "disabled",
        "early_exit",
        "enrollment",
        "enrollment_key",
        "filters_broken",
        "flag_id",
        "group_name",
        "holdout",
        "holdout_broken",
        "key",
        "needs_context",
        "needs_groups",
        "no_match",
        "out_of_rollout",
        "payloads",
        "plain",
        "prefix",
        "raw",
        "reads_distinct_id",
        "results",
        "variant_table",
        "version",
    )

    # The shared results of the outcomes that need no condition; set by ``seal``.
    disabled: FlagResult
    out_of_rollout: FlagResult
    no_match: FlagResult

    def __init__(self, key: str, raw: Mapping[str, Any]) -> None:
        self.key = key
        self.raw = raw
        self.prefix = f"{key}.".encode()
        self.flag_id: int | None = None
        self.version: int | None = None
        self.active = False
        self.continuity = False
        self.filters_broken = False
        self.aggregation: Any = None
        self.group_name: str | None = None
        self.device_bucketing = False
        self.enrollment = False
        self.enrollment_key = f"$feature_enrollment/{key}"
        self.holdout: tuple[float, str] | None = None
        self.holdout_broken = False
        self.conditions_broken = False
        self.conditions: Sequence[Condition] = ()
        self.early_exit = False
        self.variant_table: Sequence[tuple[Any, float, float]] | None = ()
        self.payloads: Mapping[str, Any] = {}
        self.definition_reason: InconclusiveReason | None = None
        self.definition_reason_fails = False
        self.results: dict[tuple[FlagValue, MatchReason, int | None], FlagResult] = {}
        self.direct = False
        self.plain = False
        self.needs_groups = False
        # Set by the compiler once every flag is compiled (dependencies must be linked first);
        # until then the safe answers: copy the person properties, build a context.
        self.reads_distinct_id = True
        self.needs_context = True

    def seal(self) -> None:
        """Derive the shortcuts evaluation uses, once the flag is compiled."""
        self.disabled = self.result(False, MatchReason.FLAG_DISABLED, None)
        self.out_of_rollout = self.result(False, MatchReason.OUT_OF_ROLLOUT_BOUND, None)
        self.no_match = self.result(False, MatchReason.NO_CONDITION_MATCH, None)
        self.direct = (
            self.active
            and not self.continuity
            and not self.filters_broken
            and self.aggregation is None
            and not self.device_bucketing
        )
        self.plain = (
            not (self.enrollment or self.holdout is not None or self.holdout_broken)
            and not self.conditions_broken
        )
        for condition in self.conditions:
            condition.seal(self)
        self.needs_groups = self.aggregation is not None or any(
            condition.group_override for condition in self.conditions
        )

    # -- hashing -------------------------------------------------------------------------

    def pick_variant(self, bucketing: Any) -> str | None:
        """The variant whose cumulative range holds the variant hash, if any."""
        table = self.variant_table
        if table is None:
            raise Malformed("malformed variants")
        if not table:
            return None
        point = bucket(self.prefix, bucketing, b"variant")
        for name, low, high in table:
            if low <= point < high:
                if not name:
                    return None
                if isinstance(name, str):
                    return name
                raise Malformed("variant key is not a string")
        return None

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(
        self,
        ctx: EvalContext,
        distinct_id: Any,
        person_props: Mapping[str, Any],
        groups: Mapping[str, Any],
        group_props: Mapping[str, Mapping[str, Any]],
    ) -> FlagResult:
        """Evaluate as the flag asked for; raise ``Undecided``/``ServerRequired``/others."""
        if not self.active:
            return self.disabled
        if self.continuity:
            raise Undecided(CONTINUITY)
        if self.filters_broken:
            raise Malformed("filters is not an object")
        if self.aggregation is not None:
            name = self.group_name
            if not name:
                raise Undecided(UNSUPPORTED)
            if name not in groups:
                return self.result(False, MatchReason.NO_GROUP_TYPE, None)
            if name not in group_props:
                raise Undecided(MISSING)
            group_key = groups[name]
            return self.body(ctx, group_key, group_props[name], group_key, groups, group_props)
        if self.device_bucketing:
            device_id = ctx.device_id
            if not device_id:
                if self.definition_reason_fails:
                    raise Malformed("malformed definition")
                raise Undecided(self.definition_reason or MISSING)
            return self.body(ctx, distinct_id, person_props, device_id, groups, group_props)
        return self.body(ctx, distinct_id, person_props, distinct_id, groups, group_props)

    def evaluate_as_dependency(
        self, ctx: EvalContext, distinct_id: Any, props: Mapping[str, Any]
    ) -> None:
        """Evaluate for another flag's dependency chain and store the value in the cache."""
        key = self.key
        cache = ctx.cache
        if not self.active:
            cache[key] = False
            return
        if self.continuity:
            cache[key] = None
            raise Undecided(UNRESOLVED)
        if key in ctx.visiting:
            # The official SDK recurses until RecursionError; stop at the first repeat.
            raise Malformed(f"dependency cycle through {key!r}")
        ctx.visiting.add(key)
        try:
            if self.filters_broken:
                raise Malformed("filters is not an object")
            bucketing = distinct_id
            if self.aggregation is None and self.device_bucketing:
                bucketing = ctx.device_id
                if not bucketing:
                    raise Undecided(MISSING)
            value = self.body(ctx, distinct_id, props, bucketing, None, None).value
        except ServerRequired:
            raise ServerRequired(UNRESOLVED) from None
        except Undecided:
            cache[key] = None
            raise Undecided(UNRESOLVED) from None
        finally:
            ctx.visiting.discard(key)
        cache[key] = value

    def _before_conditions(self, props: Mapping[str, Any], bucketing: Any) -> FlagResult | None:
        """Enrollment and holdout, which decide before any condition; malformed pieces."""
        if self.enrollment:
            if self.aggregation is not None:
                raise Undecided(UNSUPPORTED)
            enrolled = props.get(self.enrollment_key, _ABSENT)
            if enrolled is _ABSENT:
                raise Undecided(MISSING)
            value = enrolled is True or enrolled == "true"
            return self.result(value, MatchReason.FEATURE_ENROLLMENT, None)
        if self.holdout_broken:
            raise Malformed("malformed holdout")
        holdout = self.holdout
        if holdout is not None:
            percentage, name = holdout
            if percentage == 100.0 or not bucket(b"holdout-", bucketing) > percentage / 100:
                return self.result(name, MatchReason.HOLDOUT, None)
        if self.conditions_broken:
            raise Malformed("malformed conditions or variants")
        return None

    def body(
        self,
        ctx: EvalContext,
        distinct_id: Any,
        props: Mapping[str, Any],
        bucketing: Any,
        groups: Mapping[str, Any] | None,
        group_props: Mapping[str, Mapping[str, Any]] | None,
    ) -> FlagResult:
        """Enrollment, holdout and conditions; ``groups`` is ``None`` inside a dependency."""
        if not self.plain:
            special = self._before_conditions(props, bucketing)
            if special is not None:
                return special
        reason: InconclusiveReason | None = None
        excluded = False
        rollout = -1.0  # the rollout hash once computed (it lies in [0, 1]): at most once
        for condition in self.conditions:
            try:
                if condition.fast:
                    # Inline path for well-formed conditions without a group of their own.
                    single = condition.single
                    if single is not None:
                        if not single.match(ctx, distinct_id, props):
                            continue
                    elif condition.filters and not _all_match(
                        condition.filters, ctx, distinct_id, props
                    ):
                        continue
                    if condition.check_rollout:
                        if not condition.always_out:
                            if rollout < 0.0:
                                rollout = bucket(self.prefix, bucketing)
                            if not rollout > condition.threshold:
                                return condition.result or condition.matched(self, bucketing)
                        excluded = True
                        if self.early_exit:
                            break
                        continue
                    return condition.result or condition.matched(self, bucketing)
                value = condition.evaluate(
                    self, ctx, distinct_id, props, bucketing, groups, group_props
                )
            except ServerRequired as exc:
                if self.definition_reason is not None:
                    exc.reason = pick(exc.reason, self.definition_reason)
                raise
            except Undecided as exc:
                reason = pick(reason, exc.reason)
                continue
            if value is None:
                continue
            if value is False:
                excluded = True
                if self.early_exit:
                    break
                continue
            return self.result(value, MatchReason.CONDITION_MATCH, condition.index)
        if reason is not None:
            raise Undecided(reason)
        if excluded:
            return self.out_of_rollout
        return self.no_match

    # -- results -------------------------------------------------------------------------

    def result(self, value: FlagValue, reason: MatchReason, index: int | None) -> FlagResult:
        """The (shared, immutable) result object for this outcome."""
        cache_key = (value, reason, index)
        found = self.results.get(cache_key)
        if found is None:
            lookup = "true" if value is True else "false" if value is False else value
            found = FlagResult(
                self.key,
                value,
                self.payloads.get(lookup),
                reason,
                index,
                self.flag_id,
                self.version,
            )
            self.results[cache_key] = found
        return found


_ABSENT: Any = object()
